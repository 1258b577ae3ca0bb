"""Statistics of the training-dynamics claims (Figs 8-13: |dL/dh0|, the singular values of
dL/dW, flossing throughout training, lambda_1 after training) and the per-network tables their
panels share. Every ``claim_*(metrics, rule) -> Claim`` reads its thresholds from its
:class:`~flossrepro.figures.claims.Rule`.
"""
from __future__ import annotations

import operator

import numpy as np
import pandas as pd

from flossrepro.figures.claims import Group, Rule, median_reps, part, part_from_reps, rng_for
from flossrepro.figures.common_dynamics import at_delay, episodes, first_for_good, ratio_at, traces
from flossrepro.figures.data import NET, last_epoch_rows, rows


def onsets(df: pd.DataFrame, grad_level: float = 1e-3, acc_level: float = 0.6, grad_window: int = 5,
           acc_window: int = 3) -> pd.DataFrame:
    """One row per network of flossing during training: ``t_grad``, ``t_acc`` and ``lead``
    (NaN where a network never gets there)."""
    dur = rows(df, flossing__schedule="during")
    grad, acc = traces(dur, "grad_h0_norm"), traces(dur, "test_accuracy")
    out = []
    for net in sorted(set(grad) | set(acc)):
        g = grad.get(net, pd.Series(dtype=float))
        tg = first_for_good(np.log10(g.where(g > 0)).dropna(), operator.ge, np.log10(grad_level), grad_window)
        ta = first_for_good(acc.get(net, pd.Series(dtype=float)), operator.gt, acc_level, acc_window)
        out.append({"run_id": net[0], "member": net[1], "t_grad": tg, "t_acc": ta, "lead": ta - tg})
    return pd.DataFrame(out, columns=["run_id", "member", "t_grad", "t_acc", "lead"])


def late_episodes(df: pd.DataFrame) -> pd.DataFrame:
    """Per throughout network and episode in the second half of training: the accuracy right
    after the episode and right before the next one (or at the end of training)."""
    thr = rows(df, flossing__schedule="throughout")
    after, acc, eps = traces(thr, "test_accuracy_after_floss"), traces(thr, "test_accuracy"), episodes(thr)
    out = []
    for net, a in sorted(after.items()):
        starts = eps.get(net[0], [])
        s = acc.get(net)
        if s is None or not starts:
            continue
        end = float(s.index.max())
        for j, e in enumerate(starts):
            if e < end / 2 or e not in a.index:
                continue
            nxt = starts[j + 1] if j + 1 < len(starts) else end
            if nxt not in s.index:
                continue
            out.append({"run_id": net[0], "member": net[1], "episode": e, "after": float(a.loc[e]),
                        "before_next": float(s.loc[nxt])})
    return pd.DataFrame(out, columns=["run_id", "member", "episode", "after", "before_next"])


def log_ratio(df: pd.DataFrame, i: int, epochs: list[int]) -> tuple[np.ndarray, list]:
    """Per network, the median over ``epochs`` of log10(sigma_i / sigma_1)."""
    s1, si = traces(df, "grad_W_sv", 1), traces(df, "grad_W_sv", i)
    vals, nets = [], []
    for net in sorted(set(s1) & set(si)):
        e = [x for x in epochs if x in s1[net].index and x in si[net].index]
        r = np.log10(si[net].loc[e].to_numpy(float) / s1[net].loc[e].to_numpy(float))
        r = r[np.isfinite(r)]
        if len(r):
            vals.append(float(np.median(r)))
            nets.append(net)
    return np.asarray(vals), nets


def paper_fit(d):
    return -0.2 * np.exp(-0.03 * np.asarray(d, float))


def lyap_finals(df: pd.DataFrame, task: str = "spatial_xor") -> pd.DataFrame:
    """One row per network of ``task``: delay, schedule, final accuracy, lambda_1, lambda_10."""
    sub = rows(df, task__name=task)
    if sub.empty:
        return pd.DataFrame(columns=NET + ["delay", "schedule", "acc", "l1", "l10"])
    acc = last_epoch_rows(sub[sub["metric"] == "test_accuracy"]).drop_duplicates(NET, keep="last")
    out = acc[NET + ["task.delay", "flossing.schedule", "value"]].rename(
        columns={"task.delay": "delay", "flossing.schedule": "schedule", "value": "acc"})
    lam = sub[sub["metric"] == "lyap"]
    for i, col in ((1, "l1"), (10, "l10")):
        li = last_epoch_rows(lam[lam["index"] == i]).drop_duplicates(NET, keep="last")[NET + ["value"]]
        out = out.merge(li.rename(columns={"value": col}), on=NET, how="left")
    out["acc"] = out["acc"].where(np.isfinite(out["acc"]), 0.5)
    return out.reset_index(drop=True)


