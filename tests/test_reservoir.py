"""Conceptors, the echo state network and the conceptor control loop (float64, small sizes)."""

import math

import pytest
import torch

from eqprop.errors import ConfigurationError, NonFiniteError, ShapeError
from eqprop.reservoir import ConceptorControl, EchoStateNetwork, conceptor, ridge_regression
from eqprop.reservoir.tasks import oscillation_period, sines


# N ≤ 200 matrices, stepped one at a time: one thread (the conftest fixture).
pytestmark = pytest.mark.usefixtures("one_thread")


def random_states(L=400, N=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(N, N, generator=g) / math.sqrt(N)
    return torch.randn(L, N, generator=g) @ A.T


@pytest.fixture(scope="module")
def loaded():
    torch.set_default_dtype(torch.float64)
    esn = EchoStateNetwork(size=60, seed=1)
    loading = esn.load(sines([20, 25], 800), aperture=50.0, washout=100, ridge=1e-5)
    return esn, loading


def test_conceptor_is_symmetric_with_eigenvalues_in_0_1_and_matches_the_matrix_formula():
    X = random_states()
    for alpha in (0.3, 1.0, 10.0):
        C = conceptor(X, alpha)
        R = X.T @ X / X.shape[0]
        direct = torch.linalg.solve(R + alpha ** -2 * torch.eye(6), R)  # (R + α⁻²I)⁻¹R = R(R + α⁻²I)⁻¹ (they commute)
        assert torch.allclose(C, direct, atol=1e-12), alpha  # round-off of two O(1) factorisations
        assert torch.equal(C, C.T)  # symmetrised after U diag(·) Uᵀ: exactly
        s = torch.linalg.eigvalsh(C)
        assert s.min() >= -1e-12 and s.max() < 1.0, (alpha, s)


def test_conceptor_tends_to_identity_for_large_aperture_and_to_zero_for_small():
    X = random_states()
    s = torch.linalg.eigvalsh(X.T @ X / X.shape[0])
    eye = torch.eye(6)
    # ‖I − C‖₂ = α⁻²/(s_min + α⁻²) ≈ α⁻²/s_min and ‖C‖₂ = s_max/(s_max + α⁻²) ≈ α² s_max: each
    # shrinks 100× when α moves 10× in its direction (slope 2 on a log scale, within 1 %).
    far = [torch.linalg.matrix_norm(eye - conceptor(X, a), 2) for a in (1e2, 1e3)]
    near = [torch.linalg.matrix_norm(conceptor(X, a), 2) for a in (1e-2, 1e-3)]
    assert abs(float(far[0]) - 1e-4 / (s[0] + 1e-4)) < 1e-9
    assert abs(float(near[1]) - s[-1] / (s[-1] + 1e6)) < 1e-9
    assert 99 < far[0] / far[1] < 101 and 99 < near[0] / near[1] < 101, (far, near)
    assert far[1] < 1e-4 and near[1] < 1e-4


def test_autoconceptor_rule_converges_to_the_conceptor_of_stationary_states():
    # Stationary x ~ N(0, R) i.i.d.: E[(x − Cx)xᵀ] − α⁻²C = 0 gives C = R(R + α⁻²I)⁻¹.
    torch.manual_seed(0)
    N, alpha, eta, steps = 5, 1.0, 2e-3, 60_000
    A = torch.randn(N, N) / math.sqrt(N)
    R = A @ A.T + 0.2 * torch.eye(N)
    expected = torch.linalg.solve(R + torch.eye(N) / alpha ** 2, R)
    control = ConceptorControl(torch.zeros(N, N), aperture=alpha, rate=eta, gain=0.0)
    xs = torch.randn(steps, N) @ torch.linalg.cholesky(R).T
    mean = torch.zeros(N, N)
    for k in range(steps):
        control.update(xs[k])
        if k >= steps // 2:
            mean += control.autoconceptor
    mean /= steps - steps // 2
    error = torch.linalg.matrix_norm(mean - expected) / torch.linalg.matrix_norm(expected)
    # LMS fluctuation O(√(η tr R)) ≈ 7 % per step, averaged over ~75 correlation times
    # (1/(η(s_min + α⁻²)) ≈ 400 steps) of the last 30 000: ≈ 1 %; the O(η) bias is 0.2 %.
    assert error < 0.02, float(error)  # (from C_a = 0 the error started at 100 %)


def test_gain_one_reproduces_static_control_bit_for_bit(loaded):
    esn, loading = loaded
    target, x0 = loading.conceptors[0], loading.final_states[0]
    static = esn.run(x0, 200, conceptor=target)
    control = ConceptorControl(target, aperture=50.0, rate=1e-3, gain=1.0, init=loading.conceptors[1])
    adaptive = control.run(esn, x0, 200)
    assert torch.equal(static, adaptive)  # 0·C_a z + 1·C_target z is C_target z exactly
    assert not torch.equal(control.autoconceptor, loading.conceptors[1])  # the estimate did move


def test_rate_zero_and_gain_zero_freeze_the_conceptor(loaded):
    esn, loading = loaded
    init, x0 = loading.conceptors[1].clone(), loading.final_states[0]
    control = ConceptorControl(loading.conceptors[0], aperture=50.0, rate=0.0, gain=0.0, init=init)
    states = control.run(esn, x0, 150)
    assert torch.equal(control.autoconceptor, init) and torch.equal(control.conceptor, init)
    assert torch.equal(states, esn.run(x0, 150, conceptor=init))
    moving = ConceptorControl(loading.conceptors[0], aperture=50.0, rate=1e-3, gain=0.0, init=init)
    moving.run(esn, x0, 10)
    assert not torch.equal(moving.conceptor, init)  # either knob away from 0 moves C


def test_batched_loop_equals_one_trajectory_at_a_time(loaded):
    esn, loading = loaded
    x0 = torch.stack(loading.final_states)
    both = ConceptorControl(torch.stack(loading.conceptors), aperture=50.0, rate=1e-3, gain=0.5).run(esn, x0, 50)
    for j in range(2):
        one = ConceptorControl(loading.conceptors[j], aperture=50.0, rate=1e-3, gain=0.5).run(esn, x0[j], 50)
        assert torch.allclose(both[:, j], one, atol=1e-12)  # same arithmetic, batched kernels: round-off only


def test_loading_equals_output_feedback_and_reproduces_each_pattern(loaded):
    esn, loading = loaded
    x = torch.stack(loading.final_states)
    # W* = W + W_in W_out, b* = b + W_in b_out: the loaded step is the step driven by u = y.
    assert torch.allclose(esn.step(x), esn.step(x, esn.output(x)), atol=1e-12)
    assert max(loading.nrmse) < 1e-2, loading.nrmse  # one-step prediction of a sine: ridge-limited
    for j, T in enumerate((20, 25)):
        y = esn.output(esn.run(loading.final_states[j], 600, conceptor=loading.conceptors[j]))
        period = oscillation_period(y[-400:])
        assert abs(float(period[0]) - T) < 0.01 * T, (T, period)  # the autonomous network keeps the loaded period


def test_ridge_regression_recovers_a_linear_map():
    g = torch.Generator().manual_seed(3)
    F, W, c = torch.randn(200, 4, generator=g), torch.randn(2, 4, generator=g), torch.randn(2, generator=g)
    W_hat, c_hat = ridge_regression(F, F @ W.T + c, ridge=0.0)
    assert torch.allclose(W_hat, W, atol=1e-10) and torch.allclose(c_hat, c, atol=1e-10)


def test_bad_input_is_refused_in_one_sentence(loaded):
    esn, loading = loaded
    X = random_states()
    for alpha in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigurationError, match="aperture"):
            conceptor(X, alpha)
    with pytest.raises(ConfigurationError, match="aperture"):
        ConceptorControl(loading.conceptors[0], aperture=0.0, rate=1e-3, gain=0.5)
    with pytest.raises(ConfigurationError, match="aperture"):
        esn.load(sines([20], 300), aperture=-2.0)
    for rho in (0.0, -1.6):
        with pytest.raises(ConfigurationError, match="spectral_radius"):
            EchoStateNetwork(size=10, spectral_radius=rho)
    bad = X.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(NonFiniteError, match="states"):
        conceptor(bad, 1.0)
    control = ConceptorControl(loading.conceptors[0], aperture=50.0, rate=1e-3, gain=0.5)
    with pytest.raises(NonFiniteError, match="state"):
        control.update(torch.full((60,), float("inf")))
    with pytest.raises(ShapeError, match="state"):
        control.update(torch.zeros(59))
    with pytest.raises(ShapeError, match=r"\[L, N\]"):
        conceptor(X[0], 1.0)
    for kwargs in ({"rate": -1e-3, "gain": 0.5}, {"rate": 1e-3, "gain": 1.5}):
        with pytest.raises(ConfigurationError):
            ConceptorControl(loading.conceptors[0], aperture=50.0, **kwargs)
    with pytest.raises(ConfigurationError, match="leak"):
        EchoStateNetwork(size=10, leak=0.0)
    with pytest.raises(ConfigurationError, match="load"):
        EchoStateNetwork(size=10).step(torch.zeros(10))
    for error in (ConfigurationError, NonFiniteError):
        try:
            conceptor(bad if error is NonFiniteError else X, 1.0 if error is NonFiniteError else 0.0)
        except error as e:
            assert str(e).count(". ") == 0 and str(e).endswith("."), str(e)  # one sentence


def test_names_and_keywords_as_documented():
    X = random_states()
    C = conceptor(states=X, aperture=2.0)
    import eqprop

    assert eqprop.reservoir.conceptor is conceptor
    esn = eqprop.reservoir.EchoStateNetwork(size=20, inputs=1, spectral_radius=1.2, input_scale=0.5, bias_scale=0.2,
                                            leak=0.5, seed=3, dtype=torch.float64)
    assert abs(torch.linalg.eigvals(esn.W).abs().max() - 1.2) < 1e-10  # rescaled to the requested spectral radius
    control = eqprop.reservoir.ConceptorControl(target=C, aperture=2.0, rate=1e-3, gain=0.5, init=None)
    control.update(torch.ones(6))
    assert control.autoconceptor.shape == (6, 6)
