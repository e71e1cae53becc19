"""MNIST-1D sequence classification with an HSSM, trained by RHEL and by BPTT side by side.

    python examples/rhel_mnist1d.py                   # defaults: ~3 min of CPU time on 1 thread
    python examples/rhel_mnist1d.py --hru linear      # linear HRUs: RHEL = BPTT to round-off
    python examples/rhel_mnist1d.py --learners rhel --epochs 40

Each 40-sample signal is read one value per step (x: [batch, 40, 1]). The model is the paper's
setting at CPU size (Pourcel & Ernoult 2025): an HSSM of two *nonlinear* HRU layers (coupled
log-cosh oscillators, so RHEL's O(ε²) approximation is exercised, not only exact linear cases),
width 64, GELU mixing with residual and LayerNorm, and a LinOSS-style time-averaged readout
(``pooling="mean"``: the class is read from the average of the per-step outputs, so every step
gets a gradient; RHEL nudges every echo step with g/T). AdamW with a one-cycle schedule, float32.
Both runs start from the same initial weights and see the same mini-batches; RHEL gets its
gradient from two batched echoes (ε = 1e-2), BPTT by autograd through the same position-Verlet
simulation. ``build_model``, ``build_learner`` and ``load_data`` are what a training layer reuses.

Measured on this machine (2 shared CPU cores, 1 thread, defaults, seed 0):
RHEL test accuracy 83.8 %, BPTT 83.8 % (train 91.6 % both); RHEL 126 s, BPTT 56 s of CPU time
(25 epochs each; BPTT takes the closed-form VJP layer after layer, RHEL's echo runs the layers
together step by step). The two runs' training losses agree to 3–4 digits at every epoch
(0.3067 both at epoch 25). Seed 1 (before the fast paths): RHEL 83.9 %, BPTT 83.7 % (train 92.2 % both).
Before (linear HRUs, loss on the last of the 40 steps only, width 48, 15 epochs): 53.5 % both.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict, dataclass, fields

import torch

from eqprop.baselines import BPTT
from eqprop.costs import CrossEntropy
from eqprop.learners import RHEL
from eqprop.models import HSSM
from eqprop.solvers import PositionVerlet


@dataclass
class Config:
    hidden_size: int = 64
    num_layers: int = 2
    hru: str = "nonlinear"
    activation: str = "gelu"
    pooling: str = "mean"
    dt_min: float = 0.05
    dt_max: float = 1.0
    epochs: int = 25
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    epsilon: float = 1e-2
    seed: int = 0
    dtype: str = "float32"
    threads: int = 1
    learners: str = "rhel,bptt"


def load_data(cfg: Config):
    from eqprop.data import load_mnist1d

    splits = load_mnist1d(as_sequence=True, standardize="global")
    dtype = getattr(torch, cfg.dtype)
    tensors = lambda ds: (ds.tensors[0].to(dtype), ds.tensors[1])  # noqa: E731
    return tensors(splits.train), tensors(splits.test), splits.n_classes


def build_model(cfg: Config, input_size: int, n_classes: int) -> HSSM:
    torch.manual_seed(cfg.seed)
    model = HSSM(input_size, cfg.hidden_size, n_classes, num_layers=cfg.num_layers, hru=cfg.hru,
                 activation=cfg.activation, dt_min=cfg.dt_min, dt_max=cfg.dt_max, pooling=cfg.pooling)
    return model.to(getattr(torch, cfg.dtype))


def build_learner(name: str, cfg: Config):
    if name == "rhel":
        return RHEL(cfg.epsilon, variant="centered", integrator=PositionVerlet(), cost=CrossEntropy())
    if name == "bptt":
        return BPTT(integrator=PositionVerlet(), cost=CrossEntropy())
    raise ValueError(f"Unknown learner {name!r}; choose 'rhel' or 'bptt'.")


@torch.no_grad()
def accuracy(model: HSSM, learner, x: torch.Tensor, y: torch.Tensor, chunk: int = 1000) -> float:
    """Test accuracy of the final output (the time average with ``pooling="mean"``)."""
    linear = all(type(layer).__name__ == "LinearHRU" for layer in model.layers)
    correct = 0
    for i in range(0, len(x), chunk):
        xb = x[i:i + chunk]
        logits = (model.predict_parallel(xb) if linear else learner.predict(model, xb))[:, -1]
        correct += int((logits.argmax(-1) == y[i:i + chunk]).sum())
    return correct / len(x)


def train(cfg: Config, name: str, model: HSSM, train_set, test_set) -> dict:
    learner = build_learner(name, cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * -(-len(train_set[0]) // cfg.batch_size), pct_start=0.1)
    x_train, y_train = train_set
    generator = torch.Generator().manual_seed(cfg.seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            optimizer.zero_grad()
            out = learner.step(model, x_train[idx], y_train[idx])
            optimizer.step()
            scheduler.step()
            total += float(out.loss) * len(idx)
        test_acc = accuracy(model, learner, *test_set)
        print(f"[{name}] epoch {epoch + 1}/{cfg.epochs}  train loss {total / len(order):.4f}  "
              f"test acc {100 * test_acc:.1f}%  ({time.process_time() - cpu_start:.0f}s CPU, "
              f"{time.perf_counter() - start:.0f}s wall)", flush=True)
    return {"test_accuracy": test_acc, "train_accuracy": accuracy(model, learner, *train_set),
            "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start}


def main(cfg: Config) -> dict:
    torch.set_num_threads(cfg.threads)
    train_set, test_set, n_classes = load_data(cfg)
    initial = build_model(cfg, train_set[0].shape[-1], n_classes)
    results = {}
    for name in cfg.learners.split(","):
        results[name] = train(cfg, name, copy.deepcopy(initial), train_set, test_set)
    print(f"config: {asdict(cfg)}")
    for name, r in results.items():
        print(f"{name.upper():5s} test accuracy {100 * r['test_accuracy']:.1f}%  train accuracy "
              f"{100 * r['train_accuracy']:.1f}%  time {r['cpu_seconds']:.0f}s CPU ({r['seconds']:.0f}s wall)")
    if "rhel" in results and "bptt" in results:
        gap = 100 * (results["rhel"]["test_accuracy"] - results["bptt"]["test_accuracy"])
        print(f"RHEL − BPTT test accuracy: {gap:+.1f} points")
    return results


def parse_args() -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in fields(Config):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return Config(**vars(parser.parse_args()))


if __name__ == "__main__":
    main(parse_args())