# ----------------------------------------------------------------------------- claims
def claim_h0_jumps(df: pd.DataFrame, rule: Rule):
    """Fig 8A: without flossing, the typical |dL/dh0| of the second half of training (each
    network's median there; median over networks) < ``tiny``; with flossing during training, the median over episodes of log10(after /
    before) ``op threshold`` (orders of magnitude)."""
    c, rng = rule.new(), rng_for(rule.id)
    df, d = at_delay(df)
    none = traces(rows(df, flossing__schedule="none"), "grad_h0_norm")
    dur_df = rows(df, flossing__schedule="during")
    dur = traces(dur_df, "grad_h0_norm")
    eps = episodes(dur_df)
    lack = [s for s, tr in (("none", none), ("during", dur)) if not tr]
    if lack:
        c.missing = f"binary_xor d={d}: no grad_h0_norm rows for {', '.join(lack)}"
    parts = []
    late = {net: t[t.index >= t.index.max() / 2] for net, t in none.items()}
    if none:
        mx = np.array([float(t.median()) for t in late.values()])
        parts.append(part("none: median over networks of the median |dL/dh0| over the second half of training", mx,
                          np.median, "<", rule.p("tiny"), none, rng))
    jumps, nets, every = [], [], None
    for net, t in sorted(dur.items()):
        if every is None and len(t.index) > 1:
            every = int(np.min(np.diff(t.index.to_numpy())))
        later = [e for e in eps.get(net[0], []) if e > 0]   # the first episode has no "before"
        r = ratio_at(t, later, every or 10)
        if len(r):
            jumps.append(float(np.median(r)))
            nets.append(net)
    if dur:
        parts.append(part("during: median over networks of the median over episodes of log10(|dL/dh0| after / "
                          "before)", jumps, np.median, rule.op, rule.threshold, nets, rng))
        if not jumps:
            c.missing = "no episode after epoch 0 with |dL/dh0| measured right before and after it"
    if parts:
        c.groups.append(Group(f"d={d}", parts))
    if none or dur:
        c.detail = ["Per network (binary temporal XOR, d=%s): none, median (max) |dL/dh0| over the second half: %s; "
                    "during, median log10 jump over episodes after epoch 0: %s." % (
                        d, ", ".join(f"{float(t.median()):.2g} ({float(t.max()):.2g})" for _, t in sorted(late.items()))
                        or "-",
                        ", ".join(f"{x:.2f}" for x in jumps) or "-")]
    return c


def claim_gradient_leads(df: pd.DataFrame, rule: Rule):
    """Fig 9A: in networks that learn with flossing during training, |dL/dh0| >= ``grad_level``
    for good before the accuracy > ``acc_level`` for good: median lead ``op threshold``."""
    c, rng = rule.new(), rng_for(rule.id)
    df, d = at_delay(df)
    on = onsets(df, rule.p("grad_level"), rule.p("acc_level"))
    if on.empty:
        c.missing = f"binary_xor d={d}: no flossing-during networks with grad_h0_norm and test_accuracy"
        return c
    learned = on.dropna(subset=["lead"])
    nets = list(zip(learned["run_id"], learned["member"]))
    c.groups.append(Group(f"d={d}", [part(f"median lead in epochs ({len(learned)} of {len(on)} networks learn)",
                                          learned["lead"].to_numpy(float), np.median, rule.op, rule.threshold, nets,
                                          rng)]))
    c.detail = [f"Per network (flossing during training, binary temporal XOR, d={d}): epoch |dL/dh0| >= "
                f"{rule.p('grad_level'):g} for good, epoch accuracy > {rule.p('acc_level')} for good, lead:", "",
                "| member | gradient rises | accuracy rises | lead |", "|---|---|---|---|"] + [
        f"| {r.member} | {r.t_grad:g} | {r.t_acc:g} | {r.lead:g} |" for r in on.itertuples()]
    return c


