"""Statistics of the low-rank study's claims (LR1-LR5; the open questions LR6, LR7 in ``lr_compare``), judged the way its authors judge them.

Every function ``claim_*(metrics, rule) -> Claim`` reads its thresholds, selections and the
authors' reference values from the :class:`~flossrepro.figures.claims.Rule` that names it (the
figure modules hold only the declarations). Claims keep robust statistics: medians over
networks with a percentile-bootstrap interval (``claims.replicates``), conditions resampled
independently. Where the authors leave a point out of their figure (not every network converged,
:mod:`flossrepro.figures.lowrank_common`), the claim leaves it out too and says so in its detail.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from flossrepro.figures.claims import N_BOOT, Claim, Group, Part, Rule, median_part, median_reps, part_from_reps, rng_for
from flossrepro.figures.data import NET, values
from flossrepro.figures.lowrank_common import TASK_LABEL, TASKS, has, md_table, nearest, table, task_rows, vectors


def nets_of(f: pd.DataFrame) -> set:
    return set(map(tuple, f[NET].to_numpy())) if len(f) else set()


def frame_part(label: str, f: pd.DataFrame, col: str, op: str, threshold: float, rng) -> Part:
    """The median of column ``col`` over the networks of ``f`` (:func:`claims.median_part`)."""
    ok = f.dropna(subset=[col])
    return median_part(label, ok[col].to_numpy(float), op, threshold, nets_of(ok), rng)


def diff_part(label: str, a: pd.DataFrame, b: pd.DataFrame, col: str, op: str, threshold: float, rng) -> Part:
    """``median(b) - median(a)`` over networks, the two conditions resampled independently."""
    a, b = a.dropna(subset=[col]), b.dropna(subset=[col])
    nets = nets_of(a) | nets_of(b)
    if a.empty or b.empty:
        return part_from_reps(label, np.nan, np.array([np.nan]), op, threshold, nets)
    ma, ra = median_reps(a[col].to_numpy(float), rng)
    mb, rb = median_reps(b[col].to_numpy(float), rng)
    return part_from_reps(label, mb - ma, rb - ra, op, threshold, nets)


def margin(p: Part) -> float:
    """How far a part's interval stays on the claim's side of its threshold, relative to the threshold
    (negative: it crosses; -inf: not measured)."""
    if any(np.isnan(v) for v in (p.lo, p.hi)):
        return -np.inf
    m = (p.threshold - p.hi) if p.op in ("<", "<=") else (p.lo - p.threshold)
    return m / abs(p.threshold) if p.threshold else m


def tightest_first(groups: list[Group]) -> list[Group]:
    """Parts and groups ordered by :func:`margin`, the tightest first (the row shows the test nearest
    to failing, not the first one)."""
    for gr in groups:
        gr.parts.sort(key=margin)
    return sorted(groups, key=lambda gr: min((margin(p) for p in gr.parts), default=np.inf))


def _at(t: pd.DataFrame, col: str, v) -> pd.DataFrame:
    return t[np.isclose(t[col].astype(float), float(v))]


def _authors_at(ref: dict, gv: float, tol: float = 0.16):
    """The authors' value at ``gv`` (``{g: value}``, nearest within ``tol``), else None."""
    if not ref:
        return None
    k = nearest(list(ref), gv)
    return ref[k] if abs(k - gv) <= tol else None


def task_tables(df: pd.DataFrame, lost: list):
    """``(task, its rows, its per-network table)`` for each task in ``df``; a task not run is named in ``lost``."""
    for task in TASKS:
        d = task_rows(df, task)
        if d.empty:
            lost.append(f"{TASK_LABEL[task]} not run")
            continue
        yield task, d, table(d)


def _per_g_table(t: pd.DataFrame, cols: dict, by: str = "init.g") -> pd.DataFrame:
    """Networks, converged, and mean +- std of ``cols`` (``{name: column}``) per ``by``."""
    rows = []
    for v, s in t.groupby(by):
        r = {by: v, "networks": len(s), "converged": int(s["converged"].sum())}
        for name, c in cols.items():
            x = s[c].dropna()
            r[name] = f"{x.mean():.3g} +- {x.std(ddof=0):.2g}" if len(x) else "n/a"
        rows.append(r)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- LR1
