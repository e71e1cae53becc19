"""Interpolating between two loaded patterns: static conceptor mix versus the conceptor control loop.

Pourcel, Goldmann, Fischer & Soriano 2024 (Chaos 34:103127). An echo state network is loaded with
two sines (periods 20 and 25 steps) and runs without input under C_λ = λC_1 + (1 − λ)C_2 while λ
is scanned slowly from 0.5 down to −3 and, in a second run, up to 4: once with C_λ applied as it
is (static control), once with the loop (online autoconceptor, control law
C_adapt = C_a + β(C_λ − C_a)). Printed: the output period against λ (one value per window of 250
steps) and the width of the λ-range over which the output is a regular oscillation whose period
is strictly monotone in λ, for a few network seeds. About 20 s of CPU per seed.

    python examples/conceptor_interpolation.py [--seeds 3] [--out outputs/conceptors]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from eqprop.reservoir import EchoStateNetwork
from eqprop.reservoir.tasks import interpolation, sines


def run(seed: int, args: argparse.Namespace):
    esn = EchoStateNetwork(size=args.size, spectral_radius=args.spectral_radius, leak=args.leak, seed=seed)
    loading = esn.load(sines(args.periods, args.load_steps), aperture=args.aperture, washout=args.washout, ridge=args.ridge)
    return interpolation(esn, loading, lambda_min=args.lambda_min, lambda_max=args.lambda_max, start=args.start,
                         steps=args.steps, window=args.window, aperture=args.aperture, rate=args.rate, gain=args.gain)


def span(lambdas: torch.Tensor, periods: torch.Tensor, limits: tuple[float, float]) -> str:
    inside = periods[(lambdas >= limits[0] - 1e-9) & (lambdas <= limits[1] + 1e-9)]
    return f"{float(inside.min()):.1f}–{float(inside.max()):.1f}"


def main(argv: list[str] | None = None) -> list:
    torch.set_num_threads(1)  # N = 200: one thread is fastest, and the machine is shared
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200, help="reservoir neurons N")
    parser.add_argument("--spectral-radius", type=float, default=1.6)
    parser.add_argument("--leak", type=float, default=0.75)
    parser.add_argument("--periods", type=float, nargs=2, default=[20.0, 25.0], help="periods of the two sines (steps)")
    parser.add_argument("--aperture", type=float, default=200.0, help="α of the loaded conceptors and of the autoconceptor")
    parser.add_argument("--ridge", type=float, default=2.5e-5, help="read-out ridge regulariser")
    parser.add_argument("--load-steps", type=int, default=1500)
    parser.add_argument("--washout", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1e-4, help="η, the autoconceptor rate")
    parser.add_argument("--gain", type=float, default=0.5, help="β, the control gain (1 = static control)")
    parser.add_argument("--lambda-min", type=float, default=-3.0)
    parser.add_argument("--lambda-max", type=float, default=4.0)
    parser.add_argument("--start", type=float, default=0.5, help="λ where both scans start")
    parser.add_argument("--steps", type=int, default=14000, help="steps of each scan")
    parser.add_argument("--window", type=int, default=250, help="steps per period measurement")
    parser.add_argument("--seeds", type=int, default=3, help="network seeds 0..seeds−1")
    parser.add_argument("--out", default="outputs/conceptors", help="directory of the plot")
    args = parser.parse_args(argv)
    results = []
    for seed in range(args.seeds):
        start = time.time()
        results.append(run(seed, args))
        r = results[-1]
        if seed == 0:
            print(f"{'λ':>6}{'static period':>15}{'loop period':>13}")
            for lam, ps, pa in list(zip(r.lambdas.tolist(), r.static_period.tolist(), r.adaptive_period.tolist()))[::4]:
                print(f"{lam:6.2f}{ps:15.2f}{pa:13.2f}")
        spans = [span(r.lambdas, p, lim) for p, lim in ((r.static_period, r.static_range), (r.adaptive_period, r.adaptive_range))]
        print(f"seed {seed}: monotone period for λ in static [{r.static_range[0]:+.2f}, {r.static_range[1]:+.2f}] "
              f"(width {r.static_width:.2f}, periods {spans[0]}), loop [{r.adaptive_range[0]:+.2f}, "
              f"{r.adaptive_range[1]:+.2f}] (width {r.adaptive_width:.2f}, periods {spans[1]})  {time.time() - start:.0f} s")
    static = sum(r.static_width for r in results) / len(results)
    adaptive = sum(r.adaptive_width for r in results) / len(results)
    print(f"mean width of the monotone λ-range over {len(results)} seeds: static {static:.2f}, loop {adaptive:.2f}")
    plot(results[0], Path(args.out))
    return results


def plot(r, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(r.lambdas, r.static_period, ".-", label=f"static C_λ (monotone width {r.static_width:.2f})")
    ax.plot(r.lambdas, r.adaptive_period, ".-", label=f"control loop (monotone width {r.adaptive_width:.2f})")
    for lo, hi, color in ((*r.static_range, "C0"), (*r.adaptive_range, "C1")):
        ax.axvspan(lo, hi, color=color, alpha=0.08)
    ax.axvline(0, color="k", lw=0.5), ax.axvline(1, color="k", lw=0.5)
    ax.set(xlabel="λ  (C_target = λC_1 + (1 − λ)C_2)", ylabel="output period (steps)", title="conceptor interpolation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "conceptor_interpolation.png", dpi=120)
    print(f"plot: {out / 'conceptor_interpolation.png'}")


if __name__ == "__main__":
    main()
