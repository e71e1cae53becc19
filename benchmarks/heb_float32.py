"""HEB with a finite mass in float32: the options for the contrast π_a − π_b, error and CPU time.

    python benchmarks/heb_float32.py                 # widths 16 and 128
    python benchmarks/heb_float32.py --hidden 64     # one width

With a finite mass θ is a position of the joint state (q, θ, p, π), one copy per sample and echo
copy, and the gradient is −(π_a − π_b)/(η_a − η_b). Formed from two echoes accumulated separately
in float32 it loses about |X|/(|η_a − η_b|·|∇C|) of float32's digits (the error grows as 1/η). Options
measured here, each against the same learner in float64 (relative error over all parameters), on
a NonlinearHRU with a fixed step, LeapFrog(dt=0.1), mass 10, batch B, T steps, squared error:

- ``float32``: the echo in the model's dtype, copies subtracted at the end (``echo_dtype=torch.float32``);
- ``difference``: rows [0, B) carry D = X_a − X_b as a state of their own, the force difference
  formed as F(X_b + D) − F(X_b) in float32 (the same number of force evaluations);
- ``difference+hvp``: the same, with F(X_b + D) − F(X_b) = ∫₀¹ H(X_b + sD) D ds by two-point
  Gauss quadrature (two Hessian-vector products, error O(|D|⁵): the finite-η estimate unchanged);
- ``float64 echo``: the echo run in float64 from the float32 forward run's end (HEB's default for a
  float32 model, ``echo_dtype=None``).

CPU time (``time.process_time``, one thread, min over ``--repeats``) is printed as a ratio to
``float32``, measured in this one run. The two difference options live only in this script.

Measured on this machine (2 shared cores, one run), B = 8, T = 50, width 16 / B = 32, T = 20,
width 128: error at η = 1e-2 / 1e-4, CPU time ratio to ``float32``:

| option | width 16 | width 128 |
|---|---|---|
| float32 | 2.3e-5 / 2.2e-3, 1.00 | 2.4e-5 / 2.2e-3, 1.00 |
| difference | 2.9e-6 / 2.8e-4, 1.09 | 6.0e-6 / 5.7e-4, 1.14 |
| difference+hvp | 4.4e-7 / 3.7e-7, 2.24 | 2.1e-7 / 2.1e-7, 2.66 |
| float64 echo (kept) | 3.2e-7 / 3.2e-7, 1.07 | 1.6e-7 / 1.6e-7, 1.45 |

The plain difference state removes the accumulation error (the state's own rounding, ~u|X| per
step) but not the evaluation of F at two points η apart: 8–10× better, still 1/η. The quadrature
and the float64 echo are exact to the forward run's round-off; the float64 echo is the cheaper.
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch

from eqprop.check import relative_error
from eqprop.estimators.joint import run
from eqprop.learners import HEB
from eqprop.models import NonlinearHRU
from eqprop.solvers import LeapFrog

GAUSS = (0.5 - 0.5 / math.sqrt(3.0), 0.5 + 0.5 / math.sqrt(3.0))


class DifferenceJoint:
    """A joint system whose rows [0, B) are D = X_a − X_b: its forces there are F(X_b + D) − F(X_b)."""

    def __init__(self, joint, batch: int, hvp: bool) -> None:
        self.joint, self.batch, self.hvp = joint, batch, hvp

    def kinetic_grad(self, P, create_graph=False):
        return self.joint.kinetic_grad(P)  # linear (T = |p|²/2, π/m): the difference is exact

    def potential_grad(self, Q, u, create_graph=False):
        B, joint = self.batch, self.joint
        D, X_b, u_b = Q[:B], Q[B:], u[B:]
        if not self.hvp:
            F = joint.potential_grad(torch.cat([X_b, X_b[:B] + D]), torch.cat([u_b, u[:B]]))
            return torch.cat([F[-B:] - F[:B], F[:-B]])
        with torch.enable_grad():
            X = torch.cat([X_b] + [X_b[:B] + s * D for s in GAUSS]).requires_grad_(True)
            q, theta = joint.split(X)
            energy = joint.energy(q, theta, torch.cat([u_b, u[:B], u[:B]])).sum()
            (g,) = torch.autograd.grad(energy, X, create_graph=True)
            (hv,) = torch.autograd.grad(g, X, grad_outputs=torch.cat([torch.zeros_like(X_b), 0.5 * D, 0.5 * D]))
        n = X_b.shape[0]
        return torch.cat([hv[n:n + B] + hv[n + B:], g[:n].detach()])


class DifferenceHEB(HEB):
    """HEB whose finite-mass echo carries the difference of the two copies (``hvp``: by quadrature)."""

    def __init__(self, *args, hvp: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hvp = hvp

    def _echo(self, joint, dt, Q_T, P_T, force, x_seq, etas, batch):
        copies = len(etas)
        if copies == 1:
            return super()._echo(joint, dt, Q_T, P_T, force, x_seq, etas, batch)
        eta_col = torch.repeat_interleave(Q_T.new_tensor([etas[0] - etas[1]] + etas[1:]), batch).unsqueeze(1)
        Q, P = Q_T.repeat(copies, 1), P_T.repeat(copies, 1)
        Q[:batch], P[:batch] = 0.0, 0.0
        P = -(P - eta_col * force.repeat(copies, 1))
        inputs = (x_seq[:, k].repeat(copies, 1) for k in reversed(range(x_seq.shape[1])))
        Q, P = run(DifferenceJoint(joint, batch, self.hvp), self.integrator, Q, P, inputs, dt)
        Q = torch.cat([Q[:batch] + Q[batch:2 * batch], Q[batch:]])
        P = torch.cat([P[:batch] + P[batch:2 * batch], P[batch:]])
        return joint, Q, -P


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--etas", type=float, nargs="+", default=[1e-2, 1e-4])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = {
        "float32": lambda eta: HEB(eta, mass=10.0, integrator=LeapFrog(dt=0.1), echo_dtype=torch.float32),
        "difference": lambda eta: DifferenceHEB(eta, mass=10.0, integrator=LeapFrog(dt=0.1),
                                                echo_dtype=torch.float32),
        "difference+hvp": lambda eta: DifferenceHEB(eta, mass=10.0, integrator=LeapFrog(dt=0.1),
                                                    echo_dtype=torch.float32, hvp=True),
        "float64 echo": lambda eta: HEB(eta, mass=10.0, integrator=LeapFrog(dt=0.1)),
    }
    for hidden in args.hidden:
        batch, steps = (8, 50) if hidden <= 32 else (32, 20)
        torch.manual_seed(0)
        model = NonlinearHRU(3, hidden, output_size=4)
        model.dt.requires_grad_(False)
        model64 = copy.deepcopy(model).double()
        x, y = torch.randn(batch, steps, 3, dtype=torch.float64), torch.randn(batch, 4, dtype=torch.float64)
        print(f"width {hidden}, batch {batch}, T = {steps}, mass 10, float32 vs float64; CPU time ratio to float32")
        print(f"{'option':>16} " + " ".join(f"{'err eta=' + format(e, 'g'):>14}" for e in args.etas) + f" {'time':>6}")
        options["float32"](args.etas[0]).grads(model, x.float(), y.float())  # warm-up: lazy initialisation
        times = {}
        for name, make in options.items():
            errors, best = [], float("inf")
            for eta in args.etas:
                reference = HEB(eta, mass=10.0, integrator=LeapFrog(dt=0.1)).grads(model64, x, y)
                learner = make(eta)
                for _ in range(args.repeats):
                    start = time.process_time()
                    grads = learner.grads(model, x.float(), y.float())
                    best = min(best, time.process_time() - start)
                errors.append(relative_error({k: v.double() for k, v in grads.items()}, reference))
            times[name] = best
            print(f"{name:>16} " + " ".join(f"{e:>14.2e}" for e in errors) + f" {best / times['float32']:>6.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
