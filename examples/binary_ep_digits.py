"""Binary EP (Laydevant et al. 2021) next to full-precision EP on the same network and budget.

    python examples/binary_ep_digits.py                       # digits, ~2 min on one core
    python examples/binary_ep_digits.py --root DIR --data mnist   # MNIST IDX files in DIR

Three runs of one HopfieldMLP architecture trained with the same EP learner and epochs:
full-precision weights (SGD), binary weights α·sign(W) ("bin_W", BinaryFlip on the signs, SGD on
the biases and the learned scales α), and binary weights + binary neurons ("bin_W_N": units send Θ(s − ½), the output
widened to several units per class). Prints the test accuracies and the flips per epoch, and
plots both into --out (default outputs/binary_ep_digits).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import eqprop
import eqprop.data
from eqprop.optim import BinaryFlip, param_groups

SETTINGS = {
    # name: (model kwargs, optimizer kwargs, β of centered EP). BinaryFlip's γ and τ are per
    # layer (input layer first), as in the paper: the output layer's gradients are ~10x larger.
    # The scales α are learned with their own small rate (their gradient sums a whole matrix).
    "full precision": ({}, {"lr": 0.02}, 0.5),
    "binary W": ({"binary": True, "learn_alpha": True},
                 {"gamma": 1e-3, "thresholds": (1e-4, 1e-3), "lr": 0.02, "alpha_lr": 1e-4}, 0.5),
    "binary W + N": ({"binary": True, "binary_activations": True, "neurons_per_class": 10},
                     {"gamma": 1e-3, "thresholds": (1e-5, 3e-5), "lr": 0.02, "alpha_lr": 1e-4}, 8.0),
}


def flip_optimizer(model, gamma: float, thresholds, lr: float, alpha_lr: float) -> BinaryFlip:
    """BinaryFlip with one (γ, τ) group per latent weight matrix, SGD on the biases and on α."""
    binary, *rest = param_groups(model)
    groups = [{"params": [p], "names": [n], "threshold": t} for p, n, t in zip(binary["params"], binary["names"], thresholds)]
    return BinaryFlip(groups + rest, gamma=gamma, threshold=thresholds[0], lr=lr, scale_lr=alpha_lr)


def make_model(n_in: int, n_hidden: int, n_classes: int, binary: bool = False, **kwargs):
    # Hard-sigmoid hidden units and linear output units (binary neurons: hard sigmoid everywhere).
    act = "hard_sigmoid" if kwargs.get("binary_activations") else ["hard_sigmoid", "identity"]
    if not binary:
        return eqprop.models.HopfieldMLP([n_in, n_hidden, n_classes], activation=act)
    return eqprop.models.BinaryHopfieldMLP([n_in, n_hidden, n_classes], activation=act, **kwargs)


def make_learner(beta: float, free_steps: int = 30, nudged_steps: int = 10):
    # The papers' fixed T and K steps, truncated on purpose (no convergence warning).
    free = eqprop.solvers.FixedPoint(tol=None, max_steps=free_steps, on_nonconvergence="ignore")
    nudged = eqprop.solvers.FixedPoint(tol=None, max_steps=nudged_steps, on_nonconvergence="ignore")
    return eqprop.learners.EP(beta, "centered", solver=free, nudged_solver=nudged)


def accuracy(learner, model, dataset) -> float:
    x, y = dataset.tensors
    return (learner.predict(model, x).argmax(1) == y).float().mean().item()


def train(name: str, data, epochs: int, n_hidden: int, batch_size: int = 32, seed: int = 0) -> dict:
    model_kw, opt_kw, beta = SETTINGS[name]
    torch.manual_seed(seed)
    n_classes = int(data.n_classes)
    model = make_model(data.n_features, n_hidden, n_classes, **model_kw)
    learner = make_learner(beta)
    if model_kw.get("binary"):
        optimizer = flip_optimizer(model, **opt_kw)
    else:
        optimizer = torch.optim.SGD(model.parameters(), momentum=0.9, **opt_kw)
    loader = DataLoader(data.train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    flips, accs, start = [], [], time.time()
    for epoch in range(epochs):
        before = getattr(optimizer, "total_flips", 0)
        for x, y in loader:
            optimizer.zero_grad()
            learner.step(model, x, torch.nn.functional.one_hot(y, n_classes).to(x.dtype))
            optimizer.step()
        flips.append(getattr(optimizer, "total_flips", 0) - before)
        accs.append(accuracy(learner, model, data.test))
    return {"name": name, "test": accs[-1], "curve": accs, "flips": flips, "seconds": time.time() - start}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits", help="digits (default), mnist or fashion_mnist")
    parser.add_argument("--root", default=None, help="directory with the IDX files for mnist / fashion_mnist")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, help="comma-separated subset of: " + ", ".join(SETTINGS))
    parser.add_argument("--out", default="outputs/binary_ep_digits")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    options = {} if args.data == "digits" else {"root": args.root}
    if args.limit_train:
        options["limit_train"] = args.limit_train
    data = eqprop.data.load(args.data, **options)
    names = list(SETTINGS) if args.only is None else [n.strip() for n in args.only.split(",")]
    results = [train(n, data, args.epochs, args.hidden, seed=args.seed) for n in names]
    ref = results[0]["test"] if results[0]["name"] == "full precision" else None
    print(f"{'setting':<16}{'test acc.':>10}{'gap':>8}{'flips 1st':>11}{'flips last':>11}{'time':>7}")
    for r in results:
        gap = f"{100 * (r['test'] - ref):+.2f}" if ref is not None else "-"
        f0, f1 = (r["flips"][0], r["flips"][-1]) if "binary" in r["name"] else ("-", "-")
        print(f"{r['name']:<16}{100 * r['test']:>9.2f}%{gap:>8}{f0:>11}{f1:>11}{r['seconds']:>6.0f}s")
    plot(results, Path(args.out))
    return results


def plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in results:
        epochs = range(1, len(r["curve"]) + 1)
        left.plot(epochs, [100 * a for a in r["curve"]], label=r["name"])
        if "binary" in r["name"]:
            right.semilogy(epochs, [max(f, 0.5) for f in r["flips"]], label=r["name"])
    left.set(xlabel="epoch", ylabel="test accuracy (%)", title="binary EP vs full-precision EP")
    right.set(xlabel="epoch", ylabel="weight flips per epoch", title="BinaryFlip")
    left.legend(), right.legend()
    fig.tight_layout()
    fig.savefig(out / "binary_ep.png", dpi=120)
    print(f"plot: {out / 'binary_ep.png'}")


if __name__ == "__main__":
    main()
