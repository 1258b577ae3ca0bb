"""Gradient flossing inside your own training loop, for any network :func:`flossrepro.lyapunov_spectrum`
takes (``torch.nn.RNN``/``GRU``/``LSTM`` and their cells, a function ``cell(x_t, h) -> h_next``,
the project's models)::

    lstm = torch.nn.LSTM(1, 32)
    flosser = Flosser(lstm, k=16, lr=1e-3)
    history = flosser.episode(lambda: torch.randn(100, 1, 1), epochs=200)   # preflossing
    ... train lstm on the task; call flosser.episode(...) again between training epochs ...

One update (:meth:`Flosser.step`) is the paper's Algorithm 1: the first ``k`` exponents of the
network driven by ``x``, the loss ``sum_{i<=k} (lambda_i - target)^2`` (``reduction="mean"``: the
mean; averaged over the sequences of a batch), its gradient through the QR method, one
optimizer step (Adam by default, no clipping, as the paper's flossing).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor

from flossrepro.engine.flossing import flossing_loss
from flossrepro.engine.lyapunov import lyapunov_spectrum

__all__ = ["Flosser"]


class Flosser:
    """Flosses ``model``: pushes its first ``k`` Lyapunov exponents toward ``target``.

    Args:
        model: the network (see the module docstring).
        k: number of exponents flossed.
        target: the exponents' target (paper: 0; Fig 1B also -1 and -0.5).
        optimizer: a ``torch.optim`` optimizer over the flossed parameters; default
            ``Adam(params, lr)``.
        lr: learning rate of the default optimizer.
        params: the tensors flossing trains (default: every parameter of ``model`` that requires
            grad; a plain function cell has none, so give the tensors it reads).
        reduction: ``"sum"`` (paper Eq 4) or ``"mean"`` (the reference code) over the ``k`` exponents.
        **spectrum_kwargs: ``s_ons``, ``transient_h``, ``transient_q``, ``h0``, ``q0`` for
            :func:`flossrepro.lyapunov_spectrum` (same meaning).
    """

    def __init__(self, model, k: int, *, target: float = 0.0, optimizer: torch.optim.Optimizer | None = None,
                 lr: float = 1e-3, params: Iterable[Tensor] | None = None, reduction: str = "sum",
                 **spectrum_kwargs):
        unknown = set(spectrum_kwargs) - {"s_ons", "transient_h", "transient_q", "h0", "q0"}
        if unknown:
            raise ValueError(f"Flosser got unknown arguments {sorted(unknown)}; allowed: s_ons, transient_h, "
                             "transient_q, h0, q0 (and k, target, optimizer, lr, params, reduction)")
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction={reduction!r} is not known; allowed: sum, mean")
        if params is None and optimizer is None:
            if not isinstance(model, torch.nn.Module):
                raise ValueError("params: a function cell has no parameters() to floss; pass params=[...] "
                                 "(the tensors the cell reads) or an optimizer over them")
            params = [p for p in model.parameters() if p.requires_grad]
        if params is not None:
            params = list(params)
            if not params:
                raise ValueError("params: nothing to floss (no tensor requires grad); pass the tensors to train")
        self.model, self.k, self.target, self.reduction = model, k, float(target), reduction
        self.optimizer = optimizer if optimizer is not None else torch.optim.Adam(params, lr=lr)
        self.spectrum_kwargs = spectrum_kwargs

    def loss(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(loss, lambda)``: the flossing loss (a differentiable scalar, the mean over sequences) and
        the exponents ``[B, k]`` (detached) of ``model`` driven by ``x`` (as the model takes inputs)."""
        lam = lyapunov_spectrum(self.model, x, self.k, **self.spectrum_kwargs)
        loss = flossing_loss(lam, self.target, self.reduction).mean()
        return loss, lam.detach()

    def step(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """One flossing update on ``x``; returns ``(loss, lambda)`` before the update, detached. A
        non-finite loss (diverged dynamics, a dead ReLU population) skips the update."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, lam = self.loss(x)
        if torch.isfinite(loss):
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), lam

    def episode(self, x_or_sampler: Tensor | Callable[[], Tensor], epochs: int,
                callback: Callable[[int, Tensor, Tensor], None] | None = None) -> dict:
        """``epochs`` flossing updates, each on ``x_or_sampler()`` (fresh inputs, as the paper) or on
        the same tensor. ``callback(epoch, loss, lambda)`` after each. Returns the history
        ``{"loss": [E] floats, "lambda_1": [E] floats (mean over sequences), "lambda": [E, B, k]}``."""
        if int(epochs) < 0:
            raise ValueError(f"epochs={epochs} must be >= 0")
        losses, l1, lams = [], [], []
        for e in range(int(epochs)):
            x = x_or_sampler() if callable(x_or_sampler) else x_or_sampler
            loss, lam = self.step(x)
            lam2 = lam if lam.dim() == 2 else lam[None]
            losses.append(float(loss))
            l1.append(float(lam2[:, 0].mean()))
            lams.append(lam2)
            if callback is not None:
                callback(e, loss, lam)
        return {"loss": losses, "lambda_1": l1, "lambda": torch.stack(lams) if lams else torch.empty(0)}
