"""Condition number of the long-term Jacobian (paper Sec 5, Eq 10, Fig 2) and running
Lyapunov estimates (Fig 16).

The long-term Jacobian of a vanilla RNN over a horizon of ``t`` steps from ``h_tau`` is
``T_t = D[tau+t-1] ... D[tau]`` with ``D[s] = W diag(phi'(h_s))``. For an orthonormal
``N x m`` system ``Q_m`` the simulated quantity is ``kappa_2(T_t Q_m) = sigma_1 / sigma_m``
of the ``N x m`` product; the Lyapunov theory (Eq 10) is ``exp((lambda_1 - lambda_m) t)``.
The product's singular values span hundreds of decades, so it is never formed in float64.
Two methods, both on the same float64 factors ``W`` and ``phi'(h_s)``:

- :func:`log_singular_values` (float64, no ceiling): orthogonal iteration on ``P^T P`` for
  ``P = T_t Q_m`` carried out factor by factor. A forward pass pushes an orthonormal ``m``-frame
  ``Q_m X`` through ``D[tau] .. D[tau+t-1]`` with a QR after every factor and sums
  ``log|diag R|``; a backward pass pushes the result through ``D^T`` in reverse, then
  ``Q_m^T``, and its QR gives the next ``X``. When ``X`` holds the right singular vectors of
  ``P``, ``P X = U Sigma`` has orthogonal columns, so the summed ``log|diag R|`` of the forward
  pass are exactly ``log sigma_i``. Each forward-backward pass is one step of orthogonal
  iteration (error ~ ``(sigma_{i+1} / sigma_i)^{2p}``); before convergence the forward pass
  underestimates ``kappa`` (``r_11 <= sigma_1``, ``r_mm >= sigma_m``).
- :func:`log10_kappa_highprec`: the paper's route, the explicit product in arbitrary precision
  (python-flint ``arb_mat`` as ``bits``-bit floating point) and the singular values of that product by
  mpmath's SVD at the same precision. It resolves ``kappa`` only up to about
  ``10^(0.301 bits - 5)`` (``10^72`` at 256 bits: the precision's decimal digits less a
  5-digit margin; measured: an N=80 product read 10^78.7 and 10^79.2 where the truth was
  above 10^95 and 10^125). Values above that limit are flagged (:func:`highprec_limit`) and a
  warning is logged.

Shapes: ``W: [R, N, N]``, ``dphi: [R, T, N]`` (``phi'(h_s)`` for ``s = tau .. tau+T-1``),
``Q: [R, N, m]``. Everything is float64.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import Tensor

from flossrepro.engine.models import NONLINEARITIES

__all__ = ["jacobian_factors", "log_singular_values", "log10_kappa", "log10_kappa_highprec",
           "highprec_limit", "log10_kappa_theory", "lyapunov_trace", "record_times"]

log = logging.getLogger("flossrepro")

LN10 = math.log(10.0)


def jacobian_factors(model, inputs: Tensor, h0: Tensor, transient: int, steps: int) -> tuple[Tensor, Tensor]:
    """The float64 factors of the long-term Jacobian of a vanilla RNN along one trajectory.

    ``inputs: [transient + steps, R, S]``; ``h0: [R, N]``. The state runs ``transient`` steps
    from ``h0`` (``h_tau`` is the state after them), then ``steps`` more. Returns
    ``(W [R, N, N], dphi [R, steps, N])`` with ``D[tau+s] = W diag(dphi[:, s])``.
    """
    T = inputs.shape[0]
    if T < transient + steps:
        raise ValueError(f"inputs have {T} steps; need transient + steps = {transient + steps}")
    with torch.no_grad():
        x = inputs[: transient + steps].to(torch.float64)
        W = model.W.detach().to(torch.float64)
        V = model.V.detach().to(torch.float64)
        b = model.b.detach().to(torch.float64)
        phi, dphi_fn = NONLINEARITIES[model.nonlinearity][0], NONLINEARITIES[model.nonlinearity][1]
        h = h0.detach().to(torch.float64)
        gain = float(model.input_gain)
        out = torch.empty(W.shape[0], steps, W.shape[1], dtype=torch.float64)
        # h_tau = state after `transient` steps; D[s] uses phi'(h_s), then h_{s+1} = W phi(h_s) + V x_s + b
        for t in range(transient + steps):
            if t >= transient:
                out[:, t - transient] = dphi_fn(h)
            h = torch.einsum("rij,rj->ri", W, phi(h)) + gain * torch.einsum("rij,rj->ri", V, x[t]) + b
    return W, out


def _forward(W: Tensor, dphi: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
    acc = torch.zeros(Y.shape[0], Y.shape[2], dtype=Y.dtype)
    for s in range(dphi.shape[1]):
        Y, Rr = torch.linalg.qr(torch.bmm(W, dphi[:, s, :, None] * Y))
        acc += torch.diagonal(Rr, dim1=-2, dim2=-1).abs().log()
    return Y, acc


def _backward(Wt: Tensor, dphi: Tensor, Z: Tensor) -> tuple[Tensor, Tensor]:
    acc = torch.zeros(Z.shape[0], Z.shape[2], dtype=Z.dtype)
    for s in range(dphi.shape[1] - 1, -1, -1):
        Z, Rr = torch.linalg.qr(dphi[:, s, :, None] * torch.bmm(Wt, Z))
        acc += torch.diagonal(Rr, dim1=-2, dim2=-1).abs().log()
    return Z, acc


def log_singular_values(W: Tensor, dphi: Tensor, Q: Tensor, *, X0: Tensor | None = None,
                        max_passes: int = 60, tol: float = 1e-8) -> tuple[Tensor, Tensor, int]:
    """Natural logs of the singular values of ``P = D[T-1] ... D[0] Q`` in float64, never forming ``P``.

    ``W: [R, N, N]``, ``dphi: [R, T, N]`` (``D[s] = W diag(dphi[:, s])``; ``T = 0`` is the
    identity), ``Q: [R, N, m]`` orthonormal. ``X0: [R, m, m]`` an orthogonal start (e.g. the
    converged ``X`` of a nearby horizon); default the identity. Passes stop when ``log10
    kappa`` of the forward pass moved by less than ``tol`` in the last pass and agrees with
    the backward pass's estimate to ``tol`` (every member), or after ``max_passes``.

    Returns ``(log_sigma [R, m]`` in descending order, ``X [R, m, m]`` (approximate right
    singular vectors of ``P``), ``passes)``.
    """
    R, N, m = Q.shape
    X = torch.eye(m, dtype=torch.float64).expand(R, m, m).clone() if X0 is None else X0
    Wt = W.transpose(1, 2)
    prev = None
    passes = 0
    for passes in range(1, max_passes + 1):
        Y, lf = _forward(W, dphi, torch.bmm(Q, X))
        Z, lb = _backward(Wt, dphi, Y)
        X, Rx = torch.linalg.qr(torch.bmm(Q.transpose(1, 2), Z))
        lb = lb + torch.diagonal(Rx, dim1=-2, dim2=-1).abs().log()
        lf = torch.sort(lf, dim=-1, descending=True).values
        kf, kb = log10_kappa(lf), log10_kappa(torch.sort(lb, dim=-1, descending=True).values)
        # converged: the forward estimate stopped moving and agrees with the backward one
        if prev is not None and float((kf - prev).abs().max()) < tol and float((kf - kb).abs().max()) < tol:
            break
        prev = kf
    return lf, X, passes


def log10_kappa(log_sigma: Tensor) -> Tensor:
    """``log10 kappa_2`` from descending natural-log singular values ``[..., m]``."""
    return (log_sigma[..., 0] - log_sigma[..., -1]) / LN10


def log10_kappa_theory(lam: Tensor, t: float, m: int) -> Tensor:
    """Paper Eq 10 in log10: ``(lambda_1 - lambda_m) t / ln 10`` for sorted exponents ``lam: [..., k]``."""
    if not 1 <= m <= lam.shape[-1]:
        raise ValueError(f"m={m} must be between 1 and the number of exponents given ({lam.shape[-1]})")
    return (lam[..., 0] - lam[..., m - 1]) * t / LN10


def highprec_limit(bits: int) -> float:
    """The largest ``log10 kappa`` an explicit product and SVD at ``bits`` bits resolves:
    the precision's decimal digits (``bits log10 2``) less a 5-digit margin."""
    return bits * math.log10(2.0) - 5.0


