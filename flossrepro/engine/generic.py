"""Lyapunov spectra of any PyTorch recurrent network, differentiable: ``torch.nn.RNN``, ``GRU``,
``LSTM`` (any number of layers, either ``batch_first``), their cells, and any function or module
``cell(x_t, h) -> h_next``.

Every network becomes a :class:`Recurrence`: a one-step map on the flat state ``s: [B, n]``.
For PyTorch's modules the flat state is ``[h_1; c_1; h_2; c_2; ...]`` (``c`` only for the LSTM,
layers in order; with ``proj_size`` the ``h`` parts have ``proj_size`` entries), and the map is
the module's own update written with its own weights (:class:`TorchSpec`; the tests check it
against the module's forward); for a user cell it is the cell itself, its state a tensor or a
tuple of tensors concatenated in order.

The spectrum (paper Algorithm 2, the conventions of :func:`flossrepro.lyapunov_spectrum`):
``S[0] = h0``, ``S[t+1] = step(x[t], S[t])``; the Q steps use ``D[t] = dS[t+1]/dS[t]`` at
``(x[t], S[t])`` for ``t >= transient_h``; a QR every ``s_ons`` steps; ``transient_q`` steps
evolve Q without accumulating ``log|R_ii|``.

forward
    the trajectory without a graph (one call of the step per time step); all one-step
    Jacobians in one call, ``vmap`` over time and batch of ``torch.func.jacrev`` of the one-step
    map on one row; the tangent loop ``Q <- D[t] Q`` with a QR every ``s_ons`` steps
    (:class:`_TangentLoop`; for ``k = 1`` the QR is a normalisation).
backward
    the tangent loop in reverse with the QR pullback (paper Eq 8) gives ``Dbar[t] = Abar[t]
    Q_in[t]^T``; autograd carries it through the Jacobians' graph (second derivatives of the
    step) to the states, the parameters and the inputs; the states' gradient goes through the
    trajectory by the adjoint ``a[t] = gS[t] + D[t]^T a[t+1]`` (one bmm per step,
    :class:`_StateAdjoint`) into one batched evaluation of the step over all ``t``, whose graph
    gives the parameters' share. Gradients reach every tensor the step reads (a module's
    parameters, a cell's captured tensors), ``h0``, ``q0`` and the inputs.

Cost: the dense ``n x n`` Jacobians take ``T B n^2`` memory.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flossrepro.engine.tangent import (_check_k, _check_lengths, _qr_schedule, default_transients,
                                      jacobian_tangent_backward, jacobian_tangent_forward, random_orthonormal)

__all__ = ["generic_spectrum", "Recurrence", "TorchSpec", "recurrence_of", "spectrum_of"]


# ----------------------------------------------------------------------------- the one-step map
class Recurrence:
    """A one-step map on flat states, all the generic path needs of a network.

    ``step(x [B, S], s [B, n]) -> [B, n]`` (rows independent); ``n`` the state dimension.
    ``row_params``: ``None`` when all rows share the parameters, else a pytree whose leaves
    carry the row axis first (an ensemble: row ``r`` is member ``r``); ``row(x [S], s [n], p)``
    is the step of one row with ``p`` its slice of ``row_params`` (``None`` when shared).
    """

    def __init__(self, step: Callable, row: Callable, n: int, row_params=None):
        self.step, self.row, self.n, self.row_params = step, row, int(n), row_params

    def step_many(self, x: Tensor, S: Tensor) -> Tensor:
        """The step at many time points at once: ``x: [M, B, S]``, ``S: [M, B, n]`` -> ``[M, B, n]``."""
        M, B = S.shape[:2]
        if self.row_params is None:  # shared parameters: M B independent rows
            return self.step(x.reshape(M * B, x.shape[-1]), S.reshape(M * B, self.n)).reshape(M, B, self.n)
        return self.step(x.transpose(0, 1), S.transpose(0, 1)).transpose(0, 1)  # rows first, time as a batch

    def jacobians(self, x: Tensor, S: Tensor) -> Tensor:
        """``D[t, b] = d step(x[t, b], S[t, b]) / d S[t, b]``: ``[M, B, n, n]`` in one vmapped jacrev."""
        M, B = S.shape[:2]
        jac = torch.func.jacrev(self.row, argnums=1)
        if self.row_params is None:
            J = torch.func.vmap(jac, in_dims=(0, 0, None))(x.reshape(M * B, x.shape[-1]), S.reshape(M * B, self.n), None)
            return J.reshape(M, B, self.n, self.n)
        per_row = torch.func.vmap(jac, in_dims=(0, 0, 0))
        return torch.func.vmap(per_row, in_dims=(0, 0, None))(x, S, self.row_params)


def _lin(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """``x w^T + b``; ``w: [out, in]`` shared, or ``[R, out, in]`` per row with ``x: [R, in]`` or ``[R, M, in]``."""
    if w.dim() == 2:
        return F.linear(x, w, b)
    if x.dim() == 2:
        y = torch.matmul(x.unsqueeze(-2), w.transpose(-1, -2)).squeeze(-2)
        return y if b is None else y + b
    y = torch.matmul(x, w.transpose(-1, -2))
    return y if b is None else y + b.unsqueeze(-2)


class TorchSpec:
    """The update of a ``torch.nn.RNN``/``GRU``/``LSTM`` (or ``RNNCell``/``GRUCell``/``LSTMCell``) as a
    function of its weights, on the flat state ``[h_1; c_1; h_2; c_2; ...]``.

    ``step(p, x, s)``: ``p`` maps the module's parameter names (``weight_ih_l0``, ... or
    ``weight_ih``, ... for a cell) to tensors ``[out, in]``, or to ``[R, out, in]`` stacks for
    ``R`` rows (then ``x: [R, S]`` or ``[R, M, S]``); ``x: [..., S]``, ``s: [..., n]`` -> ``[..., n]``.
    PyTorch's equations: RNN ``h' = phi(W_ih x + b_ih + W_hh h + b_hh)``; GRU ``r, z = sigmoid(...)``,
    ``n = tanh(W_in x + b_in + r (W_hn h + b_hn))``, ``h' = (1 - z) n + z h``; LSTM (gates i, f, g, o)
    ``c' = f c + i g``, ``h' = o tanh(c')`` (times ``W_hr`` with ``proj_size``). Layer ``l > 0``
    takes layer ``l - 1``'s new ``h`` as its input.
    """

    def __init__(self, module: nn.Module):
        if isinstance(module, nn.RNNBase):
            if module.bidirectional:
                raise ValueError(f"model: a bidirectional {type(module).__name__} has no dynamics forward in time "
                                 "(its second direction runs from the end of the sequence); use bidirectional=False, "
                                 "or pass the forward direction as a module of its own")
            if module.dropout > 0 and module.training:
                raise ValueError(f"model: {type(module).__name__}(dropout={module.dropout}) in training mode drops "
                                 "units between layers at random, so the dynamics are not one map; call "
                                 "model.eval() (no dropout) or use dropout=0")
            self.mode, self.L, self.cell = module.mode, module.num_layers, False
            self.P = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
            self.batch_first = module.batch_first
            sfx = [f"_l{l}" for l in range(self.L)]
        elif isinstance(module, nn.RNNCellBase):
            if isinstance(module, nn.LSTMCell):
                mode = "LSTM"
            elif isinstance(module, nn.GRUCell):
                mode = "GRU"
            else:
                mode = "RNN_RELU" if getattr(module, "nonlinearity", "tanh") == "relu" else "RNN_TANH"
            self.mode, self.L, self.cell, self.P, self.batch_first = mode, 1, True, module.hidden_size, False
            sfx = [""]
        else:  # pragma: no cover - callers check
            raise ValueError(f"model: {type(module).__name__} is not a torch.nn RNN, GRU or LSTM (module or cell)")
        self.H, self.S, self.bias = module.hidden_size, module.input_size, module.bias
        self.lstm = self.mode == "LSTM"
        proj = self.lstm and not self.cell and self.P != self.H
        self.names = [(f"weight_ih{s}", f"weight_hh{s}", f"bias_ih{s}" if self.bias else None,
                       f"bias_hh{s}" if self.bias else None, f"weight_hr{s}" if proj else None) for s in sfx]
        self.layer_sizes = [self.P + self.H if self.lstm else self.H for _ in range(self.L)]

    @property
    def n(self) -> int:
        return sum(self.layer_sizes)

    def step(self, p: dict, x: Tensor, s: Tensor) -> Tensor:
        out, inp, off = [], x, 0
        H, P = self.H, self.P
        for w_ih, w_hh, b_ih, b_hh, w_hr in self.names:
            w_ih, w_hh = p[w_ih], p[w_hh]
            b_ih = p[b_ih] if b_ih else None
            b_hh = p[b_hh] if b_hh else None
            if self.lstm:
                h, c = s[..., off:off + P], s[..., off + P:off + P + H]
                off += P + H
                i, f, g, o = (_lin(inp, w_ih, b_ih) + _lin(h, w_hh, b_hh)).chunk(4, -1)
                c2 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h2 = torch.sigmoid(o) * torch.tanh(c2)
                if w_hr:
                    h2 = _lin(h2, p[w_hr], None)
                out += [h2, c2]
            elif self.mode == "GRU":
                h = s[..., off:off + H]
                off += H
                ir, iz, in_ = _lin(inp, w_ih, b_ih).chunk(3, -1)
                hr, hz, hn = _lin(h, w_hh, b_hh).chunk(3, -1)
                r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                nn_ = torch.tanh(in_ + r * hn)
                h2 = nn_ + z * (h - nn_)
                out.append(h2)
            else:
                h = s[..., off:off + H]
                off += H
                a = _lin(inp, w_ih, b_ih) + _lin(h, w_hh, b_hh)
                h2 = torch.tanh(a) if self.mode == "RNN_TANH" else torch.relu(a)
                out.append(h2)
            inp = h2
        return torch.cat(out, -1) if len(out) > 1 else out[0]

    # -- the module's state conventions <-> the flat state ------------------------------------
    def flat_state(self, h0, B: int | None, like: Tensor) -> Tensor:
        """The module's initial state (``None``: zeros) as ``[B, n]`` (``B = None``: unbatched, ``[n]``)."""
        kw = dict(dtype=like.dtype, device=like.device)
        shape_b = () if B is None else (B,)
        if h0 is None:
            return torch.zeros(*shape_b, self.n, **kw)
        if self.lstm:
            if not (isinstance(h0, (tuple, list)) and len(h0) == 2 and all(isinstance(t, Tensor) for t in h0)):
                raise ValueError(f"h0: an LSTM's initial state is a pair (h0, c0), got {_describe(h0)}; "
                                 f"pass h0=(h0, c0)")
            parts = [(h0[0], self.P, "h0[0]"), (h0[1], self.H, "h0[1]")]
        else:
            if not isinstance(h0, Tensor):
                raise ValueError(f"h0: a {'GRU' if self.mode == 'GRU' else 'RNN'} state is one tensor, got {_describe(h0)}")
            parts = [(h0, self.H, "h0")]
        lead = () if self.cell else (self.L,)
        per_layer = []
        for t, width, label in parts:
            want = lead + shape_b + (width,)
            if tuple(t.shape) != want:
                dims = ("num_layers, " if not self.cell else "") + ("B, " if B is not None else "") + "H"
                raise ValueError(f"{label}: shape {tuple(t.shape)}, expected {want} ([{dims}] as the module "
                                 f"takes it; inputs give B={B})" if B is not None else
                                 f"{label}: shape {tuple(t.shape)}, expected {want} (unbatched input)")
            per_layer.append(t if not self.cell else t.unsqueeze(0))
        chunks = []
        for l in range(self.L):
            chunks += [pl[l] for pl in per_layer]
        return torch.cat(chunks, -1).to(**kw) if len(chunks) > 1 else chunks[0].to(**kw)


def _describe(v) -> str:
    if isinstance(v, Tensor):
        return f"a tensor of shape {tuple(v.shape)}"
    if isinstance(v, (tuple, list)):
        return f"a {type(v).__name__} of {len(v)} (" + ", ".join(_describe(t) for t in v) + ")"
    return f"a {type(v).__name__}"


def _check_inputs(inputs, what: str) -> Tensor:
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
        raise ValueError(f"inputs: {_describe(inputs)}, expected a floating-point tensor {what}")
    return inputs


def _module_recurrence(model: nn.Module, inputs: Tensor, h0):
    """``(Recurrence, x [T, B, S], s0 [B, n], unbatched)`` for a PyTorch RNN module or cell."""
    spec = TorchSpec(model)
    params = dict(model.named_parameters())
    w = params[spec.names[0][0]]
    layout = "[B, T, S]" if spec.batch_first else "[T, B, S]"
    inputs = _check_inputs(inputs, f"{layout} (or [T, S] unbatched)")
    if inputs.dim() not in (2, 3) or inputs.shape[-1] != spec.S:
        raise ValueError(f"inputs: shape {tuple(inputs.shape)}, expected {layout} with S={spec.S} "
                         f"(the module's input_size), or [T, {spec.S}] for one unbatched sequence")
    if inputs.dtype != w.dtype or inputs.device != w.device:
        raise ValueError(f"inputs: {inputs.dtype} on {inputs.device}, but the module's parameters are {w.dtype} "
                         f"on {w.device}; convert one of them (e.g. inputs.to(module.weight_hh_l0) or module.double())"
                         .replace("weight_hh_l0", spec.names[0][1]))
    unbatched = inputs.dim() == 2
    x = inputs[:, None] if unbatched else (inputs.transpose(0, 1) if spec.batch_first else inputs)
    s0 = spec.flat_state(h0, None if unbatched else x.shape[1], w)
    if unbatched:
        s0 = s0[None]

    def step(xb, sb):
        return spec.step(params, xb, sb)

    def row(xr, sr, _p):
        return spec.step(params, xr[None], sr[None])[0]

    return Recurrence(step, row, spec.n), x, s0, unbatched


def _flatten_state(h) -> tuple[Tensor, Callable]:
    """``(flat [B, n], unflatten)`` for a state that is a tensor ``[B, n]`` or a tuple of them."""
    if isinstance(h, Tensor):
        if h.dim() != 2:
            raise ValueError(f"h0: shape {tuple(h.shape)}, expected [B, n] (a tensor per row of the batch) "
                             "or a tuple of [B, n_i] tensors")
        return h, lambda s: s
    if isinstance(h, (tuple, list)) and h and all(isinstance(t, Tensor) and t.dim() == 2 for t in h):
        B = h[0].shape[0]
        if any(t.shape[0] != B for t in h):
            raise ValueError(f"h0: the parts of the state have different batch sizes ({_describe(h)}); "
                             "give every part [B, n_i] with the same B")
        sizes = [t.shape[1] for t in h]
        kind = type(h) if isinstance(h, tuple) and type(h) is not tuple and hasattr(h, "_fields") else tuple
        return torch.cat(list(h), -1), (lambda s: kind(*s.split(sizes, -1)) if kind is not tuple
                                        else tuple(s.split(sizes, -1)))
    raise ValueError(f"h0: {_describe(h)}; a cell's state is a tensor [B, n] or a tuple of [B, n_i] tensors")


def _same_structure(a, b) -> bool:
    if isinstance(a, Tensor):
        return isinstance(b, Tensor) and a.shape == b.shape
    return (isinstance(b, (tuple, list)) and len(a) == len(b)
            and all(isinstance(u, Tensor) and isinstance(v, Tensor) and u.shape == v.shape for u, v in zip(a, b)))


def _cell_recurrence(cell: Callable, inputs: Tensor, h0):
    """``(Recurrence, x [T, B, S], s0 [B, n], False)`` for a cell ``cell(x_t, h) -> h_next``."""
    if h0 is None:
        raise ValueError("h0: a cell's state size is not known without it; pass h0=tensor [B, n] "
                         "(or a tuple of [B, n_i] tensors) as the cell takes its state")
    inputs = _check_inputs(inputs, "[T, B, S]")
    if inputs.dim() != 3:
        raise ValueError(f"inputs: shape {tuple(inputs.shape)}, expected [T, B, S] for a cell")
    s0, unflat = _flatten_state(h0)
    if s0.shape[0] != inputs.shape[1]:
        raise ValueError(f"h0: batch size {s0.shape[0]}, but inputs [T, B, S] have B={inputs.shape[1]}; "
                         "give one initial state per input sequence")
    with torch.no_grad():
        out = cell(inputs[0], unflat(s0))
    if not _same_structure(h0 if isinstance(h0, Tensor) else tuple(h0), out):
        raise ValueError(f"cell: its state does not round-trip: given h as {_describe(h0)} it returned "
                         f"{_describe(out)}; the cell must return the next state in the structure and shapes of h "
                         "(a tensor [B, n], or a tuple of [B, n_i] tensors in the same order)")
    n = s0.shape[1]

    def step(xb, sb):
        o = cell(xb, unflat(sb))
        return o if isinstance(o, Tensor) else torch.cat(list(o), -1)

    def row(xr, sr, _p):
        return step(xr[None], sr[None])[0]

    return Recurrence(step, row, n), inputs, s0, False


def _ensemble_recurrence(model, inputs: Tensor, h0):
    """``(Recurrence, x [T, R, S], s0 [R, n], False)`` for an ensemble with ``as_recurrence()``
    (:mod:`flossrepro.engine.torch_modules`): one sequence per member, as the project's models take it."""
    R, S = model.n_members, model.n_in
    inputs = _check_inputs(inputs, f"[T, R={R}, S={S}]")
    if inputs.dim() == 4 and inputs.shape[2] == 1:
        inputs = inputs[:, :, 0]
    if inputs.dim() != 3 or inputs.shape[1] != R or inputs.shape[2] != S:
        raise ValueError(f"inputs: shape {tuple(inputs.shape)}, expected [T, R={R}, S={S}] (one sequence per member)")
    rec = model.as_recurrence()
    s0 = model.initial_state(1)[:, 0] if h0 is None else h0
    if not isinstance(s0, Tensor) or tuple(s0.shape) != (R, rec.n):
        raise ValueError(f"h0: {_describe(s0)}, expected [R={R}, n={rec.n}]")
    return rec, model.input_gain * inputs, s0, False


def recurrence_of(model, inputs: Tensor, h0=None):
    """``(Recurrence, x [T, B, S], s0 [B, n], unbatched)``: ``model`` and its arguments in the
    generic path's terms (time-major inputs, flat initial state)."""
    if isinstance(model, (nn.RNNBase, nn.RNNCellBase)):
        return _module_recurrence(model, inputs, h0)
    if hasattr(model, "as_recurrence"):
        return _ensemble_recurrence(model, inputs, h0)
    if callable(model):
        return _cell_recurrence(model, inputs, h0)
    raise ValueError(f"model: {_describe(model)} is not a recurrent network; pass a torch.nn.RNN/GRU/LSTM, one of "
                     "their cells, or a function cell(x_t, h) -> h_next")


# ----------------------------------------------------------------------------- the tangent loop
class _TangentLoop(torch.autograd.Function):
    """``lambda: [B, k]`` from the Jacobians ``D: [Tq, B, n, n]`` of the tangent steps and ``Q0: [B, n, k]``
    (the tangent loop of :mod:`flossrepro.engine.tangent`, as the gated networks use it); the backward
    gives ``Dbar[s] = Abar[s] Q_in[s]^T`` and ``Q0bar``."""

    @staticmethod
    def forward(ctx, D, Q0, flags, transient_q, t_sim):
        lam, tape = jacobian_tangent_forward(D, Q0, flags, transient_q, t_sim)
        ctx.save_for_backward(D)
        ctx.tangent, ctx.conf = tape, (flags, transient_q, t_sim)
        return lam

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dlam):
        (D,) = ctx.saved_tensors
        Dbar, Qbar = jacobian_tangent_backward(D, ctx.tangent, dlam, *ctx.conf)
        return Dbar, Qbar, None, None, None


