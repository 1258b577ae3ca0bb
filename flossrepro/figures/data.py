"""Table helpers shared by the figure modules and the claims report (pandas only, no plotting).

The input is an experiment's aggregated tidy table (``metrics.parquet``, see
``flossrepro.jobs.trainer``): one row per observation with columns ``run_id, member, epoch,
metric, index, value`` plus the run's settings (``task.name``, ``flossing.schedule``,
``task.delay``, ``flossing.k``, ``flossing.target``, ``arch.n_hidden``, ``scale.name``,
``members``, ``epochs``, ...). A *network* (one realization) is a ``(run_id, member)`` pair.
Rows whose metric starts with ``floss_`` count ``epoch`` in flossing epochs; all others
count training epochs.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from flossrepro.errors import TableError
from flossrepro.store.tables import metric_specs, select_metrics

NET = ["run_id", "member"]


def load(results: str | Path, experiment: str, metrics: tuple[str, ...] | set[str] | None = None
         ) -> tuple[pd.DataFrame | None, dict]:
    """``(table or None, provenance dict)`` from ``results/<experiment>/``; with ``metrics``, only
    the rows of those metrics are read (a figure module sees only what it declares)."""
    d = Path(results) / experiment
    mp, pp = d / "metrics.parquet", d / "provenance.json"
    table = None
    if mp.exists():
        table = _read(mp, None if metrics is None else sorted(metric_specs(metrics)))
        if metrics is not None:
            table = select_metrics(table, metrics)
    prov = {}
    if pp.exists():
        try:
            prov = json.loads(pp.read_text())
        except (OSError, json.JSONDecodeError):
            prov = {}
    return table, prov


#: the columns every summary table has (flossrepro.report.aggregate)
COLUMNS = ("run_id", "member", "epoch", "metric", "index", "value")


def _read(path: Path, names: list[str] | None) -> pd.DataFrame:
    """A summary table, or :class:`TableError` (one line) when it is not parquet or lacks a column."""
    import pyarrow.parquet as pq

    fix = (f"rebuild it with python -m flossrepro.aggregate <sweep dir> --out {path.parent}, "
           f"or move it away")
    try:
        have = set(pq.read_schema(path).names)
    except Exception as e:  # noqa: BLE001 - not parquet, truncated, unreadable
        raise TableError(f"{path} is not a readable parquet table ({type(e).__name__}); {fix}") from None
    lack = [c for c in COLUMNS if c not in have]
    if lack:
        raise TableError(f"{path} lacks the column(s) {', '.join(lack)} of a summary table; {fix}")
    try:
        return pd.read_parquet(path, filters=None if names is None else [("metric", "in", names)])
    except Exception as e:  # noqa: BLE001
        raise TableError(f"{path} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
                         f"{fix}") from None


def load_tables(results: str | Path, experiments, metrics=None) -> tuple[pd.DataFrame | None, dict, list[str]]:
    """The tables of several experiments, concatenated: ``(table or None, {experiment:
    provenance}, experiments whose table is missing or empty)``."""
    frames, provs, missing = [], {}, []
    for e in experiments:
        t, prov = load(results, e, metrics)
        provs[e] = prov
        if t is None or t.empty:
            missing.append(e)
        else:
            frames.append(t)
    table = pd.concat(frames, ignore_index=True) if frames else None
    return table, provs, missing


def rows(df: pd.DataFrame, metric: str | None = None, **settings) -> pd.DataFrame:
    """Rows of ``metric`` whose settings equal the given values.

    Settings are passed with dots replaced by double underscores
    (``task__name="copy"``, ``flossing__k=1``); a float compares with ``np.isclose``. A
    setting whose column is absent matches nothing unless the value is ``None``.
    """
    m = pd.Series(True, index=df.index)
    if metric is not None:
        m &= df["metric"] == metric
    for key, want in settings.items():
        col = key.replace("__", ".")
        if want is None:
            continue
        if col not in df.columns:
            return df.iloc[0:0]
        c = df[col]
        if isinstance(want, float) and pd.api.types.is_numeric_dtype(c):
            m &= np.isclose(c.astype(float), want)
        else:
            m &= c == want
    return df[m]


def values(df: pd.DataFrame, col: str) -> list:
    """Sorted distinct non-null values of a settings column (empty when absent)."""
    if col not in df.columns or df.empty:
        return []
    return sorted(df[col].dropna().unique().tolist())


def band(df: pd.DataFrame, x: str = "epoch") -> pd.DataFrame:
    """Median and 25/75 percentiles of ``value`` over networks at each ``x``.

    Returns columns ``x, median, q25, q75, n`` sorted by ``x``.
    """
    if df.empty:
        return pd.DataFrame(columns=[x, "median", "q25", "q75", "n"])
    g = df.groupby(x)["value"]
    out = pd.DataFrame({"median": g.median(), "q25": g.quantile(0.25), "q75": g.quantile(0.75),
                        "n": g.count()}).reset_index()
    return out.sort_values(x).reset_index(drop=True)


def last_epoch_rows(df: pd.DataFrame) -> pd.DataFrame:
    """For each run, the rows at that run's last recorded epoch (``df`` holds one metric)."""
    if df.empty:
        return df
    last = df.groupby("run_id")["epoch"].transform("max")
    return df[df["epoch"] == last]


