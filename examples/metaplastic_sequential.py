"""Metaplasticity in a binarized network (Laborieux et al. 2021) on tasks learned one after another.

    python examples/metaplastic_sequential.py                      # 3 permuted-digits tasks, ~1-2 min
    python examples/metaplastic_sequential.py --data mnist --root DIR          # permuted MNIST
    python examples/metaplastic_sequential.py --data mnist --then fashion_mnist --root DIR

A BinarizedMLP (sign units, BatchNorm without running statistics, no biases) is trained by
backprop with MetaplasticAdam on task 1, then task 2, ... without replay or task boundaries
in the optimizer, once with meta = 0 (plain Adam) and once with meta > 0. Prints the accuracy
on every task after each task's training, and plots the accuracy on each task over training
and the histogram of the hidden weights |W_h| after each task into --out
(default outputs/metaplastic_sequential).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import eqprop.data
from eqprop.baselines import Backprop
from eqprop.costs import CrossEntropy
from eqprop.models import BinarizedMLP
from eqprop.optim import MetaplasticAdam, param_groups


def make_tasks(args) -> list[tuple[str, tuple, tuple]]:
    """[(name, (x_train, y_train), (x_test, y_test))]: permutations of one dataset, or two datasets."""
    options = {} if args.data == "digits" else {"root": args.root}
    base = eqprop.data.load(args.data, **options)
    train, test = base.train.tensors, base.test.tensors
    n = train[0][0].numel()
    gen = torch.Generator().manual_seed(args.seed)
    tasks = [(args.data, train, test)]
    if args.then:
        other = eqprop.data.load(args.then, root=args.root)
        if other.n_features != base.n_features:
            raise SystemExit(f"--then {args.then} has {other.n_features} features, {args.data} has {base.n_features}: "
                             "pair datasets of one size (e.g. --data mnist --then fashion_mnist).")
        tasks.append((args.then, other.train.tensors, other.test.tensors))
        return tasks
    for k in range(1, args.tasks):
        perm = torch.randperm(n, generator=gen)
        tasks.append((f"{args.data} perm {k}", (train[0][:, perm], train[1]), (test[0][:, perm], test[1])))
    return tasks


def accuracy(model, data) -> float:
    x, y = data
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    model.train()
    return acc


def run(meta: float, tasks, args) -> dict:
    torch.manual_seed(args.seed)
    n_in = tasks[0][1][0].shape[1]
    model = BinarizedMLP([n_in, *args.hidden, 10])
    learner = Backprop(cost=CrossEntropy())
    optimizer = MetaplasticAdam(param_groups(model), lr=args.lr, meta=meta, weight_decay=1e-7)
    curves = [[] for _ in tasks]  # accuracy on every task after every epoch
    after = []  # accuracy on every task at the end of each task
    histograms = []
    gen = torch.Generator().manual_seed(args.seed)
    for name, (x, y), _ in tasks:
        for epoch in range(args.epochs):
            for batch in torch.randperm(len(y), generator=gen).split(args.batch_size):
                optimizer.zero_grad()
                learner.step(model, x[batch], y[batch])
                optimizer.step()
            for k, task in enumerate(tasks):
                curves[k].append(accuracy(model, task[2]))
        after.append([accuracy(model, task[2]) for task in tasks])
        histograms.append(torch.cat([layer.weight.detach().abs().flatten() for layer in model.layers[:-1]]))
    return {"meta": meta, "curves": curves, "after": after, "histograms": histograms}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits", help="digits (default), mnist or fashion_mnist")
    parser.add_argument("--then", default=None, help="a second dataset instead of permutations (e.g. fashion_mnist)")
    parser.add_argument("--root", default=None, help="directory with the IDX files")
    parser.add_argument("--tasks", type=int, default=3, help="number of permuted tasks")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per task")
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 512])
    # m·|W_h| must reach O(1) for consolidation, and |W_h| grows by ≈ lr per Adam step: the paper's
    # m = 1.35 goes with 40 epochs of 600 steps per task; digits has 15 steps per epoch, so m is larger.
    parser.add_argument("--meta", type=float, default=50.0, help="the metaplastic run's m (the other has m = 0)")
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/metaplastic_sequential")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tasks = make_tasks(args)
    start = time.time()
    results = [run(m, tasks, args) for m in (0.0, args.meta)]
    names = [t[0] for t in tasks]
    print(f"test accuracy (%) on each task after training on each task ({args.epochs} epochs per task, "
          f"{time.time() - start:.0f} s)")
    print(f"{'meta':>6}  {'after':<18}" + "".join(f"{n:>16}" for n in names))
    for r in results:
        for k, row in enumerate(r["after"]):
            print(f"{r['meta']:>6}  {names[k]:<18}" + "".join(f"{100 * a:>16.1f}" for a in row))
    if len(tasks) > 1:
        gap = 100 * (results[1]["after"][1][0] - results[0]["after"][1][0])
        print(f"task 1 after task 2: meta={args.meta} keeps it {gap:+.1f} points above meta=0")
    plot(results, names, args.epochs, Path(args.out))
    return results


def plot(results, names, epochs: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, r in zip(axes[:2], results):
        for k, curve in enumerate(r["curves"]):
            ax.plot(range(1, len(curve) + 1), [100 * a for a in curve], label=names[k])
        for t in range(1, len(names)):
            ax.axvline(t * epochs + 0.5, color="grey", lw=0.5)
        ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"meta = {r['meta']}", ylim=(0, 100))
        ax.legend(fontsize=8)
    for k, h in enumerate(results[1]["histograms"]):
        axes[2].hist(h.numpy(), bins=80, histtype="step", label=f"after {names[k]}")
    axes[2].set(xlabel="|W_h| (hidden layers)", ylabel="count", yscale="log", title=f"meta = {results[1]['meta']}")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "metaplastic_sequential.png", dpi=120)
    print(f"plot: {out / 'metaplastic_sequential.png'}")


if __name__ == "__main__":
    main()
