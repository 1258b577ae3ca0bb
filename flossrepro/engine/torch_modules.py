"""PyTorch's own ``torch.nn.RNN``, ``GRU`` and ``LSTM`` as ensembles in the project's conventions
(``arch=torch_rnn|torch_gru|torch_lstm``), so that the trainer, the flossing jobs and the
diagnostics run them like :class:`~flossrepro.engine.models.VanillaRNN`, ``LSTM`` and ``GRU``.

Member ``r`` is an independent ``torch.nn`` module whose weights are views of row ``r`` of
parameters with a leading member axis ``R``:

- ``U: [R, (2L - 1) G H, H]``: every weight that acts on a hidden state, stacked by rows:
  ``weight_hh_l0``, then ``weight_ih_l1, weight_hh_l1``, ... (``G`` gate blocks: 1 RNN, 3 GRU,
  4 LSTM; named ``U`` as the project's gated networks, so ``flossing.params=[W, V, b]`` and the
  diagnostics of the recurrent weights take it);
- ``V: [R, G H, S]``: ``weight_ih_l0``; ``b: [R, 2 L G H]``: ``bias_ih_l0, bias_hh_l0, bias_ih_l1, ...``;
- readout ``y = w_r h_top + c`` (``w_r: [R, O, H]``, ``c: [R, O]``) from the last layer's ``h``;
- trained initial state ``h0: [R, n]``, the flat state ``[h_1; c_1; h_2; c_2; ...]`` (``c`` for
  the LSTM only), ``n = state_dim = L H`` (``2 L H`` for the LSTM).

Inputs ``[T, R, B, S]`` are scaled by ``input_gain`` (``None``: the project's ``1/S``) before
the module sees them. The forward runs each member through PyTorch's own module (a loop over
members, ``torch.func.functional_call`` with the member's views); the Lyapunov spectrum goes through
:mod:`flossrepro.engine.generic` (:meth:`as_recurrence`: one step of all members at once).

Initialisation (:meth:`initialize_members`, called by the jobs in place of
:func:`flossrepro.engine.init.initialize`): the project's scheme, with the same draws in the same order
from the member's seed, so a one-layer ``torch_gru``/``torch_lstm`` member equals the project's
GRU/LSTM member of that seed (their ``b_hh`` is 0; the tests check it): every ``H x H`` block of
``U`` (the inter-layer ``weight_ih_l{l>0}`` blocks too) from ``init.scheme`` with gain ``g``,
``V ~ N(0, input_std^2)``, ``bias_ih ~ bias_scale U(0, 1)``, ``bias_hh = 0``, ``w_r ~ N(0,
readout_std^2)``, ``c = readout_offset``, ``h0 ~ N(0, 1)`` relaxed for ``relax_steps`` input-free
steps. :meth:`from_modules` builds an ensemble from existing modules (e.g. with PyTorch's init).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from flossrepro.engine.generic import Recurrence, TorchSpec
from flossrepro.engine.init import SCHEMES, _draw_g, recurrent_matrix
from flossrepro.tasks.paper import member_generators

__all__ = ["TorchRNN", "TorchGRU", "TorchLSTM"]


class _TorchEnsemble(nn.Module):
    MODULE: type = nn.RNN
    GATES = 1
    STATE = 1
    kind = "torch"

    def __init__(self, n_members: int, n_hidden: int, n_in: int, n_out: int, num_layers: int = 1,
                 input_gain: float | None = None, dtype: torch.dtype = torch.float32, device=None, **module_kw):
        super().__init__()
        for name, v in (("n_members", n_members), ("n_hidden", n_hidden), ("n_in", n_in), ("n_out", n_out),
                        ("num_layers", num_layers)):
            if int(v) < 1:
                raise ValueError(f"{name}={v} must be a positive integer")
        R, H, S, O, L = int(n_members), int(n_hidden), int(n_in), int(n_out), int(num_layers)
        self.n_members, self.n_hidden, self.n_in, self.n_out, self.num_layers = R, H, S, O, L
        self.input_gain = 1.0 / S if input_gain is None else float(input_gain)
        # the module whose forward runs each member (its own weights are never used: functional_call
        # substitutes the member's views); not a submodule, so its parameters are not the ensemble's
        self.__dict__["_template"] = self.MODULE(S, H, num_layers=L, **module_kw).to(dtype=dtype, device=device)
        self.spec = TorchSpec(self._template)
        G = self.GATES
        kw = dict(dtype=dtype, device=device)
        self.U = nn.Parameter(torch.zeros(R, (2 * L - 1) * G * H, H, **kw))
        self.V = nn.Parameter(torch.zeros(R, G * H, S, **kw))
        self.b = nn.Parameter(torch.zeros(R, 2 * L * G * H, **kw))
        self.w_r = nn.Parameter(torch.zeros(R, O, H, **kw))
        self.c = nn.Parameter(torch.zeros(R, O, **kw))
        self.h0 = nn.Parameter(torch.zeros(R, self.state_dim, **kw))

    @property
    def state_dim(self) -> int:
        return self.STATE * self.n_hidden * self.num_layers

    # -- the members' torch.nn weights ----------------------------------------------------
    def weights(self, r: int | None = None) -> dict[str, Tensor]:
        """The ``torch.nn`` module's parameters as views of ``U, V, b``: member ``r`` (``[out, in]``),
        or all members stacked (``r = None``: ``[R, out, in]``)."""
        GH = self.GATES * self.n_hidden
        sel = (lambda p: p) if r is None else (lambda p: p[r])
        U, V, b = sel(self.U), sel(self.V), sel(self.b)
        out = {}
        for l, (w_ih, w_hh, b_ih, b_hh, _) in enumerate(self.spec.names):
            out[w_ih] = V if l == 0 else U[..., (2 * l - 1) * GH:2 * l * GH, :]
            out[w_hh] = U[..., 2 * l * GH:(2 * l + 1) * GH, :]
            out[b_ih] = b[..., 2 * l * GH:(2 * l + 1) * GH]
            out[b_hh] = b[..., (2 * l + 1) * GH:(2 * l + 2) * GH]
        return out

    def module(self, r: int) -> nn.Module:
        """A ``torch.nn`` module with member ``r``'s weights (a copy, detached)."""
        m = self.MODULE(self.n_in, self.n_hidden, num_layers=self.num_layers,
                        **self._module_kw()).to(dtype=self.U.dtype, device=self.U.device)
        with torch.no_grad():
            for name, w in self.weights(r).items():
                getattr(m, name).copy_(w)
        return m

    def _module_kw(self) -> dict:
        return {}

    def hx(self, s: Tensor):
        """Flat states ``[..., B, n]`` -> the module's initial state ``[L, ..., B, H]`` (LSTM: ``(h, c)``)."""
        H = self.n_hidden
        parts = s.unflatten(-1, (self.num_layers, self.STATE, H)).movedim(-3, 0)  # [L, ..., B, STATE, H]
        if self.STATE == 1:
            return parts[..., 0, :].contiguous()
        return parts[..., 0, :].contiguous(), parts[..., 1, :].contiguous()

    # -- dynamics in the project's conventions ----------------------------------------------
    def initial_state(self, batch_size: int) -> Tensor:
        """``[R, B, n]``: the trained initial state broadcast over the batch."""
        return self.h0[:, None, :].expand(-1, batch_size, -1)

    def step(self, s: Tensor, x: Tensor) -> Tensor:
        """One step of every member: ``s: [R, B, n]``, ``x: [R, B, S]`` -> ``[R, B, n]``."""
        return self.spec.step(self.weights(), self.input_gain * x, s)

    def run_top(self, inputs: Tensor) -> Tensor:
        """The last layer's ``h`` after each step, ``[T, R, B, H]``, for ``inputs: [T, R, B, S]``:
        each member through PyTorch's module."""
        self._check_inputs(inputs)
        B = inputs.shape[2]
        h0 = self.initial_state(B)
        outs = []
        for r in range(self.n_members):
            out, _ = functional_call(self._template, self.weights(r), (self.input_gain * inputs[:, r], self.hx(h0[r])))
            outs.append(out)
        return torch.stack(outs, 1)

    def readout(self, Htop: Tensor) -> Tensor:
        """``[T, R, B, H]`` -> ``y = w_r h + c: [T, R, B, O]``."""
        return torch.einsum("trbh,roh->trbo", Htop, self.w_r) + self.c[None, :, None, :]

    def forward(self, inputs: Tensor, fast: bool = True) -> Tensor:
        """Outputs ``[T, R, B, O]`` for ``inputs: [T, R, B, S]``."""
        return self.readout(self.run_top(inputs))

    def as_recurrence(self) -> Recurrence:
        """The one-step map of all members for :mod:`flossrepro.engine.generic` (row ``r`` = member ``r``;
        inputs already scaled by ``input_gain``)."""
        P = self.weights()
        spec = self.spec

        def step(x, s):
            return spec.step(P, x, s)

        def row(x, s, p):
            return spec.step(p, x[None], s[None])[0]

        return Recurrence(step, row, self.state_dim, row_params=P)

    def _check_inputs(self, inputs: Tensor) -> None:
        if inputs.dim() != 4 or inputs.shape[1] != self.n_members or inputs.shape[3] != self.n_in:
            raise ValueError(f"inputs must be [T, R={self.n_members}, B, S={self.n_in}], got {tuple(inputs.shape)}")

    # -- initialisation ----------------------------------------------------------------------
    @torch.no_grad()
    def initialize_members(self, seeds: Sequence[int], scheme: str = "gaussian", g: float = 1.0,
                           g_range: Sequence[float] | None = None, gbar: float = 0.0, mean: float = 0.0,
                           input_std: float = 1.0, readout_std: float = 1.0, bias_scale: float = 0.1,
                           readout_offset: float = 0.001, relax_steps: int = 100) -> Tensor:
        """The project's initialisation (module docstring), member ``r`` from ``seeds[r]`` alone;
        the arguments of :func:`flossrepro.engine.init.initialize`. Returns the gains ``g: [R]``."""
        if scheme not in SCHEMES:
            raise ValueError(f"init.scheme={scheme!r} is not known; allowed: {list(SCHEMES)}")
        if len(seeds) != self.n_members:
            raise ValueError(f"got {len(seeds)} seeds for {self.n_members} members; give one seed per member")
        H, S, O, G, L = self.n_hidden, self.n_in, self.n_out, self.GATES, self.num_layers
        f64 = dict(dtype=torch.float64)
        gains = []
        for r, gen in enumerate(member_generators(list(seeds), "init")):
            gr = _draw_g(gen, g, g_range)
            gains.append(gr)
            blocks = lambda: torch.cat([recurrent_matrix(gen, H, scheme, gr, gbar, mean) for _ in range(G)], 0)  # noqa: E731
            Us, bs = [], []
            for l in range(L):
                if l == 0:
                    Us.append(blocks())
                    self.V[r] = input_std * torch.randn(G * H, S, generator=gen, **f64)
                else:
                    Us += [blocks(), blocks()]
                bs += [bias_scale * torch.rand(G * H, generator=gen, **f64), torch.zeros(G * H, **f64)]
            self.U[r] = torch.cat(Us, 0)
            self.b[r] = torch.cat(bs, 0)
            self.w_r[r] = readout_std * torch.randn(O, H, generator=gen, **f64)
            self.c[r] = readout_offset
            self.h0[r] = torch.randn(self.state_dim, generator=gen, **f64)
        if relax_steps > 0:
            s = self.h0[:, None, :]
            x = torch.zeros(self.n_members, 1, S, dtype=s.dtype, device=s.device)
            for _ in range(relax_steps):
                s = self.step(s, x)
            self.h0.copy_(s[:, 0])
        return torch.tensor(gains, dtype=torch.float64)

    @classmethod
    def from_modules(cls, modules: Sequence[nn.Module], n_out: int = 1, input_gain: float = 1.0):
        """An ensemble whose member ``r`` has the weights of ``modules[r]`` (all alike; with both biases,
        not bidirectional, no ``proj_size``); zero readout and initial state."""
        m0 = modules[0]
        if not isinstance(m0, cls.MODULE):
            raise ValueError(f"modules: {cls.__name__} takes torch.nn.{cls.MODULE.__name__} modules, "
                             f"got {type(m0).__name__}")
        if m0.bidirectional or not m0.bias or getattr(m0, "proj_size", 0):
            raise ValueError("modules: only unidirectional modules with bias=True and no proj_size")
        kw = dict(nonlinearity=m0.nonlinearity) if cls.MODULE is nn.RNN else {}
        p = next(m0.parameters())
        ens = cls(len(modules), m0.hidden_size, m0.input_size, n_out, num_layers=m0.num_layers,
                  input_gain=input_gain, dtype=p.dtype, device=p.device, **kw)
        with torch.no_grad():
            for r, m in enumerate(modules):
                if not isinstance(m, cls.MODULE) or (m.hidden_size, m.input_size, m.num_layers) != \
                        (m0.hidden_size, m0.input_size, m0.num_layers):
                    raise ValueError(f"modules[{r}] differs from modules[0]; give modules of one configuration")
                for name, w in ens.weights(r).items():
                    w.copy_(getattr(m, name))
        return ens


