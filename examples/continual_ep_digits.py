"""Continual EP on scikit-learn digits, next to EP and BPTT (Ernoult et al. 2020, C-EP).

A 64-64-10 sigmoid HopfieldMLP, squared error on one-hot targets, FixedPoint relaxation.
C-EP moves the weights at every nudged step (``ContinualEP.train_step``, rate η ≪ β); EP
(centered) and BPTT write dL/dθ into ``.grad`` and plain SGD with the same rate η applies it, so
the three differ only in how the gradient is obtained. Runs in about two minutes on 2 CPU cores.

    python examples/continual_ep_digits.py [--epochs 20]
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.datasets import load_digits

import eqprop
from eqprop.baselines import BPTT
from eqprop.learners import EP, ContinualEP
from eqprop.models import HopfieldMLP
from eqprop.solvers import FixedPoint


def digits(seed: int = 0):
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)  # pixels scaled to [0, 1]
    y = torch.tensor(data.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    return (x[:1437], y[:1437]), (x[1437:], y[1437:])


def accuracy(learner, model, x, y) -> float:
    return float((learner.predict(model, x).argmax(1) == y).double().mean())


def train(name: str, epochs: int, lr: float, beta: float, beta_ep: float = 0.5, seed: int = 0) -> float:
    (x_train, y_train), (x_test, y_test) = digits()
    torch.manual_seed(seed)
    model = HopfieldMLP([64, 64, 10], "sigmoid")
    solver = FixedPoint(tol=1e-4, max_steps=100, on_nonconvergence="ignore")
    if name == "C-EP":
        learner = ContinualEP(beta=beta, lr=lr, steps=20, solver=solver)
    elif name == "EP":
        learner = EP(beta=beta_ep, variant="centered", solver=solver, nudged_solver=FixedPoint(tol=None, max_steps=20))
    else:
        learner = BPTT(solver=FixedPoint(tol=None, max_steps=40))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    start = time.time()
    for epoch in range(epochs):
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(0, len(order), 16):
            idx = order[i:i + 16]
            target = torch.nn.functional.one_hot(y_train[idx], 10).float()
            if name == "C-EP":
                learner.train_step(model, x_train[idx], target)
            else:
                optimizer.zero_grad()
                learner.step(model, x_train[idx], target)
                optimizer.step()
    test = accuracy(learner, model, x_test, y_test)
    print(f"{name:5s} test accuracy {100 * test:5.1f} %  (train {100 * accuracy(learner, model, x_train, y_train):5.1f} %, "
          f"{epochs} epochs, {time.time() - start:5.1f} s)")
    return test


def main() -> None:
    torch.set_num_threads(1)  # tiny matrices: one thread is ~100× faster on a shared 2-core machine
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.5, help="η: C-EP's rate and the SGD rate of EP and BPTT")
    parser.add_argument("--beta", type=float, default=3.0, help="C-EP's β: it needs η ≪ β (measured: η/β = 0.3 fails)")
    parser.add_argument("--beta-ep", type=float, default=0.5, help="β of centered EP")
    args = parser.parse_args()
    print(f"eqprop {eqprop.__version__}: digits, 64-64-10 sigmoid HopfieldMLP, η = {args.lr}, "
          f"β = {args.beta} (C-EP) / {args.beta_ep} (centered EP)")
    for name in ("C-EP", "EP", "BPTT"):
        train(name, args.epochs, args.lr, args.beta, args.beta_ep)


if __name__ == "__main__":
    main()
