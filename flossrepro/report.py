"""``python -m flossrepro.report [--results results] [--no-draw]``: the claims report.

Writes ``<results>/REPORT.md``: for every claim of Figs 1, 3 and 4 the number measured in
``<results>/<experiment>/metrics.parquet`` at the scale that was run, and a verdict computed
here: ``reproduced``, ``not reproduced``, or ``not run`` (no table, or the table lacks a
condition the claim needs). Each figure's section embeds its PNG (drawn first when missing
or older than the table, unless ``--no-draw``) and states the command, scale, git commit
and wall time from ``provenance.json``. Nothing is trained.

Definitions used by every claim:
- a *network* is one realization, a ``(run_id, member)`` pair; medians are over networks;
- *final* is a run's last test evaluation epoch; a network without a finite value there
  (it diverged) counts as failed: MSE ``inf``, accuracy 0.5;
- *chance*: copy MSE 1/12 (Var U(0,1)), continuous temporal XOR MSE 1/18, accuracy 0.5.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .figures.data import (CHANCE, NET, SCHEDULES, band, describe, final_medians, fmt_setting, last_epoch_rows, load, rows,
                           values)

REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"

TOL_1B = 0.05          # |lambda_1 - target| counted as "reached"
FRAC_1B = 0.9          # fraction of networks that must reach each non-positive target
FRAC_1B_POS = 0.1      # a positive target counts as "not reached" below this fraction
LOSS_DROP_1C = 0.1     # final median flossing loss below this fraction of the initial
NEAR0_1D = 0.1         # median |lambda_i| for i <= k
GAP_1D = 0.1           # median lambda_{k+1} < median lambda_k - GAP
FAIL_3 = 0.5           # copy baseline fails: median final MSE >= FAIL_3 * chance
SOLVE_3 = 0.2          # copy preflossed solves: median final MSE < SOLVE_3 * chance
LEAVE_3 = 0.5          # leaves chance (continuous): median final MSE < LEAVE_3 * chance
LEAVE_4 = 0.6          # leaves chance (binary): median final accuracy > LEAVE_4
SUCCEED_4 = 0.8        # succeeds (binary): median final accuracy > SUCCEED_4


@dataclass
class Claim:
    id: str
    claim: str
    measured: str = ""
    verdict: str = NOT_RUN
    detail: list[str] = field(default_factory=list)   # markdown lines for the figure's section


CLAIMS = {
    "fig1": [
        ("1B", f"lambda_1 reaches each target in {{-1, -0.5, 0}} within {TOL_1B} for >= {FRAC_1B:.0%} of networks (k=1)"),
        ("1B+", f"a positive target (+0.5) is not reached (< {FRAC_1B_POS:.0%} of networks within {TOL_1B})"),
        ("1C", f"the flossing loss falls: median final < {LOSS_DROP_1C:.0%} of median initial, for each k (target 0)"),
        ("1D", f"after flossing k exponents (k < N), the first k sit near 0 (median abs(lambda_i) < {NEAR0_1D} for i <= k) "
               f"and lambda_(k+1) is clearly below (median lambda_(k+1) < median lambda_k - {GAP_1D})"),
    ],
    "fig3": [
        ("3C", f"copy: at some delay the baseline fails (median final MSE >= {FAIL_3} x chance 1/12) while "
               f"preflossed networks solve it (< {SOLVE_3} x chance)"),
        ("3D", f"continuous temporal XOR: preflossing trains at a longer delay than the baseline (largest delay "
               f"with median final MSE < {LEAVE_3} x chance 1/18)"),
    ],
    "fig4": [
        ("4C", "binary temporal XOR: median final accuracy none < pre < during at the two largest delays"),
        ("4D", f"spatial XOR: flossing during training succeeds (median > {SUCCEED_4}) at a delay where "
               f"preflossing fails (median < {LEAVE_4})"),
    ],
}
TITLES = {"fig1": "Fig 1: flossing drives Lyapunov exponents to a target",
          "fig3": "Fig 3: preflossing and long delays (copy, continuous temporal XOR)",
          "fig4": "Fig 4: flossing during training (binary temporal XOR, spatial XOR)"}


def _claim(fig: str, cid: str) -> Claim:
    return Claim(cid, dict(CLAIMS[fig])[cid])


def _g(x: float) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    if np.isinf(x):
        return "inf"
    return f"{x:.3g}"


def _delays(ds) -> str:
    """``d=10,20`` or ``no delay``."""
    ds = list(ds)
    return "d=" + ",".join(str(int(d)) for d in ds) if ds else "no delay"


def _md_table(df: pd.DataFrame, fmt=_g) -> list[str]:
    cols = [str(c) for c in df.columns]
    out = ["| " + " | ".join([df.index.name or ""] + cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for idx, r in df.iterrows():
        out.append("| " + " | ".join([fmt_setting(idx)] + [fmt(v) for v in r.tolist()]) + " |")
    return out


# ----------------------------------------------------------------------------- Fig 1
def _lambda1_after(df: pd.DataFrame, k: int, target: float) -> pd.Series:
    """lambda_1 after the last flossing episode, one value per network."""
    d = last_epoch_rows(rows(df, "lyap_after_floss", flossing__k=k, flossing__target=target))
    d = d[d["index"] == 1]
    return d.set_index(NET)["value"]


def _first_within(df: pd.DataFrame, k: int, target: float, tol: float) -> int | None:
    """First flossing epoch at which the median (over networks) of floss_lambda_1 is within ``tol``."""
    b = band(rows(df, "floss_lambda_1", flossing__k=k, flossing__target=target))
    hit = b[(b["median"] - target).abs() <= tol]
    return None if hit.empty else int(hit["epoch"].iloc[0])


def claims_fig1(df: pd.DataFrame) -> list[Claim]:
    c_b, c_pos, c_c, c_d = (_claim("fig1", c) for c in ("1B", "1B+", "1C", "1D"))
    targets = values(df, "flossing.target")
    has = lambda t: any(np.isclose(t, x) for x in targets)  # noqa: E731

    # 1B: non-positive targets, k=1
    parts, ok, missing = [], True, []
    lines = ["| target | networks | within 0.05 | median lambda_1 after | first flossing epoch median within 0.05 |",
             "|---|---|---|---|---|"]
    for t in (-1.0, -0.5, 0.0):
        lam = _lambda1_after(df, 1, t) if has(t) else pd.Series(dtype=float)
        if lam.empty:
            missing.append(f"{t:g}")
            continue
        frac = float(((lam - t).abs() <= TOL_1B).mean())
        first = _first_within(df, 1, t, TOL_1B)
        ok &= frac >= FRAC_1B
        when = f"from flossing epoch {first}" if first is not None else "at no flossing epoch"
        parts.append(f"target {t:g}: {frac:.0%} of {len(lam)} within {TOL_1B} (median lambda_1 after "
                     f"{_g(lam.median())}; median floss lambda_1 within {TOL_1B} {when})")
        lines.append(f"| {t:g} | {len(lam)} | {frac:.0%} | {_g(lam.median())} | {first if first is not None else 'never'} |")
    if missing:
        parts.append(f"target(s) {', '.join(missing)} not run with k=1")
    c_b.measured = "; ".join(parts) or "no k=1 runs with lyap_after_floss"
    c_b.verdict = NOT_RUN if missing else (REPRODUCED if ok else NOT_REPRODUCED)
    c_b.detail = lines + ["", "(paper: each target reached within < 100 flossing epochs)"]

    # 1B+: positive target
    lam = _lambda1_after(df, 1, 0.5) if has(0.5) else pd.Series(dtype=float)
    if lam.empty:
        c_pos.measured = "target +0.5 not run with k=1"
    else:
        frac = float(((lam - 0.5).abs() <= TOL_1B).mean())
        c_pos.measured = (f"{frac:.0%} of {len(lam)} networks within {TOL_1B} of +0.5 "
                          f"(median lambda_1 after flossing {_g(lam.median())})")
        c_pos.verdict = REPRODUCED if frac < FRAC_1B_POS else NOT_REPRODUCED

    # 1C: flossing loss falls, target 0, each k
    t0 = 0.0 if has(0.0) else None
    fl = rows(df, "floss_loss", flossing__target=t0) if t0 is not None else df.iloc[0:0]
    ks = values(fl, "flossing.k")
    if not ks:
        c_c.measured = "no floss_loss rows at target 0"
    else:
        parts, ok = [], True
        lines = ["| k | networks | median initial loss | median final loss | ratio |", "|---|---|---|---|---|"]
        for k in ks:
            d = rows(fl, flossing__k=k)
            first = d[d["epoch"] == d.groupby("run_id")["epoch"].transform("min")]["value"].median()
            last = d[d["epoch"] == d.groupby("run_id")["epoch"].transform("max")]["value"].median()
            ratio = last / first if first > 0 else np.nan
            ok &= bool(ratio < LOSS_DROP_1C)
            n = d.groupby(NET).ngroups
            parts.append(f"k={k}: {_g(first)} -> {_g(last)} ({_g(100 * ratio)}%)")
            lines.append(f"| {k} | {n} | {_g(first)} | {_g(last)} | {_g(ratio)} |")
        c_c.measured = "; ".join(parts)
        c_c.verdict = REPRODUCED if ok else NOT_REPRODUCED
        c_c.detail = lines

    # 1D: spectrum after flossing k < N exponents, target 0
    N = describe(df).get("N")
    after = rows(df, "lyap_after_floss", flossing__target=t0) if t0 is not None else df.iloc[0:0]
    ks = [k for k in values(after, "flossing.k") if not isinstance(N, (int, np.integer)) or k < N]
    if not ks:
        c_d.measured = "no lyap_after_floss rows at target 0 with k < N"
    else:
        parts, ok, incomplete = [], True, []
        lines = ["| k | networks | max over i<=k of median abs(lambda_i) | median lambda_k | median lambda_(k+1) |",
                 "|---|---|---|---|---|"]
        for k in ks:
            d = last_epoch_rows(rows(after, flossing__k=k))
            med = d.groupby("index")["value"].median()
            absmed = d.assign(value=d["value"].abs()).groupby("index")["value"].median()
            if k + 1 not in med.index or k not in med.index:
                incomplete.append(k)
                parts.append(f"k={k}: spectrum recorded only to i={int(med.index.max())}")
                continue
            near = float(absmed.loc[1:k].max())
            lk, lk1 = float(med.loc[k]), float(med.loc[k + 1])
            ok &= near < NEAR0_1D and lk1 < lk - GAP_1D
            parts.append(f"k={k}: max median abs(lambda_i<=k) {_g(near)}, lambda_k {_g(lk)}, lambda_(k+1) {_g(lk1)}")
            lines.append(f"| {k} | {d.groupby(NET).ngroups} | {_g(near)} | {_g(lk)} | {_g(lk1)} |")
        c_d.measured = "; ".join(parts)
        c_d.verdict = NOT_RUN if incomplete and len(incomplete) == len(ks) else (
            REPRODUCED if ok and not incomplete else NOT_REPRODUCED)
        c_d.detail = lines
    return [c_b, c_pos, c_c, c_d]


# ----------------------------------------------------------------------------- Fig 3
def _medians_or_missing(df, metric, task, need, fail_value):
    fm = final_medians(df, metric, task, fail_value)
    if not fm.empty:
        fm = fm[[c for c in SCHEDULES if c in fm.columns] + [c for c in fm.columns if c not in SCHEDULES]]
    lacking = [s for s in need if fm.empty or s not in fm.columns]
    return fm, lacking


def claims_fig3(df: pd.DataFrame) -> list[Claim]:
    c_c, c_d = _claim("fig3", "3C"), _claim("fig3", "3D")
    # 3C: copy
    chance = CHANCE["copy"]
    fm, lacking = _medians_or_missing(df, "test_loss", "copy", ["none", "pre"], np.inf)
    if lacking:
        c_c.measured = f"copy: condition(s) {', '.join(lacking)} not in the table"
    else:
        both = fm[["none", "pre"]].dropna()
        leave = {s: [d for d, v in fm[s].dropna().items() if v < LEAVE_3 * chance] for s in ("none", "pre")}
        hits = [d for d, r in both.iterrows() if r["none"] >= FAIL_3 * chance and r["pre"] < SOLVE_3 * chance]
        c_c.measured = (f"baseline fails while pre solves at {_delays(hits)}; leaves chance (MSE < {LEAVE_3} x 1/12): "
                        f"none at {_delays(leave['none'])}, pre at {_delays(leave['pre'])}")
        c_c.verdict = REPRODUCED if hits else NOT_REPRODUCED
        c_c.detail = ["Median final test MSE (copy; chance 1/12 = 0.0833):", ""] + _md_table(fm)
    # 3D: temporal XOR
    chance = CHANCE["temporal_xor"]
    fm, lacking = _medians_or_missing(df, "test_loss", "temporal_xor", ["none", "pre"], np.inf)
    if lacking:
        c_d.measured = f"temporal_xor: condition(s) {', '.join(lacking)} not in the table"
    else:
        largest = {}
        for s in ("none", "pre"):
            ok = [d for d, v in fm[s].dropna().items() if v < LEAVE_3 * chance]
            largest[s] = max(ok) if ok else None
        c_d.measured = (f"largest delay trained (median MSE < {LEAVE_3} x 1/18): none {_delays([largest['none']] if largest['none'] else [])}, "
                        f"pre {_delays([largest['pre']] if largest['pre'] else [])}")
        c_d.verdict = REPRODUCED if largest["pre"] is not None and (largest["none"] or 0) < largest["pre"] else NOT_REPRODUCED
        c_d.detail = ["Median final test MSE (continuous temporal XOR; chance 1/18 = 0.0556):", ""] + _md_table(fm)
    return [c_c, c_d]


# ----------------------------------------------------------------------------- Fig 4
def claims_fig4(df: pd.DataFrame) -> list[Claim]:
    c_c, c_d = _claim("fig4", "4C"), _claim("fig4", "4D")
    conds = ["none", "pre", "during"]
    fm, lacking = _medians_or_missing(df, "test_accuracy", "binary_xor", conds, 0.5)
    if lacking:
        c_c.measured = f"binary_xor: condition(s) {', '.join(lacking)} not in the table"
    else:
        full = fm[conds].dropna()
        top = sorted(full.index)[-2:]
        order = {d: bool(full.loc[d, "none"] < full.loc[d, "pre"] < full.loc[d, "during"]) for d in top}
        leave = {s: [d for d, v in fm[s].dropna().items() if v > LEAVE_4] for s in conds}
        at = "; ".join(f"d={d}: none {_g(full.loc[d, 'none'])}, pre {_g(full.loc[d, 'pre'])}, "
                       f"during {_g(full.loc[d, 'during'])}" for d in top)
        c_c.measured = (f"{at}; leaves chance (median > {LEAVE_4}): " +
                        ", ".join(f"{s} at {_delays(leave[s])}" for s in conds))
        if len(top) < 2:
            c_c.measured += " (only one delay has all three conditions)"
        c_c.verdict = REPRODUCED if len(top) == 2 and all(order.values()) else NOT_REPRODUCED
        c_c.detail = ["Median final test accuracy (binary temporal XOR; chance 0.5). Paper: baseline at chance "
                      "for d >= 40, pre improves but is at chance at d=70, during > 0.8 at d=70.", ""] + _md_table(fm)
    fm, lacking = _medians_or_missing(df, "test_accuracy", "spatial_xor", ["pre", "during"], 0.5)
    if lacking:
        c_d.measured = f"spatial_xor: condition(s) {', '.join(lacking)} not in the table"
    else:
        both = fm[["pre", "during"]].dropna()
        hits = [d for d, r in both.iterrows() if r["during"] > SUCCEED_4 and r["pre"] < LEAVE_4]
        leave = {s: [d for d, v in fm[s].dropna().items() if v > LEAVE_4] for s in fm.columns}
        c_d.measured = (f"during > {SUCCEED_4} while pre < {LEAVE_4} at {_delays(hits)}; leaves chance (median > {LEAVE_4}): " +
                        ", ".join(f"{s} at {_delays(leave[s])}" for s in fm.columns))
        c_d.verdict = REPRODUCED if hits else NOT_REPRODUCED
        c_d.detail = ["Median final test accuracy (spatial XOR; chance 0.5). Paper: pre fails for d > 60, "
                      "during succeeds.", ""] + _md_table(fm)
    return [c_c, c_d]


EVALUATE = {"fig1": claims_fig1, "fig3": claims_fig3, "fig4": claims_fig4}


def evaluate(name: str, metrics: pd.DataFrame | None) -> list[Claim]:
    """The claims of figure ``name`` measured on ``metrics`` (all ``not run`` when None/empty)."""
    if metrics is None or metrics.empty:
        out = [_claim(name, cid) for cid, _ in CLAIMS[name]]
        for c in out:
            c.measured = f"no results/{name}/metrics.parquet"
        return out
    return EVALUATE[name](metrics)


# ----------------------------------------------------------------------------- report
def _scale_line(df: pd.DataFrame) -> str:
    d = describe(df)
    s = (f"scale={fmt_setting(d['scale'])}, N={fmt_setting(d['N'])}, members={fmt_setting(d['members'])} per run, "
         f"epochs={fmt_setting(d['epochs'])}")
    if d.get("k") is not None:
        s += f", flossed k={fmt_setting(d['k'])}"
    if d.get("floss_epochs"):
        s += f", {fmt_setting(d['floss_epochs'])} flossing epochs per episode"
    return s


def _runs_line(results: Path, name: str) -> str | None:
    p = results / name / "runs.csv"
    if not p.exists():
        return None
    runs = pd.read_csv(p)
    if "status" not in runs:
        return None
    counts = runs["status"].value_counts().to_dict()
    return f"{len(runs)} runs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))


def schedule_checks(df: pd.DataFrame) -> list[str]:
    """Warnings when the recorded flossing episodes contradict a run's schedule: a ``pre`` run
    must have exactly one episode (at epoch 0), a ``none`` run none, a ``during`` run several."""
    if "flossing.schedule" not in df.columns:
        return []
    eps = (df[df["metric"] == "lyap_after_floss"].groupby("run_id")["epoch"].nunique())
    sched = df.groupby("run_id")["flossing.schedule"].first()
    n = eps.reindex(sched.index).fillna(0).astype(int)
    out = []
    for s, bad in (("none", n[(sched == "none") & (n > 0)]), ("pre", n[(sched == "pre") & (n != 1)]),
                   ("during", n[(sched == "during") & (n < 2)])):
        if len(bad):
            counts = ", ".join(f"{c} episode(s): {k} run(s)" for c, k in bad.value_counts().sort_index().items())
            out.append(f"WARNING: {len(bad)} '{s}' run(s) have a flossing-episode count that contradicts the schedule "
                       f"({counts}); the comparison between schedules is not what the figure claims.")
    return out


def _failed_runs(results: Path, name: str) -> int:
    p = results / name / "runs.csv"
    if not p.exists():
        return 0
    runs = pd.read_csv(p)
    if "status" not in runs:
        return 0
    return int((~runs["status"].isin(["complete", "complete_partial", "diverged"])).sum())


def _maybe_draw(results: Path, name: str) -> str | None:
    """Draw the figure when its PNG is missing or older than its table; returns an error line or None."""
    table, png = results / name / "metrics.parquet", results / name / f"{name}.png"
    if png.exists() and png.stat().st_mtime >= table.stat().st_mtime:
        return None
    try:
        from .figures.__main__ import draw
        draw(results, name)
    except Exception as e:  # the report must still be written
        return f"drawing {name} failed: {type(e).__name__}: {e}"
    return None


def render(results: str | Path = "results", draw: bool = True) -> str:
    """The text of REPORT.md for the tables under ``results``."""
    results = Path(results)
    sections, table, warnings = [], [], []
    for name in CLAIMS:
        metrics, prov = load(results, name)
        claims = evaluate(name, metrics)
        ran = metrics is not None and not metrics.empty
        scale = _scale_line(metrics) if ran else "not run"
        if ran:
            d = describe(metrics)
            short = f"scale={fmt_setting(d['scale'])}, N={fmt_setting(d['N'])}"
        for c in claims:
            table.append(f"| {c.id} | {c.claim} | {c.measured} ({short}) | **{c.verdict}** |" if ran else
                         f"| {c.id} | {c.claim} | {c.measured} | **{c.verdict}** |")
        sec = [f"## {TITLES[name]}", ""]
        if not ran:
            sec += [f"Not run: no `{results / name / 'metrics.parquet'}`. Make it with "
                    f"`scripts/reproduce.sh {name} small` (or `paper`), then `python -m flossrepro.report`.", ""]
            sections.append(sec)
            continue
        err = _maybe_draw(results, name) if draw else None
        png = results / name / f"{name}.png"
        if png.exists():
            sec += [f"![{name}]({name}/{name}.png)", ""]
        else:
            sec += [f"(figure not drawn: run `python -m flossrepro.figures --only {name}`{'; ' + err if err else ''})", ""]
        sec += [f"- measured at: {scale}"]
        if prov:
            sec += [f"- command: `{prov.get('command', 'n/a')}`",
                    f"- scale: {prov.get('scale', 'n/a')}; git commit: `{prov.get('git_commit', 'n/a')}`; "
                    f"started: {prov.get('started', 'n/a')}; wall time: {_wall(prov.get('wall_s'))}"]
        else:
            sec += ["- no provenance.json (command, commit and wall time unknown)"]
        rl = _runs_line(results, name)
        if rl:
            sec += [f"- {rl}"]
        warns = schedule_checks(metrics)
        failed = _failed_runs(results, name)
        if failed:
            warns.append(f"WARNING: {failed} run(s) did not complete (see {name}/runs.csv); their conditions are "
                         "missing from the figure and the verdicts.")
        sec += [f"- {w}" for w in warns]
        warnings += [f"- {name}: {w}" for w in warns]
        sec.append("")
        for c in claims:
            sec += [f"### {c.id}: {c.verdict}", "", f"Claim: {c.claim}.", "", f"Measured: {c.measured}.", ""]
            if c.detail:
                sec += c.detail + [""]
        sections.append(sec)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = ["# Gradient flossing: claims report", "",
            f"Written by `python -m flossrepro.report --results {results}` on {now}. Verdicts are computed from the "
            "tables (thresholds in `flossrepro/report.py`); numbers at small scale test the qualitative claim only.",
            "", "| claim | paper's claim | measured | verdict |", "|---|---|---|---|"] + table + [
            "", "Definitions: medians are over networks (realizations); *final* is a run's last test evaluation; "
            "a diverged network counts as failed (MSE inf, accuracy 0.5); chance is MSE 1/12 (copy), "
            "1/18 (continuous temporal XOR), accuracy 0.5 (binary tasks).", ""] + (
            ["Warnings:", ""] + warnings + [""] if warnings else [])
    return "\n".join(head + [line for sec in sections for line in sec]) + "\n"


def _wall(w) -> str:
    try:
        s = float(w)
    except (TypeError, ValueError):
        return "n/a"
    return f"{s:.0f} s ({s / 3600:.2f} h)" if s >= 3600 else f"{s:.0f} s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flossrepro.report", description=__doc__.split("\n\n")[1].replace("\n", " "))
    ap.add_argument("--results", default="results", help="folder holding <experiment>/metrics.parquet (default: results)")
    ap.add_argument("--out", default=None, help="output file (default: <results>/REPORT.md)")
    ap.add_argument("--no-draw", action="store_true", help="do not draw missing or stale figure PNGs")
    a = ap.parse_args(argv)
    results = Path(a.results)
    if not results.is_dir():
        print(f"report: error: {results} is not a directory; give the results folder (--results results)", file=sys.stderr)
        return 2
    text = render(results, draw=not a.no_draw)
    out = Path(a.out) if a.out else results / "REPORT.md"
    out.write_text(text)
    verdicts = [line.rsplit("**", 2)[-2] for line in text.splitlines() if line.startswith("| ") and line.endswith("** |")]
    counts = pd.Series(verdicts).value_counts().to_dict()
    print(f"report: wrote {out}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
