"""The benchmark's pieces (no timing assertions): its eager reference agrees with the
engine, its FLOP model scales as documented, and every epoch it times runs."""
import torch

from flossrepro import bench


def test_eager_reference_matches_engine():
    # float32, two independent implementations: measured |dlambda| 1.2e-6..1.3e-6 and
    # gradient drift 1.3e-5..2.1e-5 (seeds 0, 1); a wrong gradient is off by O(1)
    c = bench.consistency(N=16, k=12, T=40)
    assert c["eager_max_abs_dlambda"] < 1e-5 and c["eager_rel_dgradW"] < 2e-4


def test_flop_model_and_fit():
    assert bench.train_flops(80, 16, 300) == 6 * 80**2 * 16 * 300 + 4 * 80 * 16 * 300 + 6 * 80 * 16 * 300
    assert abs(bench.fit_exponent([1, 2, 4], [3, 12, 48]) - 2.0) < 1e-12
    f = [bench.floss_flops(n, n, 55) for n in (100, 200)]  # k = N: cubic in N
    assert 7.5 < f[1] / f[0] < 8.1
    assert bench.floss_flops(80, 75, 300, transient_h=0) > bench.floss_flops(80, 75, 300)


def test_epochs_run_and_timing_table():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fns = {"engine": bench.engine_train_epoch(1, 8, 2, 20), "eager": bench.eager_train_epoch(8, 2, 20),
               "ensemble": bench.engine_train_epoch(3, 8, 2, 20),
               "floss": bench.engine_floss_epoch(2, 8, 4, 30), "eager_floss": bench.eager_floss_epoch(8, 4, 30)}
        out = bench.time_round_robin(fns, warmup=1, repeats=3, budget_s=0.0)
    finally:
        torch.set_num_threads(n)
    assert set(out) == set(fns)
    for v in out.values():
        assert v["n"] == 3 and 0 < v["min_ms"] <= v["median_ms"] and v["cpu_median_ms"] >= 0
        assert v["paired_ratio_to_engine"] > 0
