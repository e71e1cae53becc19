"""Binary equilibrium propagation: Hopfield networks with binary weights (and binary neurons).

Laydevant, Ernoult, Querlioz & Grollier 2021, "Training dynamical binary neural networks with
equilibrium propagation" (CVPR Workshops, arXiv 2103.08953). Each synaptic matrix is binary up
to a scale: the energy uses the *used* weights

    Ŵ_l = α_l · sign(W_l)            (sign(0) = +1)

with W_l a real latent matrix (what an optimizer updates; :class:`eqprop.optim.BinaryFlip`
flips its signs) and α_l > 0 one scale per layer (per output channel for convolutions),
initialised to the mean |W_l| of the default initialisation (XNOR-Net style) and learnable with
``learn_alpha=True``. Biases stay real. Every derivative w.r.t. a latent matrix is the
straight-through one, the derivative w.r.t. the used matrix,

    ∂E/∂W_l := ∂E/∂Ŵ_l ,      ∂E/∂α_l = Σ_ij sign(W_l)_ij ∂E/∂Ŵ_l,ij ,

so the EP estimate, BPTT and implicit differentiation all return dL/dŴ_l (checked in float64
in tests/test_binary_ep.py: EP matches implicit differentiation with errors O(β) one-sided and
O(β²) centered).

Binary neurons (``binary_activations=True``, the paper's "bin_W_N"): every state unit keeps a
continuous s ∈ [0, 1] and sends h = Θ(s − ½) to its neighbours. The paper's low-pass dynamics
s ← clip01((1 − γ_n) s + γ_n p(h)), p the pre-activation of a HopfieldMLP computed from h, are
exactly the fixed-point iteration of the Hopfield-form energy

    E(s) = γ_n [ ½|s|² − Φ(h(s), x) ]

(primitive (1 − γ_n)½|s|² + γ_n Φ(h)), so the fixed-point solvers run them unchanged; the
derivative of h is the straight-through one (∂h/∂s = 1 on [0, 1]). The nudge β C acts on this
energy, i.e. with weight β/γ_n relative to the paper's unscaled one. The output layer may be
widened to ``neurons_per_class`` units per class; ``output`` is then the mean of each group
(the prediction is the arg-max of the group means).

``box=True`` multiplies the pre-activation by the box ρ'(s) = 1[|s − ½| ≤ ½] of the hard sigmoid,
as the authors' code does: p_l = ρ'(s_l)·(Ŵ_l h_{l+1} + Ŵ_{l−1}ᵀ h_{l−1} + b_l), then
s_l ← clip01((1 − γ_n) s_l + γ_n p_l) (the nudge is added outside the box). In energy terms it
replaces the straight-through derivative ∂h/∂s = 1 by ρ'(s); the energy's value, its parameter
gradients and its fixed points in [0, 1] are unchanged. As the box is 1 on all of [0, 1] and
``FixedPoint`` keeps every state there (clip01) starting from 1, it changes the drive only at
states outside [0, 1] (given by the caller, or by a solver that does not clip): the relaxations
of training are identical with and without it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigurationError
from ._checks import positive_int
from .activations import ACTIVATIONS, Activation
from .base import State
from .conv_hopfield import ConvHopfield
from .hopfield import HopfieldMLP

__all__ = ["BinaryHopfieldMLP", "BinaryConvHopfield", "binarize"]


def binarize(weight: Tensor, alpha: Tensor) -> Tensor:
    """α·sign(W) (sign(0) = +1), with the straight-through derivative ∂/∂W = identity.

    ``alpha`` is a scalar or one value per output channel (the first axis of ``weight``).
    """
    scale = alpha.reshape((-1,) + (1,) * (weight.dim() - 1)) if alpha.dim() else alpha
    signs = torch.where(weight >= 0, 1.0, -1.0).to(weight.dtype)
    used = scale * signs
    if torch.is_grad_enabled() and weight.requires_grad:
        used = used + (weight - weight.detach())
    return used


class _BinaryWeights:
    """Mixin: swap each binarized weight for α·sign(W) while the energy is evaluated."""

    binary = True  # read by learners that cannot use binary weights (holomorphic EP)
    _binary_paths: tuple[str, ...] = ()

    def _init_binary(self, paths: Sequence[str], per_channel: Sequence[bool], learn_alpha: bool) -> None:
        self._binary_paths = tuple(paths)
        self._swapped = False
        alphas = []
        for path, channel in zip(paths, per_channel):
            w = self.get_submodule(path).weight.detach()
            a = w.abs().flatten(1).mean(1) if channel else w.abs().mean()
            alphas.append(nn.Parameter(a.clone(), requires_grad=bool(learn_alpha)))
        self.alpha = nn.ParameterList(alphas)
        self.learn_alpha = bool(learn_alpha)

    def binary_weight_names(self) -> list[str]:
        """Names of the latent weights (what :class:`eqprop.optim.BinaryFlip` should flip)."""
        return [f"{p}.weight" for p in self._binary_paths]

    def used_weights(self) -> dict[str, Tensor]:
        """The weights the energy uses, α·sign(W), by latent-weight name (detached)."""
        with torch.no_grad():
            return {f"{p}.weight": binarize(self.get_submodule(p).weight, a)
                    for p, a in zip(self._binary_paths, self.alpha)}

    @contextmanager
    def _used(self) -> Iterator[None]:
        if self._swapped:  # nested call (autograd fallback inside a closed form): already swapped
            yield
            return
        modules = [self.get_submodule(p) for p in self._binary_paths]
        saved = [m._parameters["weight"] for m in modules]
        alphas = list(self.alpha)
        self._swapped = True
        try:
            for m, w, a in zip(modules, saved, alphas):
                m._parameters["weight"] = self._binarized(w, a)
            yield
        finally:
            for m, w in zip(modules, saved):
                m._parameters["weight"] = w
            self._swapped = False

    def _binarized(self, w: Tensor, a: Tensor) -> Tensor:
        """α·sign(W); outside autograd, cached until W or α changes (relaxations call it at every step)."""
        if torch.is_grad_enabled() and (w.requires_grad or a.requires_grad):
            return binarize(w, a)
        key = (w.data_ptr(), w._version, w.dtype, a.data_ptr(), a._version)
        cache = self.__dict__.setdefault("_binary_cache", {})
        hit = cache.get(id(w))
        if hit is None or hit[0] != key:
            with torch.no_grad():
                hit = cache[id(w)] = (key, binarize(w, a))
        return hit[1]

    def _add_alpha_grads(self, grads: dict[str, Tensor]) -> dict[str, Tensor]:
        """∂E/∂α = Σ sign(W) ∂E/∂Ŵ (per layer, or per output channel)."""
        if not self.learn_alpha:
            return grads
        for k, (path, a) in enumerate(zip(self._binary_paths, self.alpha)):
            g = grads[f"{path}.weight"]
            signs = torch.where(self.get_submodule(path).weight >= 0, 1.0, -1.0).to(g.dtype)
            grads[f"alpha.{k}"] = (signs * g).flatten(1).sum(1) if a.dim() else (signs * g).sum()
        return grads


class BinaryHopfieldMLP(_BinaryWeights, HopfieldMLP):
    """HopfieldMLP with binary weights α_l·sign(W_l), optionally binary neurons (Laydevant et al. 2021).

    Args:
        sizes: layer widths, input first (the last entry is the number of classes).
        activation: as :class:`HopfieldMLP`; with ``binary_activations`` only ``"hard_sigmoid"``
            (and ``"identity"``) units, whose state lives in [0, 1] as the paper's clip01.
        binary_activations: neurons send h = Θ(s − ½) with the low-pass dynamics above.
        neurons_per_class: widen the output layer to this many units per class (binary neurons
            need several to express a graded output); ``output`` is the mean of each group.
        low_pass: γ_n of the low-pass dynamics, in (0, 1] (the paper's 0.5).
        box: with ``binary_activations``, multiply the pre-activation by ρ'(s) = 1[|s − ½| ≤ ½]
            (the authors' code; see the module docstring: a no-op for states in [0, 1]).
        learn_alpha: make the scales α_l trainable parameters (``alpha.<l>``).
        closed_form: as :class:`HopfieldMLP`.
        init_scale: as :class:`HopfieldMLP`.
    """

    def __init__(
        self,
        sizes: Sequence[int] = (784, 512, 10),
        activation: str | Activation | Sequence[str | Activation] = "hard_sigmoid",
        binary_activations: bool = False,
        neurons_per_class: int = 1,
        low_pass: float = 0.5,
        box: bool = False,
        learn_alpha: bool = False,
        closed_form: bool = True,
        init_scale: float = 1.0,
    ) -> None:
        sizes = [int(s) for s in sizes]
        self.neurons_per_class = positive_int("neurons_per_class", neurons_per_class)
        if not (0.0 < float(low_pass) <= 1.0):
            raise ConfigurationError(f"low_pass (γ_n) must lie in (0, 1], got {low_pass!r}; the paper uses 0.5.")
        self.n_classes = sizes[-1] if sizes else 0
        widened = sizes[:-1] + [sizes[-1] * self.neurons_per_class] if len(sizes) >= 2 else sizes
        super().__init__(widened, activation, closed_form=closed_form, init_scale=init_scale)
        self.binary_activations = bool(binary_activations)
        self.low_pass = float(low_pass)
        self.box = bool(box)
        if self.box and not self.binary_activations:
            raise ConfigurationError("box=True is the binary neurons' pre-activation factor: set binary_activations=True too.")
        if self.binary_activations:
            # by identity with the built-ins, never by name (a user activation may be called anything)
            allowed = (ACTIVATIONS["hard_sigmoid"], ACTIVATIONS["identity"])
            bad = sorted({a.name for a in self.activations if not any(a is b for b in allowed)})
            if bad:
                raise ConfigurationError(
                    f"binary_activations=True needs 'hard_sigmoid' units (state in [0, 1], h = Θ(s − ½)), got {bad}."
                )
        if self.neurons_per_class > 1:
            self.output_layer = None  # the output is a group mean, not a state layer
        self._init_binary([f"layers.{k}" for k in range(len(self.layers))], [False] * len(self.layers), learn_alpha)

    # -- binary neurons ------------------------------------------------------------------------
    def emitted(self, state: State) -> State:
        """What each unit sends: h = Θ(s − ½) with binary neurons (straight-through), else s."""
        if not self.binary_activations:
            return state
        out = []
        for s in state:
            h = (s > 0.5).to(s.dtype)
            if torch.is_grad_enabled() and s.requires_grad:
                st = s * self._box(s) if self.box else s  # straight-through ∂h/∂s: ρ'(s) with the box, else 1
                h = st + (h - st).detach()
            out.append(h)
        return tuple(out)

    @staticmethod
    def _box(s: Tensor) -> Tensor:
        """ρ'(s) of the hard sigmoid, 1[|s − ½| ≤ ½]."""
        return ((s >= 0) & (s <= 1)).to(s.dtype)

    def init_state(self, x: Tensor) -> State:
        """ρ(0) for each unit; every unit at 1 (all firing) with binary neurons, as the paper."""
        state = super().init_state(x)
        return tuple(torch.ones_like(s) for s in state) if self.binary_activations else state

    def output(self, state: State) -> Tensor:
        out = state[-1]
        if self.neurons_per_class == 1:
            return out
        return out.reshape(out.shape[0], self.n_classes, self.neurons_per_class).mean(-1)

    def output_grad_to_state(self, state: State, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        if self.neurons_per_class == 1:
            return super().output_grad_to_state(state, grad_output)
        spread = grad_output.repeat_interleave(self.neurons_per_class, dim=1) / self.neurons_per_class
        return (None,) * (len(state) - 1) + (spread,)

    # -- the energy, with the used weights -----------------------------------------------------
    def primitive(self, state: State, x: Tensor) -> Tensor:
        with self._used():
            phi = super().primitive(self.emitted(state), x)
        if not self.binary_activations:
            return phi
        g = self.low_pass
        return (1 - g) * 0.5 * sum((s * s).flatten(1).sum(1) for s in state) + g * phi

    def prepare(self, x: Tensor) -> Tensor:
        with self._used():
            return super().prepare(x)

    def primitive_grad(self, state: State, x: Tensor, context: Any = None, create_graph: bool = False) -> State:
        if not self.closed_form:  # autograd through ``primitive`` (used weights, emitted h)
            return super().primitive_grad(state, x, context, create_graph)
        with self._used():
            drive = super().primitive_grad(self.emitted(state), x, context, create_graph)
        if not self.binary_activations:
            return drive
        g = self.low_pass
        if self.box:
            drive = tuple(d * self._box(s) for d, s in zip(drive, state))
        return tuple(torch.add(d, s, alpha=(1 - g) / g).mul_(g) if not create_graph else g * d + (1 - g) * s
                     for d, s in zip(drive, state))

    def layer_drive(self, state: State, x: Tensor, layers: Sequence[int], context: Any = None,
                    create_graph: bool = False, cache: dict | None = None) -> tuple[Tensor | None, ...]:
        """``primitive_grad`` for the layers in ``layers`` only (one block of an asynchronous sweep)."""
        if not self.closed_form:  # the generic version: the full drive, through ``primitive_grad``
            return super().layer_drive(state, x, layers, context, create_graph, cache)
        with self._used():
            drive = super().layer_drive(self.emitted(state), x, layers, context, create_graph, cache)
        if not self.binary_activations:
            return drive
        g = self.low_pass
        if self.box:
            drive = tuple(None if d is None else d * self._box(s) for d, s in zip(drive, state))
        return tuple(None if d is None else g * d + (1 - g) * s for d, s in zip(drive, state))

    def param_grads(self, state: State, x: Tensor, weights: Tensor) -> dict[str, Tensor]:
        if not self.closed_form:
            return super().param_grads(state, x, weights)  # autograd through primitive (swapped, with α)
        scale = self.low_pass if self.binary_activations else 1.0
        with self._used():
            grads = super().param_grads(self.emitted(state), x, weights * scale)
        return self._add_alpha_grads(grads)

    def extra_repr(self) -> str:
        extra = f", binary_activations=True, low_pass={self.low_pass}" if self.binary_activations else ""
        extra += ", box=True" if self.box else ""
        if self.neurons_per_class > 1:
            extra += f", neurons_per_class={self.neurons_per_class}"
        return super().extra_repr() + extra + (", learn_alpha=True" if self.learn_alpha else "")


class BinaryConvHopfield(_BinaryWeights, ConvHopfield):
    """ConvHopfield with binary weights: α_c·sign(w) per output channel of each convolution and
    one α for the dense output layer (Laydevant et al. 2021's binary ConvNets, "bin_W").

    Takes the arguments of :class:`ConvHopfield` plus ``learn_alpha``; activations stay real.
    """

    def __init__(self, *args: Any, learn_alpha: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        paths = [f"convs.{k}" for k in range(len(self.convs))] + ["fc"]
        self._init_binary(paths, [True] * len(self.convs) + [False], learn_alpha)

    def primitive(self, state: State, x: Tensor) -> Tensor:
        with self._used():
            return super().primitive(state, x)

    def prepare(self, x: Tensor) -> Tensor:
        with self._used():
            return super().prepare(x)

    def primitive_grad(self, state: State, x: Tensor, context: Any = None, create_graph: bool = False) -> State:
        with self._used():
            return super().primitive_grad(state, x, context, create_graph)

    def layer_drive(self, state: State, x: Tensor, layers: Sequence[int], context: Any = None,
                    create_graph: bool = False, cache: dict | None = None) -> tuple[Tensor | None, ...]:
        with self._used():  # the cache holds convolutions of the used weights (one relaxation)
            return super().layer_drive(state, x, layers, context, create_graph, cache)

    def param_grads(self, state: State, x: Tensor, weights: Tensor) -> dict[str, Tensor]:
        if not self.closed_form or any(s.is_complex() for s in state):
            return super().param_grads(state, x, weights)
        with self._used():
            grads = super().param_grads(state, x, weights)
        return self._add_alpha_grads(grads)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", learn_alpha=True" if self.learn_alpha else "")
