"""CPU time of RHEL and BPTT against a hand-written forward pass, as ratios measured in one run.

    python benchmarks/rhel_speed.py                 # the headline configuration + linear HRU / HSSM at 1k, 10k
    python benchmarks/rhel_speed.py --steps 1000 10000 50000
    python benchmarks/rhel_speed.py --device cuda   # same figures on a GPU (wall time, synchronised)

Headline: NonlinearHRU width 32, batch 8, T = 10k, float32, 1 thread, final-step cross-entropy
(then the same with a loss at every step; then LinearHRU and a 2-layer HSSM at each ``--steps``).
The reference is a hand-written eager forward pass (drive B u + b precomputed for all T, then
addmm / addcmul in place, no autograd). Goals (issue 13): RHEL.grads ≤ 3.0×, RHEL.predict ≤ 1.0×,
BPTT.grads ≤ 4×. Each figure is the minimum over ``--repeats`` interleaved runs (the machine is
shared: ratios of minima within one run, never absolute times, are what to read).
"""

from __future__ import annotations

import argparse
import time

import torch

from eqprop.baselines import BPTT
from eqprop.costs import CrossEntropy
from eqprop.learners import RHEL
from eqprop.models import HSSM, LinearHRU, NonlinearHRU
from eqprop.solvers import PositionVerlet


def hand_forward(model, x: torch.Tensor) -> torch.Tensor:
    """The reference: position Verlet for a single HRU written out by hand, drive precomputed."""
    with torch.no_grad():
        dt = model.dt.detach()
        a = model.frequency.detach() ** 2
        drive = torch.addmm(model.input_bias, x.transpose(0, 1).reshape(-1, x.shape[-1]), model.input_weight.t())
        drive = drive.view(x.shape[1], x.shape[0], -1)
        q = x.new_zeros(x.shape[0], model.hidden_size)
        p = torch.zeros_like(q)
        if isinstance(model, NonlinearHRU):
            d = float(dt)
            w, wt, dta = model.coupling.detach(), model.coupling.detach().t().contiguous(), d * a
            for k in range(x.shape[1]):
                q.add_(p, alpha=0.5 * d)
                p.addcmul_(q, dta, value=-1.0).addmm_(torch.addmm(drive[k], q, wt).tanh_(), w, alpha=-d)
                q.add_(p, alpha=0.5 * d)
        else:
            half, dta, drive = 0.5 * dt, dt * a, drive * dt
            for k in range(x.shape[1]):
                q.addcmul_(p, half)
                p.addcmul_(q, dta, value=-1.0).add_(drive[k])
                q.addcmul_(p, half)
        return model.output(q)


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - start
    start = time.process_time()
    fn()
    return time.process_time() - start


def measure(model, x, y, device, repeats: int, with_hand: bool) -> dict[str, float]:
    rhel = RHEL(1e-2, cost=CrossEntropy())
    bptt = BPTT(integrator=PositionVerlet(), cost=CrossEntropy())
    runs = {"RHEL.predict": lambda: rhel.predict(model, x), "RHEL.grads": lambda: rhel.grads(model, x, y),
            "BPTT.grads": lambda: bptt.grads(model, x, y)}
    if with_hand:
        runs = {"hand forward": lambda: hand_forward(model, x), **runs}
    if with_hand:  # warm-up on a short prefix
        hand_forward(model, x[:, :20])
    rhel.grads(model, x[:, :20], y[:, :20] if y.dim() > 1 else y)
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            best[name] = min(best[name], timed(fn, device))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device {device}, float32, 1 thread, batch 8, width 32; min over {args.repeats} interleaved repeats")
    model = NonlinearHRU(1, 32, output_size=10).to(device)
    x, y = torch.randn(8, 10000, 1, device=device), torch.randint(0, 10, (8,), device=device)
    best = measure(model, x, y, device, args.repeats, True)
    hand = best["hand forward"]
    print(f"NonlinearHRU T=10000: hand forward {hand:.3f} s")
    for name, goal in (("RHEL.predict", 1.0), ("RHEL.grads", 3.0), ("BPTT.grads", 4.0)):
        print(f"  {name:<13} {best[name]:8.3f} s  {best[name] / hand:6.2f}x hand (goal <= {goal})")
    per_step = measure(model, x, torch.randint(0, 10, (8, 10000), device=device), device, max(1, args.repeats - 1), True)
    print("  loss at every step: " + "  ".join(f"{k} {per_step[k] / per_step['hand forward']:.2f}x hand"
                                              for k in ("RHEL.grads", "BPTT.grads")))
    builders = {"LinearHRU": lambda: LinearHRU(1, 32, output_size=10),
                "HSSM-2 linear": lambda: HSSM(1, 32, 10, num_layers=2, hru="linear")}
    for name, build in builders.items():
        for steps in args.steps:
            model = build().to(device)
            x = torch.randn(8, steps, 1, device=device)
            best = measure(model, x, y, device, max(1, args.repeats - 1), isinstance(model, LinearHRU))
            hand = best.get("hand forward")
            line = "  ".join(f"{k} {v:.3f} s" + (f" ({v / hand:.2f}x)" if hand and k != "hand forward" else "")
                             for k, v in best.items())
            print(f"{name:<14} T={steps:<6} {line}  RHEL/BPTT {best['RHEL.grads'] / best['BPTT.grads']:.2f}")


if __name__ == "__main__":
    main()