class _Slot:
    """Hands the Jacobians, computed after :class:`_StateAdjoint`'s forward, to its backward."""
    D: Tensor | None = None


class _StateAdjoint(torch.autograd.Function):
    """The trajectory ``S: [T, B, n]`` as a function of ``s0`` and the one-step images ``nxt[t] =
    step(x[t], S[t])`` (evaluated at the detached states, so ``nxt`` carries the parameters'
    and inputs' graph). Backward: ``a[t] = gS[t] + D[t]^T a[t+1]``; ``s0`` gets ``a[0]``, ``nxt[t]``
    gets ``a[t+1]``."""

    @staticmethod
    def forward(ctx, s0, nxt, S, slot):
        ctx.slot = slot
        return S.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gS):
        D = ctx.slot.D
        T = gS.shape[0]
        a = gS.unsqueeze(-1).contiguous()  # [T, B, n, 1]
        for t in range(T - 2, -1, -1):
            a[t].baddbmm_(D[t].transpose(1, 2), a[t + 1])
        a = a[..., 0]
        return a[0], a[1:], None, None


def _trajectory(rec: Recurrence, x: Tensor, s0: Tensor) -> Tensor:
    """``S[0] = s0``, ``S[t+1] = step(x[t], S[t])``: ``[T, B, n]``, no graph."""
    T = x.shape[0]
    S = torch.empty(T, *s0.shape, dtype=s0.dtype, device=s0.device)
    with torch.no_grad():
        s = s0.detach()
        S[0] = s
        for t in range(T - 1):
            s = rec.step(x[t], s)
            S[t + 1] = s
    return S


