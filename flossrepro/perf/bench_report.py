"""The benchmark's targets and its text report: :data:`TARGETS` (per core) and the issue's
anchors (:data:`ANCHOR`), :func:`check_targets`, and :func:`format_report` /
:func:`format_gated_report`, the text of ``results/bench.txt`` / ``bench_gated.txt``."""
from __future__ import annotations

__all__ = ["ANCHOR", "TARGETS", "check_targets", "peak_and_peer_targets", "format_report", "format_gated_report"]

# the performance issue's anchors, measured on its machine: a straightforward eager PyTorch
# version (24 / 114 ms) and the arithmetic at that core's matmul rate (1.2 / 12 ms for
# 0.188 / 1.858 GFLOP, i.e. ~155 GFLOP/s)
ANCHOR = {"eager_train_epoch_ms": 24.0, "eager_floss_epoch_ms": 114.0, "matmul_gflops": 155.0}

# per core, unloaded machine (ms per epoch, single network unless stated)
TARGETS = {
    "train_epoch_ms": 6.5, "train_speedup_vs_eager": 3.5, "train_epoch_ms_goal": 3.6,
    "floss_epoch_ms": 70.0, "floss_speedup_vs_eager": 1.6, "floss_epoch_ms_goal": 36.0,
    "floss_epoch_ms_paper": 74.0,
    # fractions of the core's fp32 peak (peak_gflops) and the JAX peer's time over the engine's
    "train_fraction_of_peak_goal": 0.40, "floss_fraction_of_peak_goal": 0.50,
    "native_gemm_fraction_of_peak": 0.70,
    "jax_over_engine_train": 1.3, "jax_over_engine_floss": 2.0,
}


def check_targets(res: dict) -> dict:
    """Each target: measured value, limit, met (the absolute ones are for an unloaded core)."""
    T_, sp = TARGETS, res["speedup_engine_over_eager"]
    rows = {
        "train_epoch_ms <= %.1f" % T_["train_epoch_ms"]: (res["train_epoch_ms"], T_["train_epoch_ms"], "<="),
        "train speedup vs eager >= %.1f" % T_["train_speedup_vs_eager"]: (sp["train"], T_["train_speedup_vs_eager"], ">="),
        "floss_epoch_ms (T_f=300) <= %.0f" % T_["floss_epoch_ms"]: (res["floss_epoch_ms"], T_["floss_epoch_ms"], "<="),
        "floss speedup vs eager >= %.1f" % T_["floss_speedup_vs_eager"]: (sp["floss_T300"], T_["floss_speedup_vs_eager"], ">="),
        "floss_epoch_ms < paper's %.0f" % T_["floss_epoch_ms_paper"]: (res["floss_epoch_ms"], T_["floss_epoch_ms_paper"], "<"),
        "goal: train_epoch_ms <= %.1f" % T_["train_epoch_ms_goal"]: (res["train_epoch_ms"], T_["train_epoch_ms_goal"], "<="),
        "goal: floss_epoch_ms <= %.0f" % T_["floss_epoch_ms_goal"]: (res["floss_epoch_ms"], T_["floss_epoch_ms_goal"], "<="),
        "ensemble train per member / single <= 1": (res["ensemble_per_member_over_single"]["train"], 1.0, "<="),
        "ensemble floss (T_f=300) per member / single <= 1": (res["ensemble_per_member_over_single"]["floss_T300"],
                                                             1.0, "<="),
        "ensemble floss (T_f=55) per member / single <= 1": (res["ensemble_per_member_over_single"]["floss_T55"],
                                                            1.0, "<="),
    }
    rows.update(peak_and_peer_targets(res))
    # the absolute limits scaled by this machine's speed relative to the anchor machine
    # (same-run eager epoch / the anchor's eager epoch); informational, not the targets
    fac = res["machine_factor_vs_anchor"]
    for name, key, f in (("train_epoch_ms", "train_epoch_ms", "train"), ("floss_epoch_ms (T_f=300)", "floss_epoch_ms", "floss"),
                         ("goal: train_epoch_ms", "train_epoch_ms", "train"), ("goal: floss_epoch_ms", "floss_epoch_ms", "floss")):
        lim = T_[key + ("_goal" if name.startswith("goal") else "")] * fac[f]
        rows[f"scaled to this core (x{fac[f]:.2f}): {name} <= {lim:.1f}"] = (res[key], lim, "<=")
    return _target_rows(rows)


_OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b}


def _target_rows(rows: dict) -> dict:
    """``name -> (value, limit, op[, note])`` as target entries; a ``None`` value (not measured
    here) gives ``met: None`` and its note."""
    out = {}
    for name, (v, lim, op, *note) in rows.items():
        out[name] = {"value": v, "limit": lim, "met": None if v is None else bool(_OPS[op](v, lim)),
                     "scaled": name.startswith("scaled")}
        if note and v is None:
            out[name]["note"] = note[0]
    return out


def peak_and_peer_targets(res: dict) -> dict:
    """The targets against the core's peak (values in percent of ``peak_gflops``) and the JAX
    peer's (its time over the engine's): ``name -> (value or None, limit, op, note)``. The GEMM
    row only where the native kernels time their GEMM (``gemm_shapes``)."""
    T_, fp = TARGETS, res.get("fraction_of_peak", {})
    pct = lambda k: 100 * fp[k] if k in fp else None  # noqa: E731
    rows = {
        "goal: train epoch >= %.0f%% of peak" % (100 * T_["train_fraction_of_peak_goal"]):
            (pct("train"), 100 * T_["train_fraction_of_peak_goal"], ">=", "not measured"),
        "goal: floss epoch (T_f=300) >= %.0f%% of peak" % (100 * T_["floss_fraction_of_peak_goal"]):
            (pct("floss"), 100 * T_["floss_fraction_of_peak_goal"], ">=", "not measured"),
        "goal: floss epoch (T_f=55) >= %.0f%% of peak" % (100 * T_["floss_fraction_of_peak_goal"]):
            (pct("floss_tf55"), 100 * T_["floss_fraction_of_peak_goal"], ">=", "not measured"),
    }
    g = res.get("gemm_shapes")
    if g:
        fr = [r["native_fraction_of_peak"] for r in g]
        rows["native GEMMs at engine shapes >= %.0f%% of peak (min)" % (100 * T_["native_gemm_fraction_of_peak"])] = (
            None if None in fr else 100 * min(fr), 100 * T_["native_gemm_fraction_of_peak"], ">=", "a shape failed")
    jax_note = "jax not installed" if not (res.get("jax") or {}).get("installed") else "not measured"
    rows["JAX / engine >= %.1f train" % T_["jax_over_engine_train"]] = (
        res.get("jax_train_ratio"), T_["jax_over_engine_train"], ">=", jax_note)
    rows["JAX / engine >= %.0f floss (T_f=300)" % T_["jax_over_engine_floss"]] = (
        res.get("jax_floss_ratio"), T_["jax_over_engine_floss"], ">=", jax_note)
    rows["JAX / engine >= %.0f floss (T_f=55)" % T_["jax_over_engine_floss"]] = (
        res.get("jax_floss_ratio_tf55"), T_["jax_over_engine_floss"], ">=", jax_note)
    return rows


