"""Solvers: how a system is simulated (energy minimisers, reversible integrators)."""

from .relaxation import Asynchronous, FixedPoint, GradientDescent, Nudge, Relaxation, SolverStatus
from .integrators import Integrator, LeapFrog, PositionVerlet, SymplecticEuler
from .scan import affine_scan

__all__ = ["GradientDescent", "FixedPoint", "Asynchronous", "Relaxation", "Nudge", "SolverStatus"]
__all__ += ['Integrator', 'PositionVerlet', 'LeapFrog', 'SymplecticEuler', 'affine_scan']

from .boundary import BoundaryNewton

__all__ += ["BoundaryNewton"]
