"""Baselines: the same gradients as the learners, by automatic differentiation."""

from .adjoint import Adjoint
from .bptt import BPTT
from .implicit import ImplicitDifferentiation

__all__ = ["BPTT", "ImplicitDifferentiation"]
__all__ += ['Adjoint']

from .chained import ChainedBackprop

__all__ += ["ChainedBackprop"]

from .lagrangian import LagrangianBPTT, LagrangianImplicit

__all__ += ["LagrangianImplicit", "LagrangianBPTT"]
