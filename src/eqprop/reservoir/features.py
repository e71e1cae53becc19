"""Random feature conceptors (Jaeger 2014, *Controlling recurrent neural networks by conceptors*, arXiv:1403.3369).

A reservoir r ∈ ℝᴺ talks to itself through a larger random feature space z ∈ ℝᴹ (M > N):

    r(n+1) = tanh(F z(n) + W_in u(n) + b),        z(n+1) = c ⊙ F' r(n+1),

with random F [N, M] and F' [M, N] (the loop F F' scaled to spectral radius ρ). The conceptor is
now a *vector* of weights c ∈ [0, 1]ᴹ, one per feature, a diagonal conceptor in feature space.
For features of second moments E[z_i²] its closed form is

    c_i = E[z_i²] / (E[z_i²] + α⁻²),

the minimiser of E(z_i − c_i z_i)² + α⁻² c_i², and the network learns it on-line with the
stochastic gradient step

    c_i ← c_i + λ [(z_i² − c_i z_i²) − α⁻² c_i],

whose fixed point under stationary features is that closed form. With ρ_i = λ(z_i² + α⁻²) the
step is c ← (1 − ρ_i)c + ρ_i z_i²/(z_i² + α⁻²), a convex combination: c stays in [0, 1] whenever
ρ_i ≤ 1. While the network runs, z = c ⊙ F'r contains c itself, which makes the rule
self-reinforcing (features the pattern uses grow toward 1, unused ones decay toward 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigurationError, NonFiniteError, ShapeError
from .conceptor import check_aperture
from .esn import ridge_regression

__all__ = ["feature_conceptor", "adapt_weights", "check_rate", "RandomFeatureConceptor", "FeatureLoading"]


def check_rate(rate: Any) -> float:
    """λ as a float, refused unless finite and ≥ 0."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate < 0:
        raise ConfigurationError(f"rate must be a finite number ≥ 0 (λ of the conceptor-weight rule), got {rate!r}.")
    return float(rate)


def feature_conceptor(features: Tensor, aperture: float) -> Tensor:
    """c_i = E[z_i²] / (E[z_i²] + α⁻²) for features [L, M] (one per row); c ∈ [0, 1)ᴹ."""
    alpha = check_aperture(aperture)
    features = torch.as_tensor(features)
    if features.dim() != 2 or features.shape[0] < 1:
        raise ShapeError(f"features must have shape [L, M] (one feature vector per row), got {tuple(features.shape)}.")
    if not torch.isfinite(features).all():
        raise NonFiniteError("the features contain NaN or infinity: drop the diverged steps or lower the spectral radius.")
    power = features.pow(2).mean(0)
    return power / (power + alpha ** -2)


def adapt_weights(c: Tensor, z: Tensor, aperture: float, rate: float) -> Tensor:
    """One step c ← c + λ[(z² − c z²) − α⁻² c] (elementwise) with the features z; returns the new c."""
    alpha, rate = check_aperture(aperture), check_rate(rate)
    if not torch.isfinite(z).all():
        raise NonFiniteError("the features contain NaN or infinity: lower the spectral radius or the rate λ.")
    z2 = z * z
    return c + rate * ((1 - c) * z2 - alpha ** -2 * c)


@dataclass
class FeatureLoading:
    """What ``RandomFeatureConceptor.load`` returns."""

    weights: Tensor        # the pattern's conceptor weights c [M], learned by the rule while driven
    features: Tensor       # driven features z(n) after the washout, [L, M]
    nrmse: float           # one-step prediction NRMSE of the output D z(n) ≈ p(n) on the pattern
    final_features: Tensor  # last driven z: a start for runs that continue the pattern