def format_report(res: dict) -> str:
    L = []
    m = res["machine"]
    L.append(f"flossrepro.perf.bench  torch {res['torch_version']}  threads {res['threads']}  "
             f"{m['cpu_model']}  ({res['timestamp']}, {res['git_commit'][:12]}, "
             f"load {m['loadavg_at_start']} -> {m.get('loadavg_at_end')})")
    L.append(f"device {res.get('device', 'cpu')}{' (' + res['gpu'] + ')' if res.get('gpu') else ''}; "
             f"native kernels: {res.get('native', 'n/a')}")
    aff = m.get("cpu_affinity")
    L.append(f"CPU {m['cpu_model']}; ISA {m.get('isa', 'unknown')}"
             + (f"; pinned to CPU {aff[0]}" if aff and len(aff) == 1 and (m.get("cpu_count") or 1) > 1 else "")
             + (f"; native kernels' ISA: {res['native_isa']}" if res.get("native_isa") else ""))
    if "peak_gflops" in res:
        L.append(f"fp32 peak, 1 thread: {res['peak_gflops']:.1f} GFLOP/s ({res['peak_source']}), the best of: "
                 + ", ".join(f"{k} {'n/a' if v is None else f'{v:.1f}'}"
                             for k, v in res["peak_candidates_gflops"].items()))
    L.append(f"matmul {'1024' if res.get('device', 'cpu') == 'cpu' else '8192'}^3 fp32: {res['matmul_gflops']:.1f} GFLOP/s   "
             f"bmm 80x80x75: {res['small_bmm_gflops_80x80x75']:.1f} GFLOP/s   "
             f"torch.linalg.qr 80x75: {res['torch_qr_80x75_us']:.0f} us (best {res['torch_qr_80x75_min_us']:.0f})")
    L.append("")
    L.append("times: median wall ms over epochs (min in brackets), median thread CPU ms of the engine;")
    L.append("engine, eager and ensemble epochs of a row group run round-robin, each timed epoch right after an")
    L.append("untimed one of its own kind (as in a training loop); eager/eng = median of paired ratios")
    hdr = (f"{'epoch (float32, 1 thread)':42s} {'engine ms':>16s} {'cpu ms':>7s} {'eager ms':>16s} {'eager/eng':>9s} "
           f"{'GFLOP':>7s} {'GFLOP/s':>8s} {'%peak':>6s}")
    L.append(hdr)
    L.append("-" * len(hdr))
    tm = res["timings"]
    pk = res.get("peak_gflops", res["matmul_gflops"])

    def line(label, group, flops, per=1, eager=True, name="engine"):
        e = tm[group][name]
        g = flops / (e["median_ms"] / per * 1e-3) / 1e9
        eng = f"{e['median_ms'] / per:8.1f} ({e['min_ms'] / per:5.1f})"
        if eager:
            a = tm[group]["eager"]
            eag = f"{a['median_ms']:8.1f} ({a['min_ms']:5.1f})"
            ratio = f"{a['paired_ratio_to_engine']:9.2f}"
        else:
            eag, ratio = f"{'':16s}", f"{'':9s}"
        L.append(f"{label:42s} {eng:>16s} {e['cpu_median_ms'] / per:7.1f} {eag:>16s} {ratio} {flops / 1e9:7.3f} "
                 f"{g:8.2f} {100 * g / pk:5.1f}%")

    F_ = res["flops"]
    Rm = res["ensemble_members"]
    line("train  N=80 B=16 T=300", "train", F_["train_epoch"])
    if res.get("pytorch_path_timed"):
        line("train  same, PyTorch path (native off)", "train", F_["train_epoch"], 1, False, "engine_pytorch")
    line("floss  N=80 k=75 T_f=300", "floss_T300", F_["floss_epoch"])
    if res.get("pytorch_path_timed"):
        line("floss  same, PyTorch path (native off)", "floss_T300", F_["floss_epoch"], 1, False, "engine_pytorch")
    line("floss  N=80 k=75 T_f=55", "floss_T55", F_["floss_epoch_tf55"])
    line(f"train  R={Rm} ensemble, per member", "train", F_["train_epoch"], Rm, False, "ensemble")
    line(f"floss  R={Rm} ensemble T_f=300, per member", "floss_T300", F_["floss_epoch"], Rm, False, "ensemble")
    line(f"floss  R={Rm} ensemble T_f=55, per member", "floss_T55", F_["floss_epoch_tf55"], Rm, False, "ensemble")
    L.append("")
    L.extend(_peer_lines(res))
    L.extend(_gemm_lines(res))
    cpu = res.get("device", "cpu") == "cpu"
    al = res["arithmetic_limit_ms"]
    if cpu:
        L.append(f"arithmetic limit at the peak rate: train {al['train']:.2f} ms, floss {al['floss']:.1f} ms "
                 f"-> engine at {res['train_epoch_ms'] / al['train']:.1f}x / {res['floss_epoch_ms'] / al['floss']:.1f}x of it")
    L.append(f"its {res['qr_per_floss_epoch']} QRs alone ({res['qr_kind']}, 80x75, timed with it): "
             f"{tm['floss_T300']['qr_only']['median_ms']:.1f} ms, {100 * res['qr_share_of_floss_epoch']:.0f}% "
             f"of a T_f=300 flossing epoch")
    L.append("")
    fac = res["machine_factor_vs_anchor"]
    if cpu:
        L.append(f"this core vs the issue's anchor core: eager train {fac['train']:.2f}x, eager floss {fac['floss']:.2f}x "
                 f"slower; matmul {fac['matmul']:.2f}x slower ({res['matmul_gflops']:.0f} vs {res['anchor']['matmul_gflops']:.0f} GFLOP/s)")
    if res["target_check"]:
        L.append("targets (absolute ones: per core, unloaded machine; compare with the load above)")
    for name, t in res["target_check"].items():
        if not t.get("scaled"):
            if t["value"] is None:
                L.append(f"  {'n/a    '}  {name:46s} {t.get('note', 'not measured')}")
            else:
                L.append(f"  {'met    ' if t['met'] else 'NOT met'}  {name:46s} measured {t['value']:8.2f}")
    if any(t.get("scaled") for t in res["target_check"].values()):
        L.append("the absolute limits scaled by the eager factor above (informational, not the targets):")
    for name, t in res["target_check"].items():
        if t.get("scaled"):
            L.append(f"  {'met    ' if t['met'] else 'NOT met'}  {name:55s} measured {t['value']:8.2f}")
    L.append("")
    sc = res["scaling"]
    L.append(f"cost table (1 member; train B=16 T=300; floss k=N, T_f={sc['rows_N'][0]['T_f']}, s_ons=1)")
    L.append(f"{'N':>5s} {'k':>5s} {'train ms':>10s} {'GFLOP/s':>8s} {'floss ms':>10s} {'GFLOP/s':>8s}")
    for r in sc["rows_N"]:
        L.append(f"{r['N']:5d} {r['k']:5d} {r['train_ms']:10.2f} {r['train_gflops_per_s']:8.2f} "
                 f"{r['floss_ms']:10.1f} {r['floss_gflops_per_s']:8.2f}")
    for r in sc["rows_k"]:
        L.append(f"{r['N']:5d} {r['k']:5d} {'':10s} {'':8s} {r['floss_ms']:10.1f} {r['floss_gflops_per_s']:8.2f}")
    L.append("fitted exponents (log-log least squares; all points / two largest / FLOP model):")
    L.append(f"  train vs N        : {sc['train_exponent_N']:.2f} / {sc['train_exponent_N_top2']:.2f} / "
             f"{sc['train_exponent_N_flop_model']:.2f}   (paper Table 1: N^2 B T -> 2)")
    L.append(f"  floss vs N (k=N)  : {sc['floss_exponent_N_k_eq_N']:.2f} / {sc['floss_exponent_N_k_eq_N_top2']:.2f} / "
             f"{sc['floss_exponent_N_flop_model']:.2f}   (paper: N k^2 T_f -> 3)")
    L.append(f"  floss vs k (N=160): {sc['floss_exponent_k_at_N160']:.2f} / {sc['floss_exponent_k_top2']:.2f} / "
             f"{sc['floss_exponent_k_flop_model']:.2f}   (paper: k^2 -> 2; Jacobian products add N^2 k)")
    if res.get("gated"):
        L.append("")
        L.append("gated networks vs tanh (1 member, 1 thread; LSTM state 2N; time ratio paired round-robin; "
                 "time per FLOP under each engine's FLOP model)")
        L.append(f"{'epoch':32s} {'arch':>5s} {'ms':>9s} {'x tanh':>7s} {'GFLOP':>7s} {'GFLOP/s':>8s} {'time/FLOP x tanh':>17s}")
        for r in res["gated"]["rows"]:
            L.append(f"{r['label']:32s} {r['arch']:>5s} {r['ms']:9.2f} {r['ratio_to_tanh']:7.2f} {r['flops'] / 1e9:7.3f} "
                     f"{r['gflops_per_s']:8.2f} {r['time_per_flop_vs_tanh']:17.2f}")
    L.append("")
    L.append(f"total benchmark time {res['total_benchmark_s']:.0f} s ("
             + ", ".join(f"{k} {v:.1f}" for k, v in res.get("section_s", {}).items()) + ")")
    return "\n".join(L)