def log10_kappa_highprec(W: Tensor, dphi: Tensor, Q: Tensor, horizons, bits: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``log10 kappa_2(T_t Q)`` from the explicit product in ``bits``-bit arithmetic.

    The product ``P_t = D[t-1] P_{t-1}``, ``P_0 = Q``, is accumulated with python-flint
    ``arb_mat`` at ``bits`` bits (the float64 factors are exact there) as plain ``bits``-bit
    floating point, as MPFR would: the error radius is dropped after every product (arb's
    radii are worst-case bounds that grow like ``|D|^t``, and flint lowers the working
    precision of a product to match them: measured, the midpoints then lost all accuracy by
    t = 200 at N = 80 while 256-bit floating point kept them). At each horizon
    in ``horizons`` (steps, ascending, ``<= T``) the midpoints go to an mpmath matrix and
    ``mpmath.svd_r`` gives the singular values at the same precision.

    Returns ``(log10_kappa [R, H], saturated [R, H] bool)``: ``saturated`` where the value
    exceeds :func:`highprec_limit` (the number there is a floor set by the precision, not a
    measurement); a warning is logged for them.
    """
    try:
        import flint
        import mpmath
    except ImportError as e:  # pragma: no cover - both are dependencies of the package
        raise RuntimeError("the high-precision condition number needs python-flint and mpmath "
                           "(pip install python-flint mpmath)") from e
    hs = [int(h) for h in horizons]
    if hs != sorted(hs) or (hs and (hs[0] < 0 or hs[-1] > dphi.shape[1])):
        raise ValueError(f"horizons must be ascending within 0..{dphi.shape[1]}, got {hs}")
    R, N, m = Q.shape
    out = np.full((R, len(hs)), np.nan)
    limit = highprec_limit(bits)
    old = flint.ctx.prec
    flint.ctx.prec = int(bits)
    try:
        with mpmath.workprec(int(bits)):
            for r in range(R):
                Wr = W[r].numpy()
                P = flint.arb_mat(N, m, Q[r].numpy().ravel().tolist())
                j, done = 0, 0
                while j < len(hs) and hs[j] == 0:
                    out[r, j] = _svd_log10_kappa(P, N, m, mpmath)
                    j += 1
                for s in range(dphi.shape[1]):
                    if j >= len(hs):
                        break
                    D = Wr * dphi[r, s].numpy()[None, :]
                    P = (flint.arb_mat(N, N, D.ravel().tolist()) * P).mid()
                    done = s + 1
                    while j < len(hs) and hs[j] == done:
                        out[r, j] = _svd_log10_kappa(P, N, m, mpmath)
                        j += 1
    finally:
        flint.ctx.prec = old
    sat = out > limit
    if sat.any():
        first = min(hs[j] for j in range(len(hs)) if sat[:, j].any())
        log.warning("high-precision condition number: %d of %d values exceed what %d bits resolve "
                    "(log10 kappa > %.1f, from horizon %d on); they are floors set by the precision, "
                    "not measurements: raise the precision or use the float64 method",
                    int(sat.sum()), sat.size, bits, limit, first)
    return out, sat


def _svd_log10_kappa(P, N: int, m: int, mpmath) -> float:
    """``log10(sigma_1 / sigma_m)`` of an arb matrix's midpoints by mpmath's SVD at the working
    precision. The entries are first scaled by a power of two (exact) so the largest is O(1):
    mpmath's SVD stops on an absolute tolerance, and a product whose entries are 1e-60 would
    otherwise lose its small singular values."""
    vals = [[mpmath.mpf(P[i, j].mid()) for j in range(m)] for i in range(N)]
    big = max(abs(v) for row in vals for v in row)
    if big == 0:
        return math.nan
    e = int(mpmath.floor(mpmath.log(big, 2)))
    M = mpmath.matrix([[mpmath.ldexp(v, -e) for v in row] for row in vals])
    s = mpmath.svd_r(M, compute_uv=False)
    sv = sorted((abs(s[i]) for i in range(m)), reverse=True)
    if sv[-1] == 0:
        return math.inf
    return float(mpmath.log10(sv[0] / sv[-1]))


def record_times(steps: int, n: int) -> list[int]:
    """About ``n`` log-spaced simulation times in ``1..steps`` (distinct integers, ``steps`` last)."""
    if steps < 1 or n < 1:
        raise ValueError(f"steps={steps} and n={n} must be >= 1")
    t = np.unique(np.round(np.logspace(0, math.log10(steps), n)).astype(int))
    return sorted(set(t.tolist()) | {steps})


def lyapunov_trace(model, inputs: Tensor, h0: Tensor, Q0: Tensor, times) -> Tensor:
    """Running Lyapunov estimates ``sum_{s<t} log|R_ii| / t`` at the given simulation times.

    QR (Benettin) method with a QR after every step (``t_ONS = 1``) and no transient: the
    estimate at time ``t`` averages the first ``t`` steps. ``inputs: [T, R, S]`` with ``T >=
    max(times)``; ``h0: [R, N]``; ``Q0: [R, N, k]`` orthonormal. Returns ``[len(times), R, k]``
    (float64; the exponents in the order the QR method gives them). Runs in the model's dtype.
    """
    ts = sorted(int(t) for t in times)
    if not ts or ts[0] < 1 or ts[-1] > inputs.shape[0]:
        raise ValueError(f"times must lie in 1..{inputs.shape[0]}, got {ts[:3]}...{ts[-1:]}")
    out = torch.empty(len(ts), Q0.shape[0], Q0.shape[2], dtype=torch.float64)
    with torch.no_grad():
        dt = model.W.dtype
        h = h0.to(dt)[:, None, :]
        Q = Q0.to(dt)
        acc = torch.zeros(Q.shape[0], Q.shape[2], dtype=torch.float64)
        j = 0
        x = inputs.to(dt)
        for t in range(ts[-1]):
            Q, Rr = torch.linalg.qr(model.jacobian_apply(h[:, 0], Q))
            acc += torch.diagonal(Rr, dim1=-2, dim2=-1).abs().log().to(torch.float64)
            h = model.step(h, x[t][:, None, :])
            while j < len(ts) and ts[j] == t + 1:
                out[j] = acc / (t + 1)
                j += 1
    return out