def spectrum_of(rec: Recurrence, x: Tensor, s0: Tensor, q0: Tensor, flags: list[bool], transient_h: int,
                transient_q: int, t_sim: int) -> Tensor:
    """``[B, k]`` exponents of ``rec`` on ``x: [T, B, S]`` from ``s0: [B, n]``, ``q0: [B, n, k]``."""
    T = x.shape[0]
    S = _trajectory(rec, x, s0)
    th = transient_h
    if not torch.is_grad_enabled():
        D = rec.jacobians(x[th:], S[th:])
        return _TangentLoop.apply(D, q0, flags, transient_q, t_sim)
    if T > 1:
        nxt = rec.step_many(x[:-1], S[:-1])
        if nxt.requires_grad or s0.requires_grad:
            slot = _Slot()
            Sg = _StateAdjoint.apply(s0, nxt, S, slot)
            Dall = rec.jacobians(x, Sg)
            slot.D = Dall.detach()
            return _TangentLoop.apply(Dall[th:], q0, flags, transient_q, t_sim)
    elif s0.requires_grad:
        S = s0[None]
    D = rec.jacobians(x[th:], S[th:])
    return _TangentLoop.apply(D, q0, flags, transient_q, t_sim)


def generic_spectrum(model, inputs: Tensor, k: int, *, s_ons: int = 1, transient_h: int | None = None,
                     transient_q: int | None = None, h0=None, q0: Tensor | None = None) -> Tensor:
    """First ``k`` Lyapunov exponents (per time step) of any PyTorch recurrent network.

    Args:
        model: ``torch.nn.RNN`` (tanh or relu), ``GRU`` or ``LSTM`` (any ``num_layers``, either
            ``batch_first``, ``proj_size`` for the LSTM; not bidirectional; dropout only in eval
            mode); ``RNNCell``, ``GRUCell`` or ``LSTMCell``; an ensemble of
            :mod:`flossrepro.engine.torch_modules`; or any callable ``cell(x_t, h) -> h_next``.
        inputs: as the module takes them: ``[T, B, S]`` (``[B, T, S]`` with ``batch_first``;
            ``[T, S]`` for one unbatched sequence, then the result is ``[k]``); cells and callables
            ``[T, B, S]``; ensembles ``[T, R, S]``.
        k: number of exponents, ``1 <= k <= n``; ``n`` is the flat state's size: ``L H`` for an
            RNN or GRU with ``L`` layers, ``L (H + P)`` for an LSTM (``P = proj_size or H``:
            ``2 L H``), the summed sizes of a cell's state parts.
        s_ons, transient_h, transient_q: as :func:`flossrepro.lyapunov_spectrum` (defaults
            :func:`~flossrepro.engine.tangent.default_transients` of ``T``).
        h0: the initial state as the model takes it: modules ``[L, B, H]`` (LSTM ``(h0, c0)``),
            default zeros; cells ``[B, H]`` (``(h0, c0)``), default zeros; callables a tensor
            ``[B, n]`` or a tuple of them (required).
        q0: ``[B, n, k]`` orthonormal initial tangent system, rows ordered as the flat state
            ``[h_1; c_1; h_2; ...]`` (default: a fixed random one, the same for every sequence).
    Returns:
        ``[B, k]`` exponents, one spectrum per input sequence, in the order the QR method gives;
        differentiable w.r.t. the parameters (and whatever the step reads), ``h0``, ``q0``, ``inputs``.
    """
    rec, x, s0, unbatched = recurrence_of(model, inputs, h0)
    B, n = s0.shape
    k = _check_k(k, n)
    T = x.shape[0]
    dh, dq = default_transients(T)
    th = dh if transient_h is None else int(transient_h)
    tq = dq if transient_q is None else int(transient_q)
    t_sim = _check_lengths(T, th, tq, int(s_ons))
    if q0 is None:
        q0 = random_orthonormal(n, k, B, dtype=s0.dtype, device=s0.device)
    else:
        if unbatched and isinstance(q0, Tensor) and q0.dim() == 2:
            q0 = q0[None]
        if not isinstance(q0, Tensor) or tuple(q0.shape) != (B, n, k):
            raise ValueError(f"q0: {_describe(q0)}, expected [B={B}, n={n}, k={k}] (rows in the order of the flat "
                             "state [h_1; c_1; h_2; ...]) or None for the default")
    flags = _qr_schedule(T - th, tq, int(s_ons))
    lam = spectrum_of(rec, x, s0, q0.to(s0.dtype), flags, th, tq, t_sim)
    return lam[0] if unbatched else lam