def _peer_lines(res: dict) -> list[str]:
    """The JAX peer's rows of the report (or that it is not installed)."""
    j = res.get("jax")
    if j is None:
        return []
    if not j.get("installed"):
        return [f"JAX peer: not installed ({j.get('error')}; pip install -e '.[peers]')", ""]
    tm, pk = res["timings"], res.get("peak_gflops", res["matmul_gflops"])
    gc = res.get("jax_grad_check") or {}
    L = [f"JAX peer ({j['version']}; float32, XLA on 1 thread: process CPU/wall {j['cpu_over_wall']:.2f}), "
         f"timed round-robin with the engine rows above; gradients vs the engine in float64: max rel diff "
         + (f"{gc['max_rel_diff']:.1e}" if gc.get("max_rel_diff") is not None else f"n/a ({gc.get('error')})"),
         f"{'epoch (float32, 1 thread)':42s} {'JAX ms':>16s} {'JAX/eng':>8s} {'GFLOP/s':>8s} {'%peak':>6s}"]
    for label, group, key, fl in (("train  N=80 B=16 T=300", "train", "jax_train_ratio", "train_epoch"),
                                  ("floss  N=80 k=75 T_f=300", "floss_T300", "jax_floss_ratio", "floss_epoch"),
                                  ("floss  N=80 k=75 T_f=55", "floss_T55", "jax_floss_ratio_tf55", "floss_epoch_tf55")):
        e = tm[group]["jax"]
        g = res["flops"][fl] / (e["median_ms"] * 1e-3) / 1e9
        L.append(f"{label:42s} {e['median_ms']:8.1f} ({e['min_ms']:5.1f}) {res[key]:8.2f} {g:8.2f} {100 * g / pk:5.1f}%")
    L.append("")
    return L


