"""Argument checks shared by the built-in models (one sentence on bad input, never an assert)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import ConfigurationError, ShapeError


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum`` (an integral float such as 3.0 is accepted; a bool is not)."""
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or int(value) < minimum:
        raise ConfigurationError(f"{name} must be an integer ≥ {minimum}, got {value!r}.")
    return int(value)


def check_per_sample(what: str, value: Any, batch: int, hint: str = "sum over every axis but the batch") -> None:
    """A user physics method (energy, potential, kinetic, lagrangian, primitive) must return one
    value per sample, a tensor of shape ``(batch,)``; anything else (a scalar summed over the
    batch, ``[batch, 1]``) would broadcast into wrong gradients without a word."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise ShapeError(f"{what} must return a torch.Tensor of shape ({batch},), got {type(value).__name__}.")
    if tuple(value.shape) != (batch,):
        raise ShapeError(
            f"{what} must return one value per sample, shape ({batch},), got {tuple(value.shape)}; {hint}."
        )


def check_state(what: str, state: Any, batch: int) -> tuple:
    """``init_state`` of an energy model must return a tuple (or list) of tensors, one per layer, batch first."""
    import torch

    if isinstance(state, torch.Tensor):
        raise ShapeError(
            f"{what} returned a bare tensor; return a tuple of tensors, one per layer (for one layer: (s,))."
        )
    if not isinstance(state, (tuple, list)) or not state or not all(isinstance(s, torch.Tensor) for s in state):
        raise ShapeError(f"{what} must return a non-empty tuple of tensors, one per layer, got {type(state).__name__}.")
    for k, s in enumerate(state):
        if s.dim() == 0 or s.shape[0] != batch:
            raise ShapeError(
                f"{what} returned layer {k} shaped {tuple(s.shape)} for a batch of {batch}; put the batch on the first axis."
            )
        if not (s.is_floating_point() or s.is_complex()):
            raise ShapeError(f"{what} returned layer {k} as {s.dtype}; states must be floating point (e.g. torch.zeros(..., dtype=x.dtype)).")
    return tuple(state)


def all_finite(tensors) -> bool:
    """True when no tensor holds NaN or ±inf (one reduction per tensor, one sync in all).

    A sum is non-finite whenever an element is; only when the total is non-finite is the exact
    element-wise check run, so finite values whose sum overflows are not mistaken for NaN.
    Shared by the solvers and the learners (it sits here, below both).
    """
    total = None
    for t in tensors:
        if t.numel():
            partial = t.sum()
            total = partial if total is None else total + partial
    if total is None or math.isfinite(abs(total.item())):
        return True
    return all(bool(torch.isfinite(t).all()) for t in tensors)
