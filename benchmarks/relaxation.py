"""Throughput of static relaxations against the raw torch operations they are made of.

Shapes: a 784-512-10 HopfieldMLP (batch 64), the comparative study's MNIST conv net (1×28×28,
5×5 convs 32-64, max pooling, batch 32) and a CIFAR-size DCHN (3×32×32, 3×3 convs 128-256-512,
max pooling; a small batch so the script stays short on a CPU). For each it prints, from one run:

    floor / step       the same convolutions and matrix products in plain torch (no pooling
                       switches, activations or bookkeeping) divided by one FixedPoint step  goal ≥ 0.7
    async / sync       one Asynchronous sweep / one FixedPoint step                          goal ≤ 1.0
    bf16 / f32         a FixedPoint step with state_dtype=torch.bfloat16 / float32
    compiled / eager   (--compile) a torch.compile'd step / the eager step

and the projected CIFAR-10 epoch (50 000 images, centered EP: T free steps + K nudged steps
on the doubled ± batch) for the synchronous float32 setting of Laborieux et al. 2021
(T = 250, K = 30) and the speed setting of the comparative study (asynchronous, T = 60,
K = 15, bfloat16), with their ratio.

    python benchmarks/relaxation.py [--threads N] [--repeats R] [--cifar-batch B] [--compile] [--device cuda]

On CUDA, cuDNN autotuning (torch.backends.cudnn.benchmark) and TF32 matmuls/convolutions are set
explicitly (--tf32 on|off, default off: float32 means float32) and printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from eqprop.models import ConvHopfield, HopfieldMLP
from eqprop.solvers import Asynchronous, FixedPoint


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median wall seconds per call after two warm-up calls."""
    fn(), fn()
    samples = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def floor_mlp(model: HopfieldMLP, state, dtype):
    """The two matrix products of one step of a one-hidden-layer MLP, nothing else."""
    w2, b2 = model.layers[1].weight.to(dtype), model.layers[1].bias.to(dtype)
    drive0 = torch.zeros_like(state[0])
    s1, s2 = state

    def run():
        return torch.addmm(drive0, s2, w2), F.linear(s1, w2, b2)
    return run


def floor_conv(model: ConvHopfield, state, dtype):
    """conv_k(s_{k−1}) and conv_kᵀ(·) for k ≥ 2, a max pool each, and the two fc products."""
    pad = model.padding
    convs = [(c.weight.to(dtype), c.bias.to(dtype)) for c in model.convs]
    fc_w, fc_b = model.fc.weight.to(dtype), model.fc.bias.to(dtype)
    ups = [torch.zeros(s.shape[0], c.out_channels, s.shape[2] * model.pool_size, s.shape[3] * model.pool_size,
                       dtype=dtype, device=s.device) for s, c in zip(state[1:-1], model.convs[1:])]

    def run():
        out = []
        for k in range(1, len(convs)):
            out.append(F.max_pool2d(F.conv2d(state[k - 1], *convs[k], padding=pad), model.pool_size))
            out.append(F.conv_transpose2d(ups[k - 1], convs[k][0], padding=pad))
        out.append(state[-1] @ fc_w)
        out.append(F.linear(state[-2].flatten(1), fc_w, fc_b))
        return out
    return run


def per_step(solver_factory, model, x, steps: int, repeats: int, device) -> float:
    solver = solver_factory(steps)
    context = model.prepare(x)
    state = model.init_state(x)
    return timed(lambda: solver.solve(model, x, state, context=context), repeats, device) / steps


