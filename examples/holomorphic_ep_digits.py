"""Holomorphic EP training on scikit-learn digits (Laborieux & Zenke 2022).

A 64-32-10 tanh HopfieldMLP (holomorphic units; hard-sigmoid would be refused), squared error
on ±1 targets, N = 4 complex nudges on a circle of radius |β|, SGD on the gradient it writes
into ``.grad``; centered EP with the same |β| runs alongside (it is holomorphic EP with N = 2).
On the first batch the script also prints both estimates' error against implicit
differentiation. Runs in a few minutes on 2 CPU cores.

    python examples/holomorphic_ep_digits.py [--epochs 5 --beta 0.2 --points 4]
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.datasets import load_digits

from eqprop.baselines import ImplicitDifferentiation
from eqprop.check import compare
from eqprop.learners import EP, HolomorphicEP
from eqprop.models import HopfieldMLP
from eqprop.solvers import FixedPoint


def digits(seed: int = 0):
    data = load_digits()
    x = torch.tensor(data.data / 16.0)  # float64 pixels in [0, 1]
    y = torch.tensor(data.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    return (x[:1437], y[:1437]), (x[1437:], y[1437:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--beta", type=float, default=0.2)
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny matrices: one thread is much faster on a shared small machine
    (x_train, y_train), (x_test, y_test) = digits()
    solver = FixedPoint(tol=1e-8, max_steps=300, on_nonconvergence="ignore")
    learners = {
        f"holomorphic EP, N={args.points}": HolomorphicEP(args.beta, args.points, solver=solver),
        "centered EP (N=2)": EP(args.beta, "centered", solver=solver),
    }
    for name, learner in learners.items():
        torch.manual_seed(0)
        model = HopfieldMLP([64, 32, 10], "tanh").double()
        target = lambda labels: 2 * torch.nn.functional.one_hot(labels, 10).double() - 1
        reference = ImplicitDifferentiation(solver=FixedPoint(tol=1e-12, max_steps=3000))
        check = compare(learner, reference, model, x_train[:32], target(y_train[:32]))
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
        generator = torch.Generator().manual_seed(0)
        start = time.time()
        for _ in range(args.epochs):
            order = torch.randperm(len(x_train), generator=generator)
            for i in range(0, len(order), 16):
                idx = order[i:i + 16]
                optimizer.zero_grad()
                learner.step(model, x_train[idx], target(y_train[idx]))
                optimizer.step()
        accuracy = float((learner.predict(model, x_test).argmax(1) == y_test).double().mean())
        print(f"{name:22s} |β| = {args.beta}: gradient error at init {check.max_relative_error:.2e}; "
              f"test accuracy {100 * accuracy:.1f} % after {args.epochs} epochs ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
