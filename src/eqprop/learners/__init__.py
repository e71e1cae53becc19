"""Learners: gradient estimators that use simulations of the system alone (EP and its family)."""

from ..estimators.base import Estimate, Learner, StepOutput
from ..estimators.capabilities import EPUpdates
from .contrastive import ContrastiveLearning, CoupledLearning
from .continual_ep import ContinualEP, ep_updates
from .dtp import DTP
from .ep import EP
from .eqspike import EqSpike
from .ff_ebm import ChainedEP, LinearCost
from .glep import GLEP
from .heb import HEB
from .holomorphic_ep import HolomorphicEP
from .rhel import RHEL
from .rhel_continuous import ContinuousRHEL

__all__ = [
    "Learner", "Estimate", "StepOutput",
    "EP", "HolomorphicEP", "ContinualEP", "EPUpdates", "ep_updates",
    "ContrastiveLearning", "CoupledLearning", "ChainedEP", "LinearCost",
    "RHEL", "ContinuousRHEL", "HEB", "GLEP", "DTP", "EqSpike",
]
