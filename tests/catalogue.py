"""Every learner and baseline with a small model, input and target it trains (float64).

Shared by tests/test_fuzz_inputs.py and tests/test_reliability.py; ``test_catalogue_is_complete``
checks that no exported learner is missing, so a new learner is fuzzed from the day it lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from eqprop import baselines as B
from eqprop import learners as L
from eqprop.models import HopfieldMLP, LagrangianModel, LinearHRU, hopfield_chain
from eqprop.solvers import FixedPoint, LeapFrog

DTYPE = torch.float64
BATCH, STEPS = 3, 4


def relax() -> FixedPoint:
    return FixedPoint(tol=1e-8, max_steps=300)


class Oscillators(LagrangianModel):
    """A small user Lagrangian: L = ½|ṡ|² − ½ k|s|² + s·(W x_t), read out through a linear map."""

    input_size = 2

    def __init__(self) -> None:
        super().__init__()
        self.stiffness = nn.Parameter(torch.ones(3, dtype=DTYPE))
        self.drive = nn.Parameter(0.3 * torch.randn(3, 2, dtype=DTYPE))
        self.readout = nn.Parameter(torch.randn(2, 3, dtype=DTYPE))

    def lagrangian(self, s, s_dot, x_t):
        return 0.5 * (s_dot * s_dot).sum(-1) - 0.5 * (self.stiffness * s * s).sum(-1) + (s * (x_t @ self.drive.T)).sum(-1)

    def init_state(self, x):
        return torch.zeros(x.shape[0], 3, dtype=x.dtype)

    def output(self, s):
        return s @ self.readout.T


def static_problem():
    model = HopfieldMLP([3, 4, 2], "sigmoid").to(DTYPE)
    return model, torch.rand(BATCH, 3, dtype=DTYPE), torch.rand(BATCH, 2, dtype=DTYPE)


def hamiltonian_problem():
    model = LinearHRU(1, 3, output_size=2).to(DTYPE)
    return model, torch.randn(BATCH, STEPS, 1, dtype=DTYPE), torch.randn(BATCH, 2, dtype=DTYPE)


def lagrangian_problem():
    return Oscillators(), torch.randn(BATCH, STEPS, 2, dtype=DTYPE), torch.randn(BATCH, 2, dtype=DTYPE)


def chain_problem():
    model = hopfield_chain([[3, 4], [4, 2]]).to(DTYPE)
    return model, torch.rand(BATCH, 3, dtype=DTYPE), torch.rand(BATCH, 2, dtype=DTYPE)


def feedforward_problem():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(DTYPE)
    return model, torch.rand(BATCH, 3, dtype=DTYPE), torch.rand(BATCH, 2, dtype=DTYPE)


def dtp_problem():
    from eqprop.models import DTPNetwork

    model = DTPNetwork([3, 4, 2], "tanh").to(DTYPE)
    return model, torch.rand(BATCH, 3, dtype=DTYPE), torch.rand(BATCH, 2, dtype=DTYPE)


@dataclass
class Entry:
    name: str
    learner: Callable[[], object]
    problem: Callable[[], tuple]
    kind: str  # "static", "sequence" or "feedforward": which malformed inputs apply


CATALOGUE = [
    Entry("EP", lambda: L.EP(0.1, solver=relax()), static_problem, "static"),
    Entry("EqSpike", lambda: L.EqSpike(0.1, "rate", solver=relax()), static_problem, "static"),  # deterministic
    Entry("HolomorphicEP", lambda: L.HolomorphicEP(0.1, solver=relax()), static_problem, "static"),
    Entry("ContinualEP", lambda: L.ContinualEP(0.1, 0.01, solver=relax()), static_problem, "static"),
    Entry("ContrastiveLearning", lambda: L.ContrastiveLearning(solver=relax()), static_problem, "static"),
    Entry("CoupledLearning", lambda: L.CoupledLearning(0.5, solver=relax()), static_problem, "static"),
    Entry("BPTT", lambda: B.BPTT(solver=FixedPoint(tol=None, max_steps=20)), static_problem, "static"),
    Entry("ImplicitDifferentiation", lambda: B.ImplicitDifferentiation(solver=relax()), static_problem, "static"),
    Entry("ChainedEP", lambda: L.ChainedEP(0.1, solver=relax()), chain_problem, "static"),
    Entry("ChainedBackprop", lambda: B.ChainedBackprop(solver=relax()), chain_problem, "static"),
    Entry("RHEL", lambda: L.RHEL(1e-3), hamiltonian_problem, "sequence"),
    Entry("ContinuousRHEL", lambda: L.ContinuousRHEL(1e-3, 0.05), hamiltonian_problem, "sequence"),
    Entry("HEB", lambda: L.HEB(1e-3, integrator=LeapFrog(dt=0.1)), hamiltonian_problem, "sequence"),
    Entry("Adjoint", lambda: B.Adjoint(0.05), hamiltonian_problem, "sequence"),
    Entry("FullDynamicsBPTT", lambda: B.FullDynamicsBPTT(integrator=LeapFrog(dt=0.1)), hamiltonian_problem, "sequence"),
    Entry("BPTT (sequence)", lambda: B.BPTT(), hamiltonian_problem, "sequence"),
    Entry("GLEP", lambda: L.GLEP(0.1), lagrangian_problem, "sequence"),
    Entry("LagrangianImplicit", lambda: B.LagrangianImplicit(), lagrangian_problem, "sequence"),
    Entry("LagrangianBPTT", lambda: B.LagrangianBPTT(), lagrangian_problem, "sequence"),
    Entry("Backprop", lambda: B.Backprop(), feedforward_problem, "feedforward"),
    Entry("DTP", lambda: L.DTP(0.1, feedback_steps=2), dtp_problem, "feedforward"),
]
