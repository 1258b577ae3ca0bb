"""Entry point: ``python -m flossrepro.plan`` (Plan a sweep; the code is :mod:`flossrepro.run.plan`)."""
from flossrepro.run.plan import main

if __name__ == "__main__":
    raise SystemExit(main())
