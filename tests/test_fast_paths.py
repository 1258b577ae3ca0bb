"""The engine's fast paths against straightforward autograd (float64).

Complements tests/test_core.py: the specialised QR pullback on its own, and the
single-member (R = 1) code paths (the Lyapunov backward sums ``dW`` with one bmm over its
step buffers only when R = 1; the sequence's drive and readout reshapes are views then).
"""
from __future__ import annotations

import pytest
import torch

from flossrepro import VanillaRNN, initialize, lyapunov_spectrum
from flossrepro.engine.lyapunov import _qr_pullback_diag_T, random_orthonormal
from flossrepro.engine.models import rnn_sequence

F64 = torch.float64




def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("k", [6, 1])
@pytest.mark.parametrize("with_c", [True, False])
def test_qr_pullback_diag_matches_autograd_through_qr(with_c, k):
    R, n = 3, 9
    A = _randn(R, n, k, seed=1).requires_grad_(True)
    G = _randn(R, n, k, seed=2)  # d loss / d Q
    c = _randn(R, k, seed=3) if with_c else torch.zeros(R, k, dtype=F64)  # d loss / d log|R_ii|
    Q, Rm = torch.linalg.qr(A)
    loss = (G * Q).sum() + (c * Rm.diagonal(dim1=-2, dim2=-1).abs().log()).sum()
    (dA,) = torch.autograd.grad(loss, A)
    upper = torch.ones(k, k, dtype=torch.bool).triu()
    Q, Rm = Q.detach(), Rm.detach()
    for QbarT, RT in ((G.transpose(1, 2).contiguous(), Rm.transpose(1, 2)),   # as the engine lays them out
                      (G.transpose(1, 2), Rm.transpose(1, 2).contiguous())):
        out = torch.empty(R, k, n, dtype=F64)
        got = _qr_pullback_diag_T(QbarT, Q, RT, torch.diag_embed(-c) if with_c else None, upper, out)
        assert got is out
        torch.testing.assert_close(out.transpose(1, 2), dA, rtol=1e-12, atol=1e-12)


def _model(N=7, S=2, O=2, seed=3, g=1.4, nonlinearity="tanh"):
    m = VanillaRNN(1, N, S, O, nonlinearity=nonlinearity, dtype=F64)
    initialize(m, [seed], g=g)
    return m


@pytest.mark.parametrize("s_ons,k,transients", [(1, 4, (5, 8)), (2, 7, (3, 4)), (1, 3, (0, 0))])
def test_single_member_spectrum_fast_vs_reference(s_ons, k, transients):
    m = _model(g=1.4 if k < 7 else 0.9)
    x = _randn(40, 1, 2, seed=4)
    c = _randn(1, k, seed=5)
    params = [m.W, m.V, m.b, m.h0]
    out = []
    for fast in (True, False):
        q0 = random_orthonormal(7, k, 1, seed=6).requires_grad_(True)
        lam = lyapunov_spectrum(m, x, k, s_ons=s_ons, transient_h=transients[0],
                                transient_q=transients[1], q0=q0, fast=fast)
        out.append((lam.detach(), torch.autograd.grad((lam * c).sum(), params + [q0])))
    (l1, g1), (l2, g2) = out
    torch.testing.assert_close(l1, l2, rtol=1e-10, atol=1e-10)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "identity"])
def test_single_member_sequence_fast_vs_reference(nonlinearity):
    B, N, T = 3, 6, 30
    h0 = _randn(1, B, N, seed=7).requires_grad_(True)
    W = (0.4 * _randn(1, N, N, seed=8)).requires_grad_(True)
    drive = _randn(T, 1, B, N, seed=9).requires_grad_(True)
    w = _randn(T, 1, B, N, seed=10)
    out = []
    for fast in (True, False):
        H = rnn_sequence(h0, W, drive, nonlinearity, fast=fast)
        out.append((H.detach(), torch.autograd.grad((H * w).sum(), (h0, W, drive))))
    (H1, g1), (H2, g2) = out
    torch.testing.assert_close(H1, H2, rtol=1e-12, atol=1e-12)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("R", [1, 3])
def test_drive_and_readout_match_einsum(R):
    m = VanillaRNN(R, 5, 2, 3, dtype=F64)
    initialize(m, list(range(R)))
    with torch.no_grad():
        m.b.copy_(_randn(R, 5, seed=11))
        m.c.copy_(_randn(R, 3, seed=12))
    x = _randn(7, R, 4, 2, seed=13)
    H = _randn(7, R, 4, 5, seed=14)
    wd, wy = _randn(7, R, 4, 5, seed=15), _randn(7, R, 4, 3, seed=16)
    params = [m.V, m.b, m.w_r, m.c]
    got = (m.drive(x) * wd).sum() + (m.readout(H) * wy).sum()
    ref_d = m.input_gain * torch.einsum("trbs,rns->trbn", x, m.V) + m.b[None, :, None, :]
    ref_y = torch.einsum("trbn,ron->trbo", H, m.w_r) + m.c[None, :, None, :]
    ref = (ref_d * wd).sum() + (ref_y * wy).sum()
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got, params), torch.autograd.grad(ref, params)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_models_without_the_protocol_go_to_the_generic_path(monkeypatch):
    """lyapunov_spectrum and lyapunov_loss dispatch by the fast-path protocol (``lyapunov_fast``),
    not by class: anything else (a torch.nn cell, a plain function) is handed to
    flossrepro.engine.generic.generic_spectrum with the caller's arguments."""
    import sys
    import types

    from flossrepro import lyapunov_loss

    calls = []

    def generic_spectrum(model, inputs, k, **kw):
        calls.append((model, inputs, k, kw))
        return torch.full((1, k), 0.5, dtype=F64, requires_grad=True)

    monkeypatch.setitem(sys.modules, "flossrepro.engine.generic",
                        types.SimpleNamespace(generic_spectrum=generic_spectrum))
    cell = torch.nn.GRUCell(2, 3)
    x = _randn(20, 1, 2)
    lam = lyapunov_spectrum(cell, x, 2, s_ons=2, transient_q=3)
    assert lam.shape == (1, 2) and calls[-1][:3] == (cell, x, 2)
    assert calls[-1][3] == dict(s_ons=2, transient_h=None, transient_q=3, h0=None, q0=None)
    loss, lam2 = lyapunov_loss(lambda xt, h: h, x, 2, lambda v: (v ** 2).sum(-1))
    torch.testing.assert_close(loss, torch.tensor([0.5], dtype=F64))
    assert not lam2.requires_grad and loss.requires_grad and len(calls) == 2
    with pytest.raises(ValueError, match="fast=True"):
        lyapunov_spectrum(cell, x, 2, fast=True)
    # the project's models implement the protocol and never reach the generic path
    m = VanillaRNN(1, 4, 2, 1, dtype=F64)
    initialize(m, [0])
    lyapunov_spectrum(m, x, 2, transient_h=2, transient_q=2)
    assert len(calls) == 2
