"""Baselines: the same gradients as the learners, by automatic differentiation."""

from .adjoint import Adjoint
from .backprop import Backprop
from .bptt import BPTT
from .chained import ChainedBackprop
from .heb_full_dynamics import FullDynamicsBPTT
from .implicit import ImplicitDifferentiation
from .lagrangian import LagrangianBPTT, LagrangianImplicit

__all__ = [
    "BPTT", "ImplicitDifferentiation", "Adjoint", "ChainedBackprop", "FullDynamicsBPTT",
    "LagrangianImplicit", "LagrangianBPTT", "Backprop",
]
