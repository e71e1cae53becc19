"""Input distortion: a random feature conceptor network fed a distorted pattern, static versus the loop.

Pourcel, Goldmann, Fischer & Soriano 2024 (Chaos 34:103127), on Jaeger's (2014) random feature
conceptor network: N = 100 reservoir neurons, M = 500 random features z = c ⊙ F'r, one
conceptor weight c_i per feature. The network is loaded with a sine (period 10 steps), then
receives a distorted copy p̃ of its continuation blended with its own output,
u = τ p̃ + (1 − τ) y (τ = 0.3). Distortions: a gain p̃ = s·p, an offset p̃ = p + s, additive
Gaussian noise p̃ = p + s·ξ. Printed: the NRMSE of the output y = D z against the clean sine over
the last 1000 of 2000 steps, with the loaded weights fixed (static) and under the control loop
c = c_a + β(c_loaded − c_a), the estimate c_a following the features on-line. About 15 s of CPU.

    python examples/conceptor_distortion.py [--seeds 0 1 2] [--out outputs/conceptors]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from eqprop.reservoir.features import RandomFeatureConceptor
from eqprop.reservoir.tasks import distortion, sines

STRENGTHS = {"gain": [0.2, 0.4, 0.6, 0.8, 1.0, 1.5], "offset": [0.25, 0.5, 1.0], "noise": [0.25, 0.5, 1.0]}


def main(argv: list[str] | None = None):
    torch.set_num_threads(1)  # M = 500 features stepped one at a time: one thread is fastest
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, help="reservoir neurons N")
    parser.add_argument("--features", type=int, default=500, help="random features M")
    parser.add_argument("--period", type=float, default=10.0, help="period of the loaded sine (steps)")
    parser.add_argument("--aperture", type=float, default=8.0, help="α of the conceptor weights and of the loop")
    parser.add_argument("--trust", type=float, default=0.3, help="τ, weight of the external input in u = τ p̃ + (1 − τ) y")
    parser.add_argument("--rate", type=float, default=0.5, help="λ, the rate of the loop's estimate c_a")
    parser.add_argument("--gain", type=float, default=0.1, help="β, the control gain (1 = static control)")
    parser.add_argument("--steps", type=int, default=2000, help="steps of each distorted run")
    parser.add_argument("--measure", type=int, default=1000, help="final steps on which the NRMSE is measured")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="network seeds")
    parser.add_argument("--out", default="outputs/conceptors", help="directory of the plot")
    args = parser.parse_args(argv)
    start = time.time()
    results = {kind: [] for kind in STRENGTHS}
    for seed in args.seeds:
        net = RandomFeatureConceptor(size=args.size, features=args.features, seed=seed)
        pattern = sines([args.period], 1500 + args.steps)[0]
        loading = net.load(pattern[:1500], aperture=args.aperture)
        for kind, strengths in STRENGTHS.items():
            results[kind].append(distortion(net, loading, pattern[1500:], kind, strengths, trust=args.trust,
                                            measure=args.measure, aperture=args.aperture, rate=args.rate,
                                            gain=args.gain, seed=seed))
    print(f"{'distortion':>12}{'strength':>10}{'static NRMSE':>14}{'loop NRMSE':>12}   (mean over {len(args.seeds)} seeds)")
    means = {}
    for kind, runs in results.items():
        static = torch.tensor([r.static_nrmse for r in runs]).mean(0)
        loop = torch.tensor([r.adaptive_nrmse for r in runs]).mean(0)
        means[kind] = (STRENGTHS[kind], static, loop)
        for s, a, b in zip(STRENGTHS[kind], static, loop):
            print(f"{kind:>12}{s:>10.2f}{a:>14.3f}{b:>12.3f}")
    print(f"({time.time() - start:.0f} s)")
    plot(means, Path(args.out))
    return results


def plot(means, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), sharey=True)
    for ax, (kind, (strengths, static, loop)) in zip(axes, means.items()):
        ax.plot(strengths, static, "o-", label="static weights")
        ax.plot(strengths, loop, "s-", label="control loop")
        ax.set(xlabel=f"{kind} strength s", title=kind)
    axes[0].set_ylabel("NRMSE of the output vs clean sine")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "conceptor_distortion.png", dpi=120)
    print(f"plot: {out / 'conceptor_distortion.png'}")


if __name__ == "__main__":
    main()
