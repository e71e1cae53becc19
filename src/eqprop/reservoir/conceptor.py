"""Conceptors (Jaeger 2014, *Controlling recurrent neural networks by conceptors*, arXiv:1403.3369).

For reservoir states X ∈ ℝ^{L×N} (one state per row) with correlation matrix R = XᵀX / L, the
conceptor of aperture α is the regularised identity map

    C(R, α) = R (R + α⁻² I)⁻¹ = U diag(sᵢ / (sᵢ + α⁻²)) Uᵀ,     R = U diag(sᵢ) Uᵀ,

the minimiser of E‖x − Cx‖² + α⁻²‖C‖²_F. It is symmetric with eigenvalues in [0, 1): close to 1
along directions the states use (sᵢ ≫ α⁻²), close to 0 elsewhere. eqprop computes it from the
eigendecomposition of R (exactly symmetric; checked against the matrix formula in
tests/test_reservoir.py).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigurationError, NonFiniteError, ShapeError

__all__ = ["conceptor", "correlation", "conceptor_from_correlation", "apply"]


def check_aperture(aperture: Any) -> float:
    """α as a float, refused unless finite and > 0."""
    if isinstance(aperture, bool) or not isinstance(aperture, (int, float)) or not math.isfinite(aperture) or aperture <= 0:
        raise ConfigurationError(f"aperture must be a finite number > 0 (C = R(R + α⁻²I)⁻¹), got {aperture!r}.")
    return float(aperture)


def check_states(states: Any, name: str = "states") -> Tensor:
    """A floating [L, N] tensor of finite states with L ≥ 1."""
    states = torch.as_tensor(states)
    if not states.is_floating_point():
        states = states.to(torch.get_default_dtype())
    if states.dim() != 2 or states.shape[0] < 1 or states.shape[1] < 1:
        raise ShapeError(f"{name} must have shape [L, N] (one reservoir state per row), got {tuple(states.shape)}.")
    if not torch.isfinite(states).all():
        raise NonFiniteError(f"{name} contain NaN or infinity: drop the diverged steps or lower the spectral radius.")
    return states


def correlation(states: Tensor) -> Tensor:
    """R = XᵀX / L for states X of shape [L, N]."""
    states = check_states(states)
    return states.T @ states / states.shape[0]


def conceptor_from_correlation(R: Tensor, aperture: float) -> Tensor:
    """C = R(R + α⁻²I)⁻¹ for a symmetric positive semi-definite R [N, N]."""
    alpha = check_aperture(aperture)
    R = torch.as_tensor(R)
    if R.dim() != 2 or R.shape[0] != R.shape[1]:
        raise ShapeError(f"a correlation matrix must be square [N, N], got {tuple(R.shape)}.")
    if not torch.isfinite(R).all():
        raise NonFiniteError("the correlation matrix contains NaN or infinity: check the states it was computed from.")
    s, U = torch.linalg.eigh((R + R.T) / 2)
    s = s.clamp_min(0.0)  # round-off can make a zero eigenvalue slightly negative
    gain = s / (s + alpha ** -2) if alpha ** -2 > 0 else (s > 0).to(s.dtype)
    C = (U * gain) @ U.T
    return (C + C.T) / 2  # symmetric to the last bit (the product alone is only to round-off)


def conceptor(states: Tensor, aperture: float) -> Tensor:
    """The conceptor C = R(R + α⁻²I)⁻¹ of ``states`` [L, N], R = XᵀX / L.

    Args:
        states: one reservoir state per row (after the washout), shape [L, N], finite.
        aperture: α > 0. α → ∞ gives C → I on the span of the states; α → 0 gives C → 0.

    Returns:
        C, a symmetric [N, N] matrix with eigenvalues in [0, 1), in the dtype of ``states``.
    """
    alpha = check_aperture(aperture)
    return conceptor_from_correlation(correlation(states), alpha)


def apply(C: Tensor, x: Tensor) -> Tensor:
    """C x for x [N] or [B, N] and C [N, N] (shared) or [B, N, N] (one per row of x)."""
    if C.dim() == 2:
        return x @ C.T
    if x.dim() == 1:
        x = x.expand(C.shape[0], -1)
    return torch.bmm(C, x[..., None])[..., 0]
