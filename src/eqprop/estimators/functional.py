"""A model evaluated with its parameters swapped (``torch.func.functional_call``), one wrapper for all.

HEB's joint system evaluates V and the output with one copy of θ per row (under ``vmap``) and
holomorphic EP with complex copies of θ; both go through :func:`call_with_parameters`.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["call_with_parameters"]


class _Apply(nn.Module):
    """``fn(model, *args)`` as a module call, so ``functional_call`` can swap the model's tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.model, *args)


def call_with_parameters(model: nn.Module, params: dict[str, Tensor], fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(model, *args)`` with the tensors named in ``params`` (names as in ``model.named_parameters()``)
    replaced for this call only; the model itself is left as it was."""
    return functional_call(_Apply(model), {f"model.{name}": p for name, p in params.items()}, (fn, *args))
