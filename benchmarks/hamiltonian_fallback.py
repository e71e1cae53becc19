"""What the autograd fallback costs: RHEL vs BPTT CPU time on a user Hamiltonian and on the HSSM.

    python benchmarks/hamiltonian_fallback.py                  # T = 50, batch 8, 3 repeats
    python benchmarks/hamiltonian_fallback.py --steps 200 --repeats 5

A model that only writes ``potential`` (and ``kinetic``) gets its forces, its generating-sum
contrasts and its parameter derivatives from autograd: RHEL's echo then calls autograd for every
kick of every echo step, on the two ±ε copies. The built-in HRUs and the HSSM have closed-form
echo kernels instead. This script measures one gradient (``learner.grads``) of

- ``user``: coupled pendulums written as in docs/write_your_own_hamiltonian.md (n = 8 by
  default, trainable masses, initial state and step), autograd everywhere;
- ``user + potential_grad``: the same model with a closed-form ∂V/∂q (the override the docs
  recommend for speed); the ∂_θ contrasts stay autograd;
- ``HSSM``: the built-in 2-layer linear HSSM of width 32 (closed-form kernels).

Time is CPU time (``time.process_time``, one thread; the machine may be shared, wall time is
noisy). Runs are interleaved (RHEL, BPTT, RHEL, BPTT, ...) after one warm-up each, and each
figure is the minimum over ``--repeats``. The ratios are measured in this one run.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import torch
from torch import nn

import eqprop


class CoupledPendulums(eqprop.models.HamiltonianModel):
    """V(q, u) = Σ k_i (1 − cos q_i) − q·(W u),  T(p) = Σ ½ p_i² e^{−m_i}; readout of sin q."""

    def __init__(self, n: int, input_size: int = 2, output_size: int = 2) -> None:
        super().__init__()
        self.input_size = input_size
        self.stiffness = nn.Parameter(torch.rand(n) + 0.5)
        self.input_weight = nn.Parameter(0.5 * torch.randn(n, input_size))
        self.log_mass = nn.Parameter(torch.zeros(n))
        self.q_init = nn.Parameter(torch.zeros(n))
        self.dt = nn.Parameter(torch.tensor(0.1))
        self.readout = nn.Linear(n, output_size)

    def kinetic(self, p):
        return (0.5 * p * p * torch.exp(-self.log_mass)).sum(-1)

    def potential(self, q, u):
        return (self.stiffness * (1 - torch.cos(q))).sum(-1) - (q * (u @ self.input_weight.T)).sum(-1)

    def init_state(self, u_seq):
        batch = u_seq.shape[0]
        return self.q_init.expand(batch, -1), torch.zeros(batch, self.q_init.shape[0], dtype=u_seq.dtype)

    def output(self, q):
        return self.readout(torch.sin(q))


class CoupledPendulumsClosedForce(CoupledPendulums):
    """The same physics with ∂V/∂q written out (checked against autograd below)."""

    def potential_grad(self, q, u, create_graph=False):
        force = self.stiffness * torch.sin(q) - u @ self.input_weight.T
        return force if create_graph else force.detach()


def cpu_time(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def measure(model, x, y, cost, repeats: int) -> tuple[float, float, float]:
    rhel = eqprop.learners.RHEL(1e-2, integrator=eqprop.solvers.PositionVerlet(), cost=cost)
    bptt = eqprop.baselines.BPTT(integrator=eqprop.solvers.PositionVerlet(), cost=cost)
    rhel.grads(model, x, y), bptt.grads(model, x, y)  # warm-up: allocator, lazy imports
    # The two compute the same gradient: checked on float64 copies (float32 round-off in the
    # contrast, ~1e-7·|G|/(ε|g|), would hide what the check is for).
    m64, x64 = copy.deepcopy(model).double(), x.double()
    y64 = y.double() if y.is_floating_point() else y
    error = eqprop.check.relative_error(rhel.grads(m64, x64, y64), bptt.grads(m64, x64, y64))
    times = {"rhel": [], "bptt": []}
    for _ in range(repeats):
        times["rhel"].append(cpu_time(lambda: rhel.grads(model, x, y)))
        times["bptt"].append(cpu_time(lambda: bptt.grads(model, x, y)))
    return min(times["rhel"]), min(times["bptt"]), error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="sequence length T")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--n", type=int, default=8, help="size of the user Hamiltonian")
    parser.add_argument("--hidden", type=int, default=32, help="width of the HSSM")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    mse, xent = eqprop.costs.SquaredError(), eqprop.costs.CrossEntropy()
    x_user = torch.randn(args.batch, args.steps, 2)
    y_user = torch.randn(args.batch, 2)
    user = CoupledPendulums(args.n)
    closed = CoupledPendulumsClosedForce(args.n)
    closed.load_state_dict(user.state_dict())
    q = torch.randn(args.batch, args.n)
    u = torch.randn(args.batch, 2)
    force_error = eqprop.check.relative_error(
        closed.potential_grad(q, u), eqprop.models.HamiltonianModel.potential_grad(closed, q, u))
    hssm = eqprop.models.HSSM(input_size=1, hidden_size=args.hidden, output_size=10, num_layers=2)
    x_hssm = torch.randn(args.batch, args.steps, 1)
    y_hssm = torch.randint(0, 10, (args.batch,))

    rows = [
        (f"user (n = {args.n}), autograd", *measure(user, x_user, y_user, mse, args.repeats)),
        (f"user (n = {args.n}) + potential_grad", *measure(closed, x_user, y_user, mse, args.repeats)),
        (f"HSSM (2 × {args.hidden}), closed forms", *measure(hssm, x_hssm, y_hssm, xent, args.repeats)),
    ]
    print(f"T = {args.steps}, batch {args.batch}, float32, 1 thread, min of {args.repeats}; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"closed-form force vs autograd: relative error {force_error:.1e}")
    print(f"{'model':36s} {'RHEL ms':>9s} {'BPTT ms':>9s} {'RHEL/BPTT':>10s} {'f64 error':>11s}")
    for name, t_rhel, t_bptt, error in rows:
        print(f"{name:36s} {1e3 * t_rhel:9.1f} {1e3 * t_bptt:9.1f} {t_rhel / t_bptt:10.2f} {error:11.1e}")


if __name__ == "__main__":
    main()