def outliers(df: pd.DataFrame, margin: float) -> pd.Series:
    """Per network: eigenvalues of W at the end with modulus > max|eig W0| + ``margin``."""
    re0, im0, re, im = (vectors(df, m) for m in ("eig_W0_re", "eig_W0_im", "eig_W_re", "eig_W_im"))
    if re.empty or re0.empty:
        return pd.Series(dtype=float)
    r0 = np.sqrt(re0 ** 2 + im0 ** 2).max(axis=1)
    mod = np.sqrt(re ** 2 + im ** 2)
    return (mod.gt(r0 + margin, axis=0)).sum(axis=1).astype(float)


def claim_low_rank(df: pd.DataFrame, rule: Rule) -> Claim:
    """LR1, per task and g (every g judged on its own, none pooled): the median functional rank is at
    most ``threshold``; where W0 has a bulk (g > 0) the median count of W's eigenvalues outside it
    is at most ``outliers_max``. A g where not every network converged is left out (the authors'
    figures leave it out)."""
    c, rng = rule.new(), rng_for(rule.id)
    margin, omax, ref = rule.p("bulk_margin"), rule.p("outliers_max"), rule.p("authors_rank")
    lost, lines = [], []
    for task, d, t in task_tables(df, lost):
        out = outliers(d, margin)
        t["outliers"] = out.reindex(pd.MultiIndex.from_frame(t[NET])).to_numpy() if len(out) else np.nan
        parts, left = [], []
        for gv in values(t, "init.g"):
            s = _at(t, "init.g", gv)
            if not s["converged"].all():
                left.append(f"g={gv:g} ({int(s['converged'].sum())} of {len(s)} converged)")
                continue
            a = _authors_at(ref.get(task, {}), gv)
            parts.append(frame_part(f"g={gv:g}: median functional rank" + (f" (authors ~{a:g})" if a else ""), s,
                                    "rank", rule.op, rule.threshold, rng))
            if gv > 0:
                parts.append(frame_part(f"g={gv:g}: median outliers of W", s, "outliers", "<=", omax, rng))
        if parts:
            c.groups.append(Group(TASK_LABEL[task], parts))
        else:
            lost.append(f"{TASK_LABEL[task]}: no g where every network converged")
        per = _per_g_table(t, {"functional rank": "rank", "outliers of W": "outliers",
                               "effective rank of dW": "dW_effective_rank"})
        per["authors' rank"] = [(lambda a: f"~{a:g}" if a else "-")(_authors_at(ref.get(task, {}), v))
                                for v in per["init.g"]]
        lines += [f"{TASK_LABEL[task]}, per g (mean +- std over networks; functional rank {26} = above 25"
                  + (f"; left out: {', '.join(left)}" if left else "") + "):", ""] + md_table(per, list(per.columns)) + [""]
    c.missing = "; ".join(lost)
    c.groups = tightest_first(c.groups)
    c.detail = lines
    return c


# ----------------------------------------------------------------------------- LR2
def _u_part(label: str, t: pd.DataFrame, g0: float, gmax: float, interior: list, rng) -> tuple[Part, float]:
    """``max over interior g of min(conv(g0) - conv(g), conv(gmax) - conv(g))`` (medians over networks),
    each g resampled independently; returns the part and the interior g that attains it."""
    cols = {}
    for gv in [g0, gmax] + interior:
        x = _at(t, "init.g", gv)["conv"].to_numpy(float)
        cols[gv] = median_reps(x, rng)
    m0, r0 = cols[g0]
    mm, rm = cols[gmax]
    vals = {gv: min(m0 - cols[gv][0], mm - cols[gv][0]) for gv in interior}
    reps = np.max(np.stack([np.minimum(r0 - cols[gv][1], rm - cols[gv][1]) for gv in interior]), axis=0)
    best = max(vals, key=vals.get)
    nets = nets_of(t[t["init.g"].isin([g0, gmax] + interior)])
    return part_from_reps(label.format(best=f"{best:g}"), vals[best], reps, ">", 0.0, nets), best


