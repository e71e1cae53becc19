"""Solvers: how a system is simulated (energy minimisers, reversible integrators, boundary-value solvers)."""

from .boundary import BoundaryNewton
from .integrators import Integrator, LeapFrog, PositionVerlet, SymplecticEuler
from .relaxation import Asynchronous, FixedPoint, GradientDescent, Nudge, Relaxation, SolverStatus
from .scan import affine_scan

__all__ = [
    "GradientDescent", "FixedPoint", "Asynchronous", "Relaxation", "Nudge", "SolverStatus",
    "Integrator", "PositionVerlet", "LeapFrog", "SymplecticEuler", "affine_scan", "BoundaryNewton",
]