def compiled_step(model, x, steps: int, repeats: int, device) -> tuple[float, float]:
    """Eager vs torch.compile'd FixedPoint step (same numbers checked), seconds per step."""
    solver = FixedPoint(tol=None, max_steps=1)
    context = model.prepare(x)

    def step(*state):
        return solver.step(model, x, state, context, None, None)
    fast = torch.compile(step, dynamic=False)
    state = model.init_state(x)
    with torch.no_grad():
        for _ in range(3):
            state = step(*state)
        a, b = step(*state), fast(*state)
        error = max(float((u - v).abs().max()) for u, v in zip(a, b))

        def loop(fn):
            s = state
            for _ in range(steps):
                s = fn(*s)
        eager_time = timed(lambda: loop(step), repeats, device) / steps
        compiled_time = timed(lambda: loop(fast), repeats, device) / steps
    print(f"    compiled step: max |compiled − eager| = {error:.1e}")
    return eager_time, compiled_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--cifar-batch", type=int, default=4)
    parser.add_argument("--compile", action="store_true", help="also time a torch.compile'd step (slow to compile)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tf32", choices=("on", "off"), default="off")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"
        torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
        print(f"CUDA {torch.cuda.get_device_name(device)}: cudnn.benchmark=True, TF32 {args.tf32}")
    else:
        print(f"CPU, {args.threads} thread(s), torch {torch.__version__}")
    torch.manual_seed(0)
    setups = [
        ("MLP 784-512-10, batch 64", HopfieldMLP([784, 512, 10]), (64, 784), 100, floor_mlp),
        ("conv MNIST 1x28x28 32-64 (5x5), batch 32",
         ConvHopfield(1, [32, 64], 10, 28, kernel_size=5, padding=2), (32, 1, 28, 28), 8, floor_conv),
        (f"conv CIFAR 3x32x32 128-256-512 (3x3), batch {args.cifar_batch}",
         ConvHopfield(3, [128, 256, 512], 10, 32, kernel_size=3, padding=1), (args.cifar_batch, 3, 32, 32), 3, floor_conv),
    ]
    for name, model, shape, steps, floor in setups:
        model = model.to(device)
        x = torch.rand(*shape, device=device)
        print(f"\n{name}")
        rows = {}
        for label, dtype in (("f32", None), ("bf16", torch.bfloat16)):
            sync_t = per_step(lambda n: FixedPoint(tol=None, max_steps=n, state_dtype=dtype), model, x, steps,
                              args.repeats, device)
            async_t = per_step(lambda n: Asynchronous(tol=None, max_steps=n, state_dtype=dtype), model, x, steps,
                               args.repeats, device)
            state = tuple(s.to(dtype or torch.float32) for s in model.init_state(x))
            floor_t = timed(floor(model, state, dtype or torch.float32), args.repeats, device)
            rows[label] = (sync_t, async_t, floor_t)
            print(f"  {label:4s}  step {sync_t * 1e3:8.3f} ms   async sweep {async_t * 1e3:8.3f} ms   floor "
                  f"{floor_t * 1e3:8.3f} ms   floor/step {floor_t / sync_t:5.2f}   async/sync {async_t / sync_t:5.2f}")
        print(f"  bf16/f32 per step: {rows['bf16'][0] / rows['f32'][0]:.2f} (synchronous), "
              f"{rows['bf16'][1] / rows['f32'][1]:.2f} (asynchronous)")
        if args.compile:
            eager_t, compiled_t = compiled_step(model, x, steps, args.repeats, device)
            print(f"  compiled/eager per step: {compiled_t / eager_t:.2f}")
        if name.startswith("conv CIFAR"):
            per_sample = {k: (v[0] / shape[0], v[1] / shape[0]) for k, v in rows.items()}
            reference = 50_000 * (250 + 2 * 30) * per_sample["f32"][0]
            speed = 50_000 * (60 + 2 * 15) * per_sample["bf16"][1]
            speed32 = 50_000 * (60 + 2 * 15) * per_sample["f32"][1]
            print(f"  projected CIFAR-10 epoch, centered EP (per-sample cost at batch {shape[0]}, relaxation only):")
            print(f"    synchronous float32, T=250, K=30:          {reference / 60:8.1f} min")
            print(f"    asynchronous float32, T=60, K=15:           {speed32 / 60:8.1f} min   speedup {reference / speed32:.1f}x")
            print(f"    asynchronous bfloat16, T=60, K=15:          {speed / 60:8.1f} min   speedup {reference / speed:.1f}x")


if __name__ == "__main__":
    main()