def claim_subordinate_sv(df: pd.DataFrame, rule: Rule):
    """Fig 10A: median log10(sigma_i / sigma_1) of dL/dW at the episode epochs, during - none
    ``op threshold``, for each i of ``sv``."""
    c, rng = rule.new(), rng_for(rule.id)
    df, d = at_delay(df)
    dur, none = rows(df, flossing__schedule="during"), rows(df, flossing__schedule="none")
    eps = sorted({e for v in episodes(dur).values() for e in v})
    if dur.empty or none.empty or not eps:
        c.missing = f"binary_xor d={d}: needs none and during runs with grad_W_sv and their episodes"
        return c
    for i in rule.p("sv"):
        xd, nd = log_ratio(dur, i, eps)
        xn, nn = log_ratio(none, i, eps)
        if not len(xd) or not len(xn):
            c.missing = f"no sigma_{i} of dL/dW at the episode epochs (N < {i}?)"
            continue
        md, rd = median_reps(xd, rng)
        mn, rn = median_reps(xn, rng)
        c.groups.append(Group(f"sigma_{i}", [part_from_reps(f"median log10(sigma_{i}/sigma_1), during - none",
                                                            md - mn, rd - rn, rule.op, rule.threshold, nd + nn)]))
        c.detail.append(f"sigma_{i}/sigma_1 at the episode epochs {eps}: median log10 during {md:.2f} "
                        f"({len(xd)} networks), none {mn:.2f} ({len(xn)} networks).")
    return c


def claim_throughout_drops(df: pd.DataFrame, rule: Rule):
    """Fig 12A: with flossing throughout, the accuracy right after a late episode ``op`` ``threshold``
    (close to chance) and recovers before the next episode (> ``threshold``)."""
    c, rng = rule.new(), rng_for(rule.id)
    df, d = at_delay(df)
    late = late_episodes(df)
    if late.empty:
        c.missing = f"binary_xor d={d}: no flossing-throughout runs with test_accuracy_after_floss in the second half"
        return c
    per = late.groupby(["run_id", "member"])[["after", "before_next"]].median().reset_index()
    nets = list(zip(per["run_id"], per["member"]))
    c.groups.append(Group(f"d={d}", [
        part("median over networks of the median accuracy right after a late episode", per["after"], np.median,
             rule.op, rule.threshold, nets, rng),
        part("median over networks of the median accuracy right before the next episode", per["before_next"],
             np.median, ">", rule.threshold, nets, rng)]))
    c.detail = [f"Throughout: {len(late)} late episodes over {len(per)} networks; per network median accuracy after "
                "an episode: " + ", ".join(f"{x:.3f}" for x in per["after"]) + "; before the next: "
                + ", ".join(f"{x:.3f}" for x in per["before_next"]) + "."]
    return c


def claim_lambda_fit(df: pd.DataFrame, rule: Rule):
    """Fig 13B: networks that learned (final accuracy > ``learned``) sit on the paper's fit
    -0.2 exp(-0.03 d) (median abs residual ``op threshold``); those that failed (< ``failed``) sit lower."""
    task, conds = rule.p("task"), rule.p("conditions")
    c, rng = rule.new(), rng_for(rule.id)
    f = lyap_finals(df, task)
    f = f[f["schedule"].isin(conds) & f["l1"].notna()] if not f.empty else f
    if f.empty:
        c.missing = f"{task}: no lambda_1 after training (diagnostics.lyap_every) in the table"
        return c
    f = f.assign(res=f["l1"] - paper_fit(f["delay"]))
    ok, bad = f[f["acc"] > rule.p("learned")], f[f["acc"] < rule.p("failed")]
    parts = []
    if len(ok):
        parts.append(part("learned: median abs(lambda_1 - fit)", ok["res"].abs(), np.median, rule.op, rule.threshold,
                          zip(ok["run_id"], ok["member"]), rng))
    if len(ok) and len(bad):
        mo, ro = median_reps(ok["res"], rng)
        mb, rb = median_reps(bad["res"], rng)
        parts.append(part_from_reps("median residual, learned - failed", mo - mb, ro - rb, ">", 0.0,
                                    list(zip(ok["run_id"], ok["member"])) + list(zip(bad["run_id"], bad["member"]))))
    else:
        c.missing = (f"{task}: no network learned (final accuracy > {rule.p('learned')})" if not len(ok) else
                     f"{task}: no network failed (final accuracy < {rule.p('failed')})")
    if parts:
        c.groups.append(Group(f"{task}, {' and '.join(conds)} pooled", parts))
    tab = f.groupby(["delay", "schedule"]).agg(n=("acc", "size"),
                                               learned=("acc", lambda a: int((a > rule.p("learned")).sum())),
                                               l1=("l1", "median"), l10=("l10", "median")).reset_index()
    c.detail = ["| delay | schedule | networks | learned | median lambda_1 | median lambda_10 | paper fit |",
                "|---|---|---|---|---|---|---|"] + [
        f"| {r.delay:g} | {r.schedule} | {r.n} | {r.learned} | {r.l1:.3f} | {r.l10:.3f} | {paper_fit(r.delay):.3f} |"
        for r in tab.itertuples()]
    return c
