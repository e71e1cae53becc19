"""The conceptor control loop against static control, at a small size (the examples run them larger).

Fixed seeds: each assertion is the paper's qualitative claim measured on one network, with the
margin seen at this size stated next to it (docs/conceptors.md has the figures at example size).
"""

import pytest
import torch

from eqprop.reservoir import EchoStateNetwork
from eqprop.reservoir.tasks import degradation, interpolation, monotone_range, oscillation_period, sines


# N ≤ 200 matrices, stepped one at a time: one thread (the conftest fixture).
pytestmark = pytest.mark.usefixtures("one_thread")


def test_oscillation_period_and_monotone_range_on_known_signals():
    k = torch.arange(400.0)
    y = torch.stack([torch.sin(2 * torch.pi * k / 17.5), torch.zeros(400), torch.sin(2 * torch.pi * k / 9 + 0.3)], 1)
    period = oscillation_period(y)
    assert abs(period[0] - 17.5) < 1e-2 and torch.isnan(period[1]) and abs(period[2] - 9) < 1e-2
    grid = torch.arange(8.0)
    values = torch.tensor([3.0, 1.0, 2.0, 4.0, 5.0, float("nan"), 7.0, 6.0])
    assert monotone_range(grid, values) == (1.0, 4.0)  # longest strictly increasing run with finite values


def test_interpolated_period_is_monotone_over_a_wider_range_of_lambda_under_the_loop():
    esn = EchoStateNetwork(size=200, seed=0)
    loading = esn.load(sines([20, 25], 1000), aperture=200.0, washout=200, ridge=2.5e-5)
    result = interpolation(esn, loading, lambda_min=-3.0, lambda_max=4.0, steps=4000, window=200, rate=1e-4, gain=0.5)
    # inside [0, 1] both interpolate smoothly between the loaded periods 25 (λ = 0) and 20 (λ = 1)
    inside = (result.lambdas > 0) & (result.lambdas < 1)
    for period in (result.static_period[inside], result.adaptive_period[inside]):
        assert bool(((period > 19.5) & (period < 25.5)).all()), period
    # measured here: static λ ∈ [−0.99, 3.39] (width 4.4), loop λ ∈ [−2.91, 3.91] (width 6.8, the whole scan)
    assert result.adaptive_width >= result.static_width + 1.5, (result.static_range, result.adaptive_range)


def test_fewer_failures_against_removed_neurons_under_the_loop():
    esn = EchoStateNetwork(size=100, seed=0)
    loading = esn.load(sines([20], 1000), aperture=25.0, washout=200, ridge=2.5e-5)
    result = degradation(esn, loading, [5, 10, 15], trials=20, after=600, measure=300, aperture=25.0, rate=3e-2, gain=0.1)
    # measured here: static 55 / 85 / 100 % failures, loop 15 / 70 / 85 %
    assert all(a <= s for a, s in zip(result.adaptive_failures, result.static_failures)), result
    assert sum(result.static_failures) - sum(result.adaptive_failures) >= 0.3, result
