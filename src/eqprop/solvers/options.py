"""Option checks and 16-bit helpers of the relaxation solvers (eqprop.solvers.relaxation).

``check_tol`` / ``positive_number`` / ``check_order`` / ``check_state_dtype`` validate a solver's
arguments with one-sentence errors; ``_relaxing`` swaps a model's parameters for 16-bit copies for
the length of one solve (``state_dtype``), restoring them on exit.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import torch
from torch import Tensor

from ..errors import ConfigurationError

__all__ = ["ORDERS", "check_order", "check_state_dtype", "check_tol", "positive_number"]

_DTYPE_NAMES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "half": torch.float16,
                "float32": torch.float32, "float": torch.float32, "float64": torch.float64, "double": torch.float64}
ORDERS = ("odd_first", "even_first")


def check_state_dtype(value: Any) -> torch.dtype | None:
    """``None`` (the model's dtype) or a real floating dtype, given as a torch.dtype or its name."""
    if value is None:
        return None
    dtype = _DTYPE_NAMES.get(value.removeprefix("torch.")) if isinstance(value, str) else value
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigurationError(
            f"state_dtype must be a real floating dtype (torch.bfloat16, torch.float16, torch.float32, "
            f"torch.float64) or None, got {value!r}."
        )
    return dtype


def check_order(order: Any) -> str | tuple[tuple[int, ...], ...]:
    """``"odd_first"``, ``"even_first"`` or a list of blocks of layer indices."""
    if isinstance(order, str):
        if order not in ORDERS:
            raise ConfigurationError(f"Unknown Asynchronous order {order!r}; choose {ORDERS} or a list of layer blocks.")
        return order
    try:
        blocks = tuple(tuple(int(k) for k in block) for block in order)
        ok = bool(blocks) and all(blocks) and all(
            not isinstance(k, bool) for block in order for k in block)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigurationError(
            f"Asynchronous order must be {ORDERS[0]!r}, {ORDERS[1]!r} or a list of non-empty blocks of layer "
            f"indices such as [[0, 2], [1]], got {order!r}."
        )
    return blocks


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _low_precision(state_dtype: torch.dtype | None, state) -> torch.dtype | None:
    """The dtype to relax in, or None when it is the state's own."""
    if state_dtype is None or all(s.dtype == state_dtype for s in state):
        return None
    if any(s.is_complex() for s in state):
        raise ConfigurationError(
            f"state_dtype={_dtype_name(state_dtype)} applies to real states; this model's state is complex "
            f"(holomorphic EP): pass state_dtype=None."
        )
    return state_dtype


def _cast(obj: Any, dtype: torch.dtype) -> Any:
    """Every floating tensor of a (nested) tuple/list/dict in ``dtype``."""
    if isinstance(obj, Tensor):
        return obj.to(dtype) if obj.is_floating_point() else obj
    if isinstance(obj, tuple):
        return tuple(_cast(o, dtype) for o in obj)
    if isinstance(obj, list):
        return [_cast(o, dtype) for o in obj]
    if isinstance(obj, dict):
        return {k: _cast(v, dtype) for k, v in obj.items()}
    return obj


@contextlib.contextmanager
def _relaxing(solver: Any, model, dtype: torch.dtype | None) -> Iterator[None]:
    """During one solve: a cache of drive pieces for the solver, and the model's floating
    parameters and buffers swapped for ``dtype`` copies (restored on exit, even on error).
    The copies are differentiable casts, so BPTT through a 16-bit relaxation reaches the
    float32 parameters."""
    swapped: list[tuple[dict, str, Tensor]] = []
    solver._cache = {}
    try:
        if dtype is not None:
            for module in model.modules():
                for table in (module._parameters, module._buffers):
                    for name, value in table.items():
                        if value is not None and value.is_floating_point() and value.dtype != dtype:
                            swapped.append((table, name, value))
                            table[name] = value.to(dtype)
        yield
    finally:
        for table, name, value in reversed(swapped):
            table[name] = value
        del solver._cache


def check_tol(name: str, value: Any, allow_none: bool = True) -> float | None:
    """A tolerance: a finite number ≥ 0 (or None, a fixed number of steps, where allowed)."""
    if value is None and allow_none:
        return None
    number = _number(value)
    if number is None or not math.isfinite(number) or number < 0:
        none = " or None (a fixed number of steps)" if allow_none else ""
        raise ConfigurationError(f"{name} must be a non-negative number{none}, got {value!r}.")
    return number


def positive_number(name: str, value: Any) -> float:
    """A finite number > 0 (a step size, a time step)."""
    number = _number(value)
    if number is None or not math.isfinite(number) or number <= 0:
        raise ConfigurationError(f"{name} must be a positive finite number, got {value!r}.")
    return number


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or isinstance(value, str):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
