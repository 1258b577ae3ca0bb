"""Gradient flossing: push the first k Lyapunov exponents toward a target (paper Eq 4-8).

``L_floss = sum_{i<=k} (lambda_i - target)^2`` per member (``reduction="mean"`` gives the
reference code's mean). Flossing trains the recurrent weights, the input weights and the
bias (``W, V, b``; the paper trains ``W, V``, the reference code also ``b``) with batch 1
and no gradient clipping. The task-training update, :func:`train_step`, is here too:
one implementation of each update, used by the trainer and by ``make bench``.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor

from flossrepro.engine.lyapunov import lyapunov_loss

__all__ = ["flossing_loss", "flossing_objective", "flossing_parameters", "floss_step",
           "clip_grad_norm_per_member",
           "keep_mask", "mask_grads", "train_step"]

REDUCTIONS = ("sum", "mean")


def flossing_loss(lyapunov: Tensor, target: float | Tensor = 0.0, reduction: str = "sum") -> Tensor:
    """``lyapunov: [R, k]`` -> ``[R]``: ``sum_i (lambda_i - target)^2`` (or the mean)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not known; allowed: {list(REDUCTIONS)}")
    sq = (lyapunov - target) ** 2
    return sq.sum(-1) if reduction == "sum" else sq.mean(-1)


def flossing_objective(model, inputs: Tensor, k: int, target: float = 0.0, reduction: str = "sum",
                       **spectrum_kwargs) -> tuple[Tensor, Tensor]:
    """``(flossing loss [R], lambda [R, k])`` of one input sequence ``inputs: [T, R, S]``;
    the loss is differentiable, ``lambda`` detached (:func:`flossrepro.engine.lyapunov.lyapunov_loss`:
    on the native CPU path each member's gradient is computed right after its exponents).
    ``spectrum_kwargs`` go to :func:`flossrepro.lyapunov_spectrum` (``s_ons``, transients, ...)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not known; allowed: {list(REDUCTIONS)}")
    return lyapunov_loss(model, inputs, k, lambda lam: flossing_loss(lam, target, reduction), **spectrum_kwargs)


def flossing_parameters(model, which: Iterable[str] = ("W", "V", "b")) -> list[torch.nn.Parameter]:
    """The parameters a flossing episode trains (``U`` stands in for ``W`` in an LSTM)."""
    names = dict(model.named_parameters())
    out = []
    for w in which:
        key = "U" if (w == "W" and "W" not in names and "U" in names) else w
        if key not in names:
            raise ValueError(f"flossing.params has {w!r}, which the model does not have; allowed: {sorted(names)}")
        out.append(names[key])
    return out


@torch.no_grad()
def clip_grad_norm_per_member(params: Iterable[torch.nn.Parameter], max_norm: float) -> Tensor:
    """Clip each member's gradient (over all ``params``, leading axis R) to ``max_norm``.

    Returns the per-member norms before clipping, ``[R]``. Members never mix.
    """
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(0)
    sq = sum(p.grad.reshape(p.shape[0], -1).pow(2).sum(1) for p in params)
    norms = sq.sqrt()
    scale = torch.clamp(max_norm / (norms + 1e-12), max=1.0)
    for p in params:
        p.grad.mul_(scale.view(-1, *([1] * (p.dim() - 1))))
    return norms


def keep_mask(loss: Tensor, keep: Tensor | Callable[[Tensor], Tensor] | None) -> Tensor:
    """The members to update, ``[R]`` bool on ``loss``'s device: ``keep`` itself, ``keep(loss)``
    when it is a function of the detached loss, or the members with a finite loss (``None``)."""
    loss = loss.detach()
    if callable(keep):
        keep = keep(loss)
    finite = torch.isfinite(loss)
    return finite if keep is None else (keep.to(loss.device) & finite)


def mask_grads(params: Iterable[torch.nn.Parameter], keep: Tensor) -> None:
    """Zero the gradients of members not in ``keep: [R]`` (their parameters do not move)."""
    for p in params:
        if p.grad is not None:
            p.grad.masked_fill_(~keep.to(p.device).view(-1, *([1] * (p.dim() - 1))), 0.0)


def floss_step(model, optimizer: torch.optim.Optimizer, inputs: Tensor, k: int,
               target: float = 0.0, reduction: str = "sum",
               keep: Tensor | Callable[[Tensor], Tensor] | None = None,
               **spectrum_kwargs) -> tuple[Tensor, Tensor]:
    """One flossing update on ``inputs: [T, R, S]``; returns ``(lambda [R, k], loss [R])``.

    The optimizer should hold the flossing parameters (:func:`flossing_parameters`).
    ``keep`` (a ``[R]`` bool mask, or a function of the detached loss returning one)
    excludes members from the update (their gradients are zero); members with a
    non-finite loss are always excluded.
    """
    optimizer.zero_grad(set_to_none=True)
    loss, lam = flossing_objective(model, inputs, k, target, reduction, **spectrum_kwargs)
    keep = keep_mask(loss, keep)
    torch.where(keep, loss, torch.zeros_like(loss)).sum().backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    mask_grads(params, keep)
    for p in params:
        if p.grad is not None:
            p.grad.nan_to_num_(0.0, 0.0, 0.0)
    optimizer.step()
    return lam.detach(), loss.detach()

def train_step(model, task, batch, optimizer: torch.optim.Optimizer, params: Iterable[torch.nn.Parameter],
               clip: float | None = None, keep: Tensor | Callable[[Tensor], Tensor] | None = None,
               on_gradients: Callable[[], None] | None = None) -> tuple[Tensor, Tensor]:
    """One task-training update of an ensemble on ``batch``; returns ``(loss [R], output)`` detached.

    Forward, per-member loss, the members to update (``keep``: a ``[R]`` bool mask, or a
    function of the detached loss returning one, called before the backward; default:
    members with a finite loss), masked ``sum().backward()``, ``on_gradients()`` (diagnostics
    that read the raw gradients), per-member gradient clipping at ``clip``, the optimizer step.
    """
    params = list(params)
    optimizer.zero_grad(set_to_none=True)
    out = model(batch.inputs)
    loss = task.loss(out, batch)  # [R]
    k = keep_mask(loss, keep)
    torch.where(k, loss, torch.zeros_like(loss)).sum().backward()
    mask_grads(params, k)
    if on_gradients is not None:
        on_gradients()
    if clip is not None:
        clip_grad_norm_per_member(params, float(clip))
    optimizer.step()
    return loss.detach(), out.detach()
