"""Arbitration between model-free and model-based experts (Dromnelle et al. 2020/2022), in float64.

Theory checked: Ĥ is 1 for a uniform and 0 for a one-hot vector; θ = exp(−κĤ_MF) → 0 as κ → ∞,
so entropy+cost becomes entropy only; with equal entropies the cost term alone decides; value
iteration is a γ-contraction, so stopping at Σ|ΔQ| < tol leaves Q within γ/(1−γ)·tol of the exact
solution; Q-learning with constant α on a deterministic chain contracts by 1 − α(1 − γ) per sweep
to γ^{d−1}·r. A small run checks the direction of the paper's claims (cost ≪ MB, reward close to
MB, MF in control when stable, MB back after a change).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eqprop.arbitration import (
    TWO_ROOMS, Arbiter, GridWorld, ModelBased, QLearning, cost_weight, expert_values, normalized_entropy, simulate,
    value_iteration,
)
from eqprop.errors import ConfigurationError, ConvergenceError, NonFiniteError


def agent(world: GridWorld, criterion: str = "entropy_cost", seed: int = 0, **kwargs) -> Arbiter:
    mf = QLearning(world.n_states, world.n_actions, q_init=0.0)
    mb = ModelBased(world.n_states, world.n_actions)
    return Arbiter(mf, mb, criterion=criterion, seed=seed, **kwargs)


# --- normalised entropy ---------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 8])
def test_uniform_entropy_is_one_and_one_hot_is_zero(n):
    assert normalized_entropy(np.full(n, 1.0 / n)) == pytest.approx(1.0, abs=1e-15)
    assert normalized_entropy(np.eye(n)[n - 1]) == 0.0
    batch = normalized_entropy(np.stack([np.full(n, 1.0 / n), np.eye(n)[0]]))
    np.testing.assert_allclose(batch, [1.0, 0.0], atol=1e-15)


def test_entropy_of_a_half_support_and_of_a_tensor():
    # uniform on 2 of 4 actions: log 2 / log 4 = 1/2 exactly
    assert normalized_entropy([0.5, 0.5, 0.0, 0.0]) == pytest.approx(0.5, abs=1e-15)
    out = normalized_entropy(torch.tensor([[0.25] * 4, [0.5, 0.5, 0.0, 0.0]], dtype=torch.float64))
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.tensor([1.0, 0.5], dtype=torch.float64), rtol=0, atol=1e-15)


@pytest.mark.parametrize("probs, error", [
    ([0.5, 0.6], ConfigurationError),     # does not sum to 1
    ([1.2, -0.2], ConfigurationError),    # negative entry
    ([1.0], ConfigurationError),          # one action: log|A| = 0
    ([np.nan, 1.0], NonFiniteError),
])
def test_entropy_refuses_bad_probabilities(probs, error):
    with pytest.raises(error):
        normalized_entropy(probs)


# --- the criterion --------------------------------------------------------------------------
def test_kappa_to_infinity_is_entropy_only():
    rng = np.random.default_rng(0)
    h = rng.uniform(0.01, 1.0, size=(500, 2))
    tau = rng.uniform(0.0, 1000.0, size=(500, 2))
    entropy_only = np.argmax(-h, axis=1)
    np.testing.assert_array_equal(np.argmax(expert_values(h, tau, float("inf")), axis=1), entropy_only)
    # finite but large κ: θ ≤ exp(−κ·0.01) = e^{-100} is far below the smallest entropy gap here
    assert np.abs(h[:, 0] - h[:, 1]).min() > 1e-6
    np.testing.assert_array_equal(np.argmax(expert_values(h, tau, 1e4), axis=1), entropy_only)
    assert cost_weight(h[:, 0], 1e4).max() <= np.exp(-1e4 * 0.01)
    # κ = 0: θ = 1, the full cost term
    np.testing.assert_allclose(expert_values(h, tau, 0.0), -(h + tau / tau.max(axis=1, keepdims=True)), rtol=0, atol=1e-15)


def test_kappa_infinity_run_equals_entropy_only_run():
    traces = []
    for criterion, kappa in (("entropy_cost", float("inf")), ("entropy", 3.0)):
        world = GridWorld(TWO_ROOMS, slip=0.1)
        traces.append(simulate(world, agent(world, criterion, kappa=kappa), 300, seed=1))
    np.testing.assert_array_equal(traces[0].winner, traces[1].winner)
    np.testing.assert_array_equal(traces[0].reward, traces[1].reward)


@pytest.mark.parametrize("kappa", [0.0, 1.0, 3.0, 10.0])
def test_equal_entropies_choose_the_cheaper_expert(kappa):
    # any finite κ: θ·(ĉ_MF − ĉ_MB) ≥ e^{-10}·1e-3 here, far above round-off on v ~ 1 (at κ ≈ 50
    # θ ~ e^{-50} vanishes in float64 next to Ĥ and the choice becomes a tie)
    rng = np.random.default_rng(1)
    h = np.repeat(rng.uniform(0.0, 1.0, size=(200, 1)), 2, axis=1)
    tau = rng.uniform(1.0, 1000.0, size=(200, 2))
    np.testing.assert_array_equal(np.argmax(expert_values(h, tau, kappa), axis=1), np.argmin(tau, axis=1))
    # and through the arbiter's own statistics
    world = GridWorld(TWO_ROOMS)
    arbiter = agent(world, kappa=kappa)
    s = world.start
    arbiter.p_bar[:, s] = np.array([0.3, 0.3, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05])
    arbiter.visited[s] = True
    for cheaper, tau_s in ((0, [8.0, 900.0]), (1, [900.0, 8.0])):
        arbiter.tau[:, s] = tau_s
        assert int(np.argmax(arbiter.values(s))) == cheaper


def test_only_the_winner_plans():
    world = GridWorld(TWO_ROOMS, slip=0.1)
    arbiter = agent(world, "mf")
    simulate(world, arbiter, 200, seed=0)
    assert np.all(arbiter.experts[1].Q == 1.0)  # MB never ran value iteration: its table is still the initial one
    world = GridWorld(TWO_ROOMS, slip=0.1)
    arbiter = agent(world, "entropy_cost")
    trace = simulate(world, arbiter, 600, seed=0)
    first = np.zeros(len(trace.state), dtype=bool)
    first[np.unique(trace.state, return_index=True)[1]] = True
    mf_only = (trace.winner == 0) & ~first
    assert mf_only.any() and np.all(trace.operations[mf_only] == world.n_actions)  # a table read, no sweep


# --- the experts ----------------------------------------------------------------------------
def exact_q(P, R, gamma):
    """Policy iteration with exact linear solves: the solution of Q = R + γ P max Q."""
    S, A = R.shape
    policy = np.zeros(S, dtype=int)
    while True:
        P_pi = P[np.arange(S), policy]
        V = np.linalg.solve(np.eye(S) - gamma * P_pi, R[np.arange(S), policy])
        Q = R + gamma * P @ V
        new = np.argmax(Q, axis=1)
        if np.array_equal(new, policy) or np.allclose(Q.max(axis=1), V, rtol=0, atol=1e-13):
            return Q
        policy = new


def test_value_iteration_solves_a_known_mdp():
    rng = np.random.default_rng(0)
    S, A, gamma, tol = 7, 3, 0.9, 1e-10
    P = rng.uniform(size=(S, A, S))
    P *= rng.uniform(0.8, 1.0, size=(S, A, 1)) / P.sum(axis=2, keepdims=True)  # sub-stochastic: a terminal exit
    R = rng.normal(size=(S, A))
    Q_star = exact_q(P, R, gamma)
    np.testing.assert_allclose(Q_star, R + gamma * P @ Q_star.max(axis=1), rtol=0, atol=1e-12)  # it is the fixed point
    Q, sweeps = value_iteration(P, R, gamma, tol)
    assert sweeps > 1
    # contraction: ‖Q − Q*‖∞ ≤ γ/(1−γ)·‖Q_k − Q_{k−1}‖∞ ≤ γ/(1−γ)·tol
    assert np.abs(Q - Q_star).max() <= gamma / (1 - gamma) * tol
    with pytest.raises(ConvergenceError):
        value_iteration(P, R, gamma, tol, max_sweeps=3)


def test_model_based_plans_a_deterministic_chain():
    world = GridWorld(["#S....G#"], moves=4)  # 6 states, 5 steps to the goal
    mb = ModelBased(world.n_states, world.n_actions, gamma=0.9, tol=1e-12, q_init=0.0)
    rng = np.random.default_rng(0)
    for s in range(world.n_states):
        if s != world.goal:
            for a in range(world.n_actions):
                nxt, r, done = world.step(s, a, rng)
                mb.update(s, a, r, nxt, done)
    mb.infer(world.start)
    d = world.distances()
    for s in range(world.n_states):
        if s != world.goal:  # the goal is never left (the episode ends), so it has no modelled action
            assert mb.Q[s].max() == pytest.approx(0.9 ** (d[s] - 1), abs=1e-10)


def test_q_learning_converges_on_a_chain():
    world = GridWorld(["#S.....G#"], moves=4)  # deterministic, reward 1 on entering the goal
    gamma, alpha = 0.9, 0.6
    mf = QLearning(world.n_states, world.n_actions, alpha=alpha, gamma=gamma, q_init=1.0)
    rng = np.random.default_rng(0)
    for _ in range(600):  # every pair once per sweep: the error contracts by ≥ 1 − α(1−γ) = 0.94 per sweep
        for s in range(world.n_states):
            if s != world.goal:
                for a in range(world.n_actions):
                    nxt, r, done = world.step(s, a, rng)
                    mf.update(s, a, r, nxt, done)
    d = world.distances()
    for s in range(world.n_states):
        if s != world.goal:  # 0.94^600 ≈ 1e-16: round-off only
            assert mf.Q[s].max() == pytest.approx(gamma ** (d[s] - 1), abs=1e-12)
            assert world.step(s, int(np.argmax(mf.Q[s])), rng)[0] == world.state(world.cells[s]) + 1  # moves east


# --- the world and bad input ----------------------------------------------------------------
def test_world_dynamics_and_changes():
    world = GridWorld(TWO_ROOMS, slip=0.1)
    P = world.transition_matrix()
    np.testing.assert_allclose(P.sum(axis=2), 1.0, rtol=0, atol=1e-14)
    assert world.n_states == 28 and world.n_actions == 8
    assert world.distances()[world.start] == 6
    world.close((1, 4))  # the short corridor closes: the long one is 8 steps
    assert world.distances()[world.start] == 8
    assert "#S..#..G#" in world.render()
    world.move_goal((6, 2))  # into the dead end
    assert world.distances()[world.start] == 5


def test_unreachable_goal_is_refused():
    with pytest.raises(ConfigurationError, match="cannot be reached"):
        GridWorld(["#S#G#"])
    world = GridWorld(TWO_ROOMS)
    world.close((1, 4))
    with pytest.raises(ConfigurationError, match="cannot be reached"):
        world.close((4, 4))  # both corridors closed
    assert world.distances()[world.start] == 8  # the refused change was undone
    island = GridWorld(["#S.G#.#"])  # (0, 5) is free but walled off
    with pytest.raises(ConfigurationError, match="cannot be reached"):
        island.move_goal((0, 5))
    assert island.goal == island.state((0, 3))


@pytest.mark.parametrize("make", [
    lambda: GridWorld(["#S.G#", "#..#"]),                 # ragged rows
    lambda: GridWorld(["#S.x.G#"]),                       # unknown character
    lambda: GridWorld(["#S.S.G#"]),                       # two starts
    lambda: GridWorld(["#S..G#"], slip=1.0),              # slip is not a probability < 1
    lambda: GridWorld(["#S..G#"], moves=6),
    lambda: GridWorld(TWO_ROOMS).close((1, 1)),           # the start cannot be closed
    lambda: GridWorld(TWO_ROOMS).move_goal((0, 0)),       # a wall
    lambda: GridWorld(TWO_ROOMS).move_goal((1, 1)),       # the start
    lambda: QLearning(5, 4, alpha=0.0),
    lambda: ModelBased(5, 4, window=0),
    lambda: ModelBased(5, 4, gamma=1.0),
    lambda: value_iteration(np.zeros((2, 2, 3)), np.zeros((2, 2)), 0.9),
])
def test_bad_world_and_expert_settings_are_refused(make):
    with pytest.raises(ConfigurationError):
        make()


def test_non_finite_initial_values_are_refused():
    with pytest.raises(NonFiniteError):
        QLearning(5, 4, q_init=float("nan"))
    with pytest.raises(NonFiniteError):
        ModelBased(5, 4, q_init=float("inf"))


@pytest.mark.parametrize("kwargs, match", [
    ({"kappa": -1.0}, "kappa must be ≥ 0"),
    ({"kappa": float("nan")}, "kappa must be ≥ 0"),
    ({"kappa": "big"}, "kappa must be a real number"),
    ({"criterion": "greedy"}, "unknown criterion"),
    ({"cost": "joules"}, "unknown cost"),
    ({"alpha_f": 0.0}, "alpha_f"),
])
def test_bad_arbiter_settings_are_refused(kwargs, match):
    world = GridWorld(TWO_ROOMS)
    with pytest.raises(ConfigurationError, match=match):
        agent(world, **{"criterion": "entropy_cost", **kwargs})


def test_experts_that_do_not_fit_are_refused():
    world = GridWorld(TWO_ROOMS)
    with pytest.raises(ConfigurationError, match="share states and actions"):
        Arbiter(QLearning(3, 8), ModelBased(4, 8))
    with pytest.raises(ConfigurationError, match="the world has"):
        simulate(GridWorld(["#S.G#"]), agent(world), 10)
    with pytest.raises(ConfigurationError, match="does not exist"):
        agent(world).act(world.n_states)


def test_names_and_config_as_documented():
    import yaml

    import eqprop

    assert eqprop.arbitration.normalized_entropy(probs=[0.5, 0.5]) == pytest.approx(1.0)
    for name in ("GridWorld", "QLearning", "ModelBased", "Arbiter"):
        assert hasattr(eqprop.arbitration, name)
    # the example's config builds every object with the documented keyword arguments
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "arbitration" / "gridworld.yaml").read_text())
    world = GridWorld(cfg["world"]["layout"], slip=cfg["world"]["slip"], moves=cfg["world"]["moves"])
    assert world.render() == GridWorld(TWO_ROOMS).render()
    arbiter = Arbiter(QLearning(world.n_states, world.n_actions, **cfg["mf"]), ModelBased(world.n_states, world.n_actions, **cfg["mb"]),
                      **cfg["arbiter"])
    assert arbiter.kappa == 3.0
    for change in cfg["scenarios"].values():
        (kind, cell), = change.items()
        getattr(GridWorld(TWO_ROOMS), kind)(tuple(cell))  # each scenario's change is accepted


# --- the paper's claims, at small size --------------------------------------------------------
def test_claims_direction_at_small_size():
    """Corridor closes halfway through 1600 steps, 2 seeds. Measured: reward 0.93 of MB's at 0.24 of
    its planning operations; MF controls 97 % of the 400 steps before the change; MB's share is 2.4×
    larger in the 400 steps after it than in the 400 before. Thresholds leave margin for the
    direction only (the full-size figures are the example's)."""
    steps, change, window = 1600, 800, 400
    results = {}
    for criterion in ("mb", "entropy_cost"):
        rows = []
        for seed in (0, 1):
            world = GridWorld(TWO_ROOMS, slip=0.1)
            tr = simulate(world, agent(world, criterion, seed), steps, changes={change: lambda w: w.close((1, 4))}, seed=seed + 1000)
            mb = tr.winner == 1
            rows.append([tr.reward.sum(), tr.operations.sum(), mb[change - window:change].mean(), mb[change:change + window].mean()])
        results[criterion] = np.mean(rows, axis=0)
    ec, mb = results["entropy_cost"], results["mb"]
    assert ec[0] >= 0.8 * mb[0]          # reward close to MB alone
    assert ec[1] <= 0.5 * mb[1]          # at most half of its planning
    assert ec[2] < 0.2                   # MF in control in the stable phase
    assert ec[3] > ec[2]                 # MB takes more control after the change
