"""ConceptorControl: the conceptor control loop (CCL) of Pourcel, Goldmann, Fischer & Soriano 2024.

At every step of an autonomous run the loop

1. applies C_adapt(k) to the reservoir: x(k+1) = C_adapt(k)[(1 − a)x(k) + a tanh(W* x(k) + b*)];
2. estimates on-line the conceptor of the states it actually produces, with Jaeger's
   autoconceptor rule (stochastic gradient descent on E‖x − Cx‖² + α⁻²‖C‖²_F):

       C_a ← C_a + η [(x − C_a x) xᵀ − α⁻² C_a],       x = x(k+1);

   under stationary states its fixed point is E[(x − Cx)xᵀ] = α⁻²C, i.e. C = R(R + α⁻²I)⁻¹;
3. moves toward the target with the proportional control law of gain β:

       C_adapt = C_a + β (C_target − C_a)      (computed as (1 − β) C_a + β C_target).

β = 1 is static control by C_target (exactly, bit for bit: 0·C_a z + 1·C_target z); β = 0 with
η = 0 freezes C at its initial value. The estimate starts at ``init`` (default: the target).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigurationError, NonFiniteError, ShapeError
from .conceptor import apply, check_aperture

__all__ = ["ConceptorControl"]


def _check_conceptor(name: str, C: Any) -> Tensor:
    C = torch.as_tensor(C)
    if C.dim() not in (2, 3) or C.shape[-1] != C.shape[-2]:
        raise ShapeError(f"{name} must be a square conceptor [N, N] (or a batch [B, N, N]), got {tuple(C.shape)}.")
    if not torch.isfinite(C).all():
        raise NonFiniteError(f"{name} contains NaN or infinity: recompute it from finite states.")
    return C


class ConceptorControl:
    """The on-line autoconceptor C_a and the control law toward ``target`` (module docstring).

    Args:
        target: C_target [N, N] or one per trajectory [B, N, N]; can be reassigned between steps
            (e.g. to scan an interpolation C_λ = λC_1 + (1 − λ)C_2).
        aperture: α > 0 of the autoconceptor rule.
        rate: η ≥ 0, the autoconceptor's learning rate.
        gain: β ∈ [0, 1], the control gain (1: static control by the target).
        init: initial C_a (default: a copy of the target).
    """

    def __init__(self, target: Tensor, aperture: float, rate: float, gain: float, init: Tensor | None = None) -> None:
        self.aperture = check_aperture(aperture)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate < 0:
            raise ConfigurationError(f"rate must be a finite number ≥ 0 (the autoconceptor's η), got {rate!r}.")
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not 0 <= gain <= 1:
            raise ConfigurationError(f"gain must be a number in [0, 1] (β = 1 is static control by the target), got {gain!r}.")
        self.rate, self.gain = float(rate), float(gain)
        self._target = _check_conceptor("target", target)
        self.autoconceptor = (self._target if init is None else _check_conceptor("init", init)).clone()
        if self.autoconceptor.shape[-1] != self._target.shape[-1]:
            raise ShapeError(f"init {tuple(self.autoconceptor.shape)} and target {tuple(self._target.shape)} must have the same size N.")

    @property
    def target(self) -> Tensor:
        return self._target

    @target.setter
    def target(self, value: Tensor) -> None:
        value = _check_conceptor("target", value)
        if value.shape[-1] != self.autoconceptor.shape[-1]:
            raise ShapeError(f"a new target must keep the size N = {self.autoconceptor.shape[-1]}, got {tuple(value.shape)}.")
        self._target = value

    @property
    def conceptor(self) -> Tensor:
        """C_adapt = (1 − β) C_a + β C_target, the conceptor applied at the next step."""
        return (1 - self.gain) * self.autoconceptor + self.gain * self._target

    def update(self, x: Tensor) -> None:
        """One autoconceptor step C_a ← C_a + η[(x − C_a x)xᵀ − α⁻² C_a] with the state x [N] or [B, N]."""
        if not torch.isfinite(x).all():
            raise NonFiniteError("the reservoir state contains NaN or infinity: lower the spectral radius or the rate η.")
        C = self.autoconceptor
        if x.dim() not in (1, 2) or x.shape[-1] != C.shape[-1] or (x.dim() == 2 and C.dim() == 3 and x.shape[0] != C.shape[0]):
            raise ShapeError(f"the state must have shape [N] or [B, N] matching the conceptor {tuple(C.shape)}, got {tuple(x.shape)}.")
        if self.rate == 0.0:
            return
        if x.dim() == 1 and C.dim() == 3:
            x = x.expand(C.shape[0], -1)
        # C_a is our own copy (cloned at construction): updated in place, (1 − ηα⁻²)C_a + η (x − C_a x) xᵀ
        residual = x - apply(C, x)
        decay = 1 - self.rate * self.aperture ** -2
        if C.dim() == 2 and x.dim() == 1:
            C.mul_(decay).add_(torch.outer(residual, x), alpha=self.rate)
        else:
            if C.dim() == 2:
                self.autoconceptor = C = C.expand(x.shape[0], -1, -1).clone()
            C.baddbmm_(residual[..., :, None], x[..., None, :], beta=decay, alpha=self.rate)

    def step(self, esn: Any, x: Tensor, u: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """x(k+1) = mask ⊙ C_adapt z(k) with z = ``esn.candidate(x, u)``, then the autoconceptor update with x(k+1).

        Equal to ``esn.step(x, u, self.conceptor, mask)`` (bit for bit when β ∈ {0, 1}).
        """
        z = esn.candidate(x, u)
        if self.autoconceptor.dtype != z.dtype:  # a float32 target on a float64 network: convert once
            self.autoconceptor, self._target = self.autoconceptor.to(z.dtype), self._target.to(z.dtype)
        # C_adapt z = (1 − β) C_a z + β C_target z: two matrix-vector products instead of forming C_adapt
        x = (1 - self.gain) * apply(self.autoconceptor, z) + self.gain * apply(self._target, z)
        if mask is not None:
            x = x * mask
        self.update(x)
        return x

    def run(self, esn: Any, x0: Tensor, steps: int, mask: Tensor | None = None) -> Tensor:
        """States [steps, (B,) N] of the loaded network run without input under the loop."""
        x, states = torch.as_tensor(x0, dtype=esn.dtype), []
        for _ in range(int(steps)):
            x = self.step(esn, x, None, mask)
            states.append(x)
        return torch.stack(states)
