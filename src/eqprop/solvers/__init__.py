"""Solvers: how a system is simulated (energy minimisers, reversible integrators)."""

from .relaxation import Asynchronous, FixedPoint, GradientDescent, Nudge, Relaxation, SolverStatus

__all__ = ["GradientDescent", "FixedPoint", "Asynchronous", "Relaxation", "Nudge", "SolverStatus"]
