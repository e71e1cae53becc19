"""Random feature conceptors (Jaeger 2014) and the input-distortion task (Pourcel et al. 2024), float64.

The unit properties of the conceptor-weight rule c ← c + λ[(z² − c z²) − α⁻² c] (its fixed point
under stationary features, the bounds), the closed form c = E z²/(E z² + α⁻²), loading, and the
demonstration's direction at a small size (fixed seed; the figures at example size are in
docs/conceptors.md).
"""

import math

import pytest
import torch

from eqprop.errors import ConfigurationError, NonFiniteError, ShapeError
from eqprop.reservoir.features import RandomFeatureConceptor, adapt_weights, feature_conceptor
from eqprop.reservoir.tasks import distort, distortion, sines


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # M ≤ 250 features stepped one at a time: threads only add overhead
    yield
    torch.set_num_threads(threads)


def test_rule_reaches_the_closed_form_under_stationary_features():
    g = torch.Generator().manual_seed(0)
    var = torch.tensor([0.01, 0.05, 0.2, 1.0, 4.0], dtype=torch.float64)   # E z_i², features i.i.d. N(0, var_i)
    alpha, rate, steps = 4.0, 0.02, 40000
    expected = var / (var + alpha ** -2)
    c, total = torch.full((5,), 0.5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    for n in range(steps):
        c = adapt_weights(c, var.sqrt() * torch.randn(5, generator=g, dtype=torch.float64), alpha, rate)
        if n >= steps // 2:
            total += c
    mean = total / (steps - steps // 2)
    # c_n is independent of z_n, so E c obeys E c' = (1 − λ(v + α⁻²)) E c + λ v exactly: no bias. The
    # fluctuation is an AR(1) of relaxation time τ = 1/(λ(v + α⁻²)) and stationary variance
    # λ·Var(z²)(1 − c*)²/(2(v + α⁻²)), Var(z²) = 2v²; its average over T = 20 000 steps has
    # std ≈ sqrt(variance · 2τ / T). Tolerance: 5 of those stds per feature (plus round-off).
    tau = 1 / (rate * (var + alpha ** -2))
    fluct = rate * 2 * var ** 2 * (1 - expected) ** 2 / (2 * (var + alpha ** -2))
    std = (fluct * 2 * tau / (steps - steps // 2)).sqrt()
    assert bool(((mean - expected).abs() <= 5 * std + 1e-12).all()), ((mean - expected).abs(), std)
    assert float((mean - expected).abs().max()) > 0  # the check is not vacuous: the average is noisy


def test_rule_is_a_convex_step_and_stays_in_the_unit_interval():
    g = torch.Generator().manual_seed(1)
    alpha = 2.0
    c = torch.rand(1000, generator=g, dtype=torch.float64)
    z = 3 * torch.randn(1000, generator=g, dtype=torch.float64)
    rate = 1 / float((z ** 2 + alpha ** -2).max())          # ρ_i = λ(z_i² + α⁻²) ≤ 1 for every feature
    new = adapt_weights(c, z, alpha, rate)
    rho = rate * (z ** 2 + alpha ** -2)
    convex = (1 - rho) * c + rho * z ** 2 / (z ** 2 + alpha ** -2)
    assert torch.allclose(new, convex, rtol=0, atol=1e-15)  # the same number, two roundings
    for _ in range(200):                                     # and it never leaves [0, 1]
        z = 3 * torch.randn(1000, generator=g, dtype=torch.float64)
        c = adapt_weights(c, z, alpha, 1 / float((z ** 2 + alpha ** -2).max()))
        assert bool(((c >= 0) & (c <= 1)).all())


def test_closed_form_bounds_and_aperture_limits():
    z = torch.randn(300, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * torch.arange(1.0, 7.0)
    power = z.pow(2).mean(0)
    c = feature_conceptor(z, 1.0)
    assert bool(((c >= 0) & (c < 1)).all())
    # 1 − c = α⁻²/(E z² + α⁻²) → 0 like α⁻² (100× smaller for α 10× larger, up to a relative
    # O(α⁻²/E z²) ≤ 1e-4 here); c = E z² α²/(1 + E z² α²) → 0 like α² (up to O(E z² α²) ≤ 4e-3 here)
    for a in (100.0, 1000.0):
        assert torch.allclose(1 - feature_conceptor(z, a), a ** -2 / (power + a ** -2), rtol=1e-10)
    ratio = (1 - feature_conceptor(z, 100.0)) / (1 - feature_conceptor(z, 1000.0))
    assert bool(((ratio > 99.9) & (ratio < 100.1)).all()), ratio
    ratio = feature_conceptor(z, 0.01) / feature_conceptor(z, 0.001)
    assert bool(((ratio > 99) & (ratio < 101)).all()), ratio


def test_loading_fits_the_output_and_its_weights_are_the_rule_fixed_point():
    net = RandomFeatureConceptor(size=50, features=250, seed=0)
    loading = net.load(sines([10], 1200)[0], aperture=8.0)
    assert loading.nrmse < 1e-3, loading.nrmse             # measured 1.9e-4
    assert bool(((loading.weights >= 0) & (loading.weights <= 1)).all())
    # the learned c is (near) the fixed point c = E z²/(E z² + α⁻²) of the features it produces:
    # measured 0.7 % relative (the last iterate of a rule of rate 0.5 on a period-10 pattern)
    closed = feature_conceptor(loading.features, 8.0)
    assert float((closed - loading.weights).norm() / loading.weights.norm()) < 0.03
    # selective: the pattern does not use every feature
    assert float(loading.weights.min()) < 0.1 < 0.9 < float(loading.weights.max())


def test_the_loop_restores_an_attenuated_input_better_than_static_weights():
    net = RandomFeatureConceptor(size=50, features=250, seed=0)
    pattern = sines([10], 2700)[0]
    loading = net.load(pattern[:1200], aperture=8.0)
    r = distortion(net, loading, pattern[1200:], "gain", (0.2, 0.4, 0.6, 1.0), measure=700)
    s, a = r.static_nrmse, r.adaptive_nrmse
    # measured here: static 1.21 / 1.08 / 0.65, loop 1.04 / 0.84 / 0.38 at s = 0.2 / 0.4 / 0.6
    assert all(x < y for x, y in zip(a[:3], s[:3])), r
    assert sum(s[:3]) - sum(a[:3]) >= 0.3, r
    # undistorted input: static control reproduces the loaded pattern (one-step prediction error);
    # the loop pays for its moving estimate (measured 0.042)
    assert s[3] < 1e-3 and a[3] < 0.1, r


def test_gain_one_is_static_control_and_bad_input_is_refused():
    net = RandomFeatureConceptor(size=20, features=60, seed=3)
    pattern = sines([10], 700)[0]
    loading = net.load(pattern[:400], aperture=8.0, adapt_steps=500)
    r = distortion(net, loading, pattern[400:], "noise", (0.5,), measure=100, gain=1.0)
    assert r.static_nrmse == r.adaptive_nrmse               # β = 1: c_a + 1·(c − c_a) = c, bit for bit
    with pytest.raises(ConfigurationError, match="unknown distortion"):
        distort(pattern, "shear", 1.0)
    with pytest.raises(ConfigurationError, match="trust"):
        distortion(net, loading, pattern[400:], "gain", (0.5,), trust=1.5, measure=100)
    with pytest.raises(ConfigurationError, match="rate"):
        adapt_weights(loading.weights, loading.final_features, 8.0, -1.0)
    with pytest.raises(ConfigurationError, match="aperture"):
        feature_conceptor(loading.features, 0.0)
    with pytest.raises(ShapeError, match=r"\[L, M\]"):
        feature_conceptor(loading.features[0], 8.0)
    with pytest.raises(NonFiniteError):
        adapt_weights(loading.weights, loading.final_features * math.inf, 8.0, 0.5)
    with pytest.raises(ConfigurationError, match="after load"):
        RandomFeatureConceptor(size=5, features=10).output(torch.zeros(10, dtype=torch.float64))
    with pytest.raises(ConfigurationError, match="spectral_radius"):
        RandomFeatureConceptor(spectral_radius=0.0)
