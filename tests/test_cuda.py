"""The engine on a GPU: the CUDA path (PyTorch ops; the native kernels are CPU-only) gives the
same exponents, gradients and training states as the CPU in float64. Skipped without CUDA."""
import pytest
import torch

from flossrepro import VanillaRNN, floss_step, flossing_parameters, initialize, lyapunov_spectrum
from flossrepro.engine.lyapunov import random_orthonormal
from flossrepro.engine.models import rnn_sequence

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
F64 = torch.float64


def _model(R, N, nonlinearity="tanh", g=1.2, device="cpu"):
    m = VanillaRNN(R, N, 2, 1, nonlinearity=nonlinearity, dtype=F64)
    initialize(m, list(range(7, 7 + R)), g=g)
    return m.to(device)


# (not relu: where fewer than k units are active R_kk is rounding noise and lambda_k differs
# between any two implementations; see tests/test_core.py)
@pytest.mark.parametrize("nonlinearity", ["tanh", "identity"])
@pytest.mark.parametrize("s_ons", [1, 3])
def test_spectrum_and_gradients_cuda_equal_cpu(nonlinearity, s_ons):
    R, N, k, T = 3, 24, 6, 120
    x = torch.randn(T, R, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    w = torch.randn(R, k, dtype=F64, generator=torch.Generator().manual_seed(4))
    out = {}
    for dev in ("cpu", "cuda"):
        m = _model(R, N, nonlinearity, g=1.2 if nonlinearity == "tanh" else 0.9, device=dev)
        q0 = random_orthonormal(N, k, R, dtype=F64, device=dev)
        lam = lyapunov_spectrum(m, x.to(dev), k, s_ons=s_ons, transient_h=10, transient_q=12, q0=q0)
        grads = torch.autograd.grad((lam * w.to(dev)).sum(), [m.W, m.V, m.b, m.h0], allow_unused=True)
        out[dev] = [lam.detach().cpu()] + [torch.zeros(1, dtype=F64) if g is None else g.cpu() for g in grads]
    for a, b in zip(out["cpu"], out["cuda"]):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9 * max(1.0, a.abs().max().item()))


def test_training_pass_cuda_equals_cpu():
    R, B, N, T = 2, 5, 16, 60
    res = {}
    for dev in ("cpu", "cuda"):
        g = torch.Generator().manual_seed(0)
        W = (torch.randn(R, N, N, dtype=F64, generator=g) * 1.3 / N ** 0.5).to(dev).requires_grad_(True)
        h0 = torch.randn(R, B, N, dtype=F64, generator=g).to(dev).requires_grad_(True)
        drive = torch.randn(T, R, B, N, dtype=F64, generator=g).to(dev).requires_grad_(True)
        c = torch.randn(T, R, B, N, dtype=F64, generator=g).to(dev)
        H = rnn_sequence(h0, W, drive, "tanh")
        grads = torch.autograd.grad((H * c).sum(), [h0, W, drive])
        res[dev] = [H.detach().cpu()] + [t.cpu() for t in grads]
    for a, b in zip(res["cpu"], res["cuda"]):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


def test_flossing_on_cuda_moves_lambda_to_target():
    """float32 on the GPU, as a run with device=cuda does it: 120 flossing steps (Adam, lr 3e-3)
    take lambda_1 of subcritical networks (g = 0.5, lambda_1 ~ -1) near zero: its mean over
    the last 20 steps within 0.1 of zero for every member (the same script on the CPU:
    -0.05 .. -0.015)."""
    R, N, k, T = 4, 32, 4, 150
    m = VanillaRNN(R, N, 1, 1)
    initialize(m, list(range(R)), g=0.5)
    m = m.cuda()
    opt = torch.optim.Adam(flossing_parameters(m), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    hist = []
    for _ in range(120):
        x = torch.randn(T, R, 1, generator=gen).cuda()
        lam, _ = floss_step(m, opt, x, k)
        hist.append(lam[:, 0])
    h = torch.stack(hist)
    assert h.device.type == "cuda"
    assert h[0].max().item() < -0.5
    assert h[-20:].mean(0).abs().max().item() < 0.1
