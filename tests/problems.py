"""Declarative list of static gradient-check problems (model, data, cost, solver), float64.

Every static learner is run against its baseline on each problem it supports. ``TinyEnergy`` is
a user-defined energy written here, not in the library: it goes through autograd only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

import eqprop
from eqprop.costs import CrossEntropy, SquaredError
from eqprop.models import EnergyModel, HopfieldMLP
from eqprop.solvers import Asynchronous, FixedPoint, GradientDescent


class TinyEnergy(EnergyModel):
    """A user's energy: E = ½|h|² + ½|o|² + ¼ Σ h⁴ − tanh(h)·(A x + a) − tanh(o)·(B tanh(h) + b)."""

    output_layer = 1

    def __init__(self, n_in: int = 4, n_hidden: int = 5, n_out: int = 3) -> None:
        super().__init__()
        self.A = nn.Linear(n_in, n_hidden)
        self.B = nn.Linear(n_hidden, n_out)
        self.n_hidden, self.n_out = n_hidden, n_out

    def energy(self, state, x):
        h, o = state
        quadratic = 0.5 * (h * h).sum(1) + 0.5 * (o * o).sum(1) + 0.25 * (h**4).sum(1)
        return quadratic - (torch.tanh(h) * self.A(x)).sum(1) - (torch.tanh(o) * self.B(torch.tanh(h))).sum(1)

    def init_state(self, x):
        return (x.new_zeros(x.shape[0], self.n_hidden), x.new_zeros(x.shape[0], self.n_out))

    def output(self, state):
        return state[1]


@dataclass
class Problem:
    name: str
    make_model: Callable[[], nn.Module]
    solver: eqprop.solvers.Relaxation
    cost: eqprop.costs.Cost
    n_in: int
    n_out: int
    classes: bool = False
    batch: int = 6

    def data(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.batch, self.n_in, generator=g, dtype=torch.float64)
        if self.classes:
            y = torch.randint(0, self.n_out, (self.batch,), generator=g)
        else:
            y = torch.rand(self.batch, self.n_out, generator=g, dtype=torch.float64)
        return x, y

    def model(self, seed: int = 0):
        torch.manual_seed(seed)
        return self.make_model().double()


PROBLEMS = [
    Problem("hopfield-sigmoid-fixedpoint", lambda: HopfieldMLP([5, 4, 3], "sigmoid"),
            FixedPoint(tol=1e-14, max_steps=3000), SquaredError(), 5, 3),
    Problem("hopfield-tanh-deep-asynchronous", lambda: HopfieldMLP([6, 5, 4, 3], "tanh", init_scale=1.5),
            Asynchronous(tol=1e-14, max_steps=3000), SquaredError(), 6, 3),
    Problem("hopfield-sigmoid-crossentropy", lambda: HopfieldMLP([5, 6, 4], "sigmoid", init_scale=2.0),
            FixedPoint(tol=1e-14, max_steps=3000), CrossEntropy(), 5, 4, classes=True),
    Problem("user-energy-gradient-descent", lambda: TinyEnergy(4, 5, 3),
            GradientDescent(step_size=0.2, tol=1e-13, max_steps=20000), SquaredError(), 4, 3),
]
