"""The GDU figure (Ernoult et al. 2019) for a HopfieldMLP on scikit-learn digits.

A 64-32-10 sigmoid HopfieldMLP in float64, briefly trained by centered EP so that its dynamics
are not trivial, then on one batch of digits: BPTT through the last K free transitions (one
parameter copy per transition) and the K per-step updates of EP, ΔEP_θ(β, t) and ΔEP_s(β, t),
are plotted together over t, per layer (``eqprop.check.gdu``). Prints both reports and writes
gdu.png into --out (default outputs/gdu_figure; docs/img/gdu.png is this figure, copied there by
hand when it changes).

    python examples/gdu_figure.py [--out outputs/gdu_figure]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch
from sklearn.datasets import load_digits

from eqprop.check import gdu
from eqprop.learners import EP
from eqprop.models import HopfieldMLP
from eqprop.solvers import FixedPoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/gdu_figure"), help="directory for gdu.png")
    parser.add_argument("--beta", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = load_digits()
    x = torch.tensor(data.data / 16.0)  # float64 pixels in [0, 1]
    y = torch.nn.functional.one_hot(torch.tensor(data.target), 10).double()
    model = HopfieldMLP([64, 32, 10], "sigmoid").double()
    learner = EP(0.5, "centered", solver=FixedPoint(tol=1e-6, max_steps=200))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for i in range(0, 1000, 20):  # a little training: the curves of an untrained net are flat
        optimizer.zero_grad()
        learner.step(model, x[i:i + 20], y[i:i + 20])
        optimizer.step()
    batch = slice(1000, 1020)
    solver = FixedPoint(tol=1e-13, max_steps=5000)  # residual ≪ β|∇|, or it enters as residual/β
    for variant in ("positive", "centered"):
        report = gdu(model, x[batch], y[batch], beta=args.beta, steps=args.steps, variant=variant, solver=solver)
        print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gdu.png"
    fig = report.plot(str(path))
    print(f"saved {path} ({len(fig.axes)} panels)")


if __name__ == "__main__":
    main()
