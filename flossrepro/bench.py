"""Entry point: ``python -m flossrepro.bench`` (The speed benchmark; the code is :mod:`flossrepro.perf.bench`)."""
from flossrepro.perf.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
