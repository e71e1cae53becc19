"""Feedforward networks with learned feedback layers, for difference target propagation.

Forward blocks ``s_n = F_n(s_{n-1}; W_n)`` (``s_0 = x``, ``s_N`` the logits) and feedback blocks
``G_n(·; B_n)`` that map layer n back to layer n−1 (Ernoult et al. 2022, "Towards scaling
difference target propagation by learning backprop targets"). Indices are 0-based in code:
``forward_layers[i]`` computes ``s_{i+1}`` from ``s_i`` and ``feedback_layers[i]`` maps
``s_{i+1}`` back to ``s_i``; ``feedback_layers[0]`` is ``None`` (the map back to the input is
never needed).

    MLP   F_i(s) = ρ(W_i s + b_i)  (the last block is linear),   G_i(s) = B_i ρ(s) + c_i
          (the last block's G is linear: G(s) = B s + c)
    conv  F_i = maxpool∘ρ∘conv,  G_i = convT∘ρ∘unpool (unpool reuses F_i's pooling indices);
          a linear head on the flattened last block, with a linear G

The feedback layers' parameters have ``requires_grad=False``: they are trained by the learner's
own rule (``DTP.train_feedback``), never by the optimizer of the forward weights. The model knows
nothing of learners; it exposes the blocks one at a time (:meth:`forward_step`,
:meth:`feedback_step`) and checks that each feedback layer is shaped as its forward layer's adjoint.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigurationError, ShapeError
from ._checks import positive_int

__all__ = ["DTPModel", "DTPNetwork", "DTPConvNetwork", "FEEDFORWARD_ACTIVATIONS", "unpool"]

FEEDFORWARD_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "elu": F.elu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": F.relu,
    "identity": lambda u: u,
}


def _activation(name: Any) -> Callable[[Tensor], Tensor]:
    if name not in FEEDFORWARD_ACTIVATIONS:
        raise ConfigurationError(f"Unknown activation {name!r}; choose one of {sorted(FEEDFORWARD_ACTIVATIONS)}.")
    return FEEDFORWARD_ACTIVATIONS[name]


class DTPModel(nn.Module):
    """Base of the feedforward models with feedback layers (what ``eqprop.learners.DTP`` needs).

    A subclass fills ``forward_layers`` and ``feedback_layers`` (``nn.ModuleList``, the same
    length, ``feedback_layers[0] = None``) and implements :meth:`forward_step` and
    :meth:`feedback_step`.
    """

    forward_layers: nn.ModuleList
    feedback_layers: nn.ModuleList

    @property
    def n_layers(self) -> int:
        return len(self.forward_layers)

    def forward_step(self, i: int, s: Tensor) -> tuple[Tensor, Any]:
        """``(s_{i+1}, context)``: block i on ``s_i``; the context (e.g. pooling indices) is what
        :meth:`feedback_step` of the same block needs."""
        raise NotImplementedError  # pragma: no cover - abstract

    def feedback_step(self, i: int, s: Tensor, context: Any = None) -> Tensor:
        """``G_i(s)``: feedback block i maps a value of layer i+1 back to layer i."""
        raise NotImplementedError  # pragma: no cover - abstract

    #: the shape of one input sample, ``x.shape[1:]``; checked by :meth:`check_input`.
    sample_shape: tuple[int, ...]

    def check_input(self, x: Tensor) -> None:
        """Refuse an input whose per-sample shape is not the one the first block reads."""
        got = tuple(x.shape[1:])
        if got != tuple(self.sample_shape):
            raise ShapeError(
                f"{type(self).__name__} reads inputs of shape [batch, {', '.join(map(str, self.sample_shape))}], "
                f"got {tuple(x.shape)}; reshape the data (or build the model for this input shape)."
            )

    def states(self, x: Tensor) -> tuple[list[Tensor], list[Any]]:
        """All ``s_0 = x, s_1, …, s_N`` and the per-block contexts, without a graph."""
        self.check_input(x)
        with torch.no_grad():
            s, contexts = [x], []
            for i in range(self.n_layers):
                nxt, ctx = self.forward_step(i, s[-1])
                s.append(nxt)
                contexts.append(ctx)
        return s, contexts

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        for i in range(self.n_layers):
            x, _ = self.forward_step(i, x)
        return x

    def check_feedback(self) -> None:
        """Refuse feedback layers that are missing or not shaped as their forward layer's adjoint."""
        if len(self.feedback_layers) != len(self.forward_layers):
            raise ShapeError(
                f"{type(self).__name__} has {len(self.forward_layers)} forward layers but "
                f"{len(self.feedback_layers)} feedback layers; give one feedback layer per forward layer "
                "(None for the first)."
            )
        for i in range(1, self.n_layers):
            fw, fb = self.forward_layers[i], self.feedback_layers[i]
            if fb is None:
                raise ConfigurationError(
                    f"feedback_layers[{i}] is None; every block but the first needs a feedback layer."
                )
            expected = _adjoint_shape(fw)
            got = tuple(getattr(fb, "weight", torch.empty(0)).shape)
            if got != expected:
                raise ShapeError(
                    f"feedback_layers[{i}].weight has shape {got} but forward_layers[{i}] "
                    f"({type(fw).__name__}) needs a feedback weight of shape {expected}; build the "
                    "feedback layer from the forward layer's output and input widths."
                )


