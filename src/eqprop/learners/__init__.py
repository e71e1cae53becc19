"""Learners: gradient estimators that use simulations of the system alone (EP and its family)."""

from .base import Estimate, Learner, StepOutput
from .contrastive import ContrastiveLearning, CoupledLearning
from .continual_ep import ContinualEP, EPUpdates, ep_updates
from .ep import EP
from .holomorphic_ep import HolomorphicEP
from .rhel import RHEL
from .rhel_continuous import ContinuousRHEL

__all__ = ["Learner", "Estimate", "StepOutput", "EP", "ContrastiveLearning", "CoupledLearning", "ContinualEP", "EPUpdates", "ep_updates", "HolomorphicEP"]
__all__ += ['RHEL', 'ContinuousRHEL']

from .ff_ebm import ChainedEP, LinearCost

__all__ += ["ChainedEP", "LinearCost"]

from .heb import HEB

__all__ += ["HEB"]

from .glep import GLEP

__all__ += ["GLEP"]
