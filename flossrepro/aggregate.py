"""Entry point: ``python -m flossrepro.aggregate`` (Aggregate a sweep; the code is :mod:`flossrepro.report.aggregate`)."""
from flossrepro.report.aggregate import main

if __name__ == "__main__":
    raise SystemExit(main())
