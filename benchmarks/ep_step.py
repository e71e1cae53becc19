"""Speed of one centered-EP training step: eqprop vs BPTT vs a hand-written PyTorch loop.

784-512-10 HopfieldMLP (hard sigmoid), batch 64, T = 30 free / K = 10 nudged steps, float32.
Prints the ratios measured in this run (median of repeated steps, after warm-up):

    (a) eqprop centered EP / eqprop BPTT through the same 30 free steps      goal ≤ 1.0
    (b) eqprop centered EP / plain PyTorch loop of the same EP math         goal ≤ 1.1

    python benchmarks/ep_step.py [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import eqprop


def plain_ep_step(weights, biases, x, y, beta, T, K):
    """The EP math written by hand, the fast way (drive once, ± phases batched, closed forms)."""
    W1, W2 = weights
    b1, b2 = biases
    drive = x @ W1.T + b1
    h = torch.zeros(x.shape[0], W1.shape[0])
    o = torch.zeros(x.shape[0], W2.shape[0])
    for _ in range(T):
        h, o = (drive + o @ W2).clamp(0, 1), (h @ W2.T + b2).clamp(0, 1)
    beta_col = torch.cat([torch.full((x.shape[0], 1), beta), torch.full((x.shape[0], 1), -beta)])
    h2, o2, drive2, y2 = torch.cat([h, h]), torch.cat([o, o]), torch.cat([drive, drive]), torch.cat([y, y])
    for _ in range(K):
        h2, o2 = (drive2 + o2 @ W2).clamp(0, 1), (h2 @ W2.T + b2 - beta_col * (o2 - y2)).clamp(0, 1)
    n = x.shape[0]
    w = torch.cat([torch.full((n, 1), 1.0), torch.full((n, 1), -1.0)]) / (2 * beta * n)
    x2 = torch.cat([x, x])
    grads = (-(h2 * w).T @ x2, -(h2 * w).sum(0), -(o2 * w).T @ h2, -(o2 * w).sum(0))
    for p, g in zip((W1, b1, W2, b2), grads):
        p.grad = g
    return grads


# CPU time of this process: with one thread it is robust to other work on the machine; with
# more threads use wall time (--clock wall) on an otherwise idle machine.
CLOCK = time.process_time


def timed(fns: dict, repeats: int) -> dict:
    """Median seconds per call; the functions take turns so that load changes hit all alike."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    samples: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = CLOCK()
            fn()
            samples[name].append(CLOCK() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    beta, T, K, batch = 0.5, 30, 10, 64
    model = eqprop.models.HopfieldMLP([784, 512, 10], "hard_sigmoid")
    x = torch.rand(batch, 784)
    y = torch.nn.functional.one_hot(torch.randint(0, 10, (batch,)), 10).float()
    free = eqprop.solvers.FixedPoint(tol=None, max_steps=T)
    nudged = eqprop.solvers.FixedPoint(tol=None, max_steps=K)
    ep = eqprop.learners.EP(beta, "centered", solver=free, nudged_solver=nudged)
    bptt = eqprop.baselines.BPTT(solver=free)

    def run(learner):
        model.zero_grad(set_to_none=True)
        learner.step(model, x, y)

    weights = (model.layers[0].weight.detach().clone(), model.layers[1].weight.detach().clone())
    biases = (model.layers[0].bias.detach().clone(), model.layers[1].bias.detach().clone())
    plain = plain_ep_step(weights, biases, x, y, beta, T, K)
    ep_grads = ep.grads(model, x, y)
    agree = max(float((a - ep_grads[n]).abs().max()) for a, n in zip(plain, ep_grads))
    def plain():
        with torch.no_grad():
            plain_ep_step(weights, biases, x, y, beta, T, K)

    times = timed({"ep": lambda: run(ep), "bptt": lambda: run(bptt), "plain": plain}, args.repeats)
    t_ep, t_bptt, t_plain = times["ep"], times["bptt"], times["plain"]
    print(f"784-512-10 HopfieldMLP, batch {batch}, T={T}/K={K}, float32, {args.threads} thread(s), {args.clock} time")
    print(f"  eqprop centered EP step : {1e3 * t_ep:8.2f} ms")
    print(f"  eqprop BPTT step        : {1e3 * t_bptt:8.2f} ms")
    print(f"  plain PyTorch EP step   : {1e3 * t_plain:8.2f} ms   (max |Δgrad| vs eqprop {agree:.1e})")
    print(f"  (a) EP / BPTT           : {t_ep / t_bptt:6.3f}   goal ≤ 1.0")
    print(f"  (b) EP / plain PyTorch  : {t_ep / t_plain:6.3f}   goal ≤ 1.1")


if __name__ == "__main__":
    main()
