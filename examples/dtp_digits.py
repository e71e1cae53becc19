"""DTP with learned feedback weights (L-DRL) next to backprop on scikit-learn digits.

Ernoult et al. 2022, "Towards scaling difference target propagation by learning backprop
targets": a 64-128-128-10 ELU DTPNetwork, cross-entropy on the logits, per batch the L-DRL feedback
training (K steps per feedback layer) and then DTP's forward update, both through
``DTP.step``; the same network trained by :class:`eqprop.baselines.Backprop` from the same
initialisation, and DTP with its random feedback left untrained (``feedback_steps=0``). At the end of every epoch the script measures the angle between DTP's forward
update and the backprop gradient, layer by layer (``eqprop.check.angles``), on a fixed batch.
Prints a table, writes ``dtp_digits.png`` into ``--out``. About a minute on one CPU core.

    python examples/dtp_digits.py [--epochs 10 --beta 0.5 --hidden 128 128 --out outputs/dtp_digits]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from eqprop.baselines import Backprop
from eqprop.check import angles
from eqprop.costs import CrossEntropy
from eqprop.data import load
from eqprop.learners import DTP
from eqprop.models import DTPNetwork


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


def train(learner, model, x, y, x_test, y_test, args, probe=None) -> tuple[list[dict], float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)
    generator = torch.Generator().manual_seed(0)
    history, start = [], time.time()
    for epoch in range(args.epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            optimizer.zero_grad()
            learner.step(model, x[idx], y[idx])
            optimizer.step()
        scheduler.step()
        row = {"epoch": epoch + 1, "test_accuracy": accuracy(model, x_test, y_test)}
        if probe is not None:
            row.update(probe(model))
        history.append(row)
    return history, time.time() - start


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--feedback-steps", type=int, default=20)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--feedback-lr", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/dtp_digits"))
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> dict:
    """Train the three runs, print the table, write the plot; returns {run: (history, seconds)}
    and the angles of the initial random feedback under ``"random_feedback"``."""
    torch.set_num_threads(1)
    splits = load("digits")
    (x, y), (x_test, y_test) = splits.train.tensors, splits.test.tensors
    sizes = [x.shape[1], *args.hidden, splits.n_classes]
    cost = CrossEntropy()
    dtp = DTP(args.beta, cost=cost, feedback_steps=args.feedback_steps, noise=args.noise,
              feedback_lr=args.feedback_lr, seed=args.seed)
    fixed = DTP(args.beta, cost=cost, feedback_steps=0)  # DTP with its random initial feedback, never trained
    backprop = Backprop(cost=cost)
    x_probe, y_probe = x[:256], y[:256]
    probe = lambda model: angles(dtp, backprop, model, x_probe, y_probe, by="layer")

    torch.manual_seed(args.seed)
    initial = DTPNetwork(sizes)
    random_feedback = probe(initial)  # the angles before any feedback training
    results = {}
    for name, learner in (("DTP (L-DRL)", dtp), ("DTP, random feedback", fixed), ("backprop", backprop)):
        model = DTPNetwork(sizes)
        model.load_state_dict(initial.state_dict())
        results[name] = train(learner, model, x, y, x_test, y_test, args, probe if learner is dtp else None)

    layers = [k for k in random_feedback]
    print(f"digits, {'-'.join(map(str, sizes))} ELU, {args.epochs} epochs, batch {args.batch_size}, β = {args.beta}")
    print("angle to backprop (degrees) per layer, measured on a fixed batch of 256:")
    print(f"{'epoch':>5}  " + "  ".join(f"{k:>16}" for k in layers) + f"  {'DTP test acc.':>13}  {'BP test acc.':>12}")
    print(f"{0:>5}  " + "  ".join(f"{random_feedback[k]:16.1f}" for k in layers))
    for row, bp in zip(results["DTP (L-DRL)"][0], results["backprop"][0]):
        print(f"{row['epoch']:>5}  " + "  ".join(f"{row[k]:16.1f}" for k in layers)
              + f"  {100 * row['test_accuracy']:12.2f}%  {100 * bp['test_accuracy']:11.2f}%")
    final = {name: 100 * hist[-1]["test_accuracy"] for name, (hist, _) in results.items()}
    for name, (hist, seconds) in results.items():
        print(f"{name:21s} test accuracy {final[name]:.2f} % ({seconds:.0f} s)")
    print(f"gap backprop − DTP: {final['backprop'] - final['DTP (L-DRL)']:+.2f} points (target ≤ 1.5)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    fig, (ax_angle, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [0] + [r["epoch"] for r in results["DTP (L-DRL)"][0]]
    for k in layers[:-1]:
        ax_angle.plot(epochs, [random_feedback[k]] + [r[k] for r in results["DTP (L-DRL)"][0]], marker="o", label=k)
    ax_angle.set(xlabel="epoch", ylabel="angle to backprop (°)", title="DTP update vs backprop gradient")
    ax_angle.legend()
    for name, (hist, _) in results.items():
        ax_acc.plot([r["epoch"] for r in hist], [100 * r["test_accuracy"] for r in hist], marker="o", label=name)
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="digits")
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(args.out / "dtp_digits.png", dpi=120)
    print(f"plot: {args.out / 'dtp_digits.png'}")
    return {**results, "random_feedback": random_feedback}


if __name__ == "__main__":
    main(parse())