def _gemm_lines(res: dict) -> list[str]:
    """The table of the native GEMM and torch.mm at the engine's shapes (where measured)."""
    rows = res.get("gemm_shapes")
    if not rows:
        return []
    f = lambda v: f"{'n/a':>8s}" if v is None else f"{v:8.1f}"  # noqa: E731
    pc = lambda v: f"{'n/a':>6s}" if v is None else f"{100 * v:5.1f}%"  # noqa: E731
    w = max(len(r["label"]) for r in rows)
    L = ["GEMMs at the engine's shapes (1 thread, float32; native: its own GEMM timed in C; torch: torch.mm in a loop)",
         f"{'C[M,N] = op(A) op(B)':{w}s} {'M':>3s} {'N':>3s} {'K':>3s} {'op':>3s} {'native':>8s} {'%peak':>6s} "
         f"{'torch':>8s} {'%peak':>6s}"]
    for r in rows:
        L.append(f"{r['label']:{w}s} {r['M']:3d} {r['N']:3d} {r['K']:3d} {r['ta'] + r['tb']:>3s} {f(r['native_gflops'])} "
                 f"{pc(r['native_fraction_of_peak'])} {f(r['torch_gflops'])} {pc(r['torch_fraction_of_peak'])}")
    L.append("")
    return L


def format_gated_report(res: dict) -> str:
    """The report of ``--gated`` (the LSTM/GRU section alone, :func:`flossrepro.perf.bench.gated_section`)."""
    m = res["machine"]
    L = [f"flossrepro.perf.bench --gated  torch {res['torch_version']}  threads {res['threads']}  {m['cpu_model']}  "
         f"({res['timestamp']}, {res['git_commit'][:12]}, load {m['loadavg_at_start']} -> {m['loadavg_at_end']})",
         "gated networks vs tanh (1 member, 1 thread; LSTM state 2N; median wall ms, round-robin; time ratio = median "
         "of paired ratios; time per FLOP under each engine's FLOP model, relative to tanh)",
         "(cpu: the thread's CPU time; on a loaded machine the wall time also counts the waits for a core)",
         f"{'epoch':32s} {'arch':>5s} {'ms':>9s} {'x tanh':>7s} {'cpu ms':>9s} {'cpu x tanh':>10s} {'GFLOP':>7s} "
         f"{'cpu GFLOP/s':>11s} {'cpu time/FLOP x tanh':>21s}"]
    for r in res["gated"]["rows"]:
        L.append(f"{r['label']:32s} {r['arch']:>5s} {r['ms']:9.2f} {r['ratio_to_tanh']:7.2f} {r['cpu_ms']:9.2f} "
                 f"{r['cpu_ratio_to_tanh']:10.2f} {r['flops'] / 1e9:7.3f} {r['cpu_gflops_per_s']:11.2f} "
                 f"{r['cpu_time_per_flop_vs_tanh']:21.2f}")
    L.append(f"total {res['total_benchmark_s']:.0f} s")
    return "\n".join(L)
