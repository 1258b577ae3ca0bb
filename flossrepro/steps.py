"""The training step: one implementation, used by the trainer and by ``make bench``.

(The flossing step is :func:`flossrepro.flossing.floss_step`, used the same way.)
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor

from .flossing import clip_grad_norm_per_member, keep_mask, mask_grads

__all__ = ["train_step"]


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
