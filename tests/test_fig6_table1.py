"""Fig 6 and Table 1 figure modules: panels and verdicts on synthetic tables whose answers are known."""
from __future__ import annotations

import numpy as np
import pandas as pd

from flossrepro.figures import fig6, table1
from flossrepro.figures.claims import NOT_REPRODUCED, NOT_RUN, REPRODUCED, UNTESTABLE

from test_plan import synthetic_cost_table


def fig6_table(final: dict[str, float], before: dict[str, float], epochs: int = 150, nets: int = 10) -> pd.DataFrame:
    """lambda_1 relaxes exponentially from ``before[fam]`` to ``final[fam]`` (per-step estimates and
    the spectra before and after), ``nets`` networks per family."""
    rows = []
    for fam, lam_end in final.items():
        run = f"fig6/small/+fig6net={fam}"
        lam0 = before[fam]
        for m in range(nets):
            rows.append((run, m, 0, "lyap_before_floss", 1, lam0, fam))
            rows.append((run, m, 0, "lyap_after_floss", 1, lam_end, fam))
            if not np.isfinite(lam0):
                continue
            for e in range(epochs):
                lam = lam_end + (lam0 - lam_end) * np.exp(-e / 15.0) + 0.002 * np.sin(e + m)
                rows.append((run, m, e, "floss_lambda_1", None, lam, fam))
                rows.append((run, m, e, "floss_loss", None, lam * lam, fam))
    df = pd.DataFrame(rows, columns=["run_id", "member", "epoch", "metric", "index", "value", "fig6net"])
    return df.assign(**{"scale.name": "small", "arch.n_hidden": 32, "members": nets, "flossing.k": 1})


def _verdicts(df):
    return {c.id: c for c in fig6.claims(df)}


def test_fig6_verdicts_follow_the_numbers():
    df = fig6_table({"lstm": -0.01, "gru": 0.0, "relu": -np.inf, "relu_gbar": 0.3},
                    {"lstm": -0.5, "gru": -0.4, "relu": -np.inf, "relu_gbar": 0.4})
    v = _verdicts(df)
    assert v["6A"].verdict == REPRODUCED and v["6E"].verdict == REPRODUCED
    # the paper's ReLU family silenced (lambda_1 = -inf) and none unstable: its setup cannot make Fig 6C
    assert v["6C"].verdict == UNTESTABLE and "silenced" in v["6C"].untestable
    assert v["6C"].base_verdict == NOT_REPRODUCED                                   # -inf never counts as 0
    assert v["6C-var"].verdict == NOT_REPRODUCED                                     # ends at 0.3
    assert v["6C+"].verdict == UNTESTABLE and v["6C+"].base_verdict == NOT_REPRODUCED   # relu_gbar still at 0.3
    live = _verdicts(fig6_table({"relu": 0.3}, {"relu": 0.4}))
    assert live["6C"].verdict == NOT_REPRODUCED and live["6C+"].verdict == NOT_REPRODUCED
    fig = fig6.plot(df)
    assert [ax.get_title(loc="left")[0] for ax in fig.axes] == list("ACEBDF")


def test_fig6_unstable_relu_stabilised_and_too_short_runs_are_not_run():
    df = fig6_table({"relu_gbar": 0.0}, {"relu_gbar": 0.5})
    v = _verdicts(df)
    assert v["6C+"].verdict == REPRODUCED and v["6C-var"].verdict == REPRODUCED
    assert v["6A"].verdict == NOT_RUN                                 # no LSTM rows
    short = _verdicts(fig6_table({"lstm": 0.0}, {"lstm": -0.5}, epochs=50))
    assert short["6A"].verdict == NOT_RUN and "50 flossing epochs" in short["6A"].missing


def test_table1_recovers_known_exponents_and_flags_others():
    df = synthetic_cost_table(archs=("tanh", "lstm")).assign(**{"scale.name": "small"})
    e = table1.exponents(df, "train_N")
    # times from the cost model's features: the fit over the top points sees the N^2 term grow
    x = np.array(e["x"], float)
    ms = np.array(e["ms"])
    assert abs(e["fit_top"] - np.polyfit(np.log(x[-3:]), np.log(ms[-3:]), 1)[0]) < 1e-9
    assert abs(e["paper"] - 2.0) < 1e-12
    # a table whose times grow exactly as this engine's FLOP count: every exponent is "near"
    rows = []
    for name, (_, kind, factor, xi) in table1.SERIES.items():
        for v in (8, 16, 32, 64):
            c = [80, 16, 300, 16, 55, 1, 1] if kind == "train" else [80, 1, 0, 16, 55, 1, 1]
            c[xi] = v
            if factor == "NkN":
                c[3] = v
            t = table1.flop_model(kind, *c)
            for rep in range(3):
                rows.append(("r", 0, rep, f"cost_{kind}_ms_{factor}_{v}", None, t * (1 + 0.01 * rep)))
            for i, cv in enumerate(c, 1):
                rows.append(("r", 0, 0, f"costpt_{kind}_{factor}_{v}", i, float(cv)))
    exact = pd.DataFrame(rows, columns=["run_id", "member", "epoch", "metric", "index", "value"])
    cs = table1.claims(exact)
    assert [c.id for c in cs] == [f"T1{p}" for p in "ABCDEFG"]
    assert all(c.verdict == REPRODUCED for c in cs), [c.measured() for c in cs]
    # the same table with the training epoch growing as N^1 (overhead-bound): T1 is not reproduced
    bad = exact.copy()
    sel = bad["metric"].str.startswith("cost_train_ms_N_")
    bad.loc[sel, "value"] = bad.loc[sel, "metric"].str.rsplit("_", n=1).str[1].astype(float)
    v = {c.id: c for c in table1.claims(bad)}
    assert v["T1A"].verdict == NOT_REPRODUCED and "training vs N" in v["T1A"].measured()
    assert v["T1B"].verdict == REPRODUCED
    assert len(table1.plot(exact).axes) == 8
