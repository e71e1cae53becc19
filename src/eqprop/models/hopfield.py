"""HopfieldMLP: the layered deep Hopfield network (DHN) of the EP papers.

Primitive function (Scellier & Bengio 2017; Laborieux et al. 2021, "scaling EP"):

    Φ(s, x) = Σ_{k=1}^{L} s_kᵀ (W_k s_{k−1} + b_k),    s_0 = x (clamped input)

energy E = Σ_k Σ_i G(s_k,i) − Φ with G' = ρ⁻¹, so the stationary points are
s_k = ρ(W_k s_{k−1} + b_k + W_{k+1}ᵀ s_{k+1}). The output is the last layer. Closed forms
(checked against autograd in tests/test_models.py):

    ∂Φ/∂s_k = W_k s_{k−1} + b_k + W_{k+1}ᵀ s_{k+1}       ∂E/∂W_k = −s_k s_{k−1}ᵀ    ∂E/∂b_k = −s_k

The drive W_1 x + b_1 of the first layer does not change during a relaxation: ``prepare``
computes it once per batch.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigurationError, ShapeError
from .activations import Activation
from .base import HopfieldEnergy, State, resolve_activations

__all__ = ["HopfieldMLP"]


class HopfieldMLP(HopfieldEnergy):
    """Layered Hopfield network with sizes ``[n_input, n_hidden..., n_output]``.

    Args:
        sizes: layer widths, input first; at least two entries.
        activation: ``"hard_sigmoid"`` (ρ = clamp(·, 0, 1)), ``"sigmoid"``, ``"tanh"``,
            ``"identity"``, an :class:`Activation`, or one per state layer.
        closed_form: use the closed-form drive and parameter derivatives (default) instead of
            autograd; both give the same numbers.
        init_scale: multiplies PyTorch's default uniform initialisation of each weight.
    """

    output_layer = -1
    output_is_parameter_free = True
    fresh_drive = True  # primitive_grad returns new tensors: solvers may activate them in place

    def __init__(
        self,
        sizes: Sequence[int] = (784, 512, 10),
        activation: str | Activation | Sequence[str | Activation] = "hard_sigmoid",
        closed_form: bool = True,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s <= 0 for s in sizes):
            raise ConfigurationError(f"sizes must list at least two positive widths (input first), got {sizes}.")
        self.sizes = sizes
        self.activations = resolve_activations(activation, len(sizes) - 1)
        self.closed_form = bool(closed_form)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        if init_scale != 1.0:
            with torch.no_grad():
                for layer in self.layers:
                    layer.weight.mul_(init_scale)
                    layer.bias.mul_(init_scale)

    # -- the model contract --------------------------------------------------------------------
    def init_state(self, x: Tensor) -> State:
        """Every unit at rest, ρ(0) (zeros for hard-sigmoid and tanh units, ½ for sigmoid)."""
        self._check_input(x)
        dtype = self.layers[0].weight.dtype if not x.is_complex() else x.dtype
        zero = torch.zeros((), dtype=dtype, device=x.device)
        return tuple(a.rho(zero).expand(x.shape[0], n).clone() for a, n in zip(self.activations, self.sizes[1:]))

    def output(self, state: State) -> Tensor:
        return state[-1]

    def primitive(self, state: State, x: Tensor) -> Tensor:
        below = (x.reshape(x.shape[0], -1),) + tuple(state[:-1])
        return sum(((layer(b)) * s).sum(dim=1) for layer, b, s in zip(self.layers, below, state))

    # -- closed forms --------------------------------------------------------------------------
    def prepare(self, x: Tensor) -> Tensor:
        """The constant drive W_1 x + b_1 of the first layer."""
        self._check_input(x)
        return self.layers[0](x.reshape(x.shape[0], -1))

    def primitive_grad(self, state: State, x: Tensor, context: Any = None, create_graph: bool = False) -> State:
        if not self.closed_form:
            return super().primitive_grad(state, x, context, create_graph)
        return self._drive(state, x, context, range(len(state)))

    def layer_drive(self, state: State, x: Tensor, layers: Sequence[int], context: Any = None,
                    create_graph: bool = False, cache: dict | None = None) -> tuple[Tensor | None, ...]:
        """∂Φ/∂s_k for k in ``layers`` only, in closed form (one block of an asynchronous sweep)."""
        if not self.closed_form:
            return super().layer_drive(state, x, layers, context, create_graph, cache)
        n = len(state)
        wanted = sorted({k % n for k in layers})
        drive = self._drive(state, x, context, wanted)
        out: list[Tensor | None] = [None] * n
        for k, h in zip(wanted, drive):
            out[k] = h
        return tuple(out)

    def _drive(self, state: State, x: Tensor, context: Any, layers) -> tuple[Tensor, ...]:
        """W_k s_{k−1} + b_k + W_{k+1}ᵀ s_{k+1} for k in ``layers`` (increasing)."""
        drive0 = self.prepare(x) if context is None else context
        # This runs at every relaxation step, where nn.Module attribute look-ups (~1 µs each)
        # would cost as much as the small matrix products: read the parameter dictionaries
        # directly (torch.func.functional_call swaps tensors in these same dictionaries).
        params = [layer._parameters for layer in self._modules["layers"]._modules.values()]
        out = []
        n = len(state)
        for k in layers:
            if k == 0:
                h = drive0
            else:
                h = torch.nn.functional.linear(state[k - 1], params[k]["weight"], params[k]["bias"])
            if k + 1 < n:  # h + s_{k+1} W_{k+1} in one fused kernel
                h = torch.addmm(h, state[k + 1], params[k + 1]["weight"])
            elif k == 0:
                h = h.clone()  # a single layer: never hand out the context itself
            out.append(h)
        return tuple(out)

    def param_grads(self, state: State, x: Tensor, weights: Tensor) -> dict[str, Tensor]:
        if not self.closed_form or any(s.is_complex() for s in state):
            return super().param_grads(state, x, weights)
        below = (x.reshape(x.shape[0], -1),) + tuple(state[:-1])
        grads: dict[str, Tensor] = {}
        negative = -weights[:, None]  # ∂E/∂θ = −∂Φ/∂θ: fold the sign into the weights
        for k, (b, s) in enumerate(zip(below, state)):
            ws = s * negative
            grads[f"layers.{k}.weight"] = ws.transpose(0, 1) @ b
            grads[f"layers.{k}.bias"] = ws.sum(dim=0)
        return grads

    def _check_input(self, x: Tensor) -> None:
        width = x[0].numel() if x.dim() > 1 else 1
        if x.dim() < 2 or width != self.sizes[0]:
            raise ShapeError(
                f"HopfieldMLP expects inputs of {self.sizes[0]} features per sample (shape [batch, "
                f"{self.sizes[0]}]), got shape {tuple(x.shape)}."
            )

    def extra_repr(self) -> str:
        names = {a.name for a in self.activations}
        act = names.pop() if len(names) == 1 else [a.name for a in self.activations]
        return f"sizes={self.sizes}, activation={act!r}"
