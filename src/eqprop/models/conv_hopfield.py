"""ConvHopfield: the deep convolutional Hopfield network (DCHN) of the scaling-EP paper.

Laborieux, Ernoult, Scellier, Bengio, Grollier & Querlioz 2021, "Scaling equilibrium
propagation to deep ConvNets by drastically reducing its gradient estimator bias" (Frontiers
in Neuroscience), and the DCHN of Scellier et al. 2023, "Energy-based learning algorithms for
analog computing: a comparative study". State layers s_1..s_L are images (after pooling), the
output layer s_{L+1} is a vector; s_0 = x is the clamped input. Primitive function:

    Φ(s, x) = Σ_{k=1}^{L} s_k • P(conv_k(s_{k−1}))  +  s_{L+1} • (W flat(s_L) + b)

with conv_k a stride-1 convolution with bias, P a max- or average-pooling with kernel = stride
= ``pool_size`` (or the identity), • the sum of elementwise products over channels and pixels.
Energy E = Σ_k Σ_i G(s_k,i) − Φ with G' = ρ⁻¹, so equilibria satisfy s = ρ(∂Φ/∂s). Closed
forms (checked against autograd in tests/test_conv_hopfield.py), with Pᵀ the adjoint of P:

    ∂Φ/∂s_k = P(conv_k(s_{k−1})) + conv_{k+1}ᵀ(Pᵀ s_{k+1})     (conv_{k+1}ᵀ = conv_transpose, no bias)
    ∂Φ/∂s_L = P(conv_L(s_{L−1})) + reshape(Wᵀ s_{L+1})          ∂Φ/∂s_{L+1} = W flat(s_L) + b
    ∂E/∂w_k = −conv2d_weight(s_{k−1}, Pᵀ s_k)     ∂E/∂c_k = −Σ_pixels s_k     (bias c_k)
    ∂E/∂W = −s_{L+1} flat(s_L)ᵀ                   ∂E/∂b = −s_{L+1}

Pooling. Average pooling is linear, so Φ is a smooth polynomial and Pᵀ spreads each value
evenly over its window: this is the choice for float64 gradient checks. Max pooling (the
paper's choice) makes Φ piecewise multilinear: it is not differentiable where two entries of a
window tie. eqprop treats the max-pool switch pattern as the one at the current state: Pᵀ
routes each value to the arg-max of its window (``max_unpool2d``), which is exactly autograd's
(sub)gradient. Near an equilibrium without ties the switches are locally constant, so the
energy is locally smooth and EP's theory applies for β small enough that no switch flips.
With non-negative units above the first layer (sigmoid, hard sigmoid), s_{k+1} • P(conv(s_k))
is convex in s_k, so each layer update s_k ← ρ(∂Φ/∂s_k) is a concave–convex procedure (CCCP)
step and the asynchronous (even/odd) sweeps never raise the energy; with tanh units there,
they can oscillate (a warning says so at construction).

The drive P(conv_1(x)) of the first layer does not change during a relaxation: ``prepare``
computes it once per batch.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigurationError, ConvergenceWarning, ShapeError
from ._checks import positive_int
from .activations import Activation, get_activation
from .base import HopfieldEnergy, State, resolve_activations

__all__ = ["ConvHopfield"]

POOLINGS = ("max", "avg", "none")


class ConvHopfield(HopfieldEnergy):
    """Deep convolutional Hopfield network (DCHN): conv + pooling layers and a dense output layer.

    Args:
        in_channels: channels of the input image (1 for digits/MNIST, 3 for CIFAR-10).
        channels: output channels of each convolutional layer, e.g. ``[128, 256, 512]``.
        n_classes: width of the fully connected output layer.
        input_size: height and width of the input, an int (square) or ``(H, W)``.
        input_shape: ``(C, H, W)`` in one argument (a dataset's ``input_shape``, as the Hydra
            configs pass it), in place of ``in_channels`` and ``input_size``.
        kernel_size: square kernel of every convolution (stride 1).
        padding: zero padding of every convolution.
        pooling: ``"max"`` (the paper's), ``"avg"`` (smooth: use it for gradient checks) or
            ``"none"``; kernel = stride = ``pool_size``, remainders dropped (as torch's pooling).
        pool_size: window of the pooling.
        activation: ρ of the state layers, ``"hard_sigmoid"`` (default), ``"sigmoid"``,
            ``"tanh"``, ``"identity"``, an :class:`Activation`, or one per state layer
            (``len(channels) + 1`` entries, output last).
        output_activation: ρ of the output layer if different, e.g. ``"identity"`` (a linear
            read-out inside the energy, as HopfieldMLP's recommended [hard_sigmoid, identity]).
        closed_form: closed-form ∂Φ/∂s and ∂_θE (default) instead of autograd; same numbers.
        init_scale: multiplies PyTorch's default uniform initialisation of each weight and bias.

    The state is ``(s_1, ..., s_L, s_out)`` with ``s_k`` shaped ``[batch, channels[k-1], H_k, W_k]``
    (``state_shapes`` lists them) and ``s_out`` shaped ``[batch, n_classes]``; ``output`` is ``s_out``.
    """

    output_layer = -1
    output_is_parameter_free = True
    fresh_drive = True  # primitive_grad returns new tensors (sums, convs, linear): ρ may act in place

    def __init__(
        self,
        in_channels: int | None = None,
        channels: Sequence[int] = (32, 64),
        n_classes: int = 10,
        input_size: int | Sequence[int] | None = None,
        kernel_size: int = 3,
        padding: int = 1,
        pooling: str = "max",
        pool_size: int = 2,
        activation: str | Activation | Sequence[str | Activation] = "hard_sigmoid",
        output_activation: str | Activation | None = None,
        closed_form: bool = True,
        init_scale: float = 1.0,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        in_channels, input_size = self._parse_input(in_channels, input_size, input_shape)
        self.in_channels = positive_int("in_channels", in_channels)
        if isinstance(channels, (str, bytes)) or not hasattr(channels, "__iter__"):
            raise ConfigurationError(f"channels must be a list of positive integers, one per conv layer, got {channels!r}.")
        channels = list(channels)
        if not channels:
            raise ConfigurationError("channels must list at least one convolutional layer, e.g. [32, 64].")
        self.channels = [positive_int(f"channels[{i}]", c) for i, c in enumerate(channels)]
        self.n_classes = positive_int("n_classes", n_classes)
        self.kernel_size = positive_int("kernel_size", kernel_size)
        self.padding = positive_int("padding", padding, minimum=0)
        if pooling not in POOLINGS:
            raise ConfigurationError(f"Unknown pooling {pooling!r}; choose one of {POOLINGS}.")
        self.pooling = pooling
        self.pool_size = 1 if pooling == "none" else positive_int("pool_size", pool_size)
        self.input_size = self._parse_size(input_size)
        self.state_shapes = self._layer_shapes()
        n_states = len(self.channels) + 1
        acts = resolve_activations(activation, n_states)
        if output_activation is not None:
            acts = acts[:-1] + (get_activation(output_activation),)
        self.activations = acts
        self._warn_if_not_cccp()
        self.closed_form = bool(closed_form)
        ins = [self.in_channels] + self.channels[:-1]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, self.kernel_size, padding=self.padding) for a, b in zip(ins, self.channels)
        )
        self.fc = nn.Linear(self.channels[-1] * self.state_shapes[-1][1] * self.state_shapes[-1][2], self.n_classes)
        if init_scale != 1.0:
            with torch.no_grad():
                for p in self.parameters():
                    p.mul_(float(init_scale))

    def _warn_if_not_cccp(self) -> None:
        """Max pooling keeps the layer updates energy-decreasing only for non-negative s_2..s_L."""
        signed = [k + 1 for k, a in enumerate(self.activations[1:-1], start=1) if a.lower < 0]
        if self.pooling == "max" and signed:
            warnings.warn(
                f"Max pooling with an activation that takes negative values in conv layers {signed} makes the "
                "fixed-point updates non-monotone in the energy (they may oscillate); use sigmoid or hard_sigmoid "
                "there, or pooling='avg'.",
                ConvergenceWarning,
                stacklevel=3,
            )

    # -- geometry ------------------------------------------------------------------------------
    @staticmethod
    def _parse_input(in_channels: Any, input_size: Any, input_shape: Any) -> tuple[Any, Any]:
        """(in_channels, input_size) from either those two or ``input_shape`` = (C, H, W)."""
        if input_shape is None:
            if in_channels is None or input_size is None:
                raise ConfigurationError(
                    "ConvHopfield needs the input geometry: give in_channels and input_size, or input_shape=(C, H, W)."
                )
            return in_channels, input_size
        shape = list(input_shape) if hasattr(input_shape, "__iter__") else [input_shape]
        if len(shape) != 3:
            raise ConfigurationError(
                f"ConvHopfield needs image inputs, input_shape (C, H, W), got {shape}: load images, not "
                "flattened vectors (data.image=true for digits, data.flatten=false for image datasets)."
            )
        given = (in_channels, input_size)
        if in_channels is not None and int(in_channels) != int(shape[0]) or input_size is not None and \
                ConvHopfield._parse_size(input_size) != (int(shape[1]), int(shape[2])):
            raise ConfigurationError(f"input_shape {shape} contradicts (in_channels, input_size) = {given}; give one.")
        return shape[0], (shape[1], shape[2])

    @staticmethod
    def _parse_size(size: int | Sequence[int]) -> tuple[int, int]:
        if isinstance(size, (int, float)) and not isinstance(size, bool):
            size = (size, size)
        try:
            h, w = (int(s) for s in size)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ConfigurationError(f"input_size must be an int or (height, width), got {size!r}.") from None
        if h < 1 or w < 1:
            raise ConfigurationError(f"input_size must be positive, got {size!r}.")
        return h, w

    def _layer_shapes(self) -> list[tuple[int, int, int]]:
        """(C, H, W) of each state image: H ← ⌊(H + 2·padding − kernel_size + 1) / pool_size⌋."""
        h, w = self.input_size
        shapes = []
        for k, c in enumerate(self.channels):
            ch, cw = h + 2 * self.padding - self.kernel_size + 1, w + 2 * self.padding - self.kernel_size + 1
            h, w = ch // self.pool_size, cw // self.pool_size
            if h < 1 or w < 1:
                raise ConfigurationError(
                    f"Conv layer {k + 1} shrinks the image to {max(ch, 0)}x{max(cw, 0)} before a pool of "
                    f"{self.pool_size}: use a larger input_size or padding, or fewer layers or smaller kernels."
                )
            shapes.append((c, h, w))
        return shapes

    # -- the model contract --------------------------------------------------------------------
    def init_state(self, x: Tensor) -> State:
        """Every unit at rest, ρ(0) (zeros for hard-sigmoid and tanh units, ½ for sigmoid)."""
        self._check_input(x)
        dtype = self.fc.weight.dtype if not x.is_complex() else x.dtype
        zero = torch.zeros((), dtype=dtype, device=x.device)
        shapes = [tuple(s) for s in self.state_shapes] + [(self.n_classes,)]
        return tuple(a.rho(zero).expand(x.shape[0], *shape).clone() for a, shape in zip(self.activations, shapes))

    def output(self, state: State) -> Tensor:
        return state[-1]

    def pool(self, z: Tensor) -> Tensor:
        """P(z): the pooling of a convolution's output."""
        if self.pooling == "max":
            return F.max_pool2d(z, self.pool_size)
        if self.pooling == "avg":
            return F.avg_pool2d(z, self.pool_size)
        return z

    def primitive(self, state: State, x: Tensor) -> Tensor:
        """Φ = Σ_k s_k • P(conv_k(s_{k−1})) + s_out • (W flat(s_L) + b), one value per sample."""
        below = (x,) + tuple(state[:-2])
        phi = sum((s * self.pool(conv(b))).flatten(1).sum(1) for conv, b, s in zip(self.convs, below, state[:-1]))
        return phi + (self.fc(state[-2].flatten(1)) * state[-1]).sum(1)

    # -- closed forms --------------------------------------------------------------------------
    def prepare(self, x: Tensor) -> Tensor:
        """The constant drive P(conv_1(x)) of the first layer."""
        self._check_input(x)
        return self.pool(self.convs[0](x))

    def _pool_and_adjoint(self, z: Tensor):
        """P(z) and the map Pᵀ: pooled-shaped tensor → z-shaped tensor (switches of z for max)."""
        p = self.pool_size
        if self.pooling == "none":
            return z, lambda g: g
        if self.pooling == "max":
            pooled, indices = F.max_pool2d(z, p, return_indices=True)
            # The switch of each window as a mask (elementwise, deterministic; max_unpool2d is
            # flagged non-deterministic): position == the arg-max index of its window.
            height, width = z.shape[-2:]
            positions = torch.arange(height * width, device=z.device).reshape(height, width)
            mask = _upsample(indices, p) == positions[: indices.shape[-2] * p, : indices.shape[-1] * p]
            return pooled, lambda g: _pad_to(_upsample(g, p) * mask, z)
        return F.avg_pool2d(z, p), lambda g: _pad_to(_upsample(g, p) / (p * p), z)

    def primitive_grad(self, state: State, x: Tensor, context: Any = None, create_graph: bool = False) -> State:
        if not self.closed_form or any(s.is_complex() for s in state):
            return super().primitive_grad(state, x, context, create_graph)
        return self.layer_drive(state, x, range(len(state)), context, create_graph, {})  # type: ignore[return-value]

    def layer_drive(self, state: State, x: Tensor, layers: Sequence[int], context: Any = None,
                    create_graph: bool = False, cache: dict | None = None) -> tuple[Tensor | None, ...]:
        """∂Φ/∂s_k for k in ``layers`` only, in closed form (one block of an asynchronous sweep).

        P(conv_k(s_{k−1})) (and, for max pooling, its switches, which the feedback onto s_{k−1}
        needs) is computed once per value of s_{k−1}: ``cache`` keeps it keyed by the state
        tensor it came from, so an even/odd sweep computes each convolution once, as a
        synchronous step does.
        """
        if not self.closed_form or any(s.is_complex() for s in state):
            return super().layer_drive(state, x, layers, context, create_graph, cache)
        drive0 = self.prepare(x) if context is None else context
        cache = {} if cache is None else cache
        pad = self.padding
        convs = [(c.weight, c.bias) for c in self.convs]
        n_conv = len(convs)
        fc_w, fc_b = self.fc.weight, self.fc.bias

        def forward(k: int):  # P(conv_k(s_{k−1})) and Pᵀ, once per tensor s_{k−1}
            below = state[k - 1]
            hit = cache.get(k)
            if hit is not None and hit[0] is below:
                return hit[1], hit[2]
            weight, bias = convs[k]
            pooled, adjoint = self._pool_and_adjoint(F.conv2d(below, weight, bias, padding=pad))
            cache[k] = (below, pooled, adjoint)
            return pooled, adjoint

        out: list[Tensor | None] = [None] * (n_conv + 1)
        for j in sorted({k % (n_conv + 1) for k in layers}):
            if j == n_conv:  # the output layer: W flat(s_L) + b
                out[j] = F.linear(state[-2].flatten(1), fc_w, fc_b)
                continue
            up = drive0 if j == 0 else forward(j)[0]
            if j < n_conv - 1:  # feedback conv_{j+1}ᵀ(Pᵀ s_{j+1}) through the switches of conv_{j+1}(s_j)
                _, adjoint = forward(j + 1)
                out[j] = up + F.conv_transpose2d(adjoint(state[j + 1]), convs[j + 1][0], padding=pad)
            else:
                out[j] = up + (state[-1] @ fc_w).reshape(state[-2].shape)
        return tuple(out)

    def param_grads(self, state: State, x: Tensor, weights: Tensor) -> dict[str, Tensor]:
        if not self.closed_form or any(s.is_complex() for s in state):
            return super().param_grads(state, x, weights)
        below = (x,) + tuple(state[:-2])
        negative = -weights  # ∂E/∂θ = −∂Φ/∂θ: fold the sign into the per-sample weights
        grads: dict[str, Tensor] = {}
        for k, (conv, b, s) in enumerate(zip(self.convs, below, state[:-1])):
            ws = s * negative.reshape(-1, 1, 1, 1)
            _, adjoint = self._pool_and_adjoint(F.conv2d(b, conv.weight, conv.bias, padding=self.padding))
            grads[f"convs.{k}.weight"] = torch.nn.grad.conv2d_weight(b, conv.weight.shape, adjoint(ws), padding=self.padding)
            grads[f"convs.{k}.bias"] = ws.sum(dim=(0, 2, 3))
        wo = state[-1] * negative[:, None]
        grads["fc.weight"] = wo.transpose(0, 1) @ state[-2].flatten(1)
        grads["fc.bias"] = wo.sum(dim=0)
        return grads

    def _check_input(self, x: Tensor) -> None:
        expected = (self.in_channels, *self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            hint = " (images, not flattened: load_digits(image=True), flatten=False)" if x.dim() == 2 else ""
            raise ShapeError(
                f"ConvHopfield expects images shaped [batch, {expected[0]}, {expected[1]}, {expected[2]}]{hint}, "
                f"got shape {tuple(x.shape)}."
            )

    def extra_repr(self) -> str:
        names = [a.name for a in self.activations]
        return (
            f"in_channels={self.in_channels}, channels={self.channels}, n_classes={self.n_classes}, "
            f"input_size={self.input_size}, kernel_size={self.kernel_size}, padding={self.padding}, "
            f"pooling={self.pooling!r}, pool_size={self.pool_size}, activation={names}"
        )


def _upsample(g: Tensor, p: int) -> Tensor:
    """Repeat every pixel into a p×p block."""
    return g.repeat_interleave(p, dim=-2).repeat_interleave(p, dim=-1)


def _pad_to(g: Tensor, like: Tensor) -> Tensor:
    """Zero-pad the bottom/right (the rows and columns a floor pooling dropped) to ``like``'s size."""
    dh, dw = like.shape[-2] - g.shape[-2], like.shape[-1] - g.shape[-1]
    return F.pad(g, (0, dw, 0, dh)) if dh or dw else g
