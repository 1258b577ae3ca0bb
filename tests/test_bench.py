"""The benchmark's pieces (no timing assertions): its eager reference agrees with the
engine, its FLOP model scales as documented, and every epoch it times runs."""
import torch

from flossrepro.jobs import workload
from flossrepro.perf import bench_report, eager, flops, micro


def test_eager_reference_matches_engine():
    # float32, two independent implementations: measured |dlambda| 1.2e-6..1.3e-6 and
    # gradient drift 1.3e-5..2.1e-5 (seeds 0, 1); a wrong gradient is off by O(1)
    c = eager.consistency(N=16, k=12, T=40)
    assert c["eager_max_abs_dlambda"] < 1e-5 and c["eager_rel_dgradW"] < 2e-4


def test_flop_model_and_fit():
    assert flops.train_flops(80, 16, 300) == 6 * 80**2 * 16 * 300 + 4 * 80 * 16 * 300 + 6 * 80 * 16 * 300
    assert abs(flops.fit_exponent([1, 2, 4], [3, 12, 48]) - 2.0) < 1e-12
    f = [flops.floss_flops(n, n, 55) for n in (100, 200)]  # k = N: cubic in N
    assert 7.5 < f[1] / f[0] < 8.1
    assert flops.floss_flops(80, 75, 300, transient_h=0) > flops.floss_flops(80, 75, 300)


def test_epochs_run_and_timing_table():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fns = {"engine": workload.engine_train_epoch(1, 8, 2, 20), "eager": eager.eager_train_epoch(8, 2, 20),
               "ensemble": workload.engine_train_epoch(3, 8, 2, 20),
               "floss": workload.engine_floss_epoch(2, 8, 4, 30), "eager_floss": eager.eager_floss_epoch(8, 4, 30)}
        out = workload.time_round_robin(fns, warmup=1, repeats=3, budget_s=0.0)
    finally:
        torch.set_num_threads(n)
    assert set(out) == set(fns)
    for v in out.values():
        assert v["n"] == 3 and 0 < v["min_ms"] <= v["median_ms"] and v["cpu_median_ms"] >= 0
        assert v["paired_ratio_to_engine"] > 0


def test_peak_is_the_largest_usable_candidate():
    from flossrepro.perf import peak
    assert peak.choose_peak({"torch_blas": 80.0, "numpy_blas": 120.0, "xla": 240.0, "native_fma": None}) == (240.0, "xla")
    # missing, None, NaN, non-positive and non-numbers are skipped
    assert peak.choose_peak({"torch_blas": 80.0, "xla": None, "numpy_blas": float("nan"), "native_fma": 0.0,
                             "other": "fast"}) == (80.0, "torch_blas")
    assert peak.choose_peak({"torch_blas": 80.0}) == (80.0, "torch_blas")
    assert peak.choose_peak({}) == (None, None) and peak.choose_peak({"xla": None}) == (None, None)
    # a candidate that kept more than one core busy is not a single-thread peak
    assert peak.choose_peak({"torch_blas": 80.0, "numpy_blas": 150.0}, {"numpy_blas": 1.9}) == (80.0, "torch_blas")
    assert peak.choose_peak({"torch_blas": 80.0, "numpy_blas": 150.0}, {"numpy_blas": 0.97}) == (150.0, "numpy_blas")


def test_peak_section_uses_what_native_offers(monkeypatch):
    from flossrepro.perf import peak
    monkeypatch.setattr(peak, "measure_subprocess",
                        lambda kind: {"gflops": {"numpy": 90.0, "xla": None}[kind],
                                      "best_gflops": {"numpy": 100.0, "xla": None}[kind], "cpu_over_wall": 0.99})
    # no fma_peak_gflops in the native module: skipped
    monkeypatch.delattr(micro.native, "fma_peak_gflops", raising=False)
    out = micro.peak_section(90.0, log=lambda s: None)
    assert out["peak_gflops"] == 100.0 and out["peak_source"] == "numpy_blas"
    assert out["peak_candidates_gflops"]["native_fma"] is None and set(out["peak_candidates_gflops"]) == {
        "torch_blas", "numpy_blas", "xla", "native_fma"}
    # present but returning None (kernels not built): skipped; returning a number: a candidate
    monkeypatch.setattr(micro.native, "fma_peak_gflops", lambda: None, raising=False)
    assert micro.peak_section(90.0, log=lambda s: None)["peak_source"] == "numpy_blas"
    monkeypatch.setattr(micro.native, "fma_peak_gflops", lambda: 300.0, raising=False)
    out = micro.peak_section(90.0, log=lambda s: None)
    assert (out["peak_gflops"], out["peak_source"]) == (300.0, "native_fma")


