"""Estimators: what learners and baselines share, below both.

The :class:`Learner` contract (``grads`` / ``step`` / ``predict``), the base classes a new
learner or baseline subclasses (:class:`EnergyLearner` for static energy models), and the
simulation helpers both sides need (input checks, sequence simulation, target modes,
initial-state pull-backs). Learners (``eqprop.learners``) and baselines (``eqprop.baselines``)
import from here and never from each other.
"""

from .base import Estimate, Learner, StepOutput, check_beta, check_inputs
from .energy_based import EnergyLearner

__all__ = ["Learner", "Estimate", "StepOutput", "EnergyLearner", "check_beta", "check_inputs"]
