"""Statistics of the low-rank study's open questions (LR6 optimisers, LR7 flossing): conditions compared
at matched training loss, by the effective rank of dW (its singular-value tail) and by the functional
rank (the paper's measure), answered in one sentence computed from the numbers (``Claim.answer``;
the verdict is ``answered``, :mod:`flossrepro.figures.claims`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from flossrepro.figures.claims import Claim, Group, Part, Rule, g, rng_for
from flossrepro.figures.data import NET
from flossrepro.figures.lowrank_common import TASK_LABEL, effective_rank, md_table, table, vectors_over_epochs
from flossrepro.figures.lr_stats import diff_part


def smoothed_loss(df: pd.DataFrame, window: int = 10) -> pd.DataFrame:
    """Training loss per network and epoch, a running mean over ``window`` epochs (batch noise)."""
    tl = df[df["metric"] == "train_loss"].sort_values("epoch")
    if tl.empty:
        return tl
    tl = tl[NET + ["epoch", "value"]].copy()
    tl["smooth"] = tl.groupby(NET)["value"].transform(lambda x: x.rolling(window, min_periods=1).mean())
    return tl


def matched_effective_rank(df: pd.DataFrame, t: pd.DataFrame, groups: list[list[pd.Index]]) -> tuple[pd.Series, dict]:
    """The effective rank of dW at matched training loss. ``groups``: per group (the networks compared
    with each other), the networks of each condition. A group's level is the highest of its
    conditions' median final (smoothed) training losses: the typical network of every condition
    reaches it. Each network's dW is read at the first recorded epoch at or after its training loss
    reaches the level (NaN for a network that never does). Returns ``(per network, {group: level})``."""
    tl = smoothed_loss(df)
    sv = vectors_over_epochs(df, "dW_sv")
    out = pd.Series(np.nan, index=pd.MultiIndex.from_frame(t[NET]))
    levels = {}
    if tl.empty or sv.empty:
        return out, levels
    final = tl.groupby(NET)["smooth"].last()
    er = pd.Series(effective_rank(sv.to_numpy()), index=sv.index)
    first = {}
    for i, conds in enumerate(groups):
        meds = [final.reindex(n).dropna().median() for n in conds if len(final.reindex(n).dropna())]
        if not meds:
            continue
        level = levels[i] = float(max(meds))
        for nets in conds:
            for net in nets:
                if net not in first:
                    c = tl[(tl["run_id"] == net[0]) & (tl["member"] == net[1])]
                    first[net] = c[["epoch", "smooth"]].to_numpy()
                ep = first[net]
                hit = ep[ep[:, 1] <= level * (1 + 1e-9), 0]
                if len(hit) == 0 or net not in er.index:
                    continue
                s_ = er.loc[net]
                after = s_[s_.index >= int(hit[0])]
                if len(after):
                    out.loc[net] = float(after.iloc[0])
    return out, levels


def _reading(p: Part) -> int | None:
    """+1: interval above the reference, -1: below, 0: not resolved, None: not measured."""
    if any(np.isnan(v) for v in (p.value, p.lo, p.hi)):
        return None
    return 1 if p.lo > p.threshold else -1 if p.hi < p.threshold else 0


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def compare_table(df: pd.DataFrame, rule: Rule) -> tuple[pd.DataFrame, list, dict]:
    """The networks of an open question's comparison: :func:`lowrank_common.table` plus the group
    (``_grp``: the values of ``by``), the final smoothed training loss and the effective rank of dW
    at matched training loss (``er_matched``); returns ``(table, groups, {group index: level})``."""
    key, by = rule.p("key"), list(rule.p("by"))
    t = table(df)
    for b in by:
        if b not in t:
            t[b] = np.nan
    t["_grp"] = list(zip(*[t[b] for b in by]))
    tl = smoothed_loss(df)
    final = tl.groupby(NET)["smooth"].last() if len(tl) else pd.Series(dtype=float)
    t["final_train"] = final.reindex(pd.MultiIndex.from_frame(t[NET])).to_numpy() if len(final) else np.nan
    grps = sorted(set(t["_grp"]), key=lambda x: tuple(str(v) for v in x))
    er, levels = matched_effective_rank(df, t, [[pd.MultiIndex.from_frame(f[NET]) for _, f in t[t["_grp"] == k].groupby(key)]
                                                for k in grps])
    t["er_matched"] = er.to_numpy()
    t[key] = t[key].astype(str)
    return t, grps, levels


def group_name(by: list, k: tuple) -> str:
    return " ".join(TASK_LABEL.get(v, v) if b == "task.name" else f"g={v:g}" for b, v in zip(by, k)
                    if not (isinstance(v, float) and np.isnan(v)))


def claim_compare(df: pd.DataFrame, rule: Rule) -> Claim:
    """LR6 / LR7, an open question: conditions (``key``: optimiser, flossing schedule) against a
    reference (``ref``), per group (``by``: g, or task and g): the effective rank of dW at matched
    training loss and the functional rank (networks that solve the task; the paper's measure,
    defined at the 5% criterion) as differences other - reference with their intervals, and the
    final training loss. ``Claim.answer``: one sentence computed from those numbers."""
    c, rng = rule.new(), rng_for(rule.id)
    key, ref, labels, by = rule.p("key"), rule.p("ref"), rule.p("labels"), list(rule.p("by"))
    if df.empty or key not in df:
        c.missing = "no table"
        return c
    t, grps, levels = compare_table(df, rule)
    others = [o for o in rule.p("others") if o in set(t[key])]
    lack = [o for o in [ref] + list(rule.p("others")) if o not in set(t[key])]
    if lack:
        c.missing = f"not run: {', '.join(labels.get(o, o) for o in lack)}"
    found: dict[str, list] = {labels[o]: [] for o in others}
    rows = []
    for i, k in enumerate(grps):
        s = t[t["_grp"] == k]
        name = group_name(by, k)
        a = s[s[key] == ref]
        parts = []
        for o in others if len(a) else []:
            b_ = s[s[key] == o]
            if b_.empty:
                continue
            pe = diff_part(f"eff. rank of dW at matched loss, {labels[o]} - {labels[ref]}", a, b_, "er_matched", ">", 0.0, rng)
            pf = diff_part(f"functional rank, {labels[o]} - {labels[ref]}", a, b_, "rank", ">", 0.0, rng)
            parts += [pe, pf]
            solve = [(labels[x], int(f["solved"].sum()), len(f)) for x, f in ((ref, a), (o, b_))
                     if f["solved"].sum() < len(f)]
            found[labels[o]].append(dict(name=name, er=_reading(pe), er_ref=float(a["er_matched"].median()),
                                         er_o=float(b_["er_matched"].median()),
                                         fr=_reading(pf), solve=solve,
                                         ratio=float(b_["final_train"].median() / a["final_train"].median())))
        if parts:
            c.groups.append(Group(f"{name} (matched at training loss {g(levels.get(i, np.nan))})", parts))
        for cond, f in s.groupby(key):
            rows.append({"condition": f"{name}, {labels.get(cond, cond)}", "networks": len(f),
                         "solving": int(f["solved"].sum()),
                         "reach the matched loss": int(f["er_matched"].notna().sum()),
                         "eff. rank at matched loss": float(f["er_matched"].median()),
                         "eff. rank at the end": float(f["dW_effective_rank"].median()),
                         "functional rank": float(f["rank"].median()),
                         "final training loss": float(f["final_train"].median())})
    if c.groups:
        c.answer = _answer(labels[ref], {o: v for o, v in found.items() if v})
    if rows:
        c.detail = ["Per condition (medians over networks; the matched loss of a group is the highest of its "
                    "conditions' median final training losses, and a network that never reaches it is left out of "
                    "the effective rank at matched loss; functional rank 26 = above 25, defined for solving networks "
                    "only):", ""] + md_table(pd.DataFrame(rows), list(rows[0]))
    return c


WORD = {1: "higher", -1: "lower", 0: "no difference resolved", None: "not measured"}


def _answer(ref: str, found: dict) -> str:
    """One sentence: who gives dW the higher effective rank at matched loss (with the medians),
    whether the functional rank differs (per group where it is not the same everywhere), and who is
    under-trained (median final training loss >= 10x the other's)."""
    def per_group(o, field):
        return tuple((e["name"], e[field]) for e in found[o])

    def merge(field):   # others with identical readings in every group share one clause
        out: dict[tuple, list] = {}
        for o in found:
            out.setdefault(per_group(o, field), []).append(o)
        return out

    clauses = []
    for readings, os_ in merge("er").items():
        words = {r for _, r in readings}
        nums = "; ".join(f"{n}: {ref} {g(found[os_[0]][j]['er_ref'])} vs {' / '.join(g(found[o][j]['er_o']) for o in os_)}"
                         for j, (n, _) in enumerate(readings))
        if words == {-1}:
            clauses.append(f"{ref} gives dW a higher effective rank than {_join(os_)} in every condition ({nums})")
        elif words == {None}:
            clauses.append(f"the effective rank of dW at matched loss is not measured for {_join(os_)} against {ref} "
                           "(no dW_sv recorded at or after the epoch a network reaches the matched loss)")
            continue
        elif words == {1}:
            clauses.append(f"{_join(os_)} give{'s' if len(os_) == 1 else ''} dW a higher effective rank than {ref} in "
                           f"every condition ({nums})")
        else:
            clauses.append(f"the effective rank of dW, {_join(os_)} against {ref}: "
                           + ", ".join(f"{WORD[r]} at {n}" for n, r in readings) + f" ({nums})")
    for readings, os_ in merge("fr").items():
        words = {r for _, r in readings}
        who = f"{_join(os_)} against {ref}"
        if words == {0}:
            clauses.append(f"the functional rank (the paper's measure) is about equal, {who} (no difference resolved "
                           "in any condition)")
        else:
            clauses.append(f"the functional rank (the paper's measure), {who}: "
                           + ", ".join(f"{WORD[r]} at {n}" for n, r in readings))
    solve: dict[str, dict] = {}
    for o in found:
        for e in found[o]:
            for lab, k, n in e["solve"]:
                solve.setdefault(lab, {})[e["name"]] = f"{k} of {n}"
    if solve:
        clauses.append("networks that solve the task: " + "; ".join(
            f"{lab} " + ", ".join(f"{v} at {n}" for n, v in d.items()) for lab, d in sorted(solve.items())))
    under = [(o, [e["ratio"] for e in found[o]]) for o in found]
    slow = [f"{o} ({g(min(r))}-{g(max(r))}x {ref}'s final training loss)" for o, r in under if min(r) >= 10]
    fast = [f"{ref} ({g(1 / max(r))}-{g(1 / min(r))}x {o}'s)" for o, r in under if max(r) <= 0.1]
    if slow:
        clauses.append(f"{_join(slow)} {'is' if len(slow) == 1 else 'are'} under-trained at our learning rate")
    if fast:
        clauses.append(f"{_join(fast)} under-trained")
    return "At matched training loss, " + "; ".join(clauses) + "."
