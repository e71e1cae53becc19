"""Parameter groups: a model's binary latent weights apart from its real parameters."""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import ConfigurationError, NonFiniteError

__all__ = ["param_groups"]


def param_groups(model: nn.Module) -> list[Any]:
    """``model.parameters()``, split by kind when the model has binary weights.

    A model that lists its latent binary weights in ``binary_weight_names()`` (the binary
    Hopfield networks, :class:`eqprop.models.BinarizedMLP`) gets up to three groups, each with
    the parameter ``names``: the latent weights (``binary=True``), the scales α of a binary
    Hopfield network (``binary=False, scale=True``) and the other real parameters (biases,
    BatchNorm; ``binary=False, scale=False``). :class:`BinaryFlip` flips the first group and
    applies plain SGD to the others (with ``scale_lr`` on the scales), :class:`MetaplasticAdam`
    consolidates the first only. Any torch optimizer accepts these groups (the extra keys are
    kept and ignored). Other models get the plain list of their parameters.
    """
    binary_names = getattr(model, "binary_weight_names", None)
    if binary_names is None:
        return list(model.parameters())
    names = set(binary_names())
    named = list(model.named_parameters())
    kinds = [("binary", True, False), ("scale", False, True), ("real", False, False)]
    groups = []
    for kind, binary, scale in kinds:
        chosen = [(n, p) for n, p in named if _kind(n, names) == kind]
        if chosen:
            groups.append({"params": [p for _, p in chosen], "names": [n for n, _ in chosen],
                           "binary": binary, "scale": scale})
    return groups


def _kind(name: str, binary_names: set[str]) -> str:
    if name in binary_names:
        return "binary"
    return "scale" if name.startswith("alpha.") else "real"


def check_unit_interval(name: str, value: Any) -> float:
    """A number in (0, 1] (γ of BinaryFlip)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (0.0 < v <= 1.0):
        raise ConfigurationError(f"{name} must lie in (0, 1] (a momentum rate), got {value!r}.")
    return v


def check_non_negative(name: str, value: Any, allow_inf: bool = False) -> float:
    """A number ≥ 0 (finite unless ``allow_inf``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (v >= 0.0) or (math.isinf(v) and not allow_inf):
        finite = "" if allow_inf else " and finite"
        raise ConfigurationError(f"{name} must be ≥ 0{finite}, got {value!r}.")
    return v


def check_finite_grads(optimizer: torch.optim.Optimizer) -> None:
    """Raise NonFiniteError naming the first parameter whose gradient has NaN or infinity."""
    for g, group in enumerate(optimizer.param_groups):
        names = group.get("names")
        for i, p in enumerate(group["params"]):
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                label = repr(names[i]) if names and i < len(names) else f"{i} of group {g} (shape {list(p.shape)})"
                raise NonFiniteError(
                    f"{type(optimizer).__name__} got a NaN or infinite gradient for parameter {label}; no weight "
                    "was changed: lower β or the learning rate, or check the learner's relaxation."
                )


def closure_then_check(optimizer: torch.optim.Optimizer, closure: Any) -> Any:
    """The preamble of every ``step``: the closure's loss (under grad mode), then
    :func:`check_finite_grads` before any parameter changes."""
    loss = None
    if closure is not None:
        with torch.enable_grad():
            loss = closure()
    check_finite_grads(optimizer)
    return loss


def iter_grads(group: dict) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    for p in group["params"]:
        if p.grad is not None:
            yield p, p.grad
