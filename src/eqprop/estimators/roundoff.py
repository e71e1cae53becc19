"""The estimated round-off of an echo contrast, shared by the echo learners (HEB, ContinuousRHEL).

An echo reads a gradient from the difference of two echo copies nudged by ε_a and ε_b. When the
difference is carried as a state of its own (the closed-form echo kernels, or an echo run in a
wider dtype) the contrast keeps the relative precision of the run, about u·√N after N steps (u the
unit round-off, the errors of the steps adding up like a random walk). When two stored copies of
size |Φ| are subtracted, each carries an absolute error u·√N·|Φ| while their difference is only
|ε_a − ε_b|·|λ| (λ the adjoint, of the size of the nudge's gradient), so the relative error is
u·√N·|Φ|/(|ε_a − ε_b|·|λ|): the 1/ε of cancellation.
"""

from __future__ import annotations

import math
import warnings

import torch

from ..errors import PrecisionWarning

__all__ = ["ROUNDOFF_WARN", "unit_roundoff", "contrast_roundoff", "warn_roundoff"]

ROUNDOFF_WARN = 0.1  # above this estimated relative error a learner warns (PrecisionWarning)


def unit_roundoff(dtype: torch.dtype) -> float:
    """The machine epsilon of a floating dtype (0 for others)."""
    return torch.finfo(dtype).eps if dtype.is_floating_point else 0.0


def contrast_roundoff(dtype: torch.dtype, steps: int, subtracted: bool = False, scale: float = 1.0,
                      denominator: float = 1.0, gradient: float = 1.0) -> float:
    """u·√N, times max(|Φ|, 1)/(|ε_a − ε_b|·|λ|) when two stored copies are ``subtracted``.

    ``scale`` is max |Φ| over the echo's start, ``gradient`` max |λ| of the nudge (the force ∇C).
    """
    base = unit_roundoff(dtype) * math.sqrt(max(steps, 1))
    if not subtracted or gradient <= 0 or denominator == 0:
        return base
    return base * max(scale, 1.0) / (abs(denominator) * gradient)


def warn_roundoff(roundoff: float, learner: str, nudge: str, value: float, dtype: torch.dtype, fix: str,
                  stacklevel: int = 2) -> None:
    """A PrecisionWarning when the estimated relative round-off exceeds :data:`ROUNDOFF_WARN`;
    ``stacklevel`` counts from the caller of this function."""
    if roundoff > ROUNDOFF_WARN:
        warnings.warn(f"{learner}'s contrast at {nudge}={value:g} is near {dtype} round-off (estimated relative "
                      f"error {roundoff:.1e}); use a larger {nudge} or {fix}.", PrecisionWarning, stacklevel=stacklevel + 1)