def final(df: pd.DataFrame, metric: str, fail_value: float | None = None) -> pd.DataFrame:
    """One row per network: ``metric`` at its run's last evaluation epoch ("final").

    A network without a finite value there (it diverged) gets ``fail_value`` when given
    (e.g. ``inf`` for a loss, chance for an accuracy), so it counts as a failure.
    """
    r = last_epoch_rows(df[df["metric"] == metric])
    if r.empty:
        return r
    r = r.drop_duplicates(NET, keep="last").copy()
    if fail_value is not None:
        r["value"] = r["value"].where(np.isfinite(r["value"]), fail_value)
    return r


def network_values(df: pd.DataFrame) -> tuple[np.ndarray, list]:
    """``(values, networks)``: one value per network (``df`` holds one row per network)."""
    return df["value"].to_numpy(float), list(zip(df["run_id"], df["member"]))


def first_setting(df: pd.DataFrame, col: str):
    """The value of a settings column when it is the same everywhere, a list otherwise, None if absent."""
    v = values(df, col)
    if not v:
        return None
    return v[0] if len(v) == 1 else v


def networks_per_condition(df: pd.DataFrame):
    """Networks (``(run_id, member)`` pairs) per condition, a condition being one value of every
    setting column (all but the row's own columns and ``seed``/``members``): runs of other seeds
    count together, as the networks of one condition. One number, or the sorted distinct counts."""
    if not set(NET) <= set(df.columns) or df.empty:
        return first_setting(df, "members")
    own = set(NET) | {"epoch", "metric", "index", "value", "path", "seed", "members"}
    cond = [c for c in df.columns if c not in own]
    per = df.drop_duplicates(NET + cond).groupby(cond, dropna=False).size() if cond else \
        pd.Series([df.groupby(NET).ngroups])
    n = sorted({int(v) for v in per.tolist()})
    return n[0] if len(n) == 1 else n


def describe(df: pd.DataFrame) -> dict:
    """Scale, N, members, epochs and flossed k as recorded in the table (k of the flossed runs;
    flossing epochs per episode only when the table holds ``floss_loss``)."""
    out = {"scale": first_setting(df, "scale.name"), "N": first_setting(df, "arch.n_hidden"),
           "members": networks_per_condition(df), "epochs": first_setting(df, "epochs")}
    if "flossing.schedule" in df.columns and "flossing.k" in df.columns:
        ks = values(df[df["flossing.schedule"] != "none"], "flossing.k")
        if ks:
            out["k"] = ks
    fl = df[df["metric"] == "floss_loss"] if "metric" in df else df.iloc[0:0]
    if not fl.empty:
        out["k"] = sorted(fl["flossing.k"].dropna().unique().tolist()) if "flossing.k" in fl else None
        # flossing epochs per episode: a network's flossing epochs over its number of episodes
        total = fl.groupby(NET)["epoch"].max() + 1
        after = df[df["metric"] == "lyap_after_floss"]
        episodes = after.groupby(NET)["epoch"].nunique().reindex(total.index).fillna(1).clip(lower=1)
        per = sorted({int(round(v)) for v in (total / episodes).tolist()})
        out["floss_epochs"] = per[0] if len(per) == 1 else per
    return out


def fmt_setting(v) -> str:
    if isinstance(v, list):
        return "/".join(fmt_setting(x) for x in v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def pick_delay(present: list, want: int | None) -> int | None:
    """``want`` if present, else the nearest present delay (the larger on a tie); ``want=None``
    picks the largest."""
    if not present:
        return None
    if want is None:
        return max(present)
    if want in present:
        return want
    return min(present, key=lambda d: (abs(d - want), -d))
