"""Figures and the claims report: discovery, plot functions, the figures CLI, verdicts with
their intervals, and the report.

Fig 1 is drawn from a real (tiny) smoke sweep; Figs 3 and 4 and the verdict checks use
tables built here with the trainer's layout (run_id, member, epoch, metric, index, value,
settings), shaped to satisfy or to violate each claim.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flossrepro.store.tables import select_metrics
from matplotlib.figure import Figure

from flossrepro.report import report
from flossrepro.constants import CHANCE
from flossrepro.figures import claims as cl
from flossrepro.figures import discover, experiments, fig1, fig3, fig4, metrics_needed, planned
from flossrepro.figures.__main__ import main as figures_main
from flossrepro.figures.common_task import finals
from flossrepro.figures.data import final, pick_delay

ROOT = Path(__file__).resolve().parents[1]
VERDICTS = set(cl.VERDICTS)


# ----------------------------------------------------------------------------- tables
def _frame(rows, settings: dict) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["member", "epoch", "metric", "index", "value"])
    df["index"] = df["index"].astype("Int64")
    run_id = settings["experiment_name"] + "/" + ",".join(f"{k}={v}" for k, v in settings.items()
                                                          if k in ("flossing.schedule", "task.name", "task.delay",
                                                                   "flossing.k", "flossing.target"))
    df.insert(0, "run_id", run_id)
    for k, v in settings.items():
        df[k] = v
    df["path"] = run_id
    return df


def fig1_table(ok: bool = True, N: int = 8, R: int = 5, E: int = 60, ks=(1, 4, 8),
               targets=(-1.0, -0.5, 0.0, 0.5)) -> pd.DataFrame:
    """Flossing toward each target; ``ok=False`` leaves lambda_1 stuck 0.3 away and the loss flat."""
    rng = np.random.default_rng(0)
    frames = []
    for k in ks:
        for t in targets:
            rows = []
            reach = min(t, 0.0) if ok else t - 0.3     # a positive target is never reached
            for r in range(R):
                lam0 = np.sort(-0.2 - 0.25 * np.arange(N) + 0.02 * rng.standard_normal(N))[::-1]
                after = lam0.copy()
                after[:k] = reach + 0.002 * rng.standard_normal(k) if ok else lam0[:k]
                after[k:] = np.minimum(lam0[k:], reach - 0.3)
                after = np.sort(after)[::-1]
                for e in range(E):
                    frac = np.exp(-e / 8) if ok else 1.0
                    l1 = reach + (lam0[0] - reach) * frac
                    rows.append((r, e, "floss_lambda_1", None, l1))
                    rows.append((r, e, "floss_loss", None, k * (l1 - t) ** 2 + (0 if ok else 0.5)))
                for i in range(N):
                    rows.append((r, 0, "lyap_before_floss", i + 1, lam0[i]))
                    rows.append((r, 0, "lyap_after_floss", i + 1, after[i]))
                    rows.append((r, 0, "lyap", i + 1, after[i]))
                rows.append((r, 0, "init_g", None, rng.uniform()))
            frames.append(_frame(rows, {"experiment_name": "fig1", "scale.name": "smoke", "flossing.schedule": "pre",
                                        "task.name": "copy", "task.delay": 10, "arch.n_hidden": N, "init.g": 1.0,
                                        "flossing.k": k, "flossing.target": t, "seed": 0, "members": R,
                                        "epochs": 0}))
    return pd.concat(frames, ignore_index=True)


def task_table(exp: str, final_value, schedules, tasks, delays, R: int = 3, E: int = 100,
               every: int = 25) -> pd.DataFrame:
    """Test curves relaxing from chance to ``final_value(task, schedule, delay)``."""
    rng = np.random.default_rng(1)
    metric = "test_accuracy" if exp == "fig4" else "test_loss"
    frames = []
    for task in tasks:
        chance = CHANCE[task]
        for s in schedules:
            for d in delays:
                rows = []
                target = final_value(task, s, d)
                for r in range(R):
                    for e in range(0, E + 1, every):
                        v = target + (chance - target) * np.exp(-e / 20) + 1e-3 * rng.standard_normal()
                        rows.append((r, e, metric, None, v))
                        rows.append((r, e, "test_loss", None, abs(v)) if metric != "test_loss" else
                                    (r, e, "train_loss", None, abs(v)))
                    if s != "none":
                        for ep in ([0] if s == "pre" else [0, 40]):
                            rows.append((r, ep, "lyap_after_floss", 1, -0.01))
                            rows.append((r, ep, "floss_loss", None, 0.1))
                frames.append(_frame(rows, {"experiment_name": exp, "scale.name": "small", "flossing.schedule": s,
                                            "task.name": task, "task.delay": d, "arch.n_hidden": 32, "init.g": 1.0,
                                            "flossing.k": 30, "flossing.target": 0.0, "seed": 0, "members": R,
                                            "epochs": E, "task": task, "flossing": s}))
    return pd.concat(frames, ignore_index=True)


def fig3_table(ok: bool = True, delays=(10, 20, 30, 40, 50, 60), schedules=("none", "pre")) -> pd.DataFrame:
    def val(task, s, d):
        c = CHANCE[task]
        if s == "none":
            return 0.02 * c if d <= 20 else c
        return (0.05 * c if d <= 50 else c) if ok else (0.02 * c if d <= 20 else c)
    return task_table("fig3", val, schedules, ["copy", "temporal_xor"], delays)


def fig4_table(ok: bool = True, delays=(10, 20, 30, 40, 50, 60, 70),
               schedules=("none", "pre", "during")) -> pd.DataFrame:
    def val(task, s, d):
        if s == "none":
            return 0.95 if d < 40 else 0.5
        if s == "pre":
            return 0.95 if d < 50 else 0.55
        return 0.9 if ok else 0.52
    return task_table("fig4", val, schedules, ["binary_xor", "spatial_xor"], delays)


@pytest.fixture(scope="module")
def fig1_smoke(tmp_path_factory) -> pd.DataFrame:
    """A real fig1 smoke sweep (k in {1, 4}, target 0), aggregated by the sweep itself (~15 s)."""
    d = tmp_path_factory.mktemp("fig1") / "sweep"
    p = subprocess.run([sys.executable, "-m", "flossrepro", "+experiment=fig1", "scale=smoke", "logger=none",
                        "progress=none", "hydra/launcher=basic", "flossing.k=1,4", "flossing.target=0.0",
                        f"hydra.sweep.dir={d}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return pd.read_parquet(d / "metrics.parquet")


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title(loc="left") for ax in fig.axes]


def _notes(ax) -> str:
    return "\n".join(t.get_text() for t in ax.texts)


# ----------------------------------------------------------------------------- plots
def test_fig1_from_real_smoke_sweep(fig1_smoke):
    fig = fig1.plot(fig1_smoke)
    assert isinstance(fig, Figure)
    t = _titles(fig)
    assert [s[0] for s in t] == ["B", "C", "D"], t
    b, c, d = fig.axes
    assert c.get_yscale() == "log"
    assert "flossing epochs" in b.get_xlabel() and "1/step" in b.get_ylabel()
    # B: a median line for the target present (0) and its dashed target line; the others noted missing
    labels = [l.get_label() for l in b.get_lines()]
    assert [s for s in labels if s.startswith("target")] == ["target 0 (median, n=2)"]
    assert "targets not run: -1, -0.5, 0.5" in _notes(b)
    # D: a vertical marker at i=k for each k
    vx = {l.get_xdata()[0] for l in d.get_lines() if len(set(l.get_xdata())) == 1 and l.get_linestyle() == ":"}
    assert vx == {1, 4}
    assert "scale=smoke" in fig._suptitle.get_text() and "N=8" in fig._suptitle.get_text()


def test_fig1_synthetic_has_every_target_and_k():
    fig = discover()["fig1"].plot(fig1_table())
    b, c, d = fig.axes
    assert len([l for l in b.get_lines() if l.get_label().startswith("target")]) == 4
    assert {l.get_label().split(" ")[0] for l in c.get_lines()} == {"k=1", "k=4", "k=8"}
    assert _notes(b) == ""


@pytest.mark.parametrize("mod, table, letters", [(fig3, fig3_table, "ABCD"), (fig4, fig4_table, "ABCD")])
def test_task_figures_have_all_panels(mod, table, letters):
    fig = mod.plot(table())
    assert isinstance(fig, Figure)
    t = _titles(fig)
    assert [s[0] for s in t] == list(letters), t
    a, b, c, d = fig.axes
    want = 40 if mod is fig3 else 70
    assert f"d={want}" in a.get_title(loc="left")
    n_sched = 2 if mod is fig3 else 3
    # A: median line per schedule + thin line per realization (3 per schedule) + chance
    assert len(a.get_lines()) == n_sched * (1 + 3) + 1
    # C: one line per schedule, one dot collection and one percentile band per schedule (the captions' mean
    # with a 20-80% band: Fig 3's, which Fig 4 keeps as "same plotting conventions")
    assert len([l for l in c.get_lines() if "per delay" in l.get_label()]) == n_sched
    assert len([l for l in c.get_lines() if "(mean" in l.get_label()]) == n_sched
    assert len(c.collections) == n_sched * 2
    assert any("chance" in l.get_label() for l in c.get_lines())
    assert "delay d (steps)" == c.get_xlabel() and "training epochs" == a.get_xlabel()


def test_task_figures_draw_what_is_there_and_say_what_is_missing():
    df = fig3_table(delays=(10, 20, 30))
    df = df[~((df["task.name"] == "temporal_xor") & (df["flossing.schedule"] == "pre"))]
    a, b, c, d = fig3.plot(df).axes
    assert "d=30" in a.get_title(loc="left") and "d=40 not in table" in _notes(a)
    assert "pre: not run" in _notes(b) and "pre: not run" in _notes(d)
    assert "40, 50, 60" in _notes(c)
    # a table without one task at all still draws, with an empty-panel note
    only_binary = fig4_table()
    only_binary = only_binary[only_binary["task.name"] == "binary_xor"]
    a, b, c, d = fig4.plot(only_binary).axes
    assert "spatial_xor" in _notes(b) and "spatial_xor" in _notes(d)


def test_final_is_the_last_evaluation_and_failures_count():
    df = fig3_table()
    f = final(df, "test_loss")
    assert (f["epoch"] == 100).all() and len(f) == 2 * 2 * 6 * 3
    df.loc[(df["epoch"] == 100) & (df["member"] == 0), "value"] = np.nan
    m = finals(df, "test_loss", "copy", fail_value=np.inf).groupby(["task.delay", "flossing.schedule"])["value"].median()
    assert np.isfinite(m.values).all()      # 2 of 3 members finite: the median stays finite
    assert pick_delay([10, 30], 40) == 30 and pick_delay([10, 50], 30) == 50 and pick_delay([10, 20], None) == 20


# ----------------------------------------------------------------------------- CLI
def test_figures_cli_writes_png_pdf_and_reports_missing(tmp_path, capsys):
    """``python -m flossrepro.figures`` (its main, in-process: a fresh interpreter costs ~10 s of imports)."""
    res = tmp_path / "results"
    (res / "fig3").mkdir(parents=True)
    fig3_table(delays=(20, 40)).to_parquet(res / "fig3" / "metrics.parquet", index=False)
    assert figures_main(["--results", str(res), "--only", "fig3", "fig4", "--dpi", "60"]) == 0
    out = capsys.readouterr().out
    assert (res / "fig3" / "fig3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (res / "fig3" / "fig3.png").stat().st_size > 10_000
    assert (res / "fig3" / "fig3.pdf").read_bytes()[:4] == b"%PDF"
    assert "fig3: wrote" in out
    assert "fig4: no" in out and "scripts/reproduce.sh fig4 small" in out and "skipped 1 (fig4)" in out
    assert not (res / "fig4").exists()
    assert figures_main(["--results", str(res), "--only", "fig99"]) == 2   # no such figure
    # a table that cannot be drawn fails loudly (exit 1) but does not stop the others
    (res / "fig4").mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(res / "fig4" / "metrics.parquet")
    assert figures_main(["--results", str(res), "--only", "fig4", "fig1"]) == 1
    out = capsys.readouterr().out
    assert "fig4: FAILED" in out and "fig1: no" in out


# ----------------------------------------------------------------------------- discovery
def test_every_experiment_has_a_figure_module_and_every_module_a_real_experiment():
    """Fails when an experiment yaml has no figure module reading it, or a figure module names
    an experiment that does not exist."""
    figs, exps = discover(), experiments()
    assert figs and exps
    read = {e for m in figs.values() for e in m.EXPERIMENTS}
    assert sorted(set(exps) - read) == [], "experiments without a figure module"
    assert sorted(read - set(exps)) == [], "figure modules naming experiments that do not exist"


def test_figure_modules_declare_what_they_own():
    for name, mod in discover().items():
        assert isinstance(mod.EXPERIMENTS, tuple) and mod.EXPERIMENTS, name
        assert isinstance(mod.STUDY, str) and mod.TITLE and mod.PANELS, name
        assert mod.METRICS is None or (isinstance(mod.METRICS, tuple) and mod.METRICS), name
        if mod.STUDY == "lowrank":  # the low-rank study numbers its claims LR1..LR7 (SPEC-lowrank)
            assert all(re.fullmatch(r"LR\d", cid) and text for cid, text in mod.CLAIMS.items()), name
            assert set(mod.CLAIM_PANELS) == set(mod.CLAIMS) and set(mod.CLAIM_PANELS.values()) <= set(mod.PANELS), name
            continue
        num = getattr(mod, "CLAIM_PREFIX", name.removeprefix("fig"))  # table1: T1A..
        for cid, text in mod.CLAIMS.items():
            assert cid.startswith(num) and cid[len(num)] in mod.PANELS and text, (name, cid)
    assert not hasattr(sys.modules["flossrepro.figures"], "FIGURES")
    # the report's figure map names every claim on its panel, the low-rank ones included
    from flossrepro.report.report import figure_map
    fmap = "\n".join(figure_map())
    for mod in discover().values():
        for cid in mod.CLAIMS:
            assert re.search(rf"\| (?:[^|\n]*, )?{re.escape(cid)}(?:, [^|\n]*)? \|$", fmap, re.M), cid
    assert {"test_accuracy", "lyap_after_floss[1]"} <= metrics_needed("fig4")
    assert metrics_needed("fig1") == {"floss_lambda_1@5", "floss_loss@5", "lyap_before_floss", "lyap_after_floss"}
    assert metrics_needed("no_such_experiment") == set()


def test_sweep_values_come_from_the_experiment_yaml():
    assert planned("fig4", "task.delay", "paper") == [10, 20, 30, 40, 50, 60, 70]
    assert planned("fig4", "task.delay", "small") == [10, 40, 70]
    assert planned("fig1", "flossing.k", "smoke") == [1, 4, 8]
    assert planned("fig1", "flossing.target", "small") == [-1.0, -0.5, 0.0, 0.5]
    assert planned("fig3", "no.such.key") == [] and planned("nope", "task.delay") == []
    for mod in discover().values():
        assert not any(hasattr(mod, a) for a in ("DELAYS", "TARGETS", "KS")), mod.__name__


@pytest.mark.parametrize("mod, table", [(fig1, lambda: fig1_table()), (fig3, lambda: fig3_table()),
                                        (fig4, lambda: fig4_table())])
def test_figure_modules_read_only_their_declared_metrics(mod, table):
    full = table()
    only = select_metrics(full, mod.METRICS)
    undeclared = full[~full["metric"].isin(set(only["metric"]))]   # rows of metrics the module does not declare
    a, b = mod.claims(pd.concat([only, undeclared], ignore_index=True)), mod.claims(only)
    assert [(c.id, c.verdict, c.measured()) for c in a] == [(c.id, c.verdict, c.measured()) for c in b]
    assert isinstance(mod.plot(only), Figure)


# ----------------------------------------------------------------------------- verdict rules
def _verdicts(claims) -> dict[str, str]:
    return {c.id: c.verdict for c in claims}


def test_a_verdict_needs_the_whole_interval_on_one_side():
    rng = cl.rng_for("t")
    nets = [("r", i) for i in range(5)]
    yes = cl.part("m", [0.9, 0.91, 0.92, 0.93, 0.95], np.median, ">", 0.8, nets, rng)
    no = cl.part("m", [0.5, 0.6, 0.62, 0.65, 0.7], np.median, ">", 0.8, nets, rng)
    maybe = cl.part("m", [0.7, 0.75, 0.85, 0.9, 0.95], np.median, ">", 0.8, nets, rng)
    assert (yes.verdict, no.verdict, maybe.verdict) == (cl.REPRODUCED, cl.NOT_REPRODUCED, cl.INCONCLUSIVE)
    assert maybe.lo < 0.8 < maybe.hi and yes.lo > 0.8 and no.hi <= 0.8
    assert yes.n == 5 and maybe.n_needed() > 5 and yes.n_needed() is None
    # the same claim id gives the same interval, whatever ran before
    again = cl.part("m", [0.7, 0.75, 0.85, 0.9, 0.95], np.median, ">", 0.8, nets, cl.rng_for("t"))
    first = cl.part("m", [0.7, 0.75, 0.85, 0.9, 0.95], np.median, ">", 0.8, nets, cl.rng_for("t"))
    assert (again.lo, again.hi) == (first.lo, first.hi)
    # groups need all parts; claims need all (or any) groups; missing parts are unknown
    G = cl.Group
    assert cl.Claim("x", "", [G("a", [yes]), G("b", [maybe])]).verdict == cl.INCONCLUSIVE
    assert cl.Claim("x", "", [G("a", [yes]), G("b", [no])]).verdict == cl.NOT_REPRODUCED
    assert cl.Claim("x", "", [G("a", [no]), G("b", [yes])], over="any").verdict == cl.REPRODUCED
    assert cl.Claim("x", "", [G("a", [no]), G("b", [maybe])], over="any").verdict == cl.INCONCLUSIVE
    assert cl.Claim("x", "", [G("a", [yes])], missing="k=4").verdict == cl.NOT_RUN
    assert cl.Claim("x", "", [G("a", [no])], missing="k=4").verdict == cl.NOT_REPRODUCED
    assert cl.Claim("x", "", [G("a", [yes, yes])]).n == 5
    c = cl.Claim("x", "", [G("a", [yes]), G("b", [maybe])])
    assert c.deciding().label == "b" and "networks" in c.decide_line() and c.n_needed() > 5


def test_smoke_scale_is_never_evidence():
    smoke = fig1_table()                                   # scale.name = smoke
    out = cl.evaluate(fig1, smoke)
    assert {c.verdict for c in out} == {cl.NOT_RUN} and all(c.not_evidence and c.groups for c in out)
    small = fig3_table()
    mixed = pd.concat([small, small.assign(**{"scale.name": "smoke", "run_id": small["run_id"] + "/smoke",
                                              "value": 1.0})], ignore_index=True)
    assert _verdicts(cl.evaluate(fig3, mixed)) == _verdicts(fig3.claims(small))
    assert {c.verdict for c in cl.evaluate(fig4, None, "no table")} == {cl.NOT_RUN}


def test_fig1_verdicts():
    assert _verdicts(fig1.claims(fig1_table(ok=True))) == {
        "1B": "reproduced", "1B+": "reproduced", "1C": "reproduced", "1D": "reproduced"}
    bad = _verdicts(fig1.claims(fig1_table(ok=False)))
    assert bad["1B"] == bad["1C"] == bad["1D"] == "not reproduced", bad
    # +0.5 stuck 0.3 below the target: still "not reached", as the paper says
    assert bad["1B+"] == "reproduced"
    # planned targets -1 and -0.5 (fig1.yaml) not in the table: 1B cannot be decided
    missing = {c.id: c for c in fig1.claims(fig1_table(targets=(0.0, 0.5)))}
    assert missing["1B"].verdict == "not run" and "-1, -0.5" in missing["1B"].missing
    c = {x.id: x for x in fig1.claims(fig1_table())}
    assert c["1B"].n == 15 and c["1C"].n == 15 and c["1B+"].n == 5


def test_1d_includes_k_equal_n_and_checks_the_gap():
    c = {x.id: x for x in fig1.claims(fig1_table(ks=(1, 8)))}["1D"]
    assert [gr.label for gr in c.groups] == ["k=1", "k=8 (= N)"] and "k=4" in c.missing
    assert [len(gr.parts) for gr in c.groups] == [2, 1]       # k = N: no lambda_(k+1) to compare
    df = fig1_table(ks=(4,))
    # close the gap: lambda_5 as high as lambda_4 -> not reproduced
    sel = (df["metric"] == "lyap_after_floss") & (df["index"] == 5)
    df.loc[sel, "value"] = df.loc[(df["metric"] == "lyap_after_floss") & (df["index"] == 4), "value"].to_numpy()
    assert _verdicts(fig1.claims(df))["1D"] == "not reproduced"


def test_fig3_fig4_verdicts():
    assert _verdicts(fig3.claims(fig3_table(ok=True))) == {"3C": "reproduced", "3D": "reproduced"}
    assert _verdicts(fig3.claims(fig3_table(ok=False))) == {"3C": "not reproduced", "3D": "not reproduced"}
    assert _verdicts(fig4.claims(fig4_table(ok=True))) == {"4C": "reproduced", "4D": "reproduced"}
    assert _verdicts(fig4.claims(fig4_table(ok=False))) == {"4C": "not reproduced", "4D": "not reproduced"}
    assert _verdicts(fig4.claims(fig4_table(schedules=("none", "pre")))) == {"4C": "not run", "4D": "not run"}
    c = {x.id: x for x in fig3.claims(fig3_table(ok=True))}
    assert [gr.label for gr in c["3C"].groups if gr.verdict == "reproduced"] == ["d=30", "d=40", "d=50"]
    assert "pre d=50" in c["3D"].measured() and c["3D"].n == 36
    # 4C reads the largest delay of the sweep and the baseline at every planned delay >= 40
    # (fig4.yaml at small scale: 10, 40, 70)
    c4 = {x.id: x for x in fig4.claims(fig4_table(ok=True))}
    assert [gr.label for gr in c4["4C"].groups] == ["d=70", "baseline d=40", "baseline d=70"]
    pre_wins = task_table("fig4", lambda t, s, d: 0.95 if s == "pre" else 0.9 if s == "during" else 0.5,
                          ("none", "pre", "during"), ["binary_xor", "spatial_xor"], (10, 40, 70))
    assert _verdicts(fig4.claims(pre_wins))["4C"] == "not reproduced"   # during must beat pre at d=70
    lacking = fig4_table(delays=(10, 30, 50))
    assert _verdicts(fig4.claims(lacking))["4C"] == "not run"


def test_a_straddling_interval_is_inconclusive_and_says_how_many_networks_decide_it():
    df = fig4_table(ok=True)
    sel = (df["task.name"] == "spatial_xor") & (df["flossing.schedule"] == "during") & (df["epoch"] == 100)
    spread = {0: 0.7, 1: 0.85, 2: 0.95}                      # median 0.85, interval across 0.8
    df.loc[sel, "value"] = df.loc[sel, "member"].map(spread)
    c = {x.id: x for x in fig4.claims(df)}["4D"]
    assert c.verdict == "inconclusive" and c.n_needed() > 6
    assert "would decide it" in c.decide_line()


def test_report_flags_a_pre_run_with_several_episodes():
    df = fig4_table()
    assert report.schedule_checks(df) == []
    df.loc[df["flossing.schedule"] == "pre", "flossing.schedule"] = "pre_"   # relabel: during runs -> "pre"
    df.loc[df["flossing.schedule"] == "during", "flossing.schedule"] = "pre"
    assert any("'pre'" in w for w in report.schedule_checks(df))


# ----------------------------------------------------------------------------- report
def test_report_cli_writes_report_with_intervals_and_not_run(tmp_path, fig1_smoke, capsys):
    res = tmp_path / "results"
    (res / "fig3").mkdir(parents=True)
    (res / "fig1").mkdir()
    fig3_table().to_parquet(res / "fig3" / "metrics.parquet", index=False)
    fig1_smoke.to_parquet(res / "fig1" / "metrics.parquet", index=False)
    (res / "fig3" / "fig3.png").write_bytes(b"\x89PNG\r\n\x1a\n")   # newer than the table: not redrawn
    (res / "fig3" / "provenance.json").write_text('{"command": "scripts/reproduce.sh fig3 small", "scale": "small", '
                                                  '"git_commit": "abc1234", "wall_s": "4321"}')
    assert report.main(["--results", str(res), "--no-draw", "--map"]) == 0
    assert "| Fig 4C |" in capsys.readouterr().out
    text = (res / "REPORT.md").read_text()
    lines = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ") and "**" in line}
    every = {cid for m in discover().values() if m.STUDY == "flossing" for cid in m.CLAIMS}
    assert set(lines) == every and {"1B", "1B+", "1C", "1D", "2A", "2A+", "2B", "2C", "3C", "3D", "4C", "4D",
                                    "16A"} <= every
    assert lines["3C"].endswith("**reproduced** |") and lines["3D"].endswith("**reproduced** |")
    assert all(lines[c].endswith("**not run** |") for c in ("4C", "4D", "1B", "1B+", "1C", "1D", "2A", "16A"))
    assert all(line.rsplit("**", 2)[-2] in VERDICTS for line in lines.values())
    # each row: id (link to the figure's page) | claim | the paper says | number [interval] | networks | scale | verdict
    cells = [c.strip() for c in lines["3C"].split("|")[1:-1]]
    assert len(cells) == 7 and cells[1].startswith("[details](fig3.md#3c): ") and "[" in cells[3] and cells[4] == "36"
    assert cells[5] == "small, N=32" and "d=20" in cells[2]
    assert "smoke scale" in lines["1C"] and "smoke" in lines["1C"].split("|")[6]
    assert "| Fig 3C |" in text and "`flossrepro/figures/fig3.py`" in text and len(text.splitlines()) <= 150
    page3, page1 = (res / "fig3.md").read_text(), (res / "fig1.md").read_text()
    assert "![fig3](fig3/fig3.png)" in page3 and "figure not drawn: run `python -m flossrepro.figures --only fig1`" in page1
    assert "abc1234" in page3 and "4321 s" in page3 and "The paper (Sec 6, Fig 3C" in page3
    assert "scripts/reproduce.sh fig4 small" in (res / "fig4.md").read_text()
    assert report.main(["--results", str(tmp_path / "nope")]) == 2
    assert report.main(["--results", str(res), "--study", "nope"]) == 2


def test_report_draws_a_missing_figure(tmp_path):
    res = tmp_path / "results"
    (res / "fig4").mkdir(parents=True)
    fig4_table(delays=(60, 70)).to_parquet(res / "fig4" / "metrics.parquet", index=False)
    text = report.build(res)["fig4.md"]
    assert (res / "fig4" / "fig4.png").exists() and (res / "fig4" / "fig4.pdf").exists()
    assert "![fig4](fig4/fig4.png)" in text and "fig4: no provenance.json" in text
    assert report.report_name("lowrank") == "REPORT-lowrank.md" and report.report_name("flossing") == "REPORT.md"
