"""Tables at paper scale: ``python -m flossrepro.perf.table_bench [--runs 42 --members 20 --epochs 10000]``.

Writes a synthetic sweep with the shape of a paper-scale Fig 4 (42 runs x 20 networks x 10^4
epochs, flossing during training: 5 episodes of 500 flossing epochs, k=75, N=80) through the
real :class:`flossrepro.store.tables.Recorder`, with the paper scale's default diagnostics
(``conf/scale/paper.yaml`` and ``conf/diagnostics/default.yaml``: train loss and accuracy every
epoch, dL/dh0 every 10, singular values of dL/dW every 200, test every 100, 75 exponents and
the dW spectrum every 1000) and a part per checkpoint (every 500 epochs). Then it runs the
real aggregator (``python -m flossrepro.aggregate``) on it in a fresh process and reports its
wall time and peak memory (the child's maximum resident set size). The values are random;
only the shape and the volume are those of the real sweep. Writes ``--json`` if given.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from flossrepro.store.tables import Recorder


def write_run(d: Path, run_id: str, R: int, E: int, rng: np.random.Generator, columns: dict,
              N: int = 80, k: int = 75, ckpt: int = 500, episodes=(0, 100, 200, 300, 400), floss_epochs: int = 500) -> int:
    rec = Recorder(d, run_id, R)
    fe = 0
    for e in range(E):
        if e in episodes:
            rec.add_vectors(e, "lyap_before_floss", rng.standard_normal((R, k)))
            for _ in range(floss_epochs):
                rec.add(fe, "floss_loss", rng.random(R))
                rec.add(fe, "floss_lambda_1", rng.standard_normal(R))
                fe += 1
            rec.add_vectors(e, "lyap_after_floss", rng.standard_normal((R, k)))
        rec.add(e, "train_loss", rng.random(R))
        rec.add(e, "train_accuracy", rng.random(R))
        if e % 10 == 0:
            rec.add(e, "grad_h0_norm", rng.random(R))
        if e % 200 == 0:
            rec.add_vectors(e, "grad_W_sv", rng.random((R, N)))
        n = e + 1
        if n % 100 == 0:
            rec.add(n, "test_loss", rng.random(R))
            rec.add(n, "test_accuracy", rng.random(R))
        if n % 1000 == 0:
            rec.add_vectors(n, "lyap", rng.standard_normal((R, k)))
            rec.add_vectors(n, "dW_sv", rng.random((R, N)))
            rec.add(n, "dW_effective_rank", rng.random(R))
            rec.add(n, "dW_rel_norm", rng.random(R))
            for m in ("dW_align_u1_V", "dW_align_u1_wr", "dW_align_v1_V", "dW_align_v1_wr"):
                rec.add(n, m, rng.random(R))
        if n % ckpt == 0:
            rec.flush()
    rec.flush()
    (d / "summary.json").write_text(json.dumps({
        "status": "complete", "run_id": run_id, "epochs_done": E, "epochs": E, "columns": columns,
        "members": [{"member": r, "status": "ok"} for r in range(R)], "timings": {"total_s": 0.0}}))
    return rec.parts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flossrepro.perf.table_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=42)
    ap.add_argument("--members", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=10000)
    ap.add_argument("--dir", default=None, help="where to write the sweep (default: a temporary folder, removed)")
    ap.add_argument("--json", default=None, help="write the measurements here")
    a = ap.parse_args(argv)
    tmp = None if a.dir else tempfile.TemporaryDirectory(prefix="flossrepro-tables-")
    sweep = Path(a.dir or tmp.name) / "sweep"
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    conds = [(t, s, d) for t in ("binary_xor", "spatial_xor") for s in ("none", "pre", "during")
             for d in (10, 20, 30, 40, 50, 60, 70)][: a.runs]
    parts = 0
    for i, (task, sched, delay) in enumerate(conds):
        name = f"flossing={sched},task={task},task.delay={delay}"
        cols = {"experiment_name": "fig4", "scale.name": "paper", "flossing.schedule": sched, "task.name": task,
                "task.delay": delay, "arch.n_hidden": 80, "flossing.k": 75, "seed": 0, "members": a.members,
                "epochs": a.epochs}
        parts += write_run(sweep / name, f"fig4/paper/{name}", a.members, a.epochs, rng, cols)
        print(f"\rwrote run {i + 1}/{len(conds)}", end="", file=sys.stderr, flush=True)
    t_write = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in sweep.rglob("*.parquet"))
    print(file=sys.stderr)
    out = sweep.parent / "aggregated"
    t1 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "flossrepro.report.aggregate", str(sweep), "--out", str(out)],
                       capture_output=True, text=True)
    t_agg = time.perf_counter() - t1
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if p.returncode != 0:
        print(p.stdout + p.stderr, file=sys.stderr)
        return 1
    import pyarrow.parquet as pq

    total_rows = int(sum(pq.read_metadata(f).num_rows for f in sweep.rglob("part-*.parquet")))
    summary_rows = pq.read_metadata(out / "metrics.parquet").num_rows
    res = {"runs": len(conds), "members": a.members, "epochs": a.epochs, "rows": total_rows, "parts": parts,
           "table_mb": round(size / 2**20, 1), "write_s": round(t_write, 1), "aggregate_s": round(t_agg, 1),
           "aggregate_peak_rss_mb": round(rss_mb, 0), "summary_rows": summary_rows,
           "summary_mb": round((out / "metrics.parquet").stat().st_size / 2**20, 2)}
    print(p.stdout.strip().splitlines()[0])
    print(f"{res['rows']:,} rows in {parts} parts ({res['table_mb']} MB) written in {res['write_s']} s; "
          f"aggregated in {res['aggregate_s']} s with a peak of {res['aggregate_peak_rss_mb']:.0f} MB; "
          f"summary table {summary_rows:,} rows ({res['summary_mb']} MB)")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
