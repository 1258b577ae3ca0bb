"""``python -m flossrepro.figures [--results results] [--only fig1 fig3 ...] [--dpi 150]``

For each figure, read ``<results>/<experiment>/metrics.parquet`` and save
``<experiment>.png`` and ``<experiment>.pdf`` beside it. A missing table is reported with the
command that makes it, and the others are still drawn. Nothing is trained. Exits 0 unless a
figure failed to draw (1) or the arguments are wrong (2).
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from . import FIGURES, plotter
from .data import load


def draw(results: str | Path, name: str, dpi: int = 150) -> list[Path] | None:
    """Draw figure ``name`` from ``results/<name>/metrics.parquet``; None when the table is missing."""
    metrics, _ = load(results, name)
    if metrics is None or metrics.empty:
        return None
    fig = plotter(name)(metrics)
    out = Path(results) / name
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=dpi)
    fig.savefig(paths[1])
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flossrepro.figures", description=__doc__.split("\n\n")[1].replace("\n", " "))
    ap.add_argument("--results", default="results", help="folder holding <experiment>/metrics.parquet (default: results)")
    ap.add_argument("--only", nargs="+", metavar="FIG", help=f"draw only these ({', '.join(FIGURES)})")
    ap.add_argument("--dpi", type=int, default=150, help="PNG resolution (default 150)")
    a = ap.parse_args(argv)
    names = a.only or list(FIGURES)
    bad = [n for n in names if n not in FIGURES]
    if bad:
        print(f"figures: error: unknown figure(s) {', '.join(bad)}; have: {', '.join(FIGURES)}", file=sys.stderr)
        return 2
    drawn, skipped, failed = [], [], []
    for name in names:
        table = Path(a.results) / name / "metrics.parquet"
        try:
            paths = draw(a.results, name, a.dpi)
        except Exception as e:  # one bad table must not stop the others
            traceback.print_exc()
            print(f"{name}: FAILED to draw from {table}: {type(e).__name__}: {e}")
            failed.append(name)
            continue
        if paths is None:
            print(f"{name}: no {table} (or it is empty); run: scripts/reproduce.sh {name} small")
            skipped.append(name)
        else:
            print(f"{name}: wrote {paths[0]} and {paths[1]}")
            drawn.append(name)
    print(f"figures: drew {len(drawn)} ({', '.join(drawn) or '-'}), skipped {len(skipped)} "
          f"({', '.join(skipped) or '-'})" + (f", failed {len(failed)} ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
