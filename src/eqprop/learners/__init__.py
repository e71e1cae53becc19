"""Learners: gradient estimators that use simulations of the system alone (EP and its family)."""

from .base import Estimate, Learner, StepOutput

__all__ = ["Learner", "Estimate", "StepOutput"]
