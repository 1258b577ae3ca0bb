"""Entry point: ``python -m flossrepro.report`` (the claims report; the code is :mod:`flossrepro.report.report`)."""
from flossrepro.report.report import main

if __name__ == "__main__":
    raise SystemExit(main())
