"""Entry point: ``python -m flossrepro.aggregate`` (Aggregate a sweep; the code is :mod:`flossrepro.report.aggregate`)."""
if __name__ == "__main__":
    try:
        from flossrepro.report.aggregate import main
    except KeyboardInterrupt:  # Ctrl-C while the libraries load: one line, nothing written yet
        import sys
        print("flossrepro.report.aggregate: stopped (Ctrl-C) before anything was written", file=sys.stderr)
        raise SystemExit(130)
    raise SystemExit(main())
else:
    from flossrepro.report.aggregate import main  # noqa: F401
