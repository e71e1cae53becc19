"""What every echo kernel shares: the copy weights, reductions to dt's shape, gradient sums."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

__all__ = ["copy_weights", "reduce_like", "is_param", "GradientSums"]


def copy_weights(like: Tensor, batch: int, copies: int) -> Tensor:
    """The contrast weights (+1, −1, 0, …) of the echo copies, one per row."""
    return like.new_tensor([1.0, -1.0] + [0.0] * (copies - 2)).repeat_interleave(batch)


def reduce_like(g: Tensor, dt: Tensor) -> Tensor:
    """Sum per-coordinate contributions [..., n] down to dt's shape (scalar or [n])."""
    return g.sum() if dt.dim() == 0 else g.reshape(-1, *dt.shape).sum(0)


def is_param(dt: Tensor, param) -> bool:
    """True when the step size dt is the model's own trainable ``param``."""
    return param is not None and dt is param and dt.requires_grad


class GradientSums:
    """Running sums of autograd gradients, one slot per trainable parameter of ``module``."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.sums: list[Tensor | None] = [None] * len(self.params)

    def add(self, grads: Iterable[Tensor | None]) -> None:
        for i, g in enumerate(grads):
            if g is not None:
                self.sums[i] = g if self.sums[i] is None else self.sums[i] + g

    def grads(self) -> list[tuple[Tensor, Tensor]]:
        return [(p, g) for p, g in zip(self.params, self.sums) if g is not None]
