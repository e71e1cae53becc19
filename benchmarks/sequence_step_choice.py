"""Which fast path for sequence simulation: fused eager steps or torch.compile? Measured in one run.

    python benchmarks/sequence_step_choice.py            # NonlinearHRU width 32, batch 8, float32, 1 thread
    python benchmarks/sequence_step_choice.py --steps 4000 --unroll 16

Per-step CPU time of the forward pass of a NonlinearHRU (position Verlet, drive precomputed):

* ``reference``  — ``PositionVerlet.step`` through the model's ``potential_grad`` (eqprop's reference path);
* ``fused``      — eqprop's fast path (``eqprop.solvers.scan.hru_forward``: merged half drifts,
  in-place, 4 operations per step);
* ``compiled step`` — ``torch.compile`` of one functional step, called once per step;
* ``compiled chunk`` — ``torch.compile`` of ``--unroll`` functional steps unrolled, called once per chunk;

with the compile time of the two compiled variants; then, for the linear HRU, the fused steps
against the parallel (log-depth) scan of ``eqprop.models.scan`` over the whole sequence and in
chunks, with the float32 distance of each to the step-by-step loop. The fast path eqprop ships is the one with
the lowest per-step time; this script is the measurement behind that choice (docs/rhel.md).
"""

from __future__ import annotations

import argparse
import time

import torch

from eqprop.models import NonlinearHRU
from eqprop.solvers import PositionVerlet
from eqprop.solvers.scan import hru_forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--unroll", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = NonlinearHRU(1, 32, output_size=10)
    x = torch.randn(8, args.steps - args.steps % args.unroll, 1)
    steps = x.shape[1]
    with torch.no_grad():
        dt = float(model.dt)
        a, w = model.frequency.detach() ** 2, model.coupling.detach()
        wt = w.t().contiguous()
        drive = (x.transpose(0, 1) @ model.input_weight.detach().t() + model.input_bias.detach()).contiguous()

    def step(q, p, u_drive):
        q = q + 0.5 * dt * p
        p = p - dt * (a * q + torch.tanh(q @ wt + u_drive) @ w)
        return q + 0.5 * dt * p, p

    def chunk(q, p, drives):
        for k in range(args.unroll):
            q, p = step(q, p, drives[k])
        return q, p

    compiled_step = torch.compile(step, dynamic=False)
    compiled_chunk = torch.compile(chunk, dynamic=False)
    zeros = torch.zeros(8, 32)
    start = time.perf_counter()
    compiled_step(zeros, zeros, drive[0])
    compile_step_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled_chunk(zeros, zeros, drive[:args.unroll])
    compile_chunk_s = time.perf_counter() - start

    integrator = PositionVerlet()

    def reference():
        q, p = model.init_state(x)
        with torch.no_grad():
            for k in range(steps):
                q, p = integrator.step(model, q, p, x[:, k], model.dt)

    def per_step(fn):
        def run():
            q, p = zeros.clone(), zeros.clone()
            with torch.no_grad():
                for k in range(steps):
                    q, p = fn(q, p, drive[k])
        return run

    def per_chunk():
        q, p = zeros.clone(), zeros.clone()
        with torch.no_grad():
            for s in range(0, steps, args.unroll):
                q, p = compiled_chunk(q, p, drive[s:s + args.unroll])

    runs = {"reference": reference, "fused": lambda: hru_forward(model, x, integrator, False),
            "compiled step": per_step(compiled_step), f"compiled chunk ({args.unroll})": per_chunk}
    best = {name: float("inf") for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            start = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - start)
    fused = best["fused"]
    print(f"NonlinearHRU width 32, batch 8, float32, 1 thread, T = {steps}; min over {args.repeats} interleaved runs")
    for name, seconds in best.items():
        print(f"  {name:<20} {seconds / steps * 1e6:7.1f} us/step  {seconds / fused:5.2f}x fused")
    print(f"  compile time: step {compile_step_s:.1f} s, chunk of {args.unroll} {compile_chunk_s:.1f} s")
    linear_scan(args.steps * 5, args.repeats)


def linear_scan(steps: int, repeats: int) -> None:
    """The linear HRU: fused steps against the parallel (log-depth) scan, over the whole sequence
    and in chunks (memory O(chunk)), with the float32 distance of the final state to the loop."""
    from eqprop.estimators.sequence import simulate
    from eqprop.models import LinearHRU
    from eqprop.models.scan import affine_scan

    torch.manual_seed(0)
    model = LinearHRU(1, 32, output_size=10)
    x = torch.randn(8, steps, 1)
    integrator = PositionVerlet()

    def chunked(size):
        def run():
            with torch.no_grad():
                matrix, dt = model.verlet_matrix(), model.dt.expand(32)
                state = torch.zeros(8, 32, 2)
                for s in range(0, steps, size):
                    w = model.drive(x[:, s:s + size])
                    state = affine_scan(matrix, torch.stack([0.5 * dt * dt * w, dt * w], -1), state)[:, -1]
                return state[..., 0]
        return run

    def whole():
        with torch.no_grad():
            return model.trajectory(x)[0][:, -1]

    runs = {"fused": lambda: simulate(model, x, integrator)[0][0][0], "scan, whole sequence": whole,
            "scan, chunks of 64": chunked(64), "scan, chunks of 256": chunked(256)}
    reference = runs["fused"]()
    best = {name: float("inf") for name in runs}
    error = {name: float((fn() - reference).abs().max() / reference.abs().max()) for name, fn in runs.items()}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - start)
    print(f"LinearHRU width 32, batch 8, float32, 1 thread, T = {steps} (final state only)")
    for name, seconds in best.items():
        print(f"  {name:<22} {seconds / steps * 1e6:7.2f} us/step  {seconds / best['fused']:5.2f}x fused  "
              f"relative distance to the fused loop {error[name]:.1e}")


if __name__ == "__main__":
    main()
