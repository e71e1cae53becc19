"""Activation functions ρ of Hopfield-form energies, each with its Legendre term G (G' = ρ⁻¹).

A Hopfield-form energy is E(s) = Σ_i G(s_i) − Φ(s): its stationary points are s = ρ(∂Φ/∂s),
the fixed-point ("primitive function") form of the EP papers. ``G`` makes E an honest energy
(so gradient descent, autograd Hessians and EP agree with the fixed-point map); ``lower`` and
``upper`` are the range of ρ, where a state is clamped; ``holomorphic`` says whether ρ and G
are complex-analytic (holomorphic EP needs it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..errors import ConfigurationError

__all__ = ["Activation", "ACTIVATIONS", "get_activation"]


@dataclass(frozen=True)
class Activation:
    """ρ with its Legendre term G (G' = ρ⁻¹), derivative ρ', range and analyticity.

    Everything a solver or a learner needs is a field; nothing is looked up by ``name`` (a user
    activation named like a built-in gets its own G, never the built-in's):

    * ``rho``, ``rho_prime``: ρ and ρ'; ``rho_``: an in-place ρ (outside autograd), optional.
    * ``legendre``: G, elementwise; the energy is Σ G(s) − Φ(s).
    * ``rho_inverse``: G' = ρ⁻¹ on the range, in closed form; ``None``: autograd of ``legendre``.
    * ``lower``, ``upper``: the range of ρ (±inf for none); ``bounded`` says whether either is finite.
    * ``closed``: G is finite on the bounds themselves (a state is clamped onto them, as for the
      hard sigmoid); otherwise (G' singular there, as log for the sigmoid) a margin of 1e-7 of
      the range is kept.
    * ``holomorphic``: ρ and G are complex-analytic (holomorphic EP needs it).
    """

    name: str
    rho: Callable[[Tensor], Tensor]
    rho_prime: Callable[[Tensor], Tensor]
    legendre: Callable[[Tensor], Tensor]
    lower: float
    upper: float
    holomorphic: bool
    rho_: Callable[[Tensor], Tensor] | None = None  # in-place ρ (outside autograd), if any
    rho_inverse: Callable[[Tensor], Tensor] | None = None  # G' = ρ⁻¹ in closed form, if known
    closed: bool = False  # the state may sit on the bounds (G finite there)

    def __post_init__(self) -> None:
        for field_name in ("rho", "rho_prime", "legendre"):
            if not callable(getattr(self, field_name)):
                raise ConfigurationError(f"Activation {self.name!r}: {field_name} must be a function of a tensor.")
        for field_name in ("rho_", "rho_inverse"):
            value = getattr(self, field_name)
            if value is not None and not callable(value):
                raise ConfigurationError(f"Activation {self.name!r}: {field_name} must be a function or None.")
        try:
            lower, upper = float(self.lower), float(self.upper)
        except (TypeError, ValueError):
            raise ConfigurationError(f"Activation {self.name!r}: lower and upper must be numbers.") from None
        if not lower < upper:
            raise ConfigurationError(f"Activation {self.name!r}: lower ({lower}) must be below upper ({upper}).")

    @property
    def bounded(self) -> bool:
        """True when the range of ρ has a finite bound (states are then projected into it)."""
        return math.isfinite(self.lower) or math.isfinite(self.upper)

    def __call__(self, u: Tensor) -> Tensor:
        return self.rho(u)

    def project(self, s: Tensor) -> Tensor:
        """Clamp a state into the domain of G (open ranges keep a margin of 1e-7 of the range)."""
        if s.is_complex() or not self.bounded:
            return s
        if self.closed:
            return s.clamp(self.lower, self.upper)
        width = self.upper - self.lower
        margin = 1e-7 * (width if math.isfinite(width) else 1.0)
        return s.clamp(self.lower + margin, self.upper - margin)


def _xlogx(s: Tensor) -> Tensor:
    return s * torch.log(s)


_SIGMOID = Activation(
    name="sigmoid",
    rho=torch.sigmoid,
    rho_=torch.sigmoid_,
    rho_prime=lambda u: torch.sigmoid(u) * (1 - torch.sigmoid(u)),
    legendre=lambda s: _xlogx(s) + _xlogx(1 - s),
    rho_inverse=lambda s: torch.log(s) - torch.log(1 - s),
    lower=0.0,
    upper=1.0,
    holomorphic=True,
)

_TANH = Activation(
    name="tanh",
    rho=torch.tanh,
    rho_=torch.tanh_,
    rho_prime=lambda u: 1 - torch.tanh(u) ** 2,
    legendre=lambda s: 0.5 * (_xlogx(1 + s) + _xlogx(1 - s)),
    rho_inverse=torch.atanh,
    lower=-1.0,
    upper=1.0,
    holomorphic=True,
)

_HARD_SIGMOID = Activation(
    name="hard_sigmoid",
    rho=lambda u: u.clamp(0.0, 1.0),
    rho_=lambda u: u.clamp_(0.0, 1.0),
    rho_prime=lambda u: ((u > 0) & (u < 1)).to(u.dtype),
    legendre=lambda s: 0.5 * s * s,
    rho_inverse=lambda s: s,
    lower=0.0,
    upper=1.0,
    holomorphic=False,
    closed=True,
)

_IDENTITY = Activation(
    name="identity",
    rho=lambda u: u,
    rho_=lambda u: u,
    rho_prime=torch.ones_like,
    legendre=lambda s: 0.5 * s * s,
    rho_inverse=lambda s: s,
    lower=-math.inf,
    upper=math.inf,
    holomorphic=True,
)

ACTIVATIONS: dict[str, Activation] = {a.name: a for a in (_HARD_SIGMOID, _SIGMOID, _TANH, _IDENTITY)}


def get_activation(activation: str | Activation) -> Activation:
    """Look an activation up by name, or pass an :class:`Activation` through (the registry is open)."""
    if isinstance(activation, Activation):
        return activation
    try:
        return ACTIVATIONS[activation]
    except (KeyError, TypeError):
        raise ConfigurationError(
            f"Unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)} or pass an "
            f"eqprop.models.Activation."
        ) from None