def claim_u_shape(df: pd.DataFrame, rule: Rule) -> Claim:
    """LR2, per task: some interior g (every network converged there) has a lower median convergence
    time than both g = 0 and the largest g (a censored end is a lower bound, which only makes an
    end look faster). A task whose grid has no interior g within ``window`` of the authors' minimum
    cannot show their U and is not judged (the row says so)."""
    c, rng = rule.new(), rng_for(rule.id)
    minima, window = rule.p("authors_min"), rule.p("window")
    lost, lines = [], []
    for task, d, t in task_tables(df, lost):
        gs = values(t, "init.g")
        per = _per_g_table(t, {"convergence epoch": "conv"})
        per["never reached 5% of L0"] = [int(_at(t, "init.g", v)["conv_censored"].sum()) for v in per["init.g"]]
        lines += [f"{TASK_LABEL[task]} (epochs {int(t['epochs'].max()) if 'epochs' in t else '?'}; a network that "
                  "never converged counts as the run's epochs):", ""] + md_table(per, list(per.columns)) + [""]
        if len(gs) < 3:
            lost.append(f"{TASK_LABEL[task]}: fewer than 3 g")
            continue
        g0, gmax, mid = gs[0], gs[-1], gs[1:-1]
        if not any(abs(v - minima[task]) <= window + 1e-9 for v in mid):
            lost.append(f"{TASK_LABEL[task]}: the grid ({', '.join(f'{v:g}' for v in gs)}) has no interior g within "
                        f"{window:g} of the authors' minimum (g~{minima[task]:g}), so it cannot show their U")
            continue
        interior = [v for v in mid if _at(t, "init.g", v)["converged"].all()]
        if not interior:
            lost.append(f"{TASK_LABEL[task]}: no interior g where every network converged")
            continue
        p, _ = _u_part(f"g={{best}} (best of {len(interior)} interior g): min(conv(g={g0:g}), conv(g={gmax:g})) - "
                       "conv(g), median epochs", t, g0, gmax, interior, rng)
        c.groups.append(Group(TASK_LABEL[task], [p]))
    c.missing = "; ".join(lost)
    c.groups = tightest_first(c.groups)
    c.detail = lines
    return c


# ----------------------------------------------------------------------------- LR3
def claim_shuffle_high(df: pd.DataFrame, rule: Rule) -> Claim:
    """LR3, per task and every g >= ``g_from`` where every network converged: the median loss after
    shuffling W0, relative to L0, is above ``threshold``."""
    c, rng = rule.new(), rng_for(rule.id)
    lost, lines = [], []
    for task, d, t in task_tables(df, lost):
        parts, left = [], []
        for gv in [v for v in values(t, "init.g") if v >= rule.p("g_from") - 1e-9]:
            s = _at(t, "init.g", gv)
            if not s["converged"].all():
                left.append(f"g={gv:g} ({int(s['converged'].sum())} of {len(s)} converged)")
                continue
            parts.append(frame_part(f"g={gv:g}: median shuffle loss / L0", s, "shuffle_rel", rule.op, rule.threshold, rng))
        if parts:
            c.groups.append(Group(TASK_LABEL[task], parts))
        else:
            lost.append(f"{TASK_LABEL[task]}: no g >= {rule.p('g_from'):g} where every network converged")
        per = _per_g_table(t, {"shuffle loss / L0": "shuffle_rel", "norm(dW)": "dW_norm", "lambda_1 at init": "lambda1_init"})
        lines += [f"{TASK_LABEL[task]}, per g (mean +- std)" + (f"; left out: {', '.join(left)}" if left else "") + ":",
                  ""] + md_table(per, list(per.columns)) + [""]
    c.missing = "; ".join(lost)
    c.groups = tightest_first(c.groups)
    c.detail = lines
    return c


# ----------------------------------------------------------------------------- LR4
def slope_part(label: str, t: pd.DataFrame, col: str, op: str, threshold: float, rng, x: str = "arch.n_hidden") -> Part:
    """Slope of log(median ``col``) against log ``x``, bootstrapped over networks within each ``x``."""
    xs, meds, reps, nets = [], [], [], set()
    for n in values(t, x):
        v = t[(t[x] == n) & (t[col] > 0)]
        if v.empty:
            continue
        m, r = median_reps(v[col].to_numpy(float), rng)
        xs.append(np.log(n))
        meds.append(np.log(m))
        reps.append(np.log(r))
        nets |= nets_of(v)
    if len(xs) < 2:
        return part_from_reps(label, np.nan, np.array([np.nan]), op, threshold, nets)
    X = np.asarray(xs)
    Xc = X - X.mean()
    R = np.stack(reps, 1)
    srep = (R - R.mean(1, keepdims=True)) @ Xc / (Xc @ Xc)
    return part_from_reps(label, float(np.polyfit(X, np.asarray(meds), 1)[0]), srep, op, threshold, nets)


