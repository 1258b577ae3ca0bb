"""The low-rank study's figure modules: verdicts on tables shaped to satisfy or to violate each claim."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from flossrepro.figures import claims as cl
from flossrepro.figures import discover, lr_floss, lr_gsweep, lr_linear, lr_nscale, lr_optim, lr_tasks
from flossrepro.store.resolvers import linear_lr

SCALAR = ("convergence_epoch", "functional_rank", "final_loss", "loss_W0", "shuffle_loss", "dW_norm", "W0_norm",
          "dW_rel_norm", "dW_effective_rank", "lambda1_init")


def _net_rows(run_id: str, member: int, settings: dict, vals: dict, epochs: int = 100) -> list[dict]:
    base = dict(run_id=run_id, member=member, **settings, epochs=epochs)
    out = [dict(base, epoch=0, metric="train_loss", index=pd.NA, value=vals.get("L0", 0.1)),
           dict(base, epoch=epochs - 1, metric="train_loss", index=pd.NA, value=vals.get("L0", 0.1) * 0.01)]
    for m in SCALAR:
        if m in vals:
            out.append(dict(base, epoch=epochs, metric=m, index=pd.NA, value=vals[m]))
    for i, v in enumerate(vals.get("sv", [1.0, 0.5, 0.1]), 1):
        out.append(dict(base, epoch=epochs, metric="dW_sv", index=i, value=v))
    # eigenvalues: W0 on the unit circle, W the same plus two outliers at 2 (within the bulk radius + 0.1: none)
    ang = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    eigs = {"eig_W0": np.exp(1j * ang), "eig_W": np.concatenate([np.exp(1j * ang[:4]), [2.0, 2.0]])}
    for name, ev in eigs.items():
        for i, v in enumerate(ev, 1):
            out.append(dict(base, epoch=epochs, metric=f"{name}_re", index=i, value=float(np.real(v))))
            out.append(dict(base, epoch=epochs, metric=f"{name}_im", index=i, value=float(np.imag(v))))
    return out


def _frame(rows: list[dict], scale: str = "small") -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["scale.name"] = scale
    df["index"] = df["index"].astype("Int64")
    return df


def _gsweep_table(u_shaped: bool, n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for task in ("flipflop", "mante", "romo"):
        for g in (0.0, 0.6, 0.9, 1.5, 2.1):
            conv = (100 + 200 * (g - 0.9) ** 2) if u_shaped else 100 + 50 * g
            for r in range(n):
                vals = dict(convergence_epoch=conv + rng.normal(0, 5), functional_rank=3.0, final_loss=1e-4,
                            loss_W0=0.05, shuffle_loss=0.1 * min(g, 1.0) + rng.normal(0, 0.002), dW_norm=1.0,
                            W0_norm=g * 8, dW_rel_norm=1 / max(g * 8, 1e-3), dW_effective_rank=5.0,
                            lambda1_init=np.log(0.5 + 0.5 * g), L0=0.1)
                rows += _net_rows(f"{task}/g={g}", r, {"task.name": task, "init.g": g}, vals, epochs=1000)
    return _frame(rows)


def test_lr2_lr3_verdicts():
    good = {c.id: c.verdict for c in lr_gsweep.claims(_gsweep_table(True))}
    bad = {c.id: c.verdict for c in lr_gsweep.claims(_gsweep_table(False))}
    assert good == {"LR2": cl.REPRODUCED, "LR3": cl.REPRODUCED}
    assert bad["LR2"] == cl.NOT_REPRODUCED
    assert isinstance(lr_gsweep.plot(_gsweep_table(True)), Figure)


def test_lr1_counts_unsolved_and_above_rank_max():
    df = _gsweep_table(True)
    assert lr_tasks.claims(df)[0].verdict == cl.REPRODUCED
    # a functional rank above rank_max (NaN for a solving network) counts as 26 and fails the claim
    df2 = df.copy()
    df2.loc[df2["metric"] == "functional_rank", "value"] = np.nan
    assert lr_tasks.claims(df2)[0].verdict == cl.NOT_REPRODUCED
    # networks whose full W does not reach 5% of loss(W0) have no functional rank: nothing measured
    df3 = df.copy()
    df3.loc[df3["metric"] == "final_loss", "value"] = 1.0
    assert lr_tasks.claims(df3)[0].verdict != cl.REPRODUCED
    assert isinstance(lr_tasks.plot(df), Figure)


def _linear_table(exponent_dw: float = 1.0, n: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for z in (0.5, 1.0, 2.0):
        for g in np.round(np.arange(0, 1.0, 0.1), 1):
            for r in range(n):
                # convergence epochs are g-independent when lr = lr0 (1 - g^2)^2; ||dW|| ~ (1 - g^2)^exponent
                conv = 40 + rng.normal(0, 0.3)
                vals = dict(convergence_epoch=conv, dW_norm=z * (1 - g ** 2) ** exponent_dw * (1 + rng.normal(0, 0.01)),
                            shuffle_loss=0.5 * z ** 2 * g ** 4 * (2 - g ** 2) ** 2 * (1 + rng.normal(0, 0.01)),
                            final_loss=1e-6, loss_W0=1.0, functional_rank=2.0, L0=0.5 * z ** 2, W0_norm=g * 30,
                            dW_rel_norm=0.1, dW_effective_rank=1.5, lambda1_init=-0.5)
                rows += _net_rows(f"z={z}/g={g}", r, {"task.name": "linear_fp", "init.g": g, "task.target_amp": z},
                                  vals, epochs=200)
    return _frame(rows)


def test_lr5_theory_against_simulation():
    assert lr_linear.claims(_linear_table(1.0))[0].verdict == cl.REPRODUCED
    assert lr_linear.claims(_linear_table(2.0))[0].verdict == cl.NOT_REPRODUCED   # ||dW|| ~ (1 - g^2)^2: wrong
    e = lr_linear.relative_errors(lr_linear._table(_linear_table(1.0)))
    assert set(e["relation"]) == {"conv", "dW_norm", "shuffle_rel"} and (e["g"] > 0).all()
    assert float(e["rel_error"].abs().max()) < 0.05
    assert isinstance(lr_linear.plot(_linear_table(1.0)), Figure)
    assert linear_lr(1.0, 0.5) == pytest.approx(0.009 * 0.75 ** 2)


def _nscale_table(grow: bool) -> pd.DataFrame:
    rows = []
    for g in (0.0, 0.9, 1.8):
        for N in (32, 64, 128, 256):
            for r in range(4):
                dw = 1.0 * (N / 32) ** (0.5 if grow else 0.0) * (1 + 0.01 * r)
                w0 = g * np.sqrt(N)
                vals = dict(dW_norm=dw, W0_norm=w0, dW_rel_norm=dw / w0 if w0 else np.nan, functional_rank=4.0,
                            final_loss=1e-4, loss_W0=0.05, convergence_epoch=50.0, dW_effective_rank=5.0,
                            shuffle_loss=0.05, lambda1_init=-0.1)
                rows += _net_rows(f"g={g}/N={N}", r, {"task.name": "flipflop", "init.g": g, "arch.n_hidden": N}, vals)
    return _frame(rows)


def test_lr4_n_scaling():
    assert lr_nscale.claims(_nscale_table(False))[0].verdict == cl.REPRODUCED
    assert lr_nscale.claims(_nscale_table(True))[0].verdict == cl.NOT_REPRODUCED
    assert isinstance(lr_nscale.plot(_nscale_table(False)), Figure)


def _compare_table(col: str, conds: tuple, higher: str | None) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = []
    key = "optim.name" if col == "optim" else "flossing.schedule"
    for c in conds:
        for g in (0.9, 1.8):
            for r in range(6):
                er = (8.0 if c == higher else 5.0) + rng.normal(0, 0.3 if higher else 1.0)
                vals = dict(dW_effective_rank=er, functional_rank=4.0, final_loss=1e-4, loss_W0=0.05,
                            convergence_epoch=50.0, dW_norm=1.0, W0_norm=8.0, dW_rel_norm=0.1, shuffle_loss=0.05,
                            lambda1_init=-0.1)
                rows += _net_rows(f"{c}/g={g}", r, {"task.name": "flipflop", "init.g": g, key: c}, vals)
    return _frame(rows)


def test_lr6_lr7_answers():
    assert lr_optim.claims(_compare_table("optim", ("adam", "sgd", "sgdm"), None))[0].verdict == cl.INCONCLUSIVE
    hi = _compare_table("optim", ("adam", "sgd", "sgdm"), "sgd")
    assert lr_optim.claims(hi)[0].verdict == cl.INCONCLUSIVE        # sgd higher, sgdm no difference resolved
    lo = _compare_table("optim", ("adam", "sgd", "sgdm"), "adam")
    assert lr_optim.claims(lo)[0].verdict == cl.NOT_REPRODUCED      # both SGD variants lower than Adam
    assert lr_floss.claims(_compare_table("floss", ("none", "pre", "during"), "none"))[0].verdict == cl.NOT_REPRODUCED
    assert isinstance(lr_optim.plot(hi), Figure)
    assert isinstance(lr_floss.plot(_compare_table("floss", ("none", "pre", "during"), "during")), Figure)


def test_smoke_tables_are_never_evidence_and_modules_belong_to_the_study():
    df = _gsweep_table(True)
    df["scale.name"] = "smoke"
    assert all(c.verdict == cl.NOT_RUN for c in cl.evaluate(lr_gsweep, df))
    mods = [m for m in discover().values() if m.STUDY == "lowrank"]
    assert sorted(c for m in mods for c in m.CLAIMS) == [f"LR{i}" for i in range(1, 8)]