class TorchRNN(_TorchEnsemble):
    """R members of ``torch.nn.RNN`` (``nonlinearity`` tanh or relu): ``h' = phi(W_ih x + b_ih + W_hh h + b_hh)``."""

    MODULE = nn.RNN
    kind = "torch_rnn"

    def __init__(self, n_members: int, n_hidden: int, n_in: int, n_out: int, nonlinearity: str = "tanh",
                 num_layers: int = 1, input_gain: float | None = None, dtype: torch.dtype = torch.float32, device=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity={nonlinearity!r} is not available for torch.nn.RNN; allowed: tanh, relu")
        super().__init__(n_members, n_hidden, n_in, n_out, num_layers, input_gain, dtype, device,
                         nonlinearity=nonlinearity)
        self.nonlinearity = nonlinearity

    def _module_kw(self) -> dict:
        return {"nonlinearity": self.nonlinearity}


class TorchGRU(_TorchEnsemble):
    """R members of ``torch.nn.GRU`` (state ``h``, ``n = L H``)."""

    MODULE = nn.GRU
    GATES = 3
    kind = "torch_gru"
    nonlinearity = "gru"


class TorchLSTM(_TorchEnsemble):
    """R members of ``torch.nn.LSTM`` (state ``[h_l; c_l]`` per layer, ``n = 2 L H``)."""

    MODULE = nn.LSTM
    GATES = 4
    STATE = 2
    kind = "torch_lstm"
    nonlinearity = "lstm"