def claim_n_scaling(df: pd.DataFrame, rule: Rule) -> Claim:
    """LR4, per task and g > 0, over the networks that converged: the log-log slope of ||dW|| against
    N is below ``threshold`` (half the sqrt(N) growth of ||W0||), that of ||dW|| / ||W0|| below 0
    (it falls toward 0), and that of functional rank / N below 0 (the rank is small against N)."""
    c, rng = rule.new(), rng_for(rule.id)
    if df.empty:
        c.missing = "no table"
        return c
    t = table(df)
    if "task.name" not in t:
        t["task.name"] = "flipflop"
    t["rank_per_N"] = t["rank"] / t["arch.n_hidden"].astype(float)
    tasks = values(t, "task.name") if "task.name" in t else []
    lines, lost = [], []
    for task in tasks:
        tt = t[t["task.name"] == task]
        for gv in [v for v in values(tt, "init.g") if v > 0]:
            s = _at(tt, "init.g", gv)
            s = s[s["converged"]]
            label = f"{TASK_LABEL.get(task, task)} g={gv:g}"
            if s["arch.n_hidden"].nunique() < 2:
                lost.append(f"{label}: converged networks at fewer than 2 N")
                continue
            c.groups.append(Group(label, [
                slope_part("slope of log norm(dW) vs log N", s, "dW_norm", rule.op, rule.threshold, rng),
                slope_part("slope of log(norm(dW) / norm(W0)) vs log N", s, "dW_rel_norm", "<", 0.0, rng),
                slope_part("slope of log(rank / N) vs log N", s, "rank_per_N", "<", 0.0, rng)]))
        per = []
        for (gv, n), s in tt.groupby(["init.g", "arch.n_hidden"]):
            ok = s[s["converged"]]
            r = {"g": gv, "N": n, "networks": len(s), "converged": len(ok)}
            for name, col in (("norm(dW)", "dW_norm"), ("norm(W0)", "W0_norm"), ("norm(dW) / norm(W0)", "dW_rel_norm"),
                              ("functional rank", "rank")):
                x = ok[col].dropna()
                r[name] = f"{x.mean():.3g} +- {x.std(ddof=0):.2g}" if len(x) else "n/a"
            per.append(r)
        per = pd.DataFrame(per)
        lines += [f"{TASK_LABEL.get(task, task)}: mean +- std over the networks that converged, per g and N:", ""] + \
            md_table(per, list(per.columns)) + [""]
    want = [x for x in TASKS if x not in tasks]
    if want:
        c.note = f"not run yet: {', '.join(TASK_LABEL[x] for x in want)} (judged on {', '.join(TASK_LABEL.get(x, x) for x in tasks)})"
    c.missing = "; ".join(lost)
    c.groups = tightest_first(c.groups)
    c.detail = lines
    return c


# ----------------------------------------------------------------------------- LR5
LINEAR_THEORY = {"conv": lambda g: (1 - g ** 2) ** 2, "dW_norm": lambda g: 1 - g ** 2,
                 "grad": lambda g: 1 / (1 - g ** 2), "shuffle_rel": lambda g: g ** 4 * (2 - g ** 2) ** 2}
LINEAR_NAMES = {"conv": "convergence time", "dW_norm": "norm(dW)", "grad": "mean gradient norm",
                "shuffle_rel": "loss after shuffle"}


def mean_grad_norm(df: pd.DataFrame, t: pd.DataFrame) -> pd.Series:
    """Per network: the mean of ``grad_W_norm`` over the epochs before convergence (all epochs when it
    never converged): the authors' average gradient norm over learning time up to convergence."""
    gn = df[df["metric"] == "grad_W_norm"]
    if gn.empty:
        return pd.Series(np.nan, index=pd.MultiIndex.from_frame(t[NET]))
    conv = t.set_index(NET)["conv"]
    gn = gn.join(conv.rename("conv_"), on=NET)
    gn = gn[gn["epoch"] < gn["conv_"].fillna(np.inf)]
    return gn.groupby(NET)["value"].mean().reindex(pd.MultiIndex.from_frame(t[NET]))


