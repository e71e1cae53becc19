"""The solver a learner uses for a static energy model, and what it asks of a solver.

Models name their default solver (``EnergyModel.default_solver_spec``: a class of
:mod:`eqprop.solvers` and its options) instead of importing one, so the arrows run one way:
models <- solvers <- estimators. A model of the user's may instead define ``default_solver()``.

A solver is anything with the relaxation protocol (:class:`EnergySolver`): ``solve`` and ``step``
with the signatures of :class:`eqprop.solvers.Relaxation`; subclassing it is not required.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .. import solvers
from ..errors import ConfigurationError

__all__ = ["EnergySolver", "default_solver", "check_energy_solver"]


@runtime_checkable
class EnergySolver(Protocol):
    """What the static learners call: a relaxation from ``state`` and its one-step map."""

    def solve(self, model, x, state, context=None, nudge=None, **options) -> tuple[Any, Any]:
        """Relax to equilibrium; returns ``(state, status)`` (a status with ``residual``, ``converged``)."""

    def step(self, model, x, state, context, nudge, clamp) -> Any:
        """One update of the state (the map BPTT unrolls and continual EP reads)."""


def check_energy_solver(solver: Any, name: str = "solver") -> None:
    """``None`` or an object offering ``solve`` and ``step``; one sentence otherwise."""
    if solver is not None and not isinstance(solver, EnergySolver):
        raise ConfigurationError(
            f"{name} must offer solve(model, x, state, context=None, nudge=None) and step(...) like the eqprop "
            f"relaxation solvers (e.g. eqprop.solvers.FixedPoint()), got {type(solver).__name__}."
        )


def default_solver(model) -> EnergySolver:
    """The model's ``default_solver()`` when it defines one, else the solver its ``default_solver_spec`` names."""
    own = getattr(model, "default_solver", None)
    if callable(own):
        return own()
    spec = getattr(model, "default_solver_spec", None)
    if spec is None:
        raise ConfigurationError(
            f"{type(model).__name__} names no default solver; pass solver=... to the learner or give the model "
            f"default_solver_spec = ('FixedPoint', {{...}})."
        )
    name, options = spec
    cls = getattr(solvers, name, None)
    if not isinstance(cls, type):
        raise ConfigurationError(
            f"{type(model).__name__}.default_solver_spec names {name!r}, which is not a solver of eqprop.solvers; "
            f"use e.g. 'FixedPoint' or 'GradientDescent'."
        )
    return cls(**dict(options))
