"""Statistics of the task claims (Figs 3, 4, 5, 7, 14): the final test metric of each network
per condition (schedule, delay, k) and the tests the declared rules ask for.

Every function ``claim_*(metrics, rule) -> Claim`` reads its thresholds and selections from
the :class:`~flossrepro.figures.claims.Rule` that names it; the figure modules hold only the
declarations. The table helpers (``finals``, ``k_finals``, ``median_table``...) are shared with
the figure modules' panels and detail tables.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from flossrepro.constants import CHANCE, SCHEDULES
from flossrepro.figures import experiments, planned
from flossrepro.figures.claims import (OPS, Group, Rule, g, median_part, median_reps, part_from_reps, replicates,
                                       rng_for, scale_of)
from flossrepro.figures.data import final, fmt_setting, network_values, rows, values

TASK_NAME = {"copy": "copy task", "temporal_xor": "continuous temporal XOR", "binary_xor": "binary temporal XOR",
             "spatial_xor": "spatial XOR"}
STATS = {"median": np.median, "mean": np.mean}


# ----------------------------------------------------------------------------- tables
def finals(df: pd.DataFrame, metric: str, task: str, fail_value: float) -> pd.DataFrame:
    """One row per network of ``task``: the final ``metric`` (a diverged network gets ``fail_value``)."""
    return final(rows(df, task__name=task), metric, fail_value)


def cell(f: pd.DataFrame, schedule: str, delay) -> tuple[np.ndarray, list]:
    """``(values, networks)`` of one condition (schedule, delay) of a ``finals`` table."""
    return network_values(rows(f, flossing__schedule=schedule, task__delay=delay))


def conditions(f: pd.DataFrame, schedules: list[str]) -> list:
    """Delays at which every one of ``schedules`` has networks."""
    if f.empty:
        return []
    have = f.groupby("task.delay")["flossing.schedule"].agg(set)
    return sorted(d for d, s in have.items() if set(schedules) <= s)


def stat_part(label: str, f: pd.DataFrame, schedule: str, delay, op: str, threshold: float, rng,
              stat: str = "median"):
    x, nets = cell(f, schedule, delay)
    return median_part(label, x, op, threshold, nets, rng, STATS[stat])


def diff_part(label: str, f: pd.DataFrame, a: str, b: str, delay, op: str, threshold: float, rng):
    """median(b) - median(a) at ``delay``, each condition's networks resampled independently."""
    xa, na = cell(f, a, delay)
    xb, nb = cell(f, b, delay)
    ma, ra = median_reps(xa, rng)
    mb, rb = median_reps(xb, rng)
    return part_from_reps(label, mb - ma, rb - ra, op, threshold, list(na) + list(nb))


def median_table(f: pd.DataFrame, stat: str = "median") -> list[str]:
    """Markdown table: the ``stat`` of the final value per delay (rows) and schedule (columns), with n."""
    if f.empty:
        return []
    m = f.groupby(["task.delay", "flossing.schedule"])["value"].agg([stat, "size"])
    scheds = [s for s in SCHEDULES if s in m.index.get_level_values(1)]
    out = ["| delay | " + " | ".join(f"{s} (n)" for s in scheds) + " |", "|---|" + "---|" * len(scheds)]
    for d in sorted(m.index.get_level_values(0).unique()):
        cells = [f"{g(m.loc[(d, s), stat])} ({int(m.loc[(d, s), 'size'])})" if (d, s) in m.index else "-"
                 for s in scheds]
        out.append(f"| {fmt_setting(d)} | " + " | ".join(cells) + " |")
    return out


def delays_text(ds) -> str:
    """``d=10,20`` or ``no delay``."""
    ds = list(ds)
    return "d=" + ",".join(str(int(d)) for d in ds) if ds else "no delay"


def leaves_chance(f: pd.DataFrame, op: str, threshold: float, stat: str = "median") -> str:
    """Per schedule, the delays whose ``stat`` final value is ``op threshold`` (e.g. leaves chance)."""
    if f.empty:
        return ""
    m = f.groupby(["flossing.schedule", "task.delay"])["value"].agg(stat)
    scheds = [s for s in SCHEDULES if s in m.index.get_level_values(0)]
    return ", ".join(f"{s} at {delays_text([d for d, v in m.loc[s].items() if OPS[op](v, threshold)])}" for s in scheds)


def planned_delays(experiment: str, df: pd.DataFrame) -> list:
    """The sweep's delays at the table's scale."""
    scales = scale_of(df)
    return planned(experiment, "task.delay", scales[0] if scales else None)


