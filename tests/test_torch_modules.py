"""Lyapunov spectra and flossing of PyTorch's own RNNs and of any cell (flossrepro.engine.generic,
flossrepro.engine.torch_modules, flossrepro.engine.flosser)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from flossrepro import Flosser, lyapunov_spectrum
from flossrepro.engine.generic import generic_spectrum
from flossrepro.engine.init import initialize
from flossrepro.engine.models import GRU, LSTM, VanillaRNN
from flossrepro.engine.rate import RateRNN
from flossrepro.engine.tangent import _qr_schedule, default_transients, random_orthonormal
from flossrepro.engine.torch_modules import TorchGRU, TorchLSTM, TorchRNN

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64
TOL = 1e-8


def _close(a, b, tol=TOL):
    assert torch.allclose(a, b, rtol=0, atol=tol), (a - b).abs().max().item()


# -- a per-step autograd reference, independent of the generic path ----------------------------------
def _reference(step, x, s0, k, s_ons=1, th=None, tq=None):
    """``[B, k]`` by the QR method with ``D[t]`` from ``torch.autograd.functional.jacobian`` of
    ``step(x_t [B, S], s [B, n]) -> [B, n]`` row by row, and ``torch.linalg.qr`` (autograd through both)."""
    T, (B, n) = x.shape[0], s0.shape
    dh, dq = default_transients(T)
    th, tq = (dh if th is None else th), (dq if tq is None else tq)
    flags = _qr_schedule(T - th, tq, s_ons)
    Q, s, logs = random_orthonormal(n, k, B, dtype=F64), s0, 0.0
    for t in range(T):
        i = t - th
        if i >= 0:
            J = torch.stack([torch.autograd.functional.jacobian(
                lambda v, b=b: step(x[t, b:b + 1], v[None])[0], s[b], create_graph=True) for b in range(B)])
            Q = J @ Q
            if flags[i]:
                Q, R = torch.linalg.qr(Q)
                if i >= tq:
                    logs = logs + R.diagonal(dim1=-2, dim2=-1).abs().log()
        if t < T - 1:
            s = step(x[t], s)
    return logs / (T - th - tq)


def _module_step(m):
    """The flat-state step ``[h_1; c_1; h_2; ...]`` of a torch.nn RNN module through its own forward."""
    L, H, lstm = m.num_layers, m.hidden_size, isinstance(m, nn.LSTM)

    def step(xt, s):
        parts = s.unflatten(-1, (L, 2 if lstm else 1, H)).movedim(1, 0)  # [L, B, 2|1, H]
        hx = (parts[..., 0, :].contiguous(), parts[..., 1, :].contiguous()) if lstm else parts[..., 0, :].contiguous()
        xin = xt[:, None] if m.batch_first else xt[None]
        _, hn = m(xin, hx)
        st = torch.stack(hn, 2) if lstm else hn[:, :, None]  # [L, B, 2|1, H]
        return st.movedim(0, 1).flatten(1)
    return step


def _grads(lam, params):
    return torch.autograd.grad((lam ** 2).sum() + lam.sum(), params)


# -- against the project's analytic paths --------------------------------------------------------------
@pytest.mark.parametrize("cls,torch_cls", [(GRU, nn.GRU), (LSTM, nn.LSTM)])
def test_torch_gru_lstm_match_the_projects_analytic_path(cls, torch_cls):
    # mapping: the project's z = U h + g V x + b (gates in PyTorch's order; GRU with b_hn = 0) is
    # torch.nn's weight_hh = U, weight_ih = g V, bias_ih = b, bias_hh = 0; the state [h, c] is the same
    N, T = 5, 60
    m = cls(1, N, 2, 1, dtype=F64)
    initialize(m, [3], g=1.5)
    t = torch_cls(2, N).double()
    with torch.no_grad():
        t.weight_hh_l0.copy_(m.U[0]), t.weight_ih_l0.copy_(m.input_gain * m.V[0])
        t.bias_ih_l0.copy_(m.b[0]), t.bias_hh_l0.zero_()
    x = torch.randn(T, 1, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    n = m.state_dim
    h0 = m.h0.detach()
    hx = (h0[None, :, :N], h0[None, :, N:]) if cls is LSTM else h0[None]
    lam_p = lyapunov_spectrum(m, x, n)
    lam_t = generic_spectrum(t, x, n, h0=hx)
    _close(lam_t, lam_p)
    gp = _grads(lam_p, [m.U, m.V, m.b])
    gt = _grads(lam_t, [t.weight_hh_l0, t.weight_ih_l0, t.bias_ih_l0])
    _close(gt[0], gp[0][0])
    _close(gt[1] * m.input_gain, gp[1][0])
    _close(gt[2], gp[2][0])


def test_vanilla_rnn_as_torch_rnn_and_as_a_cell():
    # torch.nn.RNN (weight_hh = W, weight_ih = g V, bias_ih = b, bias_hh = 0) runs the project's
    # network in the variable u = tanh(h): u[t+1] = tanh(H[t+1]). Its Jacobians diag(phi'(H[t+1])) W
    # differ from W diag(phi'(H[t])) by a change of coordinates, so the exponents agree as T grows
    # (not to 1e-8); the project's map itself, written as a cell in h, matches the analytic path exactly.
    N, T = 6, 400
    m = VanillaRNN(1, N, 1, 1, dtype=F64)
    initialize(m, [1], g=1.8)
    W, V, b, g = m.W[0], m.V[0], m.b[0], m.input_gain
    x = torch.randn(T, 1, 1, dtype=F64, generator=torch.Generator().manual_seed(2))
    lam_p = lyapunov_spectrum(m, x, N)
    lam_c = generic_spectrum(lambda xt, h: torch.tanh(h) @ W.T + g * xt @ V.T + b, x, N, h0=m.h0.detach())
    _close(lam_c, lam_p)
    for a, c in zip(_grads(lam_c, [m.W, m.V, m.b]), _grads(lam_p, [m.W, m.V, m.b])):
        _close(a, c)
    t = nn.RNN(1, N).double()
    with torch.no_grad():
        t.weight_hh_l0.copy_(W), t.weight_ih_l0.copy_(g * V), t.bias_ih_l0.copy_(b), t.bias_hh_l0.zero_()
    u0 = torch.tanh(m.h0.detach())[None]
    out, _ = t(x, u0)
    _close(out[:, 0], torch.tanh(m.run(x[:, :, None])[:, 0, 0]).detach(), 1e-12)
    lam_t = generic_spectrum(t, x, N, h0=u0)
    assert (lam_t - lam_p).abs().max() < 0.01  # measured 0.003 at T = 400, shrinking as 1/T


# -- straight from PyTorch, and a plain function cell, against the per-step autograd reference ------------
@pytest.mark.parametrize("make,k", [(lambda: nn.GRU(2, 4, num_layers=2, batch_first=True), 8),
                                    (lambda: nn.LSTM(2, 3, num_layers=2), 6)])
def test_torch_modules_match_per_step_autograd(make, k):
    torch.manual_seed(0)
    m = make().double()
    B, T = 2, 40
    x = torch.randn(T, B, 2, dtype=F64)
    n = m.num_layers * m.hidden_size * (2 if isinstance(m, nn.LSTM) else 1)
    lam = generic_spectrum(m, x.transpose(0, 1) if m.batch_first else x, k, s_ons=2)
    ref = _reference(_module_step(m), x, torch.zeros(B, n, dtype=F64), k, s_ons=2)
    assert lam.shape == (B, k)
    _close(lam, ref)
    for a, c in zip(_grads(lam, list(m.parameters())), _grads(ref, list(m.parameters()))):
        _close(a, c)


def test_function_cell_with_tuple_state_matches_per_step_autograd():
    gen = torch.Generator().manual_seed(1)
    W = (1.3 * torch.randn(6, 6, generator=gen, dtype=F64) / 6 ** 0.5).requires_grad_()
    V = torch.randn(6, 2, generator=gen, dtype=F64).requires_grad_()

    def cell(xt, h):  # state (a [B, 4], b [B, 2]); the new a reads both parts
        a, c = h
        z = torch.tanh(torch.cat([a, c], -1) @ W.T + xt @ V.T)
        return z[:, :4], 0.5 * c + 0.5 * z[:, 4:]

    x = torch.randn(30, 3, 2, generator=gen, dtype=F64)
    h0 = (torch.zeros(3, 4, dtype=F64), torch.zeros(3, 2, dtype=F64))
    lam = generic_spectrum(cell, x, 6, h0=h0, transient_h=0)
    ref = _reference(lambda xt, s: torch.cat(cell(xt, (s[:, :4], s[:, 4:])), -1), x, torch.zeros(3, 6, dtype=F64), 6,
                     th=0)
    _close(lam, ref)
    for a, c in zip(_grads(lam, [W, V]), _grads(ref, [W, V])):
        _close(a, c)


def test_leaky_cell_matches_the_rate_network():
    m = RateRNN(1, 6, 2, 1, dt=0.3, dtype=F64)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(4)
        m.W.copy_(1.6 * torch.randn(1, 6, 6, generator=gen, dtype=F64) / 6 ** 0.5)
        m.V.copy_(torch.randn(1, 6, 2, generator=gen, dtype=F64))
    W, V, dt = m.W[0], m.V[0], m.dt
    x = torch.randn(80, 1, 2, generator=gen, dtype=F64)
    lam_p = lyapunov_spectrum(m, x, 4)
    lam_c = generic_spectrum(lambda xt, h: (1 - dt) * h + dt * (torch.tanh(h) @ W.T + xt @ V.T), x, 4,
                             h0=torch.zeros(1, 6, dtype=F64))
    _close(lam_c, lam_p)
    for a, c in zip(_grads(lam_c, [m.W, m.V]), _grads(lam_p, [m.W, m.V])):
        _close(a, c)


def test_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(5)
    W = (1.5 * torch.randn(3, 3, generator=gen, dtype=F64) / 3 ** 0.5).requires_grad_()
    V = torch.randn(3, 1, generator=gen, dtype=F64).requires_grad_()
    h0 = torch.randn(2, 3, generator=gen, dtype=F64).requires_grad_()
    x = torch.randn(14, 2, 1, generator=gen, dtype=F64)

    def f(W, V, h0):
        return generic_spectrum(lambda xt, h: torch.tanh(h @ W.T + xt @ V.T), x, 2, h0=h0, transient_h=2,
                                transient_q=2, s_ons=2)
    assert torch.autograd.gradcheck(f, (W, V, h0))
    # a module's parameters, along a random direction
    torch.manual_seed(0)
    m = nn.LSTM(1, 2, num_layers=2).double()
    xs = torch.randn(20, 1, 1, dtype=F64)
    ps = list(m.parameters())
    dirs = [torch.randn_like(p) for p in ps]
    g = torch.autograd.grad(generic_spectrum(m, xs, 3).sum(), ps)
    eps, vals = 1e-6, []
    with torch.no_grad():
        for sgn in (1, -1):
            for p, d in zip(ps, dirs):
                p.add_(sgn * eps * d)
            vals.append(generic_spectrum(m, xs, 3).sum())
            for p, d in zip(ps, dirs):
                p.sub_(sgn * eps * d)
    fd = (vals[0] - vals[1]) / (2 * eps)
    assert abs(fd - sum((a * d).sum() for a, d in zip(g, dirs))) < 1e-7


def test_multilayer_lstm_has_2LH_exponents():
    m = nn.LSTM(2, 3, num_layers=3).double()
    x = torch.randn(25, 2, 2, dtype=F64)
    assert generic_spectrum(m, x, 18).shape == (2, 18)
    with pytest.raises(ValueError, match="k=19 .*state dimension is 18"):
        generic_spectrum(m, x, 19)
    assert generic_spectrum(m, x[:, 0], 2).shape == (2,)  # unbatched sequence -> [k]
    d = nn.GRU(2, 4, num_layers=2, dropout=0.5).double().eval()  # dropout is off in eval mode
    assert torch.isfinite(generic_spectrum(d, x, 2)).all()


def test_flosser_brings_lstm_lambda1_to_zero():
    torch.manual_seed(0)
    m = nn.LSTM(1, 8).double()
    gen = torch.Generator().manual_seed(1)
    fl = Flosser(m, k=1, lr=2e-2)
    # a horizon of 150 steps: with 60 the finite-time estimate it drives to 0 sits ~0.05 above lambda_1
    h = fl.episode(lambda: torch.randn(150, 1, 1, generator=gen, dtype=F64), 100)
    assert h["lambda_1"][0] < -0.2 and len(h["loss"]) == 100 and h["lambda"].shape == (100, 1, 1)
    lam = generic_spectrum(m, torch.randn(400, 4, 1, generator=gen, dtype=F64), 1)
    assert lam.abs().max() < 0.05, lam


@pytest.mark.parametrize("call,needle", [
    (lambda m, x: generic_spectrum(m, x, 9), "k=9"),
    (lambda m, x: generic_spectrum(m, x[..., :1], 2), "inputs: shape .*input_size"),
    (lambda m, x: generic_spectrum(m, x, 2, h0=(torch.zeros(1, 3, 5, dtype=F64), torch.zeros(1, 3, 4, dtype=F64))),
     r"h0\[0\]: shape \(1, 3, 5\), expected \(1, 3, 4\)"),
    (lambda m, x: generic_spectrum(m, x, 2, h0=torch.zeros(1, 3, 4, dtype=F64)), r"h0: an LSTM's initial state is a pair"),
    (lambda m, x: generic_spectrum(m, x, 2, q0=torch.zeros(3, 8, 3, dtype=F64)), "q0: .*expected"),
    (lambda m, x: generic_spectrum(m, x.float(), 2), "inputs: torch.float32"),
    (lambda m, x: generic_spectrum(nn.GRU(2, 4, bidirectional=True).double(), x, 2), "bidirectional"),
    (lambda m, x: generic_spectrum(nn.GRU(2, 4, num_layers=2, dropout=0.5).double(), x, 2), "dropout"),
    (lambda m, x: generic_spectrum(lambda xt, h: (h, h), x, 2, h0=torch.zeros(3, 4, dtype=F64)), "round-trip"),
    (lambda m, x: generic_spectrum(lambda xt, h: h, x, 2), "h0: .*cell"),
    (lambda m, x: Flosser(lambda xt, h: h, k=1), "params"),
])
def test_bad_arguments_get_one_clear_error(call, needle):
    m = nn.LSTM(2, 4).double()  # n = 8
    x = torch.randn(20, 3, 2, dtype=F64)
    with pytest.raises(ValueError, match=needle):
        call(m, x)


# -- the ensembles of the pipeline ---------------------------------------------------------------------
@pytest.mark.parametrize("ens,proj", [(TorchGRU, GRU), (TorchLSTM, LSTM)])
def test_ensemble_equals_the_projects_network_of_the_same_seed(ens, proj):
    e, p = ens(2, 5, 1, 1, dtype=F64), proj(2, 5, 1, 1, dtype=F64)
    e.initialize_members([7, 8], g_range=[0.0, 1.0])
    initialize(p, [7, 8], g_range=[0.0, 1.0])
    _close(e.h0, p.h0, 1e-12)
    x = torch.randn(30, 2, 3, 1, dtype=F64)
    _close(e(x), p(x), 1e-12)
    xs = x[:, :, 0]
    _close(lyapunov_spectrum(e, xs, 4), lyapunov_spectrum(p, xs, 4))
    m = e.module(1)  # member 1 as a plain torch.nn module, on 3 sequences
    out, _ = m(x[:, 1] * e.input_gain, e.hx(e.h0[1].detach().expand(3, -1)))
    _close(out @ e.w_r[1].detach().T + e.c[1].detach(), e(x)[:, 1].detach(), 1e-12)


def test_ensemble_from_modules_and_multilayer():
    mods = [nn.RNN(1, 4, num_layers=2, nonlinearity="relu").double() for _ in range(2)]
    e = TorchRNN.from_modules(mods)
    x = torch.randn(20, 2, 1, dtype=F64)
    lam = lyapunov_spectrum(e, x, 8, h0=torch.zeros(2, 8, dtype=F64))
    for r in range(2):
        _close(lam[r], generic_spectrum(mods[r], x[:, r:r + 1], 8)[0])


def test_pipeline_trains_and_flosses_torch_lstm(tmp_path):
    d = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "flossrepro", "arch=torch_lstm", "arch.num_layers=2", "flossing.k=64",
                        "scale=smoke", "epochs=10", "logger=none", "progress=log", "flossing=pre",
                        f"hydra.run.dir={d}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "complete" and s["floss_epochs_done"] == 5