def _adjoint_shape(layer: nn.Module) -> tuple[int, ...]:
    """The feedback weight shape of a forward layer: Wᵀ for a linear layer; a transposed
    convolution's weight already has the shape of the convolution's."""
    if isinstance(layer, nn.Linear):
        return tuple(layer.weight.t().shape)
    if isinstance(layer, nn.Conv2d):
        return tuple(layer.weight.shape)
    raise ConfigurationError(f"No feedback layer is defined for a forward {type(layer).__name__}; use nn.Linear or nn.Conv2d.")


def unpool(s: Tensor, indices: Tensor, size: Sequence[int]) -> Tensor:
    """2×2 max-unpooling: each value of ``s`` goes back to the position its window's maximum came
    from (``indices`` of ``F.max_pool2d(..., 2, return_indices=True)``), zeros elsewhere.

    The same as ``F.max_unpool2d(s, indices, 2, output_size=size)``, written with a one-hot mask
    so that it is deterministic on every device (no scatter).
    """
    h, w = int(size[0]), int(size[1])
    hp, wp = s.shape[-2:]
    offset = (indices // w % 2) * 2 + indices % w % 2  # position of the maximum in its 2×2 window
    blocks = s.unsqueeze(-1) * F.one_hot(offset, 4).to(s.dtype)
    out = blocks.reshape(*s.shape, 2, 2).transpose(-3, -2).reshape(*s.shape[:-2], 2 * hp, 2 * wp)
    return F.pad(out, (0, w - 2 * wp, 0, h - 2 * hp)) if (2 * hp, 2 * wp) != (h, w) else out


def _frozen(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class DTPNetwork(DTPModel):
    """An MLP with a feedback layer per block: ``sizes = [n_in, h_1, …, n_out]``.

    Args:
        sizes: layer widths, input first, at least two.
        activation: ρ of the hidden blocks, one of ``"elu"`` (the paper's), ``"tanh"``,
            ``"sigmoid"``, ``"relu"``, ``"identity"``; the output block is linear.

    ``forward_layers[i]`` is ``nn.Linear(sizes[i], sizes[i+1])``; ``feedback_layers[i]`` is
    ``nn.Linear(sizes[i+1], sizes[i])`` (its weight has the shape of the forward weight's
    transpose), ``feedback_layers[0]`` is ``None``.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "elu") -> None:
        super().__init__()
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or len(sizes) < 2:
            raise ConfigurationError(f"sizes must list at least an input and an output width, got {sizes!r}.")
        self.sizes = [positive_int(f"sizes[{k}]", n) for k, n in enumerate(sizes)]
        self.sample_shape = (self.sizes[0],)
        self.activation = activation
        self.rho = _activation(activation)
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        self.forward_layers = nn.ModuleList([nn.Linear(a, b) for a, b in pairs])
        self.feedback_layers = nn.ModuleList([None] + [_frozen(nn.Linear(b, a)) for a, b in pairs[1:]])

    def forward_step(self, i: int, s: Tensor) -> tuple[Tensor, Any]:
        u = self.forward_layers[i](s)
        return (u if i == self.n_layers - 1 else self.rho(u)), None

    def feedback_step(self, i: int, s: Tensor, context: Any = None) -> Tensor:
        return self.feedback_layers[i](s if i == self.n_layers - 1 else self.rho(s))

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, activation={self.activation!r}"


class DTPConvNetwork(DTPModel):
    """A small VGG-like conv net with feedback layers: blocks maxpool∘ρ∘conv, a linear head.

    Args:
        input_shape: ``(channels, height, width)`` of one image.
        channels: output channels of each conv block (each block halves height and width).
        n_classes: width of the linear head.
        kernel_size: odd square kernel, ``padding = kernel_size // 2`` (size-preserving conv).
        activation: ρ, as for :class:`DTPNetwork`.

    The feedback block of conv block i is ``convT_i ∘ ρ ∘ unpool`` (``nn.ConvTranspose2d``; the
    unpool reuses the forward pooling indices of the current input); the head's is linear
    followed by a reshape. The paper's CIFAR-10 net is ``channels=[128, 128, 256, 256, 512]``.
    """

    def __init__(self, input_shape: Sequence[int], channels: Sequence[int], n_classes: int,
                 kernel_size: int = 3, activation: str = "elu") -> None:
        super().__init__()
        if not hasattr(input_shape, "__len__") or len(input_shape) != 3:
            raise ConfigurationError(
                f"input_shape must be (channels, height, width), got {input_shape!r}; load images unflattened "
                "(+data.image=true for digits)."
            )
        c, h, w = (positive_int(f"input_shape[{k}]", v) for k, v in enumerate(input_shape))
        channels = [positive_int(f"channels[{k}]", v) for k, v in enumerate(channels)]
        if not channels:
            raise ConfigurationError("channels must list at least one conv block.")
        k = positive_int("kernel_size", kernel_size)
        if k % 2 == 0:
            raise ConfigurationError(f"kernel_size must be odd (size-preserving padding), got {k}.")
        if h >> len(channels) == 0 or w >> len(channels) == 0:
            raise ConfigurationError(
                f"{len(channels)} pooling blocks halve a {h}×{w} image below one pixel; use fewer blocks."
            )
        self.input_shape, self.channels, self.n_classes = (c, h, w), channels, positive_int("n_classes", n_classes)
        self.sample_shape = self.input_shape
        self.activation, self.rho = activation, _activation(activation)
        ins = [c] + channels[:-1]
        convs = [nn.Conv2d(a, b, k, padding=k // 2) for a, b in zip(ins, channels)]
        self.feature_shape = (channels[-1], h >> len(channels), w >> len(channels))
        flat = channels[-1] * self.feature_shape[1] * self.feature_shape[2]
        self.forward_layers = nn.ModuleList(convs + [nn.Linear(flat, self.n_classes)])
        feedback = [_frozen(nn.ConvTranspose2d(b, a, k, padding=k // 2)) for a, b in zip(ins[1:], channels[1:])]
        self.feedback_layers = nn.ModuleList([None] + feedback + [_frozen(nn.Linear(self.n_classes, flat))])

    def forward_step(self, i: int, s: Tensor) -> tuple[Tensor, Any]:
        if i == self.n_layers - 1:
            return self.forward_layers[i](s.flatten(1)), None
        u = self.rho(self.forward_layers[i](s))
        pooled, indices = F.max_pool2d(u, 2, return_indices=True)
        return pooled, (indices, u.shape[-2:])

    def feedback_step(self, i: int, s: Tensor, context: Any = None) -> Tensor:
        if i == self.n_layers - 1:
            return self.feedback_layers[i](s).reshape(s.shape[0], *self.feature_shape)
        if context is None:
            raise ConfigurationError(
                "The feedback of a conv block needs the pooling indices of its forward pass; pass the "
                "context that forward_step returned."
            )
        indices, size = context
        return self.feedback_layers[i](self.rho(unpool(s, indices, size)))

    def extra_repr(self) -> str:
        return (f"input_shape={self.input_shape}, channels={self.channels}, n_classes={self.n_classes}, "
                f"activation={self.activation!r}")
