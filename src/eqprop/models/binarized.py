"""BinarizedMLP: the feedforward binarized neural network (BNN) of the metaplasticity paper.

Laborieux, Ernoult, Hirtzlin & Querlioz 2021, "Synaptic metaplasticity in binarized neural
networks" (Nature Communications 12:2549), after Courbariaux et al. 2016 / Hubara et al. 2016.
Each layer l computes

    a_l = BN_l( sign(W_h,l) · x_{l−1} ),     x_l = sign(a_l)   (hidden layers; the output is a_L)

with real hidden weights W_h (never clipped: |W_h| is the metaplastic variable of
:class:`eqprop.optim.MetaplasticAdam`), no biases, and BatchNorm that normalises with the batch
statistics in training and in evaluation (no running statistics). The first layer receives the
real input. Gradients are straight-through: ∂sign(W_h)/∂W_h := 1 and ∂sign(a)/∂a := 1[|a| ≤ 1].
It is a plain ``nn.Module`` (``forward(x)`` returns the output): train it with
:class:`eqprop.baselines.Backprop`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigurationError, ShapeError
from ._checks import positive_int

__all__ = ["BinarizedMLP", "sign_ste"]


class _SignSTE(torch.autograd.Function):
    """sign(a) (sign(0) = +1) with the straight-through gradient 1[|a| ≤ 1]."""

    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(a)
        return torch.where(a >= 0, 1.0, -1.0).to(a.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (a,) = ctx.saved_tensors
        return grad * (a.abs() <= 1).to(grad.dtype)


def sign_ste(a: Tensor) -> Tensor:
    """sign(a) with the straight-through estimator (gradient zeroed where |a| > 1)."""
    return _SignSTE.apply(a)


def _binary_weight(w: Tensor) -> Tensor:
    """sign(W_h) with ∂/∂W_h = identity (BinaryConnect)."""
    signs = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
    return signs + (w - w.detach()) if torch.is_grad_enabled() and w.requires_grad else signs


class BinarizedMLP(nn.Module):
    """Binarized MLP with sizes ``[n_input, n_hidden..., n_output]`` (no biases, BatchNorm, sign units).

    Args:
        sizes: layer widths, input first; at least two entries.
        init_range: hidden weights start uniform in (−init_range, init_range).
        batchnorm_affine: learn BatchNorm's scale and shift (plain Adam in MetaplasticAdam).
    """

    def __init__(self, sizes: Sequence[int] = (784, 512, 512, 10), init_range: float = 0.05,
                 batchnorm_affine: bool = True) -> None:
        super().__init__()
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__") or len(list(sizes)) < 2:
            raise ConfigurationError(f"sizes must list at least two positive widths (input first), got {sizes!r}.")
        self.sizes = [positive_int(f"sizes[{i}]", s) for i, s in enumerate(sizes)]
        if not float(init_range) > 0:
            raise ConfigurationError(f"init_range must be positive, got {init_range!r}.")
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(b, affine=bool(batchnorm_affine), track_running_stats=False) for b in self.sizes[1:]
        )
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.uniform_(-float(init_range), float(init_range))

    def binary_weight_names(self) -> list[str]:
        """The hidden weights W_h (consolidated by MetaplasticAdam; BatchNorm stays plain Adam)."""
        return [f"layers.{k}.weight" for k in range(len(self.layers))]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x[0].numel() != self.sizes[0]:
            raise ShapeError(
                f"BinarizedMLP expects inputs of {self.sizes[0]} features per sample (shape [batch, "
                f"{self.sizes[0]}]), got shape {tuple(x.shape)}."
            )
        h = x.reshape(x.shape[0], -1)
        last = len(self.layers) - 1
        for k, (layer, norm) in enumerate(zip(self.layers, self.norms)):
            h = norm(torch.nn.functional.linear(h, _binary_weight(layer.weight)))
            if k < last:
                h = sign_ste(h)
        return h

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}"
