"""The meta-controller of Dromnelle et al. 2020/2022: arbitration between MF and MB by entropy and cost.

Per state s and expert e ∈ {MF, MB} it keeps a low-pass filtered action-probability vector
p̄_e(s) and a filtered planning cost τ_e(s). At each step, in state s:

    Ĥ_e = H(p̄_e(s)) / log|A|                 ĉ_e = τ_e(s) / max_e' τ_e'(s)
    θ   = exp(−κ Ĥ_MF(s))                     (cost matters once MF is confident)
    v_e = −(Ĥ_e + θ ĉ_e)                      winner = argmax_e v_e, ties at random

Only the winner plans (MB: value iteration; MF: a table read) and its measured cost updates
τ_e(s) ← (1−α_f) τ_e(s) + α_f t; the loser's probabilities come from its stale values; both
update p̄_e ← (1−α_f) p̄_e + α_f p_e; the winner's sampled action is executed. On the first visit
to a state both experts plan. Baselines: ``criterion="entropy"`` (v_e = −Ĥ_e, the κ → ∞ limit),
``"random"``, ``"mb"`` (MB alone) and ``"mf"`` (MF alone).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigurationError
from .experts import ModelBased, QLearning, normalized_entropy
from .world import GridWorld

__all__ = ["Arbiter", "Decision", "Trace", "cost_weight", "expert_values", "simulate", "CRITERIA", "COSTS"]

CRITERIA = ("entropy_cost", "entropy", "random", "mb", "mf")
COSTS = ("operations", "seconds")
MF, MB = 0, 1
NAMES = ("MF", "MB")


def check_kappa(kappa: float) -> float:
    try:
        kappa = float(kappa)
    except (TypeError, ValueError):
        raise ConfigurationError(f"kappa must be a real number ≥ 0, got {kappa!r}.") from None
    if not kappa >= 0.0:  # also refuses NaN
        raise ConfigurationError(f"kappa must be ≥ 0 (0: full cost term; ∞: entropy only), got {kappa}.")
    return kappa


def cost_weight(entropy_mf, kappa: float):
    """θ = exp(−κ Ĥ_MF), with the κ = ∞ limit (0, or 1 where Ĥ_MF = 0) taken exactly."""
    kappa = check_kappa(kappa)
    h = np.asarray(entropy_mf, dtype=np.float64)
    if np.isinf(kappa):
        return np.where(h > 0.0, 0.0, 1.0)
    return np.exp(-kappa * h)


def expert_values(entropies, costs, kappa: float) -> np.ndarray:
    """v_e = −(Ĥ_e + θ ĉ_e) for the experts [MF, MB] (last axis); ĉ_e = τ_e / max τ (0 if all 0)."""
    h = np.asarray(entropies, dtype=np.float64)
    tau = np.asarray(costs, dtype=np.float64)
    if h.shape[-1] != 2 or tau.shape != h.shape:
        raise ConfigurationError(f"entropies and costs must both have shape [..., 2] (MF, MB), got {h.shape} and {tau.shape}.")
    if (tau < 0).any():
        raise ConfigurationError("planning costs must be ≥ 0.")
    top = tau.max(axis=-1, keepdims=True)
    c = np.where(top > 0, tau / np.where(top > 0, top, 1.0), 0.0)
    theta = cost_weight(h[..., MF], kappa)[..., None]
    return -(h + theta * c)


@dataclass
class Decision:
    """One step of the meta-controller: who planned, at what cost, and why."""

    action: int
    winner: int  # 0 = MF, 1 = MB
    operations: int  # counted planning operations of this step (both experts on a first visit)
    seconds: float  # measured wall-clock planning time of this step
    values: np.ndarray  # v_e used for the choice
    entropies: np.ndarray  # Ĥ_e before the step


class Arbiter:
    """Meta-controller between a model-free and a model-based expert (Dromnelle et al. 2020/2022).

    Args:
        mf: the model-free expert, a :class:`QLearning`.
        mb: the model-based expert, a :class:`ModelBased` on the same world.
        criterion: ``"entropy_cost"`` (the paper's), ``"entropy"``, ``"random"``, ``"mb"``, ``"mf"``.
        kappa: κ ≥ 0 in θ = exp(−κ Ĥ_MF) on the *normalised* entropy; ``float("inf")`` is the
            entropy-only criterion. The default 3 is the authors' code's κ = 1, which multiplies
            the entropy in bits (log₂ 8 = 3 for the 8 movement actions).
        alpha_f: rate of the low-pass filters of p̄ and τ (0.6 in the paper's code).
        cost: what τ measures, ``"operations"`` (counted backups, deterministic) or
            ``"seconds"`` (wall clock, as on the robot).
        seed: of the arbiter's own random draws (ties, random criterion, action sampling).
    """

    def __init__(self, mf: QLearning, mb: ModelBased, *, criterion: str = "entropy_cost", kappa: float = 3.0,
                 alpha_f: float = 0.6, cost: str = "operations", seed: int | None = None) -> None:
        if criterion not in CRITERIA:
            raise ConfigurationError(f"unknown criterion {criterion!r}; choose one of {', '.join(CRITERIA)}.")
        if cost not in COSTS:
            raise ConfigurationError(f"unknown cost {cost!r}; choose 'operations' (counted) or 'seconds' (wall clock).")
        if not 0.0 < alpha_f <= 1.0:
            raise ConfigurationError(f"alpha_f (filter rate) must be in (0, 1], got {alpha_f}.")
        if mf.Q.shape != mb.Q.shape:
            raise ConfigurationError(f"the two experts must share states and actions, got {mf.Q.shape} and {mb.Q.shape}.")
        self.experts = (mf, mb)
        self.criterion, self.kappa, self.alpha_f, self.cost = criterion, check_kappa(kappa), float(alpha_f), cost
        S, A = mf.Q.shape
        self.p_bar = np.full((2, S, A), 1.0 / A)
        self.tau = np.zeros((2, S))
        self.visited = np.zeros(S, dtype=bool)
        self.rng = np.random.default_rng(seed)

    def entropies(self, state: int) -> np.ndarray:
        """[Ĥ_MF, Ĥ_MB] of the filtered probabilities in ``state``."""
        return normalized_entropy(self.p_bar[:, state])

    def values(self, state: int) -> np.ndarray:
        """The expert values v_e of the criterion in ``state`` (MF first)."""
        h = self.entropies(state)
        if self.criterion == "entropy":
            return -h
        return expert_values(h, self.tau[:, state], self.kappa)

    def _choose(self, v: np.ndarray) -> int:
        best = np.flatnonzero(v == v.max())
        return int(best[0]) if len(best) == 1 else int(self.rng.choice(best))

    def _plan(self, e: int, state: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        ops = self.experts[e].infer(state)
        seconds = time.perf_counter() - t0
        measured = ops if self.cost == "operations" else seconds
        self.tau[e, state] += self.alpha_f * (measured - self.tau[e, state])
        return ops, seconds

    def act(self, state: int) -> Decision:
        """Arbitrate, let the winner plan, filter both experts' probabilities, sample the action."""
        if not 0 <= int(state) < len(self.visited):
            raise ConfigurationError(f"state {state} does not exist: the experts know states 0..{len(self.visited) - 1}.")
        state = int(state)
        h = self.entropies(state)
        planners: tuple[int, ...]
        if self.criterion in ("mf", "mb"):
            winner = MF if self.criterion == "mf" else MB
            planners, v = (winner,), np.where(np.arange(2) == winner, 0.0, -np.inf)
        elif self.criterion == "random":
            winner = int(self.rng.integers(2))
            planners, v = (winner,), np.full(2, 0.5)
        elif not self.visited[state]:
            planners = (MF, MB)  # first visit: both plan, then the criterion picks on fresh statistics
            winner = -1
        else:
            v = self.values(state)
            winner = self._choose(v)
            planners = (winner,)
        ops, seconds = 0, 0.0
        for e in planners:
            o, t = self._plan(e, state)
            ops, seconds = ops + o, seconds + t
        probs = np.stack([expert.probabilities(state) for expert in self.experts])
        self.p_bar[:, state] += self.alpha_f * (probs - self.p_bar[:, state])
        if winner < 0:
            v = self.values(state)
            winner = self._choose(v)
        self.visited[state] = True
        action = int(self.rng.choice(probs.shape[1], p=probs[winner]))
        return Decision(action, winner, ops, seconds, np.asarray(v, dtype=np.float64), h)

    def learn(self, state: int, action: int, reward: float, next_state: int, done: bool) -> None:
        """Both experts learn from the executed transition."""
        for expert in self.experts:
            expert.update(state, action, reward, next_state, done)


@dataclass
class Trace:
    """Per-step record of a run: reward, expert in control, planning cost, state."""

    reward: np.ndarray
    winner: np.ndarray
    operations: np.ndarray
    seconds: np.ndarray
    state: np.ndarray
    changes: list[int] = field(default_factory=list)

    def summary(self, start: int = 0, stop: int | None = None) -> dict[str, float]:
        sl = slice(start, stop)
        return {
            "reward": float(self.reward[sl].sum()),
            "operations": float(self.operations[sl].sum()),
            "seconds": float(self.seconds[sl].sum()),
            "mf_share": float((self.winner[sl] == MF).mean()),
        }


def simulate(world: GridWorld, arbiter: Arbiter, steps: int, *, changes: Mapping[int, Callable[[GridWorld], None]] | None = None,
             seed: int | None = None) -> Trace:
    """Run ``steps`` decisions; ``changes[t](world)`` is applied before step t (the goal moves, a corridor closes).

    Reaching the goal gives reward 1 and puts the agent back at the start.
    """
    if int(steps) < 1:
        raise ConfigurationError(f"steps must be a positive integer, got {steps}.")
    if arbiter.p_bar.shape[1:] != (world.n_states, world.n_actions):
        raise ConfigurationError(f"the experts were built for {arbiter.p_bar.shape[1:]} states × actions, the world has "
                                 f"{(world.n_states, world.n_actions)}; build them with world.n_states and world.n_actions.")
    changes = dict(changes or {})
    rng = np.random.default_rng(seed)
    steps = int(steps)
    trace = Trace(np.zeros(steps), np.zeros(steps, dtype=np.int64), np.zeros(steps, dtype=np.int64), np.zeros(steps),
                  np.zeros(steps, dtype=np.int64), sorted(changes))
    s = world.start
    for t in range(steps):
        if t in changes:
            changes[t](world)
        d = arbiter.act(s)
        nxt, r, done = world.step(s, d.action, rng)
        arbiter.learn(s, d.action, r, nxt, done)
        trace.reward[t], trace.winner[t], trace.operations[t], trace.seconds[t], trace.state[t] = r, d.winner, d.operations, d.seconds, s
        s = world.start if done else nxt
    return trace
