"""Arbitration between model-free and model-based learning in a changing grid world.

Reproduces, at CPU size, the claims of Dromnelle et al. (Living Machines 2020; Int. J. Social
Robotics 2022): the entropy-and-cost meta-controller keeps close to the reward of the model-based
expert alone at a fraction of its planning cost, hands control to the model-free expert in
stable phases and gives it back to the model-based one after the world changes. Five criteria
(entropy+cost, entropy only, MB alone, MF alone, random) run on the same seeds in each scenario
of the config (the short corridor closes; the goal moves). Planning cost is measured two ways:
counted value-iteration backups (sweeps × modelled state-action pairs; MF: |A| table reads),
which is what the arbiter uses, and wall-clock seconds around each expert's inference.

    python examples/arbitration_gridworld.py                     # configs/arbitration/gridworld.yaml
    python examples/arbitration_gridworld.py --seeds 2 --steps 2000 --out outputs/arbitration
    python examples/arbitration_gridworld.py --set arbiter.kappa=1 mf.q_init=1 "criteria=[entropy_cost, mb]"

Prints a table per scenario and the claims, and writes arbitration_gridworld.png into --out.

Measured (defaults: 5 seeds × 3000 steps, change at 1500; ~40 s of CPU time): entropy+cost gets
0.94 (corridor closes) and 0.95 (goal moves) of MB's reward at 0.149 and 0.122 of its counted
planning operations (0.142 and 0.117 of its wall-clock planning time); MF decides 99 % of the
steps in both stable phases; MB's share goes from 0.007 in the 500 steps before the change to
0.117 (corridor) and 0.024 (goal) in the 500 after. One MB decision costs ~300 µs, an MF one
~1.7 µs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from eqprop.arbitration import Arbiter, GridWorld, ModelBased, QLearning, simulate
from eqprop.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "": {"world", "steps", "change_at", "scenarios", "mf", "mb", "arbiter", "criteria", "seeds"},
    "world": {"layout", "slip", "moves"},
    "mf": {"alpha", "gamma", "beta", "q_init"},
    "mb": {"gamma", "beta", "window", "tol", "q_init"},
    "arbiter": {"kappa", "alpha_f", "cost"},
}
CHANGES = {"close", "move_goal"}
WINDOW = 500  # steps before and after the change over which the hand-back to MB is measured
LABELS = {"entropy_cost": "entropy + cost", "entropy": "entropy only", "mb": "MB alone", "mf": "MF alone", "random": "random"}


def load_config(path: str | Path) -> dict:
    cfg = yaml.safe_load(Path(path).read_text())
    for section, allowed in KEYS.items():
        keys = set(cfg if section == "" else cfg.get(section, {}))
        if keys - allowed:
            raise ConfigurationError(f"unknown key(s) {sorted(keys - allowed)} in {section or 'the top level'} of {path}; "
                                     f"allowed: {sorted(allowed)}.")
    for name, change in cfg["scenarios"].items():
        if len(change) != 1 or set(change) - CHANGES:
            raise ConfigurationError(f"scenario {name!r} must be one change, 'close: [row, col]' or "
                                     f"'move_goal: [row, col]', got {change}.")
    if not 0 < cfg["change_at"] < cfg["steps"]:
        raise ConfigurationError(f"change_at must lie inside the run (0 < change_at < steps), "
                                 f"got {cfg['change_at']} of {cfg['steps']}.")
    return cfg


def run(cfg: dict, scenario: str, criterion: str, seed: int):
    world = GridWorld(cfg["world"]["layout"], slip=cfg["world"]["slip"], moves=cfg["world"]["moves"])
    (kind, cell), = cfg["scenarios"][scenario].items()
    change = (lambda w: w.close(tuple(cell))) if kind == "close" else (lambda w: w.move_goal(tuple(cell)))
    mf = QLearning(world.n_states, world.n_actions, **cfg["mf"])
    mb = ModelBased(world.n_states, world.n_actions, **cfg["mb"])
    arbiter = Arbiter(mf, mb, criterion=criterion, seed=seed, **cfg["arbiter"])
    return simulate(world, arbiter, cfg["steps"], changes={cfg["change_at"]: change}, seed=10_000 + seed)


def scenario_table(cfg: dict, scenario: str) -> dict[str, dict]:
    t, T = cfg["change_at"], cfg["steps"]
    w = min(WINDOW, t, T - t)  # short runs: the windows shrink to the phases
    results = {}
    for criterion in cfg["criteria"]:
        traces = [run(cfg, scenario, criterion, seed) for seed in cfg["seeds"]]
        mb_share = np.mean([tr.winner == 1 for tr in traces], axis=0)
        mb_steps = np.concatenate([tr.winner == 1 for tr in traces])
        seconds = np.concatenate([tr.seconds for tr in traces])
        results[criterion] = {
            "reward": np.array([tr.reward.sum() for tr in traces]),
            "operations": np.mean([tr.operations.sum() for tr in traces]),
            "seconds": np.mean([tr.seconds.sum() for tr in traces]),
            "cum_reward": np.mean([np.cumsum(tr.reward) for tr in traces], axis=0),
            "cum_operations": np.mean([np.cumsum(tr.operations) for tr in traces], axis=0),
            "mb_share": mb_share,
            "mf_stable_1": 1 - mb_share[t - w:t].mean(),  # the last w steps before the change
            "mb_after": mb_share[t:t + w].mean(),
            "mb_before": mb_share[t - w:t].mean(),
            "mf_stable_2": 1 - mb_share[T - w:].mean(),  # the last w steps of the run
            "sec_mb": seconds[mb_steps].mean() if mb_steps.any() else np.nan,
            "sec_mf": seconds[~mb_steps].mean() if (~mb_steps).any() else np.nan,
        }
    return results


def print_table(scenario: str, results: dict[str, dict]) -> None:
    ref = results.get("mb")

    def rel(name: str, key: str) -> float:
        value = results[name][key].mean() if key == "reward" else results[name][key]
        base = (ref["reward"].mean() if key == "reward" else ref[key]) if ref is not None else 0.0
        return value / base if base > 0 else float("nan")

    print(f"\nscenario {scenario!r}: reward over the run (mean ± std over seeds), planning cost relative to MB alone")
    print(f"{'criterion':>15} {'reward':>13} {'/MB':>6} {'ops/MB':>8} {'sec/MB':>8} {'MF share: stable-1':>19} "
          f"{'MB share: before':>17} {'after':>6} {'MF share: stable-2':>19}")
    for name, r in results.items():
        print(f"{LABELS[name]:>15} {r['reward'].mean():7.1f} ± {r['reward'].std():4.1f} {rel(name, 'reward'):6.2f} "
              f"{rel(name, 'operations'):8.3f} {rel(name, 'seconds'):8.3f} {r['mf_stable_1']:19.2f} "
              f"{r['mb_before']:17.3f} {r['mb_after']:6.3f} {r['mf_stable_2']:19.2f}")
    if "mb" in results and "mf" in results:
        mb_us, mf_us = results["mb"]["sec_mb"] * 1e6, results["mf"]["sec_mf"] * 1e6
        print(f"wall clock per decision: MB planning {mb_us:.0f} µs, MF table read {mf_us:.1f} µs ({mb_us / mf_us:.0f}× cheaper)")


def claims(scenario: str, results: dict[str, dict]) -> list[tuple[str, bool]]:
    ec, mb = results["entropy_cost"], results["mb"]
    return [
        (f"{scenario}: entropy+cost reward ≥ 90 % of MB's ({ec['reward'].mean() / mb['reward'].mean():.2f})",
         ec["reward"].mean() >= 0.9 * mb["reward"].mean()),
        (f"{scenario}: entropy+cost planning operations ≤ 50 % of MB's ({ec['operations'] / mb['operations']:.3f})",
         ec["operations"] <= 0.5 * mb["operations"]),
        (f"{scenario}: MF in control in the stable phases ({ec['mf_stable_1']:.2f}, {ec['mf_stable_2']:.2f} of the steps)",
         min(ec["mf_stable_1"], ec["mf_stable_2"]) > 0.5),
        (f"{scenario}: back to MB after the change (MB share {ec['mb_before']:.3f} → {ec['mb_after']:.3f})",
         ec["mb_after"] > ec["mb_before"]),
    ]


def plot(cfg: dict, all_results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(all_results), 3, figsize=(15, 4 * len(all_results)), squeeze=False)
    for row, (scenario, results) in zip(axes, all_results.items()):
        for name, r in results.items():
            row[0].plot(r["cum_reward"], label=LABELS[name])
            row[1].plot(np.maximum(r["cum_operations"], 1), label=LABELS[name])
        for name in ("entropy_cost", "entropy"):
            if name in results:
                share = np.convolve(results[name]["mb_share"], np.ones(50) / 50, mode="same")
                row[2].plot(share, label=LABELS[name])
        row[0].set(title=f"{scenario}: cumulative reward", xlabel="step")
        row[1].set(title=f"{scenario}: cumulative planning (value-iteration backups)", xlabel="step", yscale="log")
        row[2].set(title=f"{scenario}: MB in control (share, 50-step average)", xlabel="step", ylim=(0, 1))
        for ax in row:
            ax.axvline(cfg["change_at"], color="k", ls="--", lw=0.8)
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "arbitration" / "gridworld.yaml"))
    parser.add_argument("--out", default=str(ROOT / "outputs" / "arbitration"))
    parser.add_argument("--seeds", type=int, default=None, help="use the first N seeds of the config")
    parser.add_argument("--steps", type=int, default=None, help="run length (the change stays halfway)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config entries, e.g. arbiter.kappa=1")
    args = parser.parse_args()
    cfg = load_config(args.config)
    for item in args.set:
        key, sep, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = cfg
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if not sep or not isinstance(node, dict) or leaf not in node:
            raise ConfigurationError(f"--set {item!r} does not name an entry of the config; use section.key=value, e.g. arbiter.kappa=1.")
        node[leaf] = yaml.safe_load(value)
    if args.seeds is not None:
        cfg["seeds"] = list(range(args.seeds))
    if args.steps is not None:
        cfg["change_at"], cfg["steps"] = args.steps // 2, args.steps
    print(GridWorld(cfg["world"]["layout"]).render())
    all_results = {scenario: scenario_table(cfg, scenario) for scenario in cfg["scenarios"]}
    checks = []
    for scenario, results in all_results.items():
        print_table(scenario, results)
        if {"entropy_cost", "mb"} <= set(results):
            checks += claims(scenario, results)
    print("\nclaims:")
    for text, ok in checks:
        print(f"  [{'yes' if ok else 'NO '}] {text}")
    path = Path(args.out) / "arbitration_gridworld.png"
    plot(cfg, all_results, path)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
