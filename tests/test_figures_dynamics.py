"""Figs 8-13 (what flossing does to the gradients and to the trained networks): each claim on
synthetic tables whose answer is known, both ways, and each figure draws."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from flossrepro.figures import fig8, fig9, fig10, fig11, fig12, fig13, metrics_needed

EPISODES = [0, 100, 200, 300, 400]
NETS = 8


def _rows(run, member, metric, epochs, values, index=None, **settings):
    n = len(epochs)
    base = {"task.name": "binary_xor", "task.delay": 70, "flossing.schedule": "none", "flossing.k": 75,
            "scale.name": "small", "arch.n_hidden": 80, "members": NETS, "epochs": 2000}
    base.update(settings)
    return pd.DataFrame({"run_id": [run] * n, "member": [member] * n, "epoch": list(epochs), "metric": metric,
                         "index": pd.array([index] * n, dtype="Int64"), "value": np.asarray(values, float),
                         **{k: [v] * n for k, v in base.items()}})


def _episodes(run, m, sched, starts):
    """The lyap_after_floss rows an episode leaves at the epochs it precedes."""
    return _rows(run, m, "lyap_after_floss", starts, [-0.01] * len(starts), index=1, **{"flossing.schedule": sched})


def grad_table(jump: bool = True, lead: int = 200) -> pd.DataFrame:
    """|dL/dh0| every 10 epochs and accuracy every 20: none tiny and at chance; during boosted
    after each episode when ``jump``; its gradient rises for good at 300 + r and its accuracy
    at 300 + r + ``lead``."""
    rng = np.random.default_rng(0)
    e10, e20 = np.arange(0, 2001, 10), np.arange(0, 2001, 20)
    out = []
    for m in range(NETS):
        out.append(_rows("none", m, "grad_h0_norm", e10, 1e-7 * np.exp(rng.normal(0, 0.3, len(e10)))))
        out.append(_rows("none", m, "test_accuracy", e20, 0.5 + rng.normal(0, 0.005, len(e20))))
        t_g = 300 + 10 * m
        g = np.where(e10 >= t_g, 2e-2, 1e-5)
        if jump:
            g = np.where(np.isin(e10, EPISODES), 0.3, g)
        out.append(_rows("during", m, "grad_h0_norm", e10, g * np.exp(rng.normal(0, 0.1, len(e10))),
                         **{"flossing.schedule": "during"}))
        acc = np.where(e20 >= t_g + lead, 0.95, 0.5) + rng.normal(0, 0.005, len(e20))
        out.append(_rows("during", m, "test_accuracy", e20, acc, **{"flossing.schedule": "during"}))
        out.append(_episodes("during", m, "during", EPISODES))
    return pd.concat(out, ignore_index=True)


def sv_table(raise_sub: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    e = np.arange(0, 2001, 20)
    out = []
    for sched in ("none", "during"):
        for m in range(NETS):
            s1 = np.exp(rng.normal(0, 0.2, len(e)))
            boost = np.where(np.isin(e, EPISODES), 100.0 if (raise_sub and sched == "during") else 1.0, 1.0)
            for i, rel in ((1, 1.0), (20, 1e-3), (40, 1e-4)):
                v = s1 * (rel * boost if i > 1 else 1.0)
                out.append(_rows(sched, m, "grad_W_sv", e, v, index=i, **{"flossing.schedule": sched}))
            out.append(_rows(sched, m, "test_accuracy", e, np.full(len(e), 0.5), **{"flossing.schedule": sched}))
            if sched == "during":
                out.append(_episodes(sched, m, sched, EPISODES))
    return pd.concat(out, ignore_index=True)


def throughout_table(drop: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    starts = list(range(0, 2000, 100))
    e = np.arange(0, 2001, 20)
    out = []
    for m in range(NETS):
        kw = {"flossing.schedule": "throughout"}
        out.append(_rows("thr", m, "test_accuracy", e, 0.9 + rng.normal(0, 0.01, len(e)), **kw))
        after = (0.52 if drop else 0.88) + rng.normal(0, 0.01, len(starts))
        out.append(_rows("thr", m, "test_accuracy_after_floss", starts, after, **kw))
        out.append(_episodes("thr", m, "throughout", starts))
        out.append(_rows("none", m, "test_accuracy", e, np.full(len(e), 0.5)))
    return pd.concat(out, ignore_index=True)


def lyap_table(on_fit: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    out = []
    for d in (10, 40, 70):
        for sched in ("none", "during"):
            for m in range(NETS):
                learned = sched == "during" or d == 10
                fit = -0.2 * np.exp(-0.03 * d)
                l1 = (fit if on_fit else fit - 0.3) if learned else fit - 0.4
                l1 += rng.normal(0, 0.005)
                kw = {"task.name": "spatial_xor", "task.delay": d, "flossing.schedule": sched}
                run = f"{sched}{d}"
                out.append(_rows(run, m, "test_accuracy", [0, 2000], [0.5, 0.99 if learned else 0.5], **kw))
                out.append(_rows(run, m, "lyap", [2000], [l1], index=1, **kw))
                out.append(_rows(run, m, "lyap", [2000], [l1 - 0.1], index=10, **kw))
    return pd.concat(out, ignore_index=True)


def _verdict(mod, df) -> str:
    (c,) = mod.claims(df)
    return c.verdict


def test_claim_8_tiny_baseline_and_jumps_after_episodes():
    assert _verdict(fig8, grad_table(jump=True)) == "reproduced"
    assert _verdict(fig8, grad_table(jump=False)) == "not reproduced"
    big = grad_table()
    big.loc[(big["run_id"] == "none") & (big["metric"] == "grad_h0_norm"), "value"] = 0.05
    assert _verdict(fig8, big) == "not reproduced"
    assert _verdict(fig8, grad_table()[lambda d: d["flossing.schedule"] == "none"]) == "not run"


def test_claim_9_the_gradient_rises_first():
    c = fig9.claims(grad_table(lead=200))[0]
    assert c.verdict == "reproduced"
    assert c.groups[0].parts[0].value == pytest.approx(200, abs=20)
    assert _verdict(fig9, grad_table(lead=-200)) == "not reproduced"
    on = fig9.onsets(grad_table(lead=200, jump=False))
    assert len(on) == NETS and on["t_grad"].tolist() == [300 + 10 * m for m in range(NETS)]
    assert (on["lead"] >= 200).all() and (on["lead"] <= 220).all()   # the accuracy is evaluated every 20 epochs


def test_claim_10_subordinate_singular_values():
    assert _verdict(fig10, sv_table(raise_sub=True)) == "reproduced"
    assert _verdict(fig10, sv_table(raise_sub=False)) == "not reproduced"
    assert [g.label for g in fig10.claims(sv_table())[0].groups] == ["sigma_20", "sigma_40"]


def test_claim_12_drop_after_episodes_and_recovery():
    assert _verdict(fig12, throughout_table(drop=True)) == "reproduced"
    assert _verdict(fig12, throughout_table(drop=False)) == "not reproduced"
    late = fig12.late_episodes(throughout_table())
    assert late["episode"].min() >= 1000 and (late["before_next"] > 0.8).all()


def test_claim_13_learned_networks_on_the_fit_failed_lower():
    assert _verdict(fig13, lyap_table(on_fit=True)) == "reproduced"
    assert _verdict(fig13, lyap_table(on_fit=False)) == "not reproduced"


@pytest.mark.parametrize("mod, table", [(fig8, grad_table), (fig9, grad_table), (fig10, sv_table),
                                        (fig11, sv_table), (fig12, throughout_table), (fig13, lyap_table)])
def test_dynamics_figures_draw(mod, table):
    assert isinstance(mod.plot(table()), Figure)
    assert isinstance(mod.plot(table().iloc[0:0]), Figure)   # an empty table draws empty panels


def test_fig4_runs_carry_the_dynamics_metrics():
    need = metrics_needed("fig4")
    assert {"grad_h0_norm", "grad_W_sv[1]", "grad_W_sv[20]", "grad_W_sv[40]", "lyap[1]", "lyap[10]"} <= need