# ----------------------------------------------------------------------------- k sweeps (Figs 5, 7)
def k_finals(df: pd.DataFrame, task: str, schedule: str, k_experiment: str = "fig5") -> pd.DataFrame:
    """One row per network of ``task`` run with ``schedule``: its final test accuracy (diverged -> 0.5)."""
    f = finals(df, "test_accuracy", task, CHANCE["binary_xor"])
    if f.empty or "flossing.schedule" not in f.columns or "flossing.k" not in f.columns:
        return f.iloc[0:0]
    f = f[f["flossing.schedule"] == schedule]
    if "experiment_name" in f.columns:
        # a (k, delay) cell that both sweeps ran (smoke scale: fig4's k is in fig5's sweep) holds
        # the same networks twice (same seeds and settings): keep the k sweep's
        own = f["experiment_name"] == k_experiment
        cells = pd.MultiIndex.from_frame(f[["flossing.k", "task.delay"]])
        f = f[own | ~cells.isin(cells[own.to_numpy()])]
    return f


def k_cell(f: pd.DataFrame, k, delay) -> tuple[np.ndarray, list]:
    """``(values, networks)`` of one (k, delay) cell of a ``k_finals`` table."""
    return network_values(rows(f, flossing__k=k, task__delay=delay))


def medians(f: pd.DataFrame) -> pd.DataFrame:
    """Median final accuracy and network count per (delay, k)."""
    return f.groupby(["task.delay", "flossing.k"])["value"].agg(["median", "size"])


