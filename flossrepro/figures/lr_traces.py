"""Low-rank study, the tasks' trials (their Fig 1, left): input, target and the trained network's output.

A row per task (flip-flop, Mante, Romo), one trial of one trained network at the g nearest 0.9
(the first network whose full W solves the task, else the first), taken from the task's own
experiment when its runs recorded traces, else from lr_nscale's runs of that task (the legend
names the run):

- **A**: the input channels over the trial;
- **B**: the target (dashed) and the trained network's output (solid) per output channel; grey
  where the mask is off (not scored).

Reads ``trace_input`` (one trial flattened time-major, length ``T * n_in``), ``trace_target``,
``trace_mask``, ``trace_output`` (length ``T * n_out``) and ``trace_n_in``, ``trace_n_out`` of
:mod:`flossrepro.jobs.lowrank_measures`; a table without them says so on the panel. No claim.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures.data import values
from flossrepro.figures.lowrank_common import NOT_RECORDED, TASK_LABEL, TASKS, nearest, per_net, table, task_rows, vectors
from flossrepro.figures.lr_panels import reshape_trace
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, palette, suptitle

EXPERIMENTS = ("lr_flipflop", "lr_mante", "lr_romo", "lr_nscale")
STUDY = "lowrank"
TITLE = "Low-rank study: one trial per task, input, target and the trained network's output (g nearest 0.9)"
PANELS = {"A": "input channels over one trial", "B": "target and trained output per channel (mask off in grey)"}
METRICS = ("final_loss", "loss_W0", "convergence_epoch", "trace_input", "trace_target", "trace_mask", "trace_output",
           "trace_n_in", "trace_n_out")
CLAIMS: dict = {}
CLAIM_PANELS: dict = {}
G_SHOWN = 0.9


def pick_network(d: pd.DataFrame, g_want: float = G_SHOWN):
    """``(network, g)``: the first network at the g nearest ``g_want`` whose W solves the task."""
    t = table(d)
    gs = values(t, "init.g")
    if not gs:
        return None, None
    gv = nearest(gs, g_want)
    s = t[t["init.g"] == gv]
    ok = s[s["solved"].fillna(False).astype(bool)]
    row = (ok if len(ok) else s).iloc[0]
    return (row["run_id"], row["member"]), gv


def with_traces(d: pd.DataFrame, task: str) -> pd.DataFrame:
    """The rows of the runs that recorded traces: the task's own experiment's if any did, else any
    experiment's (lr_nscale); all rows when none did (the panel then says so)."""
    runs = d.loc[d["metric"] == "trace_output", "run_id"].unique()
    if not len(runs):
        return d
    d = d[d["run_id"].isin(runs)]
    if "experiment_name" in d.columns and (d["experiment_name"] == f"lr_{task}").any():
        d = d[d["experiment_name"] == f"lr_{task}"]
    return d


def trial(d: pd.DataFrame, net) -> dict | None:
    """The recorded trial of ``net``: ``{input: [T, n_in], target, mask, output: [T, n_out]}`` or None."""
    n_in, n_out = per_net(d, "trace_n_in"), per_net(d, "trace_n_out")
    if net not in n_in.index or net not in n_out.index:
        return None
    out = {}
    for k, width in (("input", n_in[net]), ("target", n_out[net]), ("mask", n_out[net]), ("output", n_out[net])):
        v = vectors(d, f"trace_{k}")
        if net not in v.index:
            return None
        out[k] = reshape_trace(v.loc[net].to_numpy(), int(width))
    return out


def plot(metrics: pd.DataFrame) -> Figure:
    with rc_context(STYLE):
        fig, axes = new_figure(len(TASKS), 2, (13, 3.2 * len(TASKS)))
        for i, task in enumerate(TASKS):
            a, b = axes[i]
            a.set_title(f"A{i + 1}  {TASK_LABEL[task]}: input", loc="left")
            b.set_title(f"B{i + 1}  {TASK_LABEL[task]}: target (dashed) and output", loc="left")
            d = task_rows(metrics, task)
            if d.empty:
                for ax in (a, b):
                    empty_panel(ax, f"{task}: not run (experiment lr_{task})")
                continue
            d = with_traces(d, task)
            net, gv = pick_network(d)
            tr = trial(d, net) if net is not None else None
            if tr is None:
                for ax in (a, b):
                    empty_panel(ax, f"trial traces (trace_input, trace_output, ...): {NOT_RECORDED}")
                continue
            steps = np.arange(len(tr["input"]))
            for j, col in enumerate(palette(tr["input"].shape[1], "tab10")):
                a.plot(steps, tr["input"][:, j], color=col, lw=1, label=f"input {j + 1}")
            cols = palette(max(tr["output"].shape[1], 2), "tab10")
            for j in range(tr["output"].shape[1]):
                b.plot(steps, tr["output"][:, j], color=cols[j], lw=1.2, label=f"output {j + 1}")
                b.plot(steps, tr["target"][:, j], color=cols[j], lw=1.2, ls="--", label=f"target {j + 1}")
            off = tr["mask"].max(axis=1) <= 0
            if off.any():
                b.fill_between(steps, 0, 1, where=off, color="#dddddd", alpha=0.6, lw=0, step="mid",
                               transform=b.get_xaxis_transform(), label="mask off")
            for ax in (a, b):
                ax.set_xlabel("time step")
                ax.legend(fontsize=6, ncol=2, title=f"g={gv:g}, network {net[0].rsplit('/', 1)[-1]} #{net[1]}",
                          title_fontsize=6)
        suptitle(fig, TITLE, metrics, extra="no-k")
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """No claim: the figure shows what the networks were trained to do."""
    return []
