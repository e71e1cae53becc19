"""Capabilities a learner or a solver declares, so that check/ and other learners can ask for them.

* :class:`PerStepUpdates` — a learner that reports its update at every step of a nudged phase
  (``updates(model, x, y, free=None) -> EPUpdates``), the quantity the GDU check compares with
  BPTT's per-step gradients (Ernoult et al. 2019). ``eqprop.learners.ContinualEP`` offers it and
  is registered as the default (:func:`offers_per_step_updates`, :func:`per_step_learner`), so
  ``eqprop.check.gdu`` needs no learner import.
* :func:`discrete_map` — a solver whose ``step`` is the discrete-time map s ← ρ(∂Φ/∂s − β∂C/∂s)
  declares ``discrete_time_map = True`` (``eqprop.solvers.FixedPoint`` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

from torch import Tensor

from ..errors import ConfigurationError

__all__ = ["EPUpdates", "PerStepUpdates", "offers_per_step_updates", "per_step_learner", "discrete_map"]


@dataclass
class EPUpdates:
    """Per-step updates of a nudged phase of K steps (index t = 0..K−1).

    ``weights[name]``: [K, *shape], ΔEP_θ(β, t) (for C-EP: (θ_{t+1} − θ_t)/η), batch mean.
    ``neural[k]``: [K, batch, ...], ΔEP_s(β, t) of state layer k (pre-activation, per sample).
    ``total[name]``: Σ_t weights, the whole displacement divided by η (−1 × the estimate).
    """

    weights: dict[str, Tensor]
    neural: tuple[Tensor, ...]
    total: dict[str, Tensor]
    free: tuple[Tensor, ...]
    loss: Tensor
    prediction: Tensor
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class PerStepUpdates(Protocol):
    """A learner whose nudged phase is a sequence of K steps of a discrete-time map, each with its update.

    Built as ``factory(beta, lr=..., steps=..., solver=..., cost=...)``; ``lr`` is the rate of the
    parameters during the nudged phase (0: they stay put), ``steps`` the number K of steps.
    """

    lr: float
    steps: int

    def map_for(self, model) -> Any:
        """The solver whose ``step`` is the discrete-time map (declares ``discrete_time_map``)."""

    def updates(self, model, x: Tensor, y: Tensor, free: tuple[Tensor, ...] | None = None) -> EPUpdates:
        """ΔEP per step from the free state ``free`` (relaxed here when ``None``)."""


_default_per_step: list[Callable[..., PerStepUpdates]] = []


def offers_per_step_updates(cls):
    """Class decorator: the learner that ``per_step_learner`` builds when no factory is given."""
    _default_per_step[:] = [cls]
    return cls


def per_step_learner(factory: Callable[..., PerStepUpdates] | None, beta: float, **options) -> PerStepUpdates:
    """``factory(beta, **options)``, or the registered default (``eqprop.learners.ContinualEP``)."""
    if factory is None:
        if not _default_per_step:
            raise ConfigurationError(
                "No learner offering per-step updates is loaded; import eqprop.learners or pass learner=ContinualEP."
            )
        factory = _default_per_step[0]
    learner = factory(beta, **options)
    if not isinstance(learner, PerStepUpdates):
        raise ConfigurationError(
            f"{type(learner).__name__} does not offer per-step updates (lr, steps, map_for(model), "
            f"updates(model, x, y, free=None)); use eqprop.learners.ContinualEP."
        )
    return learner


def discrete_map(solver):
    """Check that a solver's step is the discrete-time map s ← ρ(∂Φ/∂s − β∂ℓ/∂s)."""
    if not getattr(solver, "discrete_time_map", False):
        raise ConfigurationError(
            f"The step-by-step (C-EP / GDU) dynamics are the FixedPoint map s ← ρ(∂Φ/∂s − β∂C/∂s); "
            f"got {type(solver).__name__} — pass solver=eqprop.solvers.FixedPoint(...) and a Hopfield-form model "
            f"(a solver of your own declares discrete_time_map = True)."
        )
    return solver
