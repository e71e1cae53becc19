"""GLEP (Lagrangian EP) against the implicit function theorem on the whole discrete system (float64).

Theory (Pourcel, Basu, Ernoult & Gilra 2025; docs/theory.md, "GLEP"): the stationary trajectory of
A_β is smooth in β, so the contrast [∂_θA_β(s^β) − ∂_θA_{−β}(s^{−β})]/2β plus R_N − R_0 equals
dL/dθ + cβ² + O(β⁴), and the positive variant dL/dθ + c'β + O(β²). Over one decade of β the
error therefore drops by 100 (centered: log-log slope 2 ± O(β₀²), budgeted ± 0.05) and by 10
(positive: slope 1 ± O(β₀), budgeted ± 0.1). The baselines agree with each other to the Newton
tolerance (1e-12 residual → ≤ 1e-9 relative) and with central finite differences to O(h²) + round-off/h.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eqprop.baselines.lagrangian import LagrangianBPTT, LagrangianImplicit
from eqprop.check import log_log_slope, relative_error
from eqprop.costs import SquaredError
from eqprop.errors import ConfigurationError, ConvergenceError, ShapeError
from eqprop.estimators.lagrangian import TrajectoryNudge, free_trajectory
from eqprop.learners.glep import GLEP
from eqprop.models import LinearHRU
from eqprop.models.lagrangian import LagrangianModel
from eqprop.solvers.boundary import BoundaryNewton

BATCH, STEPS, WIDTH, INPUTS = 2, 10, 3, 2
BOUNDARIES = ["echo", "initial_value", "fixed_ends", "periodic"]


class DrivenOscillators(LagrangianModel):
    """A Lagrangian written by a user: masses, anharmonic coupled potential, input drive, readout.

    init_state and end_state depend on a parameter, so the boundary terms R_N − R_0 are exercised.
    """

    def __init__(self, quadrature: str = "left", dt: float = 0.15) -> None:
        super().__init__()
        self.quadrature, self.dt, self.input_size = quadrature, dt, INPUTS
        self.stiffness = nn.Parameter(torch.rand(WIDTH) + 1.0)
        self.coupling = nn.Parameter(0.3 * torch.randn(WIDTH, WIDTH))
        self.drive = nn.Parameter(0.5 * torch.randn(WIDTH, INPUTS))
        self.readout = nn.Parameter(torch.randn(2, WIDTH))
        self.mass = nn.Parameter(1.0 + 0.1 * torch.rand(WIDTH))
        self.s_init = nn.Parameter(0.3 * torch.randn(WIDTH))

    def lagrangian(self, s, s_dot, x_t):
        kinetic = 0.5 * (self.mass * s_dot * s_dot).sum(-1)
        potential = (0.5 * self.stiffness * s * s + 0.05 * s ** 4).sum(-1) \
            + 0.1 * torch.tanh(s @ self.coupling).pow(2).sum(-1) - (s * (x_t @ self.drive.T)).sum(-1)
        return kinetic - potential

    def init_state(self, x):
        return self.s_init.expand(x.shape[0], -1), 0.2 * torch.ones(x.shape[0], WIDTH)

    def end_state(self, x):
        return -self.s_init.expand(x.shape[0], -1)

    def output(self, s):
        return torch.tanh(s) @ self.readout.T


def problem(quadrature: str = "left", final: bool = False):
    model = DrivenOscillators(quadrature)
    x = torch.randn(BATCH, STEPS, INPUTS)
    y = torch.randn(BATCH, 2) if final else torch.randn(BATCH, STEPS, 2)
    return model, x, y


@pytest.fixture(scope="module")
def references():
    """Implicit-function-theorem gradients per (quadrature, boundary), computed once."""
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    out = {}
    for quadrature, boundaries in (("left", BOUNDARIES), ("midpoint", ["echo", "periodic"])):
        model, x, y = problem(quadrature)
        for boundary in boundaries:
            out[quadrature, boundary] = (model, x, y, LagrangianImplicit(boundary).grads(model, x, y))
    return out


def errors(model, x, y, reference, betas, **kwargs):
    return [relative_error(GLEP(beta, **kwargs).grads(model, x, y), reference) for beta in betas]


@pytest.mark.parametrize("quadrature,boundary", [("left", b) for b in BOUNDARIES] + [("midpoint", "echo"), ("midpoint", "periodic")])
def test_centered_glep_is_second_order(references, quadrature, boundary):
    model, x, y, reference = references[quadrature, boundary]
    errs = errors(model, x, y, reference, [1e-3, 1e-4], boundary=boundary)
    slope = log_log_slope([1e-3, 1e-4], errs)
    assert abs(slope - 2.0) < 0.05, (errs, slope)
    assert errs[0] < 2e-3, errs  # c·β² with c = O(1e3) at most here (measured 1.6e-5 … 1.3e-3 at β = 1e-3)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_positive_glep_is_first_order(references, boundary):
    model, x, y, reference = references["left", boundary]
    errs = errors(model, x, y, reference, [1e-3, 1e-4], boundary=boundary, variant="positive")
    slope = log_log_slope([1e-3, 1e-4], errs)
    assert abs(slope - 1.0) < 0.1, (errs, slope)


def test_baselines_agree_with_bptt_and_finite_differences(references):
    model, x, y, ift = references["left", "initial_value"]
    assert relative_error(LagrangianBPTT().grads(model, x, y), ift) < 1e-9  # same derivative, Newton tol only
    assert relative_error(references["left", "echo"][3], ift) < 1e-12  # the echo's free run is the forward one
    h = 1e-6  # central differences: O(h²) truncation + round-off ε/h ≈ 1e-10 relative
    for boundary in BOUNDARIES:
        model, x, y, reference = references["left", boundary]
        params = dict(model.named_parameters())
        direction = {name: torch.randn_like(p) for name, p in params.items()}
        losses = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for name, p in params.items():
                    p.add_(sign * h * direction[name])
            trajectory, _ = free_trajectory(model, x, boundary, BoundaryNewton())
            losses.append(TrajectoryNudge(model, SquaredError(), y, "per_step", STEPS, 1.0).loss(trajectory).mean())
            with torch.no_grad():
                for name, p in params.items():
                    p.sub_(sign * h * direction[name])
        finite = float((losses[0] - losses[1]).detach()) / (2 * h)
        analytic = sum(float((reference[n] * direction[n]).sum()) for n in params)
        assert abs(finite - analytic) < 1e-7 * max(1.0, abs(analytic)), (boundary, finite, analytic)


def test_echo_at_zero_beta_retraces_the_free_trajectory():
    model, x, _ = problem("left")
    assert GLEP(1e-2).echo_error(model, x) < 1e-13  # explicit steps: round-off (measured 5e-16)
    model, x, _ = problem("midpoint")
    assert GLEP(1e-2).echo_error(model, x) < 1e-10  # implicit steps: the Newton tolerance 1e-12 (measured 1e-12)


def test_theta_dependent_end_points_need_their_boundary_terms(references):
    model, x, y, reference = references["left", "fixed_ends"]  # end_state depends on s_init
    with_terms = relative_error(GLEP(1e-3, boundary="fixed_ends").grads(model, x, y), reference)
    without = relative_error(GLEP(1e-3, boundary="fixed_ends", residual=False).grads(model, x, y), reference)
    assert with_terms < 1e-3 and without > 0.1, (with_terms, without)  # O(β²) vs the missing ∂_βP·∂_θs terms


def test_naive_initial_value_contrast_is_refused_and_biased(references):
    with pytest.raises(ConfigurationError, match="residual"):
        GLEP(1e-2, boundary="initial_value", residual=False)
    model, x, y, reference = references["left", "initial_value"]
    naive = []
    for beta in (1e-2, 1e-3):
        learner = GLEP(beta, boundary="initial_value")
        learner.residual = False  # bypass the constructor's refusal to show why it refuses
        naive.append(relative_error(learner.grads(model, x, y), reference))
    assert min(naive) > 0.05 and abs(naive[0] / naive[1] - 1.0) < 0.05, naive  # O(1) bias, β-independent


def test_final_step_loss_and_contract():
    model, x, y = problem(final=True)
    reference = LagrangianImplicit("echo").grads(model, x, y)
    learner = GLEP(1e-3)
    assert relative_error(learner.grads(model, x, y), reference) < 1e-4  # O(β²)
    model.zero_grad()
    out = learner.step(model, x, y)
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, out.grads[name])
    assert learner.predict(model, x).shape == (BATCH, STEPS, 2)
    assert out.prediction.shape == (BATCH, 2) and out.loss.dim() == 0


def test_bad_inputs_get_one_sentence_errors():
    model, x, y = problem()
    with pytest.raises(ConfigurationError, match="beta"):
        GLEP(0.0)
    with pytest.raises(ConfigurationError, match="boundary"):
        GLEP(0.1, boundary="free_end")
    with pytest.raises(ConfigurationError, match="variant"):
        GLEP(0.1, variant="negative")
    with pytest.raises(ConfigurationError, match="on_failure"):
        BoundaryNewton(on_failure="ignore")
    with pytest.raises(ShapeError, match="input_size"):
        GLEP(0.1).grads(model, x[..., :1], y)
    with pytest.raises(ShapeError, match="sequence"):
        GLEP(0.1).grads(model, x[:, 0, 0], y)
    with pytest.raises(ShapeError, match="target"):
        GLEP(0.1).grads(model, x, y[:, :3])
    with pytest.raises(ConfigurationError, match="LagrangianModel"):
        GLEP(0.1).grads(LinearHRU(INPUTS, 3, output_size=2), x, y)


def test_unsolvable_boundary_value_problem_is_reported():
    model, x, y = problem()
    solver = BoundaryNewton(max_steps=1, on_failure="raise")
    with pytest.raises(ConvergenceError, match="residual"):
        GLEP(0.1, boundary="fixed_ends", solver=solver).grads(model, 5.0 * x, y)
