"""GLEP (echo boundary) next to BPTT: a Lagrangian network learns to imitate a teacher's trajectories.

Task: a teacher and a student are the same family of driven nonlinear oscillator networks,

    L(s, ṡ, x_t) = ½ Σ_i m_i ṡ_i² − [½ Σ_i k_i s_i² + ¼ Σ_i s_i⁴ + ½ tanh(sW)·tanh(sW) − s·(B x_t)],

and the student sees the teacher's read-out y_t = R tanh(s_t) at every step (per-step squared
error) for random input sequences (sums of sines). The student is trained twice from the same
initial parameters: by GLEP with the echo boundary (Pourcel, Basu, Ernoult & Gilra 2025; three
runs of the system per batch, the two echoes replay inputs and targets in reverse) and by BPTT
through the same discrete forward run. Both use Adam with the same learning rate.

Run:  python examples/glep_sequence.py          (about a minute on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from eqprop.baselines import LagrangianBPTT
from eqprop.learners import GLEP
from eqprop.models import LagrangianModel


class OscillatorNetwork(LagrangianModel):
    """Driven anharmonic oscillators coupled through tanh(sW); read-out R tanh(s)."""

    def __init__(self, width: int = 6, inputs: int = 2, outputs: int = 2, dt: float = 0.2) -> None:
        super().__init__()
        self.dt, self.input_size = dt, inputs
        self.log_mass = nn.Parameter(0.1 * torch.randn(width))
        self.stiffness = nn.Parameter(1.0 + 0.5 * torch.rand(width))
        self.coupling = nn.Parameter(0.5 * torch.randn(width, width))
        self.drive = nn.Parameter(torch.randn(width, inputs))
        self.readout = nn.Parameter(torch.randn(outputs, width) / width ** 0.5)

    def lagrangian(self, s, s_dot, x_t):
        kinetic = 0.5 * (torch.exp(self.log_mass) * s_dot * s_dot).sum(-1)
        potential = (0.5 * self.stiffness * s * s + 0.25 * s ** 4).sum(-1) \
            + 0.5 * torch.tanh(s @ self.coupling).pow(2).sum(-1) - (s * (x_t @ self.drive.T)).sum(-1)
        return kinetic - potential

    def init_state(self, x):
        return x.new_zeros(x.shape[0], self.stiffness.shape[0])

    def output(self, s):
        return torch.tanh(s) @ self.readout.T


def make_inputs(count: int, steps: int, dt: float, generator: torch.Generator) -> torch.Tensor:
    t = torch.arange(steps, dtype=torch.float64) * dt
    freq = 0.5 + 1.5 * torch.rand(count, 1, 2, generator=generator, dtype=torch.float64)
    phase = 6.28 * torch.rand(count, 1, 2, generator=generator, dtype=torch.float64)
    return torch.sin(freq * t.view(1, -1, 1) + phase)


def train(learner, model, x, y, x_test, y_test, epochs: int, batch: int, lr: float) -> tuple[list[float], float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        order = torch.randperm(x.shape[0])
        for start in range(0, x.shape[0], batch):
            index = order[start:start + batch]
            optimizer.zero_grad()
            learner.step(model, x[index], y[index])
            optimizer.step()
        prediction = learner.predict(model, x_test)
        history.append(float(0.5 * ((prediction - y_test) ** 2).sum(-1).sum(-1).mean()))
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--train", type=int, default=128)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--beta", type=float, default=0.01)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    teacher = OscillatorNetwork()
    x = make_inputs(args.train, args.steps, teacher.dt, generator)
    x_test = make_inputs(64, args.steps, teacher.dt, generator)
    with torch.no_grad():
        y = LagrangianBPTT().predict(teacher, x)
        y_test = LagrangianBPTT().predict(teacher, x_test)
    student = OscillatorNetwork()
    initial = {k: v.clone() for k, v in student.state_dict().items()}
    before = float(0.5 * ((LagrangianBPTT().predict(student, x_test) - y_test) ** 2).sum(-1).sum(-1).mean())
    print(f"test loss before training: {before:.4f} (T = {args.steps}, {args.train} training sequences)")

    results = {}
    for name, learner in (("GLEP (echo, centered, β = %g)" % args.beta, GLEP(args.beta, boundary="echo")),
                          ("BPTT", LagrangianBPTT())):
        student.load_state_dict(initial)
        torch.manual_seed(args.seed + 1)  # the same mini-batch order for both learners
        start = time.perf_counter()
        history = train(learner, student, x, y, x_test, y_test, args.epochs, 16, args.lr)
        elapsed = time.perf_counter() - start
        results[name] = history
        print(f"{name:32s} test loss per epoch: " + " ".join(f"{h:.4f}" for h in history) + f"   ({elapsed:.1f} s)")
    glep, bptt = (h[-1] for h in results.values())
    print(f"final test loss: GLEP {glep:.4f}, BPTT {bptt:.4f} (before training {before:.4f})")


if __name__ == "__main__":
    main()