def linear_table(df: pd.DataFrame, lr_of) -> pd.DataFrame:
    """:func:`lowrank_common.table` plus the learning rate, the convergence time in learning time
    (lr x epochs) and the mean gradient norm (NaN when ``grad_W_norm`` is not recorded)."""
    t = table(df)
    if "task.target_amp" not in t:
        t["task.target_amp"] = 1.0
    t["lr"] = [lr_of(z, gv) for z, gv in zip(t["task.target_amp"], t["init.g"])]
    t["t_conv"] = t["lr"] * t["conv"]
    t["grad"] = mean_grad_norm(df, t).to_numpy()
    return t


def network_ids(t: pd.DataFrame) -> pd.Series:
    """Which network a row is: ``seed + member`` (member r of a run is the network of seed + r, the
    same initial draws, W0 = g J and the same input and readout vectors, at every g)."""
    return t["seed"].astype(int) + t["member"].astype(int)


def _ratio_reps(s: pd.DataFrame, base: pd.DataFrame, col: str, rng) -> np.ndarray:
    """Bootstrap replicates of ``median(s[col]) / median(base[col])``, resampling networks: a network
    in both (the same ``seed + member``, so the same draws at g and at g = 0) is drawn as a pair, the
    two medians sharing its network-to-network spread (the input and readout vectors), which the
    ratio cancels; the networks in only one of them are drawn on their own (stratified: each group
    keeps its size). Without ``seed`` and ``member``, or with a network twice in one condition, the two
    are resampled independently."""
    a, b = s.dropna(subset=[col]), base.dropna(subset=[col])
    ids = [network_ids(x) if {"seed", "member"} <= set(x.columns) else None for x in (a, b)]
    if any(i is None or not i.is_unique for i in ids):   # no network identity to pair on
        return median_reps(a[col].to_numpy(float), rng)[1] / median_reps(b[col].to_numpy(float), rng)[1]
    xa = pd.Series(a[col].to_numpy(float), index=ids[0].to_numpy())   # one value per network
    xb = pd.Series(b[col].to_numpy(float), index=ids[1].to_numpy())
    both = xa.index.intersection(xb.index)
    pa, pb = xa[both].to_numpy(float), xb[both].to_numpy(float)
    oa, ob = xa.drop(both).to_numpy(float), xb.drop(both).to_numpy(float)

    def draw(x: np.ndarray) -> np.ndarray:
        return rng.integers(0, len(x), (N_BOOT, len(x))) if len(x) else np.zeros((N_BOOT, 0), int)

    ip, ia, ib = draw(pa), draw(oa), draw(ob)
    ra = np.median(np.concatenate([pa[ip], oa[ia]], axis=1), axis=1)
    rb = np.median(np.concatenate([pb[ip], ob[ib]], axis=1), axis=1)
    return ra / rb


def linear_errors(t: pd.DataFrame, rng=None, quantities=("conv", "dW_norm", "grad", "shuffle_rel")) -> pd.DataFrame:
    """Per zhat, g > 0 and quantity: the simulation (median; convergence time, ||dW|| and gradient
    norm as ratios to g = 0 of the same zhat, as the authors normalise) against the theory, and the
    absolute error in units of the theory's maximum over the swept g (1 for the first two, L0 for the
    shuffle loss), with bootstrap replicates of that error when ``rng`` is given (a ratio's networks
    resampled in pairs, :func:`_ratio_reps`)."""
    out = []
    for z in values(t, "task.target_amp"):
        tz = t[t["task.target_amp"] == z]
        base = _at(tz, "init.g", 0.0)
        gs = values(tz, "init.g")
        for q in quantities:
            col = "t_conv" if q == "conv" else q
            th = LINEAR_THEORY[q]
            unit = 1.0 if q == "shuffle_rel" else max(th(np.asarray(gs, float)))
            for gv in [v for v in gs if v > 0]:
                s = _at(tz, "init.g", gv)
                x = s[col].dropna().to_numpy(float)
                b = base[col].dropna().to_numpy(float)
                if len(x) == 0 or (q != "shuffle_rel" and len(b) == 0):
                    continue
                if q == "shuffle_rel":
                    m, r = median_reps(x, rng) if rng is not None else (float(np.median(x)), None)
                else:   # a ratio to g = 0: its replicates resample the networks of both (in pairs)
                    m = float(np.median(x)) / float(np.median(b))
                    r = _ratio_reps(s, base, col, rng) if rng is not None else None
                err_reps = None if r is None else np.abs(r - th(gv)) / unit
                nets = nets_of(s) | (set() if q == "shuffle_rel" else nets_of(base))
                out.append(dict(zhat=z, g=gv, quantity=q, simulation=m, theory=float(th(gv)), unit=unit,
                                error=abs(m - th(gv)) / unit, reps=err_reps, nets=nets))
    return pd.DataFrame(out)


