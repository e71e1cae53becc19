"""Argument checks shared by the built-in models (one sentence on bad input, never an assert)."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum`` (an integral float such as 3.0 is accepted; a bool is not)."""
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or int(value) < minimum:
        raise ConfigurationError(f"{name} must be an integer ≥ {minimum}, got {value!r}.")
    return int(value)
