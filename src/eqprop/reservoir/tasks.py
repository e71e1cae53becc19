"""The three demonstrations of the conceptor control loop (Pourcel, Goldmann, Fischer & Soriano 2024).

Each function runs one task with static control and with the loop, on the same network, and
returns the measured numbers; the examples (examples/conceptor_*.py) plot them and the tests
(tests/test_reservoir_tasks.py) run them at a small size. Trajectories are batched: one row per
interpolation weight λ or per trial.

- ``interpolation``: target C_λ = λC_1 + (1 − λ)C_2 with λ scanned slowly, also outside [0, 1];
  the period of the autonomous output against λ, and the width of the λ-range over which it is
  a regular oscillation whose period is strictly monotone in λ.
- ``degradation``: after loading one pattern, K random neurons are clamped to 0; a trial fails
  when the variance of the states along their first principal component falls below 10 % of
  that of the intact network (the limit cycle collapsed to a fixed point).
- ``distortion``: a random feature conceptor network loaded with one pattern receives a
  distorted copy of it, blended with its own output, u = τ p̃ + (1 − τ) y; the NRMSE of its
  output against the clean pattern, static conceptor weights versus the loop, over distortion
  strengths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..errors import ConfigurationError
from .control import ConceptorControl
from .esn import EchoStateNetwork, Loading
from .conceptor import check_aperture
from .features import FeatureLoading, RandomFeatureConceptor, adapt_weights, check_rate

__all__ = [
    "sines", "oscillation_period", "monotone_range", "first_pc_variance", "interpolation", "degradation",
    "InterpolationResult", "DegradationResult", "distort", "distortion", "DistortionResult",
]


def sines(periods: Sequence[float], length: int, dtype: torch.dtype = torch.float64) -> list[Tensor]:
    """Patterns p_j(k) = sin(2πk / T_j), k = 0..length−1, each of shape [length, 1]."""
    k = torch.arange(int(length), dtype=dtype)
    return [torch.sin(2 * math.pi * k / float(T))[:, None] for T in periods]


def oscillation_period(y: Tensor, min_std: float = 0.05, regularity: float = 0.05) -> Tensor:
    """Period of each column of ``y`` [T, B] from its upward zero crossings (linear interpolation).

    NaN where the signal is not a regular oscillation: standard deviation below ``min_std``
    (a fixed point), fewer than three crossings, or crossing intervals whose relative spread
    exceeds ``regularity`` (irregular or chaotic).
    """
    y = y - y.mean(0)
    periods = torch.full((y.shape[1],), float("nan"), dtype=y.dtype)
    for j in range(y.shape[1]):
        s = y[:, j]
        if s.std() < min_std:
            continue
        idx = torch.nonzero((s[:-1] < 0) & (s[1:] >= 0)).flatten()
        if len(idx) < 3:
            continue
        times = idx + (-s[idx]) / (s[idx + 1] - s[idx])
        gaps = times.diff()
        if gaps.std() / gaps.mean() <= regularity:
            periods[j] = gaps.mean()
    return periods


def monotone_range(grid: Tensor, values: Tensor) -> tuple[float, float]:
    """The longest run of consecutive grid points with finite values, strictly monotone (either sign).

    Returns its end points (lo, hi) on the grid; (nan, nan) if no two consecutive values qualify.
    """
    best, best_len = (float("nan"), float("nan")), 0
    for sign in (1.0, -1.0):
        start = 0
        for i in range(1, len(values) + 1):
            ok = i < len(values) and bool(torch.isfinite(values[i - 1:i + 1]).all()) and sign * (values[i] - values[i - 1]) > 0
            if not ok:
                if i - 1 > start and i - 1 - start > best_len:
                    best, best_len = (float(grid[start]), float(grid[i - 1])), i - 1 - start
                start = i
    return best


@dataclass
class InterpolationResult:
    lambdas: Tensor                   # mean λ of each measurement window, sorted
    static_period: Tensor             # period of the output in each window (NaN: no regular oscillation)
    adaptive_period: Tensor
    static_range: tuple[float, float]  # widest λ-range of regular, strictly monotone period
    adaptive_range: tuple[float, float]

    @property
    def static_width(self) -> float:
        return self.static_range[1] - self.static_range[0]

    @property
    def adaptive_width(self) -> float:
        return self.adaptive_range[1] - self.adaptive_range[0]


def interpolation(esn: EchoStateNetwork, loading: Loading, lambda_min: float = -3.0, lambda_max: float = 4.0,
                  start: float = 0.5, steps: int = 14000, window: int = 250, aperture: float = 200.0,
                  rate: float = 1e-4, gain: float = 0.5, regularity: float = 0.1) -> InterpolationResult:
    """Period of the output while λ is scanned slowly in C_λ = λC_1 + (1 − λ)C_2, static versus the loop.

    Two scans run side by side (a batch of two), both from λ = ``start`` and the mean of the two
    loaded patterns' final states: one to ``lambda_min``, one to ``lambda_max``, linearly over
    ``steps`` steps each, the target reassigned at every step. The period is measured in
    consecutive windows of ``window`` steps (``oscillation_period`` with ``regularity``) and
    assigned to the window's mean λ.
    """
    if len(loading.conceptors) != 2:
        raise ConfigurationError(f"interpolation needs a network loaded with exactly two patterns, got {len(loading.conceptors)}.")
    if not lambda_min < start < lambda_max:
        raise ConfigurationError(f"the scan needs lambda_min < start < lambda_max, got {lambda_min}, {start}, {lambda_max}.")
    if not 0 < 3 * window <= steps:
        raise ConfigurationError(f"window must be positive and fit at least three times in steps = {steps}, got {window}.")
    C1, C2 = loading.conceptors
    lam = torch.stack([torch.linspace(start, lambda_min, steps, dtype=esn.dtype),
                       torch.linspace(start, lambda_max, steps, dtype=esn.dtype)], 1)   # [steps, 2]
    mix = lambda k: lam[k][:, None, None] * C1 + (1 - lam[k][:, None, None]) * C2    # noqa: E731
    x0 = _start(loading, 2)
    control = ConceptorControl(mix(0), aperture=aperture, rate=rate, gain=gain)
    xs, xa, ys, ya = x0, x0, [], []
    for k in range(steps):
        target = mix(k)
        xs = esn.step(xs, None, target)
        control.target = target
        xa = control.step(esn, xa)
        ys.append(esn.output(xs)[:, 0])
        ya.append(esn.output(xa)[:, 0])
    ys, ya = torch.stack(ys), torch.stack(ya)
    starts = range(0, steps - window + 1, window)
    centres = torch.cat([lam[i:i + window].mean(0) for i in starts])
    periods = [torch.cat([oscillation_period(y[i:i + window], regularity=regularity) for i in starts]) for y in (ys, ya)]
    order = torch.argsort(centres)
    grid, ps, pa = centres[order], periods[0][order], periods[1][order]
    return InterpolationResult(grid, ps, pa, monotone_range(grid, ps), monotone_range(grid, pa))


def _start(loading: Loading, batch: int) -> Tensor:
    x0 = torch.stack(loading.final_states).mean(0)
    return x0.expand(batch, -1).clone()


def first_pc_variance(states: Tensor) -> Tensor:
    """Variance of ``states`` [T, (B,) N] along their first principal component, per trajectory."""
    X = states if states.dim() == 3 else states[:, None]
    X = X - X.mean(0)
    cov = torch.einsum("tbi,tbj->bij", X, X) / X.shape[0]
    return torch.linalg.eigvalsh(cov)[:, -1]


@dataclass
class DegradationResult:
    removed: list[int]
    static_failures: list[float]      # fraction of trials that failed, per number of removed neurons
    adaptive_failures: list[float]


def degradation(esn: EchoStateNetwork, loading: Loading, removed: Sequence[int], trials: int = 50, before: int = 200,
                after: int = 1000, measure: int = 500, aperture: float = 25.0, rate: float = 1e-2, gain: float = 0.1,
                threshold: float = 0.1, seed: int = 0) -> DegradationResult:
    """Failure rate against the number K of neurons clamped to 0 after ``before`` steps (module docstring).

    The network is loaded with one pattern (the first conceptor is the target); the same random
    subsets are removed under static control and under the loop.
    """
    if not 0 < measure <= after:
        raise ConfigurationError(f"measure must be in (0, after = {after}], got {measure}.")
    N, target = esn.size, loading.conceptors[0]
    x0 = loading.final_states[0].expand(trials, N).clone()
    intact = first_pc_variance(esn.run(loading.final_states[0], before + after, conceptor=target)[-measure:])[0]
    generator = torch.Generator().manual_seed(int(seed))
    static_failures, adaptive_failures = [], []
    for K in removed:
        if not 0 <= int(K) <= N:
            raise ConfigurationError(f"the number of removed neurons must be in [0, {N}], got {K}.")
        mask = torch.ones(trials, N, dtype=esn.dtype)
        for t in range(trials):
            mask[t, torch.randperm(N, generator=generator)[:int(K)]] = 0.0
        control = ConceptorControl(target, aperture=aperture, rate=rate, gain=gain)
        xs, xa = x0, x0
        for _ in range(before):
            xs = esn.step(xs, None, target)
            xa = control.step(esn, xa)
        static = esn.run(xs, after, conceptor=target, mask=mask)[-measure:]
        adaptive = control.run(esn, xa, after, mask=mask)[-measure:]
        static_failures.append(float((first_pc_variance(static) < threshold * intact).double().mean()))
        adaptive_failures.append(float((first_pc_variance(adaptive) < threshold * intact).double().mean()))
    return DegradationResult([int(K) for K in removed], static_failures, adaptive_failures)


DISTORTIONS = ("gain", "offset", "noise")


def distort(clean: Tensor, kind: str, strength: float, generator: torch.Generator | None = None) -> Tensor:
    """p̃ = s·p (``gain``), p + s (``offset``) or p + s·ξ with ξ ~ N(0, 1) i.i.d. (``noise``)."""
    if kind == "gain":
        return strength * clean
    if kind == "offset":
        return clean + strength
    if kind == "noise":
        return clean + strength * torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
    raise ConfigurationError(f"unknown distortion {kind!r}: choose one of {', '.join(DISTORTIONS)}.")


@dataclass
class DistortionResult:
    kind: str
    strengths: list[float]
    static_nrmse: list[float]         # NRMSE of the output against the clean pattern, per strength
    adaptive_nrmse: list[float]


def distortion(net: RandomFeatureConceptor, loading: FeatureLoading, clean: Tensor, kind: str = "gain",
               strengths: Sequence[float] = (0.2, 0.4, 0.6, 0.8, 1.0), trust: float = 0.3, measure: int = 1000,
               aperture: float = 8.0, rate: float = 0.5, gain: float = 0.1, seed: int = 0) -> DistortionResult:
    """Output error of a loaded random feature conceptor network fed a distorted pattern, static versus the loop.

    ``clean`` [T] (or [T, 1]) continues the loaded pattern from where loading stopped (the run
    starts at ``loading.final_features``). At each step the input blends the distorted pattern
    p̃ = ``distort(clean, kind, s)`` with the network's own output y(n) = D z(n),
    u(n) = τ p̃(n) + (1 − τ) y(n) (τ = ``trust``), and the error is
    NRMSE = ‖y − p‖ / (√T' std p) over the last ``measure`` steps, against the clean p.
    Static control keeps the loaded weights c; the loop runs the rule on an estimate c_a (from
    the loaded c, with ``aperture`` and ``rate``) and applies c_a + β(c − c_a), β = ``gain``.
    """
    if net.inputs != 1:
        raise ConfigurationError(f"distortion runs a network with one input (inputs=1), got inputs={net.inputs}.")
    clean = net.as_pattern(clean)[:, 0]
    aperture, rate = check_aperture(aperture), check_rate(rate)
    if len(strengths) == 0:
        raise ConfigurationError("distortion needs at least one strength.")
    if isinstance(trust, bool) or not isinstance(trust, (int, float)) or not 0 <= trust <= 1:
        raise ConfigurationError(f"trust must be in [0, 1] (the weight of the external input), got {trust!r}.")
    if isinstance(measure, bool) or not isinstance(measure, int) or not 1 < measure <= clean.shape[0]:
        raise ConfigurationError(f"measure must be an integer in [2, T = {clean.shape[0]}], got {measure!r}.")
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not 0 <= gain <= 1:
        raise ConfigurationError(f"gain must be a number in [0, 1] (β = 1 is static control), got {gain!r}.")
    generator = torch.Generator().manual_seed(int(seed))
    inputs = torch.stack([distort(clean, kind, float(s), generator) for s in strengths], 1)  # [T, B]
    B, c = inputs.shape[1], loading.weights
    errors = []
    for beta in (1.0, float(gain)):
        z = loading.final_features.expand(B, -1).clone()
        estimate, ys = c.expand(B, -1).clone(), []
        for n in range(clean.shape[0]):
            y = net.output(z)                                # [B, 1], the prediction of p(n)
            ys.append(y[:, 0])
            u = trust * inputs[n][:, None] + (1 - trust) * y
            z = net.step(z, u, c if beta == 1.0 else (1 - beta) * estimate + beta * c)
            if beta != 1.0:
                estimate = adapt_weights(estimate, z, aperture, rate)
        y = torch.stack(ys)[-measure:]
        p = clean[-measure:, None]
        errors.append([float(e) for e in (y - p).pow(2).mean(0).sqrt() / p.std()])
    return DistortionResult(kind, [float(s) for s in strengths], errors[0], errors[1])
