"""``python -m flossrepro.figures [--results results] [--only fig1 fig3 ...] [--dpi 150]``

For each figure module (discovered), read the tables of its experiments
(``<results>/<experiment>/metrics.parquet``, only the metrics it declares) and save
``<figure>.png`` and ``<figure>.pdf`` beside the first one. A missing table is reported with
the command that makes it, and the others are still drawn. Nothing is trained. Exits 0
unless a figure failed to draw (1) or the arguments are wrong (2).
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from flossrepro.errors import FlossreproError
from flossrepro.figures import discover
from flossrepro.figures.data import load_tables


def run_hint(experiment: str, results: str | Path = "results") -> str:
    """The command that makes ``<results>/<experiment>/``: into the committed ``results/`` only
    when that is the folder asked for, otherwise into ``results`` itself (``RESULTS=``)."""
    if Path(results).resolve() == (Path(__file__).resolve().parents[2] / "results"):
        return f"scripts/reproduce.sh {experiment} small"
    return f"RESULTS={results} scripts/reproduce.sh {experiment} small"


def output_paths(results: str | Path, name: str, module) -> list[Path]:
    """``<results>/<first experiment>/<name>.png`` and ``.pdf``."""
    out = Path(results) / module.EXPERIMENTS[0]
    return [out / f"{name}.png", out / f"{name}.pdf"]


def draw(results: str | Path, name: str, dpi: int = 150) -> list[Path] | None:
    """Draw figure ``name`` from its tables; None when a table is missing."""
    mod = discover()[name]
    metrics, _, missing = load_tables(results, mod.EXPERIMENTS, mod.METRICS)
    if missing:
        return None
    fig = mod.plot(metrics)
    paths = output_paths(results, name, mod)
    save_png(fig, paths[0], dpi)
    fig.savefig(paths[1])
    return paths


def save_png(fig, path: Path, dpi: int) -> None:
    """The PNG with a 256-colour palette (a third of the RGBA file's size; the figures use a
    few colours, so it looks the same), so that the PNGs committed to results/ stay small."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    buf.seek(0)
    with Image.open(buf) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                   dither=Image.Dither.NONE).save(path, optimize=True)


def main(argv=None) -> int:
    figs = discover()
    ap = argparse.ArgumentParser(prog="python -m flossrepro.figures", description=__doc__.split("\n\n")[1].replace("\n", " "))
    ap.add_argument("--results", default="results", help="folder holding <experiment>/metrics.parquet (default: results)")
    ap.add_argument("--only", nargs="+", metavar="FIG", help=f"draw only these ({', '.join(figs)})")
    ap.add_argument("--dpi", type=int, default=150, help="PNG resolution (default 150)")
    a = ap.parse_args(argv)
    if not Path(a.results).is_dir():
        print(f"figures: error: {a.results} is not a directory; give the results folder (--results results)",
              file=sys.stderr)
        return 2
    names = a.only or list(figs)
    bad = [n for n in names if n not in figs]
    if bad:
        print(f"figures: error: unknown figure(s) {', '.join(bad)}; have: {', '.join(figs)}", file=sys.stderr)
        return 2
    drawn, skipped, failed = [], [], []
    for name in names:
        mod = figs[name]
        try:
            paths = draw(a.results, name, a.dpi)
        except Exception as e:  # one bad table must not stop the others
            if not isinstance(e, (FlossreproError, KeyError)):  # a table that cannot be read, or lacks a column: one line
                traceback.print_exc()
            print(f"{name}: FAILED to draw from {', '.join(mod.EXPERIMENTS)}: {type(e).__name__}: {e}")
            failed.append(name)
            continue
        if paths is None:
            _, _, missing = load_tables(a.results, mod.EXPERIMENTS, mod.METRICS)
            for e in missing:
                wanted = ", ".join(mod.METRICS or ["any metric"])
                print(f"{name}: no {Path(a.results) / e / 'metrics.parquet'} (or no rows of {wanted}); run: {run_hint(e, a.results)}")
            skipped.append(name)
        else:
            print(f"{name}: wrote {paths[0]} and {paths[1]}")
            drawn.append(name)
    print(f"figures: drew {len(drawn)} ({', '.join(drawn) or '-'}), skipped {len(skipped)} "
          f"({', '.join(skipped) or '-'})" + (f", failed {len(failed)} ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