def with_authors(e: pd.DataFrame, authors: dict) -> pd.DataFrame:
    """``linear_errors`` rows with the authors' simulation at the same zhat, g and quantity (``authors``:
    quantity -> zhat -> g -> (mean, band half-width), read off their figure; NaN where they show none)
    and its error in the same units."""
    if e.empty:
        return e.assign(authors=np.nan, authors_error=np.nan)
    a = [authors.get(q, {}).get(float(z), {}).get(round(float(g), 1), (np.nan, np.nan))[0]
         for q, z, g in zip(e["quantity"], e["zhat"], e["g"])]
    e = e.assign(authors=a)
    return e.assign(authors_error=(e["authors"] - e["theory"]).abs() / e["unit"])


def claim_linear_theory(df: pd.DataFrame, rule: Rule) -> Claim:
    """LR5, per scale, zhat and g > 0: each quantity within ``tol[quantity]`` of its leading-order
    theory, in units of the theory's maximum (or of L0): the bootstrap interval of the absolute
    error below the tolerance. The authors' simulations (``authors``) are printed beside ours."""
    c, rng = rule.new(), rng_for(rule.id)
    tol, lr_of, g_max = rule.p("tol"), rule.p("lr_of"), rule.p("g_max") or {}
    authors = rule.params.get("authors") or {}
    if df.empty:
        c.missing = "no table"
        return c
    scales = [(str(s), df[df["scale.name"] == s]) for s in sorted(df["scale.name"].dropna().unique())] \
        if "scale.name" in df else [("", df)]
    grads = has(df, "grad_W_norm")
    for scale, m in scales:
        t = linear_table(m, lr_of)
        e = linear_errors(t, rng, tuple(q for q in tol if q != "grad" or grads))
        pre = f"{scale}: " if len(scales) > 1 else ""
        shown = np.array([gv <= g_max.get(q, np.inf) + 1e-9 for q, gv in zip(e["quantity"], e["g"])], bool) \
            if len(e) else np.zeros(0, bool)   # judged where the authors' figure shows the quantity
        for (z, gv), grp in e[shown].groupby(["zhat", "g"]):
            c.groups.append(Group(f"{pre}zhat={z:g}, g={gv:g}", [
                part_from_reps(f"{LINEAR_NAMES[r.quantity]}: abs(sim - theory) / {'L0' if r.quantity == 'shuffle_rel' else 'theory max'}",
                               r.error, r.reps, "<", tol[r.quantity], r.nets) for r in grp.itertuples()]))
        show = e.drop(columns=["reps", "nets"]) if len(e) else e
        if len(show) and authors:
            show = with_authors(show, authors)[["zhat", "g", "quantity", "simulation", "authors", "theory", "unit",
                                                "error", "authors_error"]]
        if not shown.all():
            show = show.assign(judged=shown)
            c.detail += [f"{pre}Judged up to the largest g at which the authors' figure shows each quantity: "
                         + ", ".join(f"{LINEAR_NAMES[q]} g <= {v:g}" for q, v in g_max.items()) + "; the rows past it "
                         "(judged = False) are printed, not judged.", ""]
        ns = ", ".join(f"{v:g}" for v in values(t, "arch.n_hidden")) if "arch.n_hidden" in t else "?"
        c.detail += [f"{pre}N={ns}: simulation (median; convergence time, norm(dW) and gradient norm as ratios to g = 0 "
                     "of the same zhat) against the leading-order theory; error = |sim - theory| / unit"
                     + ("; authors = their simulation (mean over 5 networks, N=1024, read off their figure; zhat = 0.5 "
                        "and 2 only), authors_error = its distance from the theory in the same units" if authors else "")
                     + ":", ""] + \
            (md_table(show, list(show.columns)) if len(show) else []) + [""]
        cens = int(t["conv_censored"].sum())
        if cens:
            c.detail += [f"{pre}{cens} network(s) never reached 5% of L0 within the epochs (counted as the run's "
                         "epochs).", ""]
    c.groups = tightest_first(c.groups)
    if not grads:
        c.note = "mean gradient norm (grad_W_norm) not recorded in this table: that relation is not tested"
    return c
