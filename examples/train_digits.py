"""Train a HopfieldMLP on scikit-learn digits with centered EP, and the same network with BPTT.

    python examples/train_digits.py                 # both learners, 30 epochs, ~1 min on 2 cores
    python examples/train_digits.py --learner ep    # EP only

A plain PyTorch loop: the learner writes dL/dθ into .grad, any torch optimizer applies it.
Measured (30 epochs, float32, seeds 0/1/2): EP 99.16 / 98.61 / 98.61 %, BPTT 99.16 / 98.61 / 98.89 %.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

import eqprop
from eqprop.data import load_digits


def make_model() -> eqprop.models.HopfieldMLP:
    # Hard-sigmoid hidden units, linear output units (a linear read-out inside the energy).
    return eqprop.models.HopfieldMLP([64, 256, 10], activation=["hard_sigmoid", "identity"])


def make_learner(name: str, beta: float = 0.5):
    free = eqprop.solvers.FixedPoint(tol=None, max_steps=30)  # T = 30 free steps
    nudged = eqprop.solvers.FixedPoint(tol=None, max_steps=10)  # K = 10 nudged steps
    if name == "ep":
        return eqprop.learners.EP(beta, "centered", solver=free, nudged_solver=nudged)
    if name == "bptt":
        return eqprop.baselines.BPTT(solver=free)
    raise SystemExit(f"unknown learner {name!r}; choose ep or bptt")


def accuracy(learner, model, dataset) -> float:
    x, y = dataset.tensors
    return (learner.predict(model, x).argmax(1) == y).float().mean().item()


def train(name: str, epochs: int = 30, lr: float = 0.02, batch_size: int = 32, seed: int = 0) -> float:
    torch.manual_seed(seed)
    data = load_digits(seed=0)
    model, learner = make_model(), make_learner(name)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    loader = DataLoader(data.train, batch_size=batch_size, shuffle=True)
    start = time.time()
    for epoch in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            learner.step(model, x, torch.nn.functional.one_hot(y, 10).float())
            optimizer.step()
        schedule.step()
    test = accuracy(learner, model, data.test)
    print(f"{name:>5}: test accuracy {100 * test:.2f}%  ({time.time() - start:.0f} s, {epochs} epochs)")
    return test


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learner", choices=["ep", "bptt", "both"], default="both")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # small matrices: one thread per process is fastest on a CPU
    results = {n: train(n, args.epochs, seed=args.seed) for n in (["ep", "bptt"] if args.learner == "both" else [args.learner])}
    if len(results) == 2:
        print(f"EP − BPTT: {100 * (results['ep'] - results['bptt']):+.2f} points")
