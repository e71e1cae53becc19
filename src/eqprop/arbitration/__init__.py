"""Arbitration between a model-based and a model-free learner (Dromnelle et al. 2020/2022).

A meta-controller picks, in every state, which of two experts decides: tabular Q-learning
(model-free, cheap, slow to adapt) or a model-based planner (value iteration on learned
transition and reward models, costly, quick to adapt). It weighs each expert's confidence (the
normalised entropy of its filtered action probabilities) against its planning cost, the cost
counting only once the model-free expert is confident: θ = exp(−κ Ĥ_MF). Only the winner plans.

Self-contained: numpy only (torch tensors are accepted by :func:`normalized_entropy`).
"""

from .arbiter import CRITERIA, COSTS, Arbiter, Decision, Trace, cost_weight, expert_values, simulate
from .experts import ModelBased, QLearning, normalized_entropy, softmax, value_iteration
from .world import TWO_ROOMS, GridWorld

__all__ = [
    "normalized_entropy", "GridWorld", "TWO_ROOMS", "QLearning", "ModelBased", "Arbiter",
    "Decision", "Trace", "cost_weight", "expert_values", "simulate", "softmax", "value_iteration",
    "CRITERIA", "COSTS",
]