def k_table(f: pd.DataFrame, ks=None, delays=None) -> list[str]:
    """Markdown table: median final accuracy (networks) per delay (rows) and k (columns)."""
    m = medians(f) if not f.empty else None
    ks = sorted(set(ks or []) | set(values(f, "flossing.k")))
    delays = sorted(set(delays or []) | set(values(f, "task.delay")))
    if not ks or not delays:
        return ["(no runs)"]
    out = ["| delay | " + " | ".join(f"k={fmt_setting(k)}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for d in delays:
        cells = [f"{g(m.loc[(d, k), 'median'])} ({int(m.loc[(d, k), 'size'])})"
                 if m is not None and (d, k) in m.index else "-" for k in ks]
        out.append(f"| {fmt_setting(d)} | " + " | ".join(cells) + " |")
    return out


def _scale(df: pd.DataFrame) -> str | None:
    s = scale_of(df)
    return s[0] if s else None


def fig4_k(scale: str | None) -> int | None:
    """``flossing.k`` of fig4's runs at ``scale`` (read from its yaml; None when unreadable)."""
    from omegaconf import OmegaConf

    from flossrepro.store import config  # noqa: F401  (registers the by_scale resolver)

    path = experiments().get("fig4")
    if path is None:
        return None
    try:
        cfg = OmegaConf.merge(OmegaConf.load(path), {"scale": {"name": scale or "small"}})
        return int(OmegaConf.select(cfg, "flossing.k"))
    except Exception:  # an unreadable plan only loses the "not run" notes
        return None


def planned_ks(df: pd.DataFrame) -> list:
    """The k the two sweeps run at the table's scale: fig5's k sweep plus fig4's k."""
    scale = _scale(df)
    ks = set(planned("fig5", "flossing.k", scale))
    k4 = fig4_k(scale)
    if k4 is not None:
        ks.add(k4)
    return sorted(ks)


def planned_k_delays(df: pd.DataFrame) -> list:
    """The delays of the k sweep (fig5.yaml) at the table's scale (fig4 adds delays at k=75 only)."""
    return planned("fig5", "task.delay", _scale(df))


def lacking_cells(f: pd.DataFrame, ks, delays) -> list[str]:
    """``k=K d=D`` for each wanted cell without networks."""
    have = set(medians(f).index) if not f.empty else set()
    return [f"k={fmt_setting(k)} d={fmt_setting(d)}" for k in ks for d in delays if (d, k) not in have]


def solved(meds: np.ndarray, delays: list, threshold: float) -> np.ndarray:
    """The largest delay whose median > ``threshold`` (0 when none); ``meds`` is ``[len(delays), ...]``."""
    d = np.asarray(delays, float).reshape((-1,) + (1,) * (np.ndim(meds) - 1))
    return np.max(np.where(np.asarray(meds) > threshold, d, 0.0), axis=0)


def trend(s: np.ndarray) -> np.ndarray:
    """Kendall's tau-a of ``s[..., j]`` against its order j (k ascending): the mean sign of
    ``s[j'] - s[j]`` over all pairs j < j' (1: rises at every step, 0: flat, -1: falls)."""
    s = np.asarray(s, float)
    n = s.shape[-1]
    i, j = np.triu_indices(n, 1)
    return np.mean(np.sign(s[..., j] - s[..., i]), axis=-1)


# ----------------------------------------------------------------------------- claims
def _lacking(f: pd.DataFrame, task: str, need: list[str]) -> str:
    have = values(f, "flossing.schedule")
    lack = [s for s in need if s not in have]
    return f"{task}: condition(s) {', '.join(lack)} not in the table" if lack else ""


def claim_fails_solves(df: pd.DataFrame, rule: Rule):
    """At some delay (``over="any"``) the ``fails`` schedule fails (stat >= ``fail`` x chance)
    while the ``solves`` schedule solves it (stat < ``threshold`` x chance); MSE tasks."""
    task, stat = rule.p("task"), rule.p("stat")
    fails, solves = rule.p("fails"), rule.p("solves")
    c, rng, chance = rule.new(), rng_for(rule.id), CHANCE[task]
    f = finals(df, "test_loss", task, chance if stat == "mean" else np.inf)
    c.missing = _lacking(f, task, [fails, solves])
    if c.missing:
        return c
    both = conditions(f, [fails, solves])
    for d in both:
        c.groups.append(Group(f"d={d:g}", [
            stat_part(f"{fails} {stat} final MSE", f, fails, d, ">=", rule.p("fail") * chance, rng, stat),
            stat_part(f"{solves} {stat} final MSE", f, solves, d, rule.op, rule.threshold * chance, rng, stat)]))
    lost = [d for d in planned_delays(rule.p("experiment"), df) if d not in both]
    if lost:
        c.missing = f"{delays_text(lost)} not run with both conditions"
    c.detail = [f"{stat.capitalize()} final test MSE ({TASK_NAME[task]}; chance {g(chance)}), networks in brackets:",
                ""] + median_table(f, stat)
    return c


def claim_longer_delay(df: pd.DataFrame, rule: Rule):
    """The ``better`` schedule trains at a longer delay than ``base``: the largest delay whose
    ``stat`` final MSE < ``leave`` x chance, better minus base ``op threshold``."""
    task, stat = rule.p("task"), rule.p("stat")
    base, better = rule.p("base"), rule.p("better")
    c, rng, chance = rule.new(), rng_for(rule.id), CHANCE[task]
    fn = STATS[stat]
    f = finals(df, "test_loss", task, chance if stat == "mean" else np.inf)
    c.missing = _lacking(f, task, [base, better])
    if c.missing:
        return c
    level = rule.p("leave") * chance
    largest, reps, nets = {}, {}, []
    for s in (base, better):
        ds = values(f[f["flossing.schedule"] == s], "task.delay")
        meds, mreps = [], []
        for d in ds:
            x, n = cell(f, s, d)
            nets += n
            meds.append(float(fn(x)))
            mreps.append(replicates(x, fn, rng))
        D = np.asarray(ds, float)
        largest[s] = float(np.max(np.where(np.asarray(meds) < level, D, 0.0)))     # 0: no delay trained
        reps[s] = np.max(np.where(np.stack(mreps, 1) < level, D, 0.0), axis=1)
    diff = part_from_reps(f"largest delay trained, {better} minus {base}", largest[better] - largest[base],
                          reps[better] - reps[base], rule.op, rule.threshold, nets)
    label = ", ".join(f"{s} d={g(largest[s])}" if largest[s] else f"{s} no delay" for s in (base, better))
    c.groups.append(Group(label, [diff]))
    c.detail = [f"{stat.capitalize()} final test MSE ({TASK_NAME[task]}; chance {g(chance)}), networks in brackets:",
                ""] + median_table(f, stat) + ["", f"Largest delay with {stat} MSE < {rule.p('leave')} x chance: {label}."]
    return c


def claim_during_wins(df: pd.DataFrame, rule: Rule):
    """Binary temporal XOR (Fig 4C): at the sweep's largest delay ``during`` succeeds (median >
    ``threshold``) and beats ``pre``; ``none`` stays below ``leave`` at every delay >= ``baseline_from``."""
    task, conds = rule.p("task"), list(rule.p("conditions"))
    c, rng = rule.new(), rng_for(rule.id)
    f = finals(df, "test_accuracy", task, CHANCE[task])
    full = conditions(f, conds)
    plan = sorted(planned_delays(rule.p("experiment"), df) or full)
    top = plan[-1] if plan else None
    if top in full:
        c.groups.append(Group(f"d={top:g}", [
            stat_part("during median final accuracy", f, "during", top, rule.op, rule.threshold, rng),
            diff_part("median during - pre", f, "pre", "during", top, ">", 0.0, rng)]))
    base = [d for d in plan if d >= rule.p("baseline_from")]
    for d in base:
        if d in values(f, "task.delay") and "none" in values(rows(f, task__delay=d), "flossing.schedule"):
            c.groups.append(Group(f"baseline d={d:g}", [stat_part("none median final accuracy", f, "none", d, "<",
                                                                  rule.p("leave"), rng)]))
    lost = [d for d in base if d not in full]
    if top is None or lost:
        c.missing = f"{task}: {delays_text(lost)} not run with all of {', '.join(conds)}" if lost else \
            f"{task}: no delay in the table"
    c.detail = [f"Median final test accuracy ({TASK_NAME[task]}; chance 0.5), networks in brackets:", ""
                ] + median_table(f) + ["", f"Leaves chance (median > {rule.p('leave')}): "
                                           f"{leaves_chance(f, '>', rule.p('leave'))}."]
    return c


def claim_pre_fails_long(df: pd.DataFrame, rule: Rule):
    """At every delay > ``beyond`` (the paper's "d > 60"): ``pre`` fails (median < ``fail``) while
    ``during`` succeeds (median ``op threshold``)."""
    task = rule.p("task")
    c, rng = rule.new(), rng_for(rule.id)
    f = finals(df, "test_accuracy", task, CHANCE[task])
    lack = [s for s in ("pre", "during") if s not in values(f, "flossing.schedule")]
    if lack:
        c.missing = f"{task}: condition(s) {', '.join(lack)} not in the table"
        return c
    both = [d for d in conditions(f, ["pre", "during"]) if d > rule.p("beyond")]
    for d in both:
        c.groups.append(Group(f"d={d:g}", [
            stat_part("pre median final accuracy", f, "pre", d, "<", rule.p("fail"), rng),
            stat_part("during median final accuracy", f, "during", d, rule.op, rule.threshold, rng)]))
    lost = [d for d in planned_delays(rule.p("experiment"), df) if d > rule.p("beyond") and d not in both]
    if lost or not both:
        c.missing = f"{task}: {delays_text(lost)} not run with pre and during" if lost else \
            f"{task}: no delay > {rule.p('beyond')} run with pre and during"
    c.detail = [f"Median final test accuracy ({TASK_NAME[task]}; chance 0.5), networks in brackets:", ""
                ] + median_table(f) + ["", f"Leaves chance (median > 0.6): {leaves_chance(f, '>', 0.6)}."]
    return c


def claim_k_trend(df: pd.DataFrame, rule: Rule):
    """For each task: the largest delay solved (median final accuracy > ``solved``) rises with k
    across the whole k grid: Kendall's tau of solved(k) against k ``op threshold``; every (k,
    delay) cell's networks resampled independently."""
    c, rng = rule.new(), rng_for(rule.id)
    ks_plan, d_plan = planned_ks(df), planned_k_delays(df)
    missing, detail = [], []
    for task in rule.p("tasks"):
        name = TASK_NAME[task]
        f = k_finals(df, task, rule.p("schedule"))
        ks = sorted(set(ks_plan) | set(values(f, "flossing.k")))
        delays = d_plan or values(f, "task.delay")
        detail += [f"**{name}** (median final test accuracy, networks in brackets; flossing during training):", ""]
        detail += k_table(f, ks_plan, delays) + [""]
        if len(ks) < 2 or not delays:
            missing.append(f"{task}: fewer than two k or no delay")
            continue
        lost = lacking_cells(f, ks, delays)
        if lost:
            missing.append(f"{task}: {', '.join(lost)} not run (flossing during training)")
            continue
        meds, reps, nets = [], [], []
        for k in ks:
            mk, rk = [], []
            for d in delays:
                x, n = k_cell(f, k, d)
                mk.append(np.median(x))
                rk.append(replicates(x, np.median, rng))
                nets += n
            meds.append(solved(np.array(mk), delays, rule.p("solved")))
            reps.append(solved(np.stack(rk), delays, rule.p("solved")))
        s, r = np.array(meds, float), np.stack(reps, axis=-1)
        c.groups.append(Group(name, [part_from_reps(f"Kendall tau of solved(k) vs k over k={','.join(map(fmt_setting, ks))}",
                                                    float(trend(s)), trend(r), rule.op, rule.threshold, nets)]))
        detail += ["Largest delay solved (median > " + f"{rule.p('solved')}; 0 when none): "
                   + ", ".join(f"k={fmt_setting(k)}: {fmt_setting(float(v))}" for k, v in zip(ks, s)) + ".", ""]
    c.missing = "; ".join(missing)
    c.detail = [f"Delays: the k sweep's ({', '.join(map(fmt_setting, d_plan)) or 'from the table'}); the largest k "
                "comes from fig4's runs.", ""] + detail
    return c


def claim_pre_k_fails(df: pd.DataFrame, rule: Rule):
    """At the hardest delay and the largest k: ``pre`` fails (median < ``fail``) while ``during``
    succeeds (median ``op threshold``), for each of ``tasks``."""
    c, rng = rule.new(), rng_for(rule.id)
    ks_plan, d_plan = planned_ks(df), planned_k_delays(df)
    missing, detail = [], []
    for task in rule.p("tasks"):
        name = TASK_NAME[task]
        fs = {s: k_finals(df, task, s) for s in ("pre", "during")}
        present = pd.concat(fs.values())
        kmax = max(set(ks_plan) | set(values(present, "flossing.k")), default=None)
        dmax = max(set(d_plan) | set(values(present, "task.delay")), default=None)
        for s in ("during", "pre"):
            detail += [f"**{name}**, {'flossing during training' if s == 'during' else 'preflossing only'} "
                       "(median final test accuracy, networks in brackets):", ""]
            detail += k_table(fs[s], ks_plan, d_plan) + [""]
        if kmax is None or dmax is None:
            missing.append(f"{task}: no runs")
            continue
        lost = [s for s in ("pre", "during") if not len(k_cell(fs[s], kmax, dmax)[0])]
        if lost:
            missing.append(f"{task}: k={fmt_setting(kmax)} d={fmt_setting(dmax)} not run with {' and '.join(lost)}")
            continue
        parts = []
        for s, op, thr in (("pre", "<", rule.p("fail")), ("during", rule.op, rule.threshold)):
            x, nets = k_cell(fs[s], kmax, dmax)
            parts.append(median_part(f"{s} median final accuracy", x, op, thr, nets, rng))
        c.groups.append(Group(f"{name}, d={fmt_setting(dmax)}, k={fmt_setting(kmax)}", parts))
    c.missing = "; ".join(missing)
    c.detail = ["Tested at the largest delay and the largest k of the sweeps (the largest k from fig4's runs).",
                ""] + detail
    return c


def claim_ordering(df: pd.DataFrame, rule: Rule):
    """One task: ``stat`` final accuracy ordered none < pre < during, networks of the rule's
    ``delays`` (default: the sweep's two largest) pooled (each condition resampled independently)."""
    task, conds, stat = rule.p("task"), list(rule.p("conditions")), rule.p("stat")
    c, rng, fn = rule.new(), rng_for(rule.id), STATS[stat]
    f = finals(df, "test_accuracy", task, CHANCE[task])
    named = rule.params.get("delays")
    top = list(named) if named else sorted(planned_delays(rule.p("experiment"), df) or values(f, "task.delay"))[-2:]
    c.detail = [f"{stat.capitalize()} final test accuracy ({TASK_NAME[task]}; chance 0.5), networks in brackets:",
                ""] + (median_table(f, stat) or ["(no runs)"])
    have = f.groupby("task.delay")["flossing.schedule"].agg(set) if not f.empty else pd.Series(dtype=object)
    lost = [d for d in top if d not in have.index or not set(conds) <= have[d]]
    if lost or len(top) < 2:
        c.missing = (f"{task}: {delays_text(lost)} not run with all of {', '.join(conds)}" if lost else
                     f"{task}: fewer than two delays")
        return c
    mean, reps, nets = {}, {}, {}
    for s in conds:
        sub = f[(f["flossing.schedule"] == s) & f["task.delay"].isin(top)]
        x, nets[s] = network_values(sub)
        mean[s], reps[s] = float(fn(x)), replicates(x, fn, rng)
    parts = [part_from_reps(f"{stat} {b} - {stat} {a}", mean[b] - mean[a], reps[b] - reps[a], rule.op,
                            rule.threshold, list(nets[a]) + list(nets[b]))
             for a, b in zip(conds, conds[1:])]
    c.groups.append(Group(f"{delays_text(top)} pooled", parts))
    return c