class RandomFeatureConceptor:
    """A reservoir of ``size`` neurons with ``features`` random features (module docstring).

    Args:
        size: reservoir neurons N.
        features: random features M (Jaeger's examples use M = 5N).
        inputs: dimension of the input u.
        spectral_radius: ρ > 0 of the feature loop F F'.
        input_scale: standard deviation of the entries of W_in.
        bias_scale: standard deviation of the entries of b.
        seed: seed of F, F', W_in and b.
        dtype: floating dtype.

    After ``load``, the output y(n) = D z(n) predicts the next input, and ``step(z)`` without
    input feeds it back, u(n) = D z(n).
    """

    def __init__(self, size: int = 100, features: int = 500, inputs: int = 1, spectral_radius: float = 1.4,
                 input_scale: float = 1.2, bias_scale: float = 0.2, seed: int = 0, dtype: torch.dtype = torch.float64) -> None:
        for name, value in (("size", size), ("features", features), ("inputs", inputs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be an integer ≥ 1, got {value!r}.")
        for name, value in (("spectral_radius", spectral_radius), ("input_scale", input_scale), ("bias_scale", bias_scale)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (
                    name == "spectral_radius" and value == 0):
                raise ConfigurationError(f"{name} must be a finite number {'> 0' if name == 'spectral_radius' else '≥ 0'}, got {value!r}.")
        if not dtype.is_floating_point:
            raise ConfigurationError(f"dtype must be a floating dtype such as torch.float64, got {dtype}.")
        g = torch.Generator().manual_seed(int(seed))
        F = torch.randn(size, features, generator=g, dtype=torch.float64)
        F_prime = torch.randn(features, size, generator=g, dtype=torch.float64)
        scale = math.sqrt(spectral_radius / torch.linalg.eigvals(F @ F_prime).abs().max().item())
        self.size, self.features, self.inputs = size, features, inputs
        self.F, self.F_prime = (scale * F).to(dtype), (scale * F_prime).to(dtype)
        self.W_in = (input_scale * torch.randn(size, inputs, generator=g, dtype=torch.float64)).to(dtype)
        self.b = (bias_scale * torch.randn(size, generator=g, dtype=torch.float64)).to(dtype)
        self.D: Tensor | None = None        # output weights [inputs, M], y = D z + d
        self.d: Tensor | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.F.dtype

    def output(self, z: Tensor) -> Tensor:
        """y = D z + d, the prediction of the next input ([..., inputs]); needs ``load``."""
        if self.D is None:
            raise ConfigurationError("the output exists only after load(pattern): load the network first.")
        return z @ self.D.T + self.d

    def step(self, z: Tensor, u: Tensor | None, weights: Tensor) -> Tensor:
        """z(n+1) = c ⊙ F' tanh(F z(n) + W_in u + b); u = None feeds the output back (u = D z + d).

        Shapes: z [M] or [B, M]; u [inputs] or [B, inputs]; weights c [M] or [B, M].
        """
        if u is None:
            u = self.output(z)
        r = torch.tanh(z @ self.F.T + u @ self.W_in.T + self.b)
        return weights * (r @ self.F_prime.T)

    def as_pattern(self, pattern: Tensor) -> Tensor:
        """``pattern`` as a finite [T, inputs] tensor of the network's dtype ([T] accepted for one input)."""
        p = torch.as_tensor(pattern, dtype=self.dtype)
        if p.dim() == 1 and self.inputs == 1:
            p = p[:, None]
        if p.dim() != 2 or p.shape[1] != self.inputs:
            raise ShapeError(f"a pattern must have shape [T, {self.inputs}] (or [T] for one input), got {tuple(p.shape)}.")
        if not torch.isfinite(p).all():
            raise NonFiniteError("the pattern contains NaN or infinity: clean it before driving the network.")
        return p

    def load(self, pattern: Tensor, aperture: float, rate: float = 0.5, adapt_steps: int = 2000, washout: int = 200,
             ridge: float = 1e-4) -> FeatureLoading:
        """Learn the pattern's conceptor weights and the output D.

        1. Drive with the pattern (repeated if shorter than ``adapt_steps``), c starting at 1, and
           apply the rule ``adapt_steps`` times (rate λ, aperture α);
        2. drive again from z = 0 with c fixed, drop ``washout`` steps and fit, by ridge
           regression, D z(n) + d ≈ p(n) (z(n) has seen p(0..n−1)).
        """
        p = self.as_pattern(pattern)
        alpha, rate = check_aperture(aperture), check_rate(rate)
        for name, value in (("adapt_steps", adapt_steps), ("washout", washout)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{name} must be an integer ≥ 0, got {value!r}.")
        if p.shape[0] <= washout + 1:
            raise ShapeError(f"the pattern must be longer than washout + 1 = {washout + 1} steps, got {p.shape[0]}.")
        c = torch.ones(self.features, dtype=self.dtype)
        z = torch.zeros(self.features, dtype=self.dtype)
        for n in range(adapt_steps):
            r = torch.tanh(self.F @ z + self.W_in @ p[n % p.shape[0]] + self.b)
            z = c * (self.F_prime @ r)
            c = adapt_weights(c, z, alpha, rate)
        z, Z = torch.zeros(self.features, dtype=self.dtype), []
        for n in range(p.shape[0]):
            Z.append(z)
            z = self.step(z, p[n], c)
        Z = torch.stack(Z)[washout:]
        self.D, self.d = ridge_regression(Z, p[washout:], ridge)
        err = (self.output(Z) - p[washout:]).pow(2).mean().sqrt()
        return FeatureLoading(c, Z, float(err / p[washout:].std().clamp_min(1e-12)), z)
