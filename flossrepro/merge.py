"""Entry point: ``python -m flossrepro.merge`` (Merge published tables; the code is :mod:`flossrepro.report.merge`)."""
if __name__ == "__main__":
    try:
        from flossrepro.report.merge import main
    except KeyboardInterrupt:  # Ctrl-C while the libraries load: one line, nothing written yet
        import sys
        print("flossrepro.report.merge: stopped (Ctrl-C) before anything was written", file=sys.stderr)
        raise SystemExit(130)
    raise SystemExit(main())
else:
    from flossrepro.report.merge import main  # noqa: F401
