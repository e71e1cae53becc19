"""The two experts of Dromnelle et al. 2020/2022: tabular Q-learning and a model-based planner.

Both learn on every step from the executed transition (whichever expert chose it) and both turn
their action values into probabilities with a softmax of inverse temperature β:

    p(a | s) = exp(β Q(s, a)) / Σ_b exp(β Q(s, b))

* :class:`QLearning` (model-free, MF): ``Q(s,a) += α (r + γ max_b Q(s',b) − Q(s,a))`` (the
  target is ``r`` when the episode ends); inference reads one row of the table.
* :class:`ModelBased` (MB): a transition model P(s' | s, a), the frequencies over the last
  ``window`` outcomes of each (s, a), and a reward model r(s'), the last reward received on
  entering s' (and whether entering it ended the episode); inference runs value-iteration sweeps
  ``Q(s,a) ← Σ_s' P(s'|s,a) [r(s') + γ (1 − done(s')) max_b Q(s',b)]`` over the pairs tried so
  far until ``Σ|ΔQ| < tol``; pairs never tried keep their initial value (optimism explores).

``infer(state)`` returns the counted planning operations: the number of (s, a) backups for MB
(sweeps × modelled pairs), the number of table entries read for MF (|A|).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ..errors import ConfigurationError, ConvergenceError, NonFiniteError

__all__ = ["normalized_entropy", "softmax", "value_iteration", "QLearning", "ModelBased"]


def _as_numpy(probs) -> tuple[np.ndarray, object]:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency, but this module needs numpy only
        torch = None
    if torch is not None and isinstance(probs, torch.Tensor):
        return probs.detach().cpu().double().numpy(), probs
    return np.asarray(probs, dtype=np.float64), None


def normalized_entropy(probs):
    """Ĥ(p) = −Σ_a p_a log p_a / log|A| over the last axis: 1 for a uniform vector, 0 for a one-hot one.

    ``probs``: a numpy array (or list, or torch tensor) [..., |A|] of non-negative entries that
    sum to 1 over the last axis, |A| ≥ 2. Returns an array (a tensor for a tensor) of shape [...].
    """
    p, tensor = _as_numpy(probs)
    if p.ndim == 0 or p.shape[-1] < 2:
        raise ConfigurationError(f"probs needs at least 2 actions on its last axis, got shape {p.shape}; log|A| is 0 for one action.")
    if not np.isfinite(p).all():
        raise NonFiniteError("probs contains NaN or infinity; pass finite probabilities.")
    if (p < 0).any() or not np.allclose(p.sum(axis=-1), 1.0, rtol=0.0, atol=1e-6):
        raise ConfigurationError("probs must be non-negative and sum to 1 over the last axis; normalise them first.")
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)  # 0 log 0 = 0
    h = -plogp.sum(axis=-1) / np.log(p.shape[-1])
    h = np.clip(h, 0.0, 1.0) + 0.0  # round-off only; no -0.0
    if tensor is not None:
        import torch

        return torch.as_tensor(h, dtype=tensor.dtype if tensor.dtype.is_floating_point else torch.float64)
    return h


def softmax(q: np.ndarray, beta: float) -> np.ndarray:
    """exp(βq) / Σ exp(βq) over the last axis, computed stably."""
    z = beta * (np.asarray(q, dtype=np.float64) - np.max(q, axis=-1, keepdims=True))
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def value_iteration(P: np.ndarray, R: np.ndarray, gamma: float, tol: float = 0.01, *, Q: np.ndarray | None = None,
                    mask: np.ndarray | None = None, max_sweeps: int = 100_000) -> tuple[np.ndarray, int]:
    """Synchronous value iteration on ``Q = R + γ P max_b Q`` until ``Σ|ΔQ| < tol``.

    ``P``: [S, A, S], each row summing to at most 1 (missing mass: an absorbing terminal of
    value 0); ``R``: [S, A]; ``Q``: the start (a warm start), zeros by default; ``mask``: [S, A]
    bool, the pairs that are backed up (the others keep their value). Returns ``(Q, sweeps)``.
    The update is a γ-contraction in the max norm, so the result is within γ/(1−γ)·tol of the
    exact solution.
    """
    P = np.asarray(P, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    S, A = R.shape
    if P.shape != (S, A, S):
        raise ConfigurationError(f"P must have shape [S, A, S] = {(S, A, S)} to match R {R.shape}, got {P.shape}.")
    if not 0.0 <= gamma < 1.0:
        raise ConfigurationError(f"gamma must be in [0, 1) for value iteration to converge, got {gamma}.")
    if not tol > 0.0:
        raise ConfigurationError(f"tol must be positive, got {tol}.")
    Q = np.zeros((S, A)) if Q is None else np.array(Q, dtype=np.float64)
    mask = np.ones((S, A), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    flat = P.reshape(S * A, S)
    for sweep in range(1, max_sweeps + 1):
        new = np.where(mask, R + gamma * (flat @ Q.max(axis=1)).reshape(S, A), Q)
        delta = np.abs(new - Q).sum()
        Q = new
        if delta < tol:
            return Q, sweep
    raise ConvergenceError(f"value iteration did not reach Σ|ΔQ| < {tol} in {max_sweeps} sweeps (last {delta:.3g}); raise max_sweeps or tol.")


def _check_common(n_states: int, n_actions: int, gamma: float, beta: float, q_init: float) -> None:
    if int(n_states) < 1 or int(n_actions) < 2:
        raise ConfigurationError(f"need at least 1 state and 2 actions, got n_states={n_states}, n_actions={n_actions}.")
    if not 0.0 <= gamma < 1.0:
        raise ConfigurationError(f"gamma must be in [0, 1), got {gamma}.")
    if not (np.isfinite(beta) and beta >= 0.0):
        raise ConfigurationError(f"beta (softmax inverse temperature) must be finite and ≥ 0, got {beta}.")
    if not np.isfinite(q_init):
        raise NonFiniteError(f"q_init must be a finite initial action value, got {q_init}.")


class QLearning:
    """Tabular Q-learning (Watkins 1989), the model-free expert.

    ``Q(s,a) += α (r + γ max_b Q(s',b) − Q(s,a))``, with target ``r`` when the episode ends.
    Defaults are those of Dromnelle et al.: α = 0.6, γ = 0.9, β = 50, Q initialised to 1.
    On a deterministic chain with reward r on entering the goal it converges to γ^{d−1} r at
    distance d.
    """

    name = "MF"

    def __init__(self, n_states: int, n_actions: int, *, alpha: float = 0.6, gamma: float = 0.9, beta: float = 50.0,
                 q_init: float = 1.0) -> None:
        _check_common(n_states, n_actions, gamma, beta, q_init)
        if not 0.0 < alpha <= 1.0:
            raise ConfigurationError(f"alpha (learning rate) must be in (0, 1], got {alpha}.")
        self.alpha, self.gamma, self.beta = float(alpha), float(gamma), float(beta)
        self.Q = np.full((int(n_states), int(n_actions)), float(q_init))

    def probabilities(self, state: int) -> np.ndarray:
        """Softmax of the current (possibly stale) action values in ``state``."""
        return softmax(self.Q[state], self.beta)

    def infer(self, state: int) -> int:
        """Read the table: nothing to compute; returns the operations counted, |A| reads."""
        return self.Q.shape[1]

    def update(self, state: int, action: int, reward: float, next_state: int, done: bool) -> None:
        target = reward if done else reward + self.gamma * self.Q[next_state].max()
        self.Q[state, action] += self.alpha * (target - self.Q[state, action])


class ModelBased:
    """Model-based expert: sliding-window transition and reward models plus value iteration.

    P(s'|s,a) is the frequency of s' among the last ``window`` outcomes of (s, a) (10 in
    Dromnelle et al.), r(s') the last reward received on entering s'; an s' whose entry ended
    the episode (the goal) counts as terminal, of value 0. :meth:`infer` runs
    :func:`value_iteration` from the current Q (warm start) over the pairs tried so far, until
    ``Σ|ΔQ| < tol`` (0.01). Defaults: γ = 0.9, β = 50, unknown pairs at Q = 1.
    """

    name = "MB"

    def __init__(self, n_states: int, n_actions: int, *, gamma: float = 0.9, beta: float = 50.0, window: int = 10,
                 tol: float = 0.01, q_init: float = 1.0) -> None:
        _check_common(n_states, n_actions, gamma, beta, q_init)
        if int(window) < 1:
            raise ConfigurationError(f"window must be a positive number of outcomes, got {window}.")
        if not tol > 0.0:
            raise ConfigurationError(f"tol must be positive, got {tol}.")
        S, A = int(n_states), int(n_actions)
        self.gamma, self.beta, self.window, self.tol = float(gamma), float(beta), int(window), float(tol)
        self.Q = np.full((S, A), float(q_init))
        self._outcomes = [[deque() for _ in range(A)] for _ in range(S)]
        self._counts = np.zeros((S, A, S))  # next states among the last `window` outcomes of (s, a)
        self.reward = np.zeros(S)  # r(s'): the last reward received on entering s'
        self.terminal = np.zeros(S, dtype=bool)  # whether entering s' last ended the episode
        self.sweeps = 0  # of the last inference

    @property
    def known(self) -> np.ndarray:
        """[S, A] bool: the pairs with at least one outcome in their window."""
        return self._counts.sum(axis=2) > 0

    def model(self) -> tuple[np.ndarray, np.ndarray]:
        """The learned ``(P [S, A, S], R [S, A])`` of :func:`value_iteration`; zero rows for pairs never tried.

        P(s'|s,a) = window frequency, times 0 where entering s' ends the episode (terminal);
        R(s,a) = Σ_s' P(s'|s,a) r(s').
        """
        n = np.maximum(self._counts.sum(axis=2, keepdims=True), 1.0)
        frequency = self._counts / n
        return frequency * ~self.terminal, frequency @ self.reward

    def probabilities(self, state: int) -> np.ndarray:
        return softmax(self.Q[state], self.beta)

    def infer(self, state: int) -> int:
        """Plan by value iteration; returns the operations counted, sweeps × modelled pairs."""
        known = self.known
        if not known.any():
            self.sweeps = 0
            return 0
        P, R = self.model()
        self.Q, self.sweeps = value_iteration(P, R, self.gamma, self.tol, Q=self.Q, mask=known)
        return self.sweeps * int(known.sum())

    def update(self, state: int, action: int, reward: float, next_state: int, done: bool) -> None:
        window = self._outcomes[state][action]
        if len(window) == self.window:
            self._counts[state, action, window.popleft()] -= 1
        window.append(next_state)
        self._counts[state, action, next_state] += 1
        self.reward[next_state] = reward
        self.terminal[next_state] = done
