"""The benchmark's JAX peer (flossrepro/perf/jax_peer.py, optional extra ``peers``): its gradients
are the engine's, in float64. Skipped without jax. No timing assertions."""
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("optax")

from flossrepro.perf import jax_peer as bench_jax  # noqa: E402


def test_jax_gradients_equal_the_engines_float64():
    # training loss (all six parameters, before clipping) and flossing loss (W, V, b) at a small
    # size: measured 2e-16..1.2e-14 relative; a wrong term (transient, scale, readout) is O(1)
    c = bench_jax.grad_check(N=16, B=4, T=40, k=12, T_fs=(40, 25))
    assert set(c["train"]) == {"W", "V", "b", "w_r", "c", "h0"}
    assert set(c["floss_T40"]) == {"W", "V", "b", "lambda"}
    assert c["max_rel_diff"] < 1e-8, c


def test_jax_epochs_run_in_float32():
    for epoch in (bench_jax.jax_train_epoch(8, 2, 20), bench_jax.jax_floss_epoch(8, 4, 30)):
        epoch()
        epoch()
    assert not jax.config.jax_enable_x64  # grad_check's float64 stays inside its context
