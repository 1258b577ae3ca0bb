"""What the diagnostics of Figs 8-13 cost a Fig 4 run: the same job with fig4's diagnostics
and with only what Fig 4 itself reads (test accuracy every 50 epochs, the exponents around
flossing episodes; ``--baseline none``: every diagnostic off), run alternately (so both see
the same machine load), compared by the jobs' own wall time.

    .venv/bin/python scripts/diagnostics_overhead.py [--scale small] [--epochs 3000] [--repeats 2]

Prints one line per run and the median ratio (with / without); exits 0. Nothing is kept.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFF = ["diagnostics.lyap_every=0", "diagnostics.grad_h0_every=0", "diagnostics.grad_sv_every=0",
       "diagnostics.dw_every=0"]
BASELINES = {"fig4": ["diagnostics.eval_every=50"] + OFF,   # what Fig 4's panels and claims read
             "none": ["diagnostics.eval_every=0"] + OFF}


def run(tmp: Path, name: str, scale: str, epochs: int, extra: list[str]) -> float:
    d = tmp / name
    cmd = [sys.executable, "-m", "flossrepro", "+experiment=fig4", f"scale={scale}", "hydra.mode=RUN",
           "task=binary_xor", "task.delay=70", "flossing=none", f"epochs={epochs}", "logger=none",
           "progress=none", f"checkpoint_every={epochs}", f"hydra.run.dir={d}", *extra]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    t = json.loads((d / "summary.json").read_text())["timings"]
    return float(t["total_s"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="small")
    ap.add_argument("--epochs", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--baseline", choices=sorted(BASELINES), default="fig4")
    a = ap.parse_args(argv)
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            on = run(Path(tmp), f"on{r}", a.scale, a.epochs, [])
            off = run(Path(tmp), f"off{r}", a.scale, a.epochs, BASELINES[a.baseline])
            ratios.append(on / off)
            print(f"repeat {r}: with fig4's diagnostics {on:.1f} s, baseline '{a.baseline}' {off:.1f} s, "
                  f"ratio {on / off:.3f}", flush=True)
    print(f"median ratio {statistics.median(ratios):.3f} over {a.repeats} pairs "
          f"(scale={a.scale}, {a.epochs} epochs, binary XOR d=70, no flossing, baseline '{a.baseline}')")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
