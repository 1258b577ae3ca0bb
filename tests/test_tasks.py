import hashlib
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from flossrepro.tasks.paper import (
    TASKS,
    Batch,
    BinaryXORTask,
    CopyTask,
    LagXORTask,
    SpatialXORTask,
    TemporalXORTask,
    make_task,
    member_generators,
)

SETTINGS = settings(max_examples=30, deadline=None)
SLOW_SETTINGS = settings(max_examples=400, deadline=None)
NAMES = sorted(TASKS)


@st.composite
def task_setups(draw, names=tuple(NAMES), max_delay=12, max_extra=20):
    name = draw(st.sampled_from(names))
    cls = TASKS[name]
    delay = draw(st.integers(cls.min_delay, max_delay))
    max_lag = 2 * delay if name == "lag_xor" else delay
    seq_len = draw(st.integers(max_lag + 1, max_lag + max_extra))
    batch = draw(st.integers(1, 5))
    amp = draw(st.sampled_from([1.0, 0.5, 2.0, 0.3, 3.7]))
    R = draw(st.integers(1, 4))
    seeds = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=R, max_size=R))
    return make_task(name, delay=delay, seq_len=seq_len, batch_size=batch, amplitude=amp), seeds


def expected_target(task, x):
    """Reference target, written independently with explicit loops over t."""
    T = x.shape[0]
    d = task.delay
    y = torch.zeros(x.shape[:-1] + (1,), dtype=x.dtype)
    for t in range(task.max_lag, T):
        if task.name == "copy":
            y[t] = x[t - d]
        elif task.name == "temporal_xor":
            y[t] = (x[t - d // 2] - x[t - d]).abs()
        elif task.name == "lag_xor":
            y[t] = (x[t - d] - x[t - 2 * d]).abs()
        elif task.name == "binary_xor":
            y[t] = (x[t - d // 2].round().long() ^ x[t - d].round().long()).to(x.dtype)
        elif task.name == "spatial_xor":
            b = x[t - d].round().long()
            y[t] = (b[..., 0:1] ^ b[..., 1:2] ^ b[..., 2:3]).to(x.dtype)
    return y


def _check_targets_masks_shapes(setup):
    task, seeds = setup
    gens = member_generators(seeds, "train")
    batch = task.sample(gens, dtype=torch.float64)
    T, R, B = task.seq_len, len(seeds), task.batch_size
    assert isinstance(batch, Batch)
    assert batch.inputs.shape == (T, R, B, task.n_in)
    assert batch.targets.shape == (T, R, B, task.n_out)
    assert batch.mask.shape == (T,) and batch.mask.dtype == torch.bool
    assert batch.inputs.dtype == batch.targets.dtype == torch.float64
    assert batch.mask.tolist() == [t >= task.max_lag for t in range(T)]
    assert task.max_lag == (2 * task.delay if task.name == "lag_xor" else task.delay)
    x = batch.inputs / task.amplitude
    if task.loss_kind == "bce":
        assert set(x.unique().tolist()) <= {0.0, 1.0}
    else:
        assert x.min() >= 0 and x.max() <= 1
    exp = expected_target(task, x)
    torch.testing.assert_close(batch.targets, exp, rtol=1e-12, atol=1e-12)
    assert (batch.targets[~batch.mask] == 0).all()


@SETTINGS
@given(task_setups())
def test_targets_masks_shapes(setup):
    _check_targets_masks_shapes(setup)


@pytest.mark.slow
@SLOW_SETTINGS
@given(task_setups(max_delay=150, max_extra=300))
def test_targets_masks_shapes_long_delays(setup):
    # the same oracle over the paper's delays (up to 150, sequences up to 2 * 150 + 300)
    _check_targets_masks_shapes(setup)


@SETTINGS
@given(task_setups(), st.sampled_from([torch.float32, torch.float64]))
def test_ensemble_member_equals_single_run(setup, dtype):
    task, seeds = setup
    full = task.sample(member_generators(seeds, "train"), dtype=dtype)
    assert full.inputs.dtype == full.targets.dtype == dtype
    for r, s in enumerate(seeds):
        single = task.sample(member_generators([s], "train"), dtype=dtype)
        assert torch.equal(full.inputs[:, r], single.inputs[:, 0])
        assert torch.equal(full.targets[:, r], single.targets[:, 0])
        assert torch.equal(full.mask, single.mask)
    # the same generators continue their streams: a second draw differs (long enough that
    # two binary draws cannot coincide by chance)
    gens = member_generators(seeds[:1], "train")
    T = max(task.seq_len, 64)
    a, b = task.sample(gens, seq_len=T, batch_size=8), task.sample(gens, seq_len=T, batch_size=8)
    assert not torch.equal(a.inputs, b.inputs)


@SETTINGS
@given(task_setups(), st.sampled_from(["test", "floss", "init"]))
def test_streams_independent(setup, other):
    # every task, the binary ones too: draws of >= 64 x 8 values, so two independent binary
    # streams coincide with probability <= 2^-512 (the task's own short sequences could)
    task, seeds = setup
    T = max(task.seq_len, 64)
    a = task.sample(member_generators(seeds, "train"), seq_len=T, batch_size=8)
    b = task.sample(member_generators(seeds, other), seq_len=T, batch_size=8)
    for r in range(len(seeds)):
        assert not torch.equal(a.inputs[:, r], b.inputs[:, r])
    # deterministic
    c = task.sample(member_generators(seeds, "train"), seq_len=T, batch_size=8)
    assert torch.equal(a.inputs, c.inputs)


def test_member_generators_distinct_seeds_and_stable():
    gens = member_generators([0, 1, 2], "train")
    draws = [torch.rand(8, generator=g) for g in gens]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    # stable across processes: the documented SHA-256 of "<seed>/<stream>", not Python's
    # salted hash (comparing two calls in one process could not catch a salted hash)
    for seed, stream in ((0, "train"), (2, "train"), (7, "floss_test"), (-5, "init")):
        digest = hashlib.sha256(f"{seed}/{stream}".encode()).digest()
        expected = int.from_bytes(digest[:8], "little") & (2**63 - 1)
        assert member_generators([seed], stream)[0].initial_seed() == expected
    assert [g.initial_seed() for g in gens] == [
        int.from_bytes(hashlib.sha256(f"{s}/train".encode()).digest()[:8], "little") & (2**63 - 1)
        for s in (0, 1, 2)]
    assert all(g.device.type == "cpu" for g in gens)
    assert member_generators([], "train") == []


@SETTINGS
@given(task_setups(), st.integers(1, 4), st.integers(0, 5))
def test_sample_overrides(setup, B, extra):
    task, seeds = setup
    T = task.max_lag + 1 + extra
    batch = task.sample(member_generators(seeds, "test"), batch_size=B, seq_len=T)
    assert batch.inputs.shape == (T, len(seeds), B, task.n_in)
    assert batch.mask.sum().item() == T - task.max_lag


@SETTINGS
@given(task_setups())
def test_perfect_outputs(setup):
    task, seeds = setup
    batch = task.sample(member_generators(seeds, "train"))
    R = len(seeds)
    if task.loss_kind == "bce":
        outputs = (2 * batch.targets - 1) * 40.0
    else:
        outputs = batch.targets.clone()
    # garbage on unmasked steps must not count
    outputs[~batch.mask] = 123.0
    outputs.requires_grad_(True)
    loss = task.loss(outputs, batch)
    assert loss.shape == (R,)
    assert (loss.abs() < 1e-6).all()
    loss.sum().backward()
    assert outputs.grad is not None
    m = task.metric(outputs, batch)
    assert m.shape == (R,) and not m.requires_grad
    if task.metric_name == "accuracy":
        assert torch.equal(m, torch.ones(R))
    else:
        assert (m.abs() < 1e-12).all()


@SETTINGS
@given(task_setups(), st.integers(0, 2**32 - 1))
def test_loss_and_metric_equal_explicit_formula(setup, seed):
    # arbitrary outputs (the other tests only use perfect or constant ones): per member, the
    # mean over masked steps, batch and outputs of the squared error / BCE with logits, and
    # the accuracy of sign(logit) against the target bits, written out with loops
    task, seeds = setup
    batch = task.sample(member_generators(seeds, "train"), dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    outputs = 2 * torch.randn(batch.targets.shape, generator=g, dtype=torch.float64)
    T, R = batch.targets.shape[:2]
    loss, metric = task.loss(outputs, batch), task.metric(outputs, batch)
    assert loss.shape == metric.shape == (R,)
    for r in range(R):
        terms, hits, n = 0.0, 0, 0
        for t in range(task.max_lag, T):
            for o, y in zip(outputs[t, r].flatten().tolist(), batch.targets[t, r].flatten().tolist()):
                if task.loss_kind == "mse":
                    terms += (o - y) ** 2
                else:  # -y log sigmoid(o) - (1 - y) log(1 - sigmoid(o))
                    terms += math.log1p(math.exp(-abs(o))) + max(o, 0.0) - o * y
                hits += (o > 0) == (y > 0.5)
                n += 1
        assert loss[r].item() == pytest.approx(terms / n, rel=1e-12, abs=1e-14)
        if task.metric_name == "accuracy":
            assert metric[r].item() == pytest.approx(hits / n, rel=1e-12)
        else:
            assert metric[r].item() == pytest.approx(terms / n, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_chance_level(name):
    d = 4
    task = make_task(name, delay=d, seq_len=400, batch_size=100, amplitude=2.0)
    batch = task.sample(member_generators([3, 4], "test"))
    if task.loss_kind == "mse":
        mean = {"copy": 0.5, "temporal_xor": 1 / 3, "lag_xor": 1 / 3}[name]
        outputs = torch.full_like(batch.targets, mean)
        assert task.metric_name == "mse"
        m = task.metric(outputs, batch)
        assert torch.allclose(m, torch.full_like(m, task.chance), rtol=0.05)
        torch.testing.assert_close(task.loss(outputs, batch), m)
    else:
        assert task.metric_name == "accuracy" and task.chance == 0.5
        outputs = torch.zeros_like(batch.targets)
        m = task.metric(outputs, batch)
        assert ((m - 0.5).abs() < 0.02).all()
        l = task.loss(outputs, batch)
        assert torch.allclose(l, torch.full_like(l, math.log(2)), rtol=1e-5)
        # wrong-sign confident logits give accuracy 0
        assert (task.metric(-(2 * batch.targets - 1), batch) == 0).all()


def test_class_attributes():
    expect = {
        "copy": (CopyTask, 1, 1, "mse", "mse", 1 / 12),
        "temporal_xor": (TemporalXORTask, 1, 1, "mse", "mse", 1 / 18),
        "binary_xor": (BinaryXORTask, 1, 1, "bce", "accuracy", 0.5),
        "spatial_xor": (SpatialXORTask, 3, 1, "bce", "accuracy", 0.5),
        "lag_xor": (LagXORTask, 1, 1, "mse", "mse", 1 / 18),
    }
    assert set(TASKS) == set(expect)
    for name, (cls, nin, nout, lk, mn, ch) in expect.items():
        assert TASKS[name] is cls and cls.name == name
        assert (cls.n_in, cls.n_out, cls.loss_kind, cls.metric_name) == (nin, nout, lk, mn)
        assert cls.chance == pytest.approx(ch)


@pytest.mark.parametrize(
    "name, kwargs, pieces",
    [
        ("lag_xor", dict(delay=40, seq_len=50, batch_size=4),
         ["task.seq_len=50", "task.delay=40", "2*delay=80", "raise task.seq_len"]),
        ("copy", dict(delay=10, seq_len=10, batch_size=4), ["task.seq_len=10", "seq_len > delay=10"]),
        ("copy", dict(delay=0, seq_len=10, batch_size=4), ["task.delay=0", ">= 1"]),
        ("temporal_xor", dict(delay=1, seq_len=10, batch_size=4), ["task.delay=1", ">= 2"]),
        ("binary_xor", dict(delay=1, seq_len=10, batch_size=4), ["task.delay=1", ">= 2"]),
        ("spatial_xor", dict(delay=2, seq_len=10, batch_size=0), ["task.batch_size=0", ">= 1"]),
        ("copy", dict(delay=2, seq_len=10, batch_size=2, amplitude=0.0), ["task.amplitude=0.0", "> 0"]),
        ("copy", dict(delay=2, seq_len=10, batch_size=2, amplitude=-1), ["task.amplitude=-1", "> 0"]),
        ("copy", dict(delay=2.5, seq_len=10, batch_size=2), ["task.delay=2.5", "integer"]),
    ],
)
def test_bad_arguments(name, kwargs, pieces):
    with pytest.raises(ValueError) as err:
        make_task(name, **kwargs)
    for p in pieces:
        assert p in str(err.value)


def test_bad_name_and_sample_args():
    with pytest.raises(ValueError) as err:
        make_task("nope", delay=2, seq_len=10, batch_size=2)
    for n in NAMES:
        assert n in str(err.value)
    task = make_task("copy", delay=5, seq_len=20, batch_size=2)
    gens = member_generators([1], "train")
    with pytest.raises(ValueError, match="seq_len=5"):
        task.sample(gens, seq_len=5)
    with pytest.raises(ValueError, match="batch_size=0"):
        task.sample(gens, batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        task.sample([])
    with pytest.raises(ValueError, match="Generator"):
        task.sample([1])
    batch = task.sample(gens)
    with pytest.raises(ValueError, match="shape"):
        task.loss(torch.zeros(20, 1, 2, 2), batch)


def test_sample_inputs_has_no_delay_constraint_and_matches_sample():
    from flossrepro.tasks.paper import make_task, member_generators
    task = make_task("copy", delay=40, seq_len=60, batch_size=2)
    short = task.sample_inputs(member_generators([0, 1], "x"), batch_size=1, seq_len=10)
    assert short.shape == (10, 2, 1, 1)
    full = task.sample(member_generators([0, 1], "x"), batch_size=1)
    again = task.sample_inputs(member_generators([0, 1], "x"), batch_size=1, seq_len=60)
    assert torch.equal(full.inputs, again)
