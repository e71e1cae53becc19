"""EqSpike (Martin et al. 2021) next to rate-based EP on the same network, solvers and budget.

    python examples/eqspike_digits.py                      # digits, about a minute on one core
    python examples/eqspike_digits.py --out docs/img       # also writes the STDP-window plot there

Two runs of one HopfieldMLP (64-128-10, hard-sigmoid hidden units, sigmoid outputs: rates are
probabilities) from the same initialisation, data order and optimizer: positive EP on the rates,
and EqSpike, whose synapses are updated event by event from Bernoulli spikes during the nudged
phase. Prints the test accuracies, the gap, and the cosine between the EqSpike update and the
rate update on one batch; plots the learning curves and the pairing-protocol window
(ΔW against t_post − t_pre) into --out (default outputs/eqspike_digits).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import eqprop
import eqprop.data
from eqprop.learners.eqspike import pairing_window

SETTINGS = ("rate-based EP", "EqSpike")


def make_learner(name: str, beta: float, free_steps: int, nudged_steps: int, seed: int):
    free = eqprop.solvers.FixedPoint(tol=None, max_steps=free_steps, on_nonconvergence="ignore")
    nudged = eqprop.solvers.FixedPoint(tol=None, max_steps=nudged_steps, on_nonconvergence="ignore")
    if name == "EqSpike":
        return eqprop.learners.EqSpike(beta, "bernoulli", solver=free, nudged_solver=nudged, seed=seed)
    return eqprop.learners.EP(beta, "positive", solver=free, nudged_solver=nudged)


def make_model(n_in: int, n_hidden: int, n_classes: int) -> eqprop.models.HopfieldMLP:
    return eqprop.models.HopfieldMLP([n_in, n_hidden, n_classes], activation=["hard_sigmoid", "sigmoid"])


def accuracy(learner, model, dataset) -> float:
    x, y = dataset.tensors
    return (learner.predict(model, x).argmax(1) == y).float().mean().item()


def train(name: str, data, args) -> dict:
    torch.manual_seed(args.seed)
    n_classes = int(data.n_classes)
    model = make_model(data.n_features, args.hidden, n_classes)
    learner = make_learner(name, args.beta, args.free_steps, args.nudged_steps, args.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loader = DataLoader(data.train, batch_size=args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(args.seed))
    # A cosine schedule for both: it also averages EqSpike's spike noise out at the end of training.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(loader))
    accs, start = [], time.time()
    for _ in range(args.epochs):
        for x, y in loader:
            optimizer.zero_grad()
            learner.step(model, x, torch.nn.functional.one_hot(y, n_classes).to(x.dtype))
            optimizer.step()
            schedule.step()
        accs.append(accuracy(learner, model, data.test))
    return {"name": name, "test": accs[-1], "best": max(accs), "curve": accs, "seconds": time.time() - start}


def update_cosine(data, args) -> float:
    """Cosine between one EqSpike update and the rate update (EP positive) on one training batch."""
    torch.manual_seed(args.seed)
    model = make_model(data.n_features, args.hidden, int(data.n_classes))
    x, y = data.train.tensors
    x, y = x[: args.batch_size], torch.nn.functional.one_hot(y[: args.batch_size], int(data.n_classes)).to(x.dtype)
    spike = make_learner("EqSpike", args.beta, args.free_steps, args.nudged_steps, args.seed).grads(model, x, y)
    rate = make_learner("rate-based EP", args.beta, args.free_steps, args.nudged_steps, args.seed).grads(model, x, y)
    a = torch.cat([g.flatten() for g in spike.values()])
    b = torch.cat([g.flatten() for g in rate.values()])
    return float(a @ b / (a.norm() * b.norm()))


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits", help="digits (default), mnist or fashion_mnist")
    parser.add_argument("--root", default=None, help="directory with the IDX files for mnist / fashion_mnist")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--free-steps", type=int, default=30)
    parser.add_argument("--nudged-steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/eqspike_digits")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = eqprop.data.load(args.data, **({} if args.data == "digits" else {"root": args.root}))
    results = [train(name, data, args) for name in SETTINGS]
    cosine = update_cosine(data, args)
    ref = results[0]["test"]
    print(f"{'learner':<16}{'test acc.':>10}{'best':>9}{'gap':>8}{'time':>7}")
    for r in results:
        print(f"{r['name']:<16}{100 * r['test']:>9.2f}%{100 * r['best']:>8.2f}%{100 * (r['test'] - ref):>+8.2f}{r['seconds']:>6.0f}s")
    print(f"cosine(EqSpike update, rate update) on one batch of {args.batch_size}: {cosine:.3f}")
    plot(results, Path(args.out))
    return results


def plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for r in results:
        ax.plot(range(1, len(r["curve"]) + 1), [100 * a for a in r["curve"]], label=r["name"])
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="EqSpike vs rate-based EP (digits)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "eqspike_digits.png", dpi=120)
    plt.close(fig)

    delays = list(range(-15, 16))
    window = pairing_window(delays)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.axhline(0, color="0.7", lw=0.8), ax.axvline(0.5, color="0.7", lw=0.8)
    ax.plot(delays, window.numpy(), "o-", ms=3)
    ax.set(xlabel=r"$t_\mathrm{post} - t_\mathrm{pre}$ (steps)", ylabel=r"$\Delta W$",
           title="EqSpike pairing protocol: STDP-like window")
    fig.tight_layout()
    fig.savefig(out / "eqspike_stdp.png", dpi=120)
    plt.close(fig)
    print(f"plots: {out / 'eqspike_digits.png'}, {out / 'eqspike_stdp.png'}")


if __name__ == "__main__":
    main()
