"""Estimators: what learners and baselines share, below both.

The :class:`Learner` contract (``grads`` / ``step`` / ``predict``), the base classes a new
learner or baseline subclasses (:class:`EnergyLearner` for static energy models), the declared
capabilities other code asks for (:class:`EnergySolver`, :class:`PerStepUpdates`), and the
simulation helpers both sides need (input checks, sequence simulation, continuous-time grids,
HEB's joint system, the ff-EBM chain, Lagrangian trajectories, target modes, initial-state
pull-backs). A new learner: docs/write_your_own_learner.md. Learners (``eqprop.learners``) and baselines (``eqprop.baselines``)
import from here and never from each other.
"""

from .base import Estimate, Learner, StepOutput, check_beta, check_inputs
from .capabilities import EPUpdates, PerStepUpdates
from .defaults import EnergySolver, default_solver
from .energy_based import EnergyLearner

__all__ = ["Learner", "Estimate", "StepOutput", "EnergyLearner", "check_beta", "check_inputs",
           "EnergySolver", "default_solver", "PerStepUpdates", "EPUpdates"]
