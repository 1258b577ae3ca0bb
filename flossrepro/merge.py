"""Entry point: ``python -m flossrepro.merge`` (Merge published tables; the code is :mod:`flossrepro.report.merge`)."""
if __name__ == "__main__":
    from flossrepro.report import run_command
    run_command("flossrepro.report.merge")
else:
    from flossrepro.report.merge import main  # noqa: F401
