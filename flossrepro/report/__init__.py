"""Reports: aggregation of a sweep, the claims report."""
from __future__ import annotations

import importlib
import sys


def run_command(module: str) -> None:
    """Run ``module``'s ``main()`` as a ``python -m`` command (``python -m flossrepro.aggregate``,
    ``flossrepro.merge``): a Ctrl-C while its libraries load is one line and exit code 130."""
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:  # nothing written yet
        print(f"{module}: stopped (Ctrl-C) before anything was written", file=sys.stderr)
        raise SystemExit(130)
    raise SystemExit(main())
