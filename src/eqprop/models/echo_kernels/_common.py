"""What every echo kernel shares: the copy weights, reductions to dt's shape, gradient sums."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

__all__ = ["copy_weights", "reduce_like", "is_param", "GradientSums", "echo_rows", "row_epsilons", "copy_rows",
           "contrast_rows"]


# -- how an echo state's rows are laid out ------------------------------------------------------
# A kernel with ``difference = False`` (the autograd kernel) keeps every copy in its own row block.
# A kernel with ``difference = True`` (the closed forms) keeps in block 0 the *difference* copy 0 −
# copy 1 and the copies themselves in the other blocks: the contrast is then carried as a state of
# its own, at the relative precision of the dtype whatever ε, instead of being the difference of two
# nearly equal states (which loses ~|Φ|/(ε|λ|) digits: all of them in float32 at small ε). The four
# functions below are the only places that read the layout.

def _difference(kernel) -> bool:
    return bool(getattr(kernel, "difference", False))


def echo_rows(kernel, t: Tensor, copies: int) -> Tensor:
    """The echo's start from one state t [batch, ...]: ``copies`` identical copies in the kernel's layout."""
    rows = t.repeat(copies, *([1] * (t.dim() - 1)))
    if _difference(kernel):
        rows[:t.shape[0]].zero_()
    return rows


def row_epsilons(kernel, eps_values) -> list[float]:
    """What a nudge ε_c·g adds to each row block: ε_0 − ε_1 to the difference block, ε_c elsewhere."""
    eps = list(eps_values)
    return [eps[0] - eps[1]] + eps[1:] if _difference(kernel) else eps


def copy_rows(kernel, t: Tensor, copy: int, batch: int) -> Tensor:
    """The state of echo copy ``copy`` (rows of one copy)."""
    if copy == 0 and _difference(kernel):
        return t[batch:2 * batch] + t[:batch]
    return t[copy * batch:(copy + 1) * batch]


def contrast_rows(kernel, t: Tensor, batch: int) -> Tensor:
    """copy 0 − copy 1, the state difference the contrast is read from."""
    return t[:batch] if _difference(kernel) else t[:batch] - t[batch:2 * batch]


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
