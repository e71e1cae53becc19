"""Solvers: how a system is simulated (energy minimisers, reversible integrators, boundary-value solvers)."""

from .boundary import BoundaryNewton, BoundaryStatus
from .integrators import RK4, Integrator, LeapFrog, PositionVerlet, SymplecticEuler
from .relaxation import Asynchronous, FixedPoint, GradientDescent, Nudge, Relaxation, SolverStatus
from ..models.scan import affine_scan

__all__ = [
    "GradientDescent", "FixedPoint", "Asynchronous", "Relaxation", "Nudge", "SolverStatus",
    "Integrator", "PositionVerlet", "LeapFrog", "SymplecticEuler", "RK4", "affine_scan", "BoundaryNewton", "BoundaryStatus",
]
