"""Entry point: ``python -m flossrepro.aggregate`` (Aggregate a sweep; the code is :mod:`flossrepro.report.aggregate`)."""
if __name__ == "__main__":
    from flossrepro.report import run_command
    run_command("flossrepro.report.aggregate")
else:
    from flossrepro.report.aggregate import main  # noqa: F401
