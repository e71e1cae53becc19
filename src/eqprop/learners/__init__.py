"""Learners: gradient estimators that use simulations of the system alone (EP and its family)."""

from .base import Estimate, Learner, StepOutput
from .contrastive import ContrastiveLearning, CoupledLearning
from .ep import EP
from .rhel import RHEL
from .rhel_continuous import ContinuousRHEL

__all__ = ["Learner", "Estimate", "StepOutput", "EP", "ContrastiveLearning", "CoupledLearning"]
__all__ += ['RHEL', 'ContinuousRHEL']
