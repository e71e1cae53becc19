"""Partial degradation: removing neurons from a conceptor-controlled reservoir, static versus the loop.

Pourcel, Goldmann, Fischer & Soriano 2024 (Chaos 34:103127). An echo state network is loaded with
one sine (period 20 steps) and runs without input under its conceptor C. After 200 steps, K random
neurons are clamped to 0 for the rest of the run. A trial fails when the variance of the states
along their first principal component (last 500 steps) falls below 10 % of the intact network's:
the limit cycle has collapsed. Static control keeps C fixed; the loop adapts C_a on-line and
applies C_adapt = C_a + β(C − C_a). The same removed subsets are used for both. Printed: the
failure rate against K over the trials. About 75 s of CPU.

    python examples/conceptor_degradation.py [--trials 50] [--out outputs/conceptors]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from eqprop.reservoir import EchoStateNetwork
from eqprop.reservoir.tasks import degradation, sines


def main(argv: list[str] | None = None):
    torch.set_num_threads(1)  # N = 200: one thread is fastest, and the machine is shared
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200, help="reservoir neurons N")
    parser.add_argument("--spectral-radius", type=float, default=1.6)
    parser.add_argument("--leak", type=float, default=0.75)
    parser.add_argument("--period", type=float, default=20.0, help="period of the loaded sine (steps)")
    parser.add_argument("--aperture", type=float, default=25.0, help="α of the conceptor and of the autoconceptor")
    parser.add_argument("--ridge", type=float, default=2.5e-5, help="read-out ridge regulariser")
    parser.add_argument("--rate", type=float, default=1e-2, help="η, the autoconceptor rate (stable for η‖x‖² < 2)")
    parser.add_argument("--gain", type=float, default=0.1, help="β, the control gain (1 = static control)")
    parser.add_argument("--removed", type=int, nargs="+", default=[0, 5, 10, 20, 30, 40, 60], help="values of K")
    parser.add_argument("--trials", type=int, default=50, help="random subsets per K")
    parser.add_argument("--before", type=int, default=200, help="intact steps before the removal")
    parser.add_argument("--after", type=int, default=1000, help="steps after the removal")
    parser.add_argument("--measure", type=int, default=500, help="final steps on which the variance is measured")
    parser.add_argument("--seed", type=int, default=0, help="seed of the network and of the removed subsets")
    parser.add_argument("--out", default="outputs/conceptors", help="directory of the plot")
    args = parser.parse_args(argv)
    start = time.time()
    esn = EchoStateNetwork(size=args.size, spectral_radius=args.spectral_radius, leak=args.leak, seed=args.seed)
    loading = esn.load(sines([args.period], 1500), aperture=args.aperture, washout=200, ridge=args.ridge)
    r = degradation(esn, loading, args.removed, trials=args.trials, before=args.before, after=args.after,
                    measure=args.measure, aperture=args.aperture, rate=args.rate, gain=args.gain, seed=args.seed)
    print(f"{'K removed':>10}{'static failures':>17}{'loop failures':>15}")
    for K, s, a in zip(r.removed, r.static_failures, r.adaptive_failures):
        print(f"{K:>10}{100 * s:>16.0f}%{100 * a:>14.0f}%")
    print(f"mean failure rate over K: static {100 * sum(r.static_failures) / len(r.removed):.1f} %, "
          f"loop {100 * sum(r.adaptive_failures) / len(r.removed):.1f} %  ({args.trials} trials per K, {time.time() - start:.0f} s)")
    plot(r, Path(args.out))
    return r


def plot(r, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(r.removed, [100 * f for f in r.static_failures], "o-", label="static conceptor")
    ax.plot(r.removed, [100 * f for f in r.adaptive_failures], "s-", label="control loop")
    ax.set(xlabel="neurons removed K", ylabel="failed trials (%)", title="partial degradation", ylim=(-3, 103))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "conceptor_degradation.png", dpi=120)
    print(f"plot: {out / 'conceptor_degradation.png'}")


if __name__ == "__main__":
    main()