def test_peak_and_peer_target_rows():
    fp = {"train": 0.2, "floss": 0.6, "floss_tf55": 0.5}
    rows = bench_report._target_rows(bench_report.peak_and_peer_targets({"fraction_of_peak": fp, "jax": {"installed": False}}))
    assert rows["goal: train epoch >= 40% of peak"]["met"] is False
    assert rows["goal: floss epoch (T_f=300) >= 50% of peak"]["met"] is True
    assert rows["goal: floss epoch (T_f=55) >= 50% of peak"]["met"] is True
    jax_rows = [r for name, r in rows.items() if name.startswith("JAX")]
    assert len(jax_rows) == 3 and all(r["value"] is None and r["met"] is None and r["note"] == "jax not installed"
                                      for r in jax_rows)
    assert not any(name.startswith("native GEMMs") for name in rows)  # no gemm_gflops, no row
    g = [{"native_fraction_of_peak": 0.8}, {"native_fraction_of_peak": 0.65}]
    rows = bench_report._target_rows(bench_report.peak_and_peer_targets({"fraction_of_peak": fp, "gemm_shapes": g, "jax": {
        "installed": True}, "jax_train_ratio": 1.5, "jax_floss_ratio": 1.8, "jax_floss_ratio_tf55": 2.5}))
    gemm = rows["native GEMMs at engine shapes >= 70% of peak (min)"]
    assert abs(gemm["value"] - 65.0) < 1e-9 and gemm["met"] is False
    assert [rows[n]["met"] for n in rows if n.startswith("JAX")] == [True, False, True]


def test_gemm_table_only_with_native_gemm(monkeypatch):
    monkeypatch.delattr(micro.native, "gemm_gflops", raising=False)
    assert micro.gemm_shapes(100.0, quick=True) is None
    calls = []
    monkeypatch.setattr(micro.native, "gemm_gflops", lambda M, N, K, ta="N", tb="N": calls.append((M, N, K, ta, tb)) or 50.0,
                        raising=False)
    monkeypatch.setattr(micro, "torch_mm_gflops", lambda M, N, K, ta, tb, repeats, device: 25.0)
    rows = micro.gemm_shapes(100.0, quick=True)
    assert calls == [s[1:] for s in micro.GEMM_SHAPES]
    assert all(r["native_fraction_of_peak"] == 0.5 and r["torch_fraction_of_peak"] == 0.25 for r in rows)
    assert "GEMMs at the engine's shapes" in "\n".join(bench_report._gemm_lines({"gemm_shapes": rows}))


def test_torch_mm_rate_with_transposes():
    for ta, tb in (("N", "N"), ("N", "T"), ("T", "N")):
        assert micro.torch_mm_gflops(8, 6, 4, ta, tb, repeats=1, inner=2) > 0


def test_cpu_isa_from_flags():
    from flossrepro.perf import peak
    assert peak.cpu_isa({"avx512f", "avx512vl", "avx512bw", "avx2", "fma", "avx"}) == "AVX-512 (f bw vl), AVX2, FMA"
    assert peak.cpu_isa({"avx2", "fma"}) == "AVX2, FMA"
    assert peak.cpu_isa(set()) == "unknown"


def test_report_without_the_jax_peer():
    lines = bench_report._peer_lines({"jax": {"installed": False, "error": "ModuleNotFoundError: No module named 'jax'"}})
    assert "not installed" in lines[0] and "[peers]" in lines[0]


def test_pin_to_one_cpu_in_a_subprocess():
    import os
    import subprocess
    import sys
    if not hasattr(os, "sched_setaffinity"):
        return
    code = ("import os; from flossrepro.perf import machine; c = machine.pin_to_one_cpu(); "
            "print(c, sorted(os.sched_getaffinity(0)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.split()
    assert out[1:] == [f"[{out[0]}]"]


def test_bench_module_keeps_its_public_names():
    from flossrepro.perf import bench
    assert all(hasattr(bench, name) for name in bench.__all__)
    # the epochs take their device as an argument (no module-level device to set)
    assert not hasattr(bench, "DEVICE") and not hasattr(workload, "DEVICE")
