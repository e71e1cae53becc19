"""Discrete RHEL against BPTT through the same integrator (float64).

Theory (Pourcel & Ernoult 2025; docs/theory.md, "RHEL in discrete time"): with an exactly reversible step, the contrast
G(ε) = Σ_j ∂_θS_j along the echo is smooth in ε and −[G(ε) − G(−ε)]/2ε = dL/dθ + c ε² + O(ε⁴),
−[G(ε) − G(0)]/ε = dL/dθ + c' ε + O(ε²). So over ε ∈ [ε₀/4, ε₀] the log-log slope of the error is
2 + O(ε₀²) centered and 1 + O(ε₀) one-sided; the tolerances below budget that correction.
For linear dynamics with a quadratic cost, G is exactly quadratic in ε: centered is exact up
to round-off.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eqprop.baselines import BPTT
from eqprop.baselines.bptt_time import bptt_through_integrator
from eqprop.check import log_log_slope, relative_error
from eqprop.costs import CrossEntropy, SquaredError
from eqprop.learners import RHEL
from eqprop.models import HSSM, HamiltonianModel, LinearHRU, NonlinearHRU
from eqprop.solvers import LeapFrog, PositionVerlet

BATCH, STEPS, WIDTH = 3, 15, 2


class CoupledPendulums(HamiltonianModel):
    """A Hamiltonian written by a user: trainable masses (in T), init state, step size and readout."""

    def __init__(self) -> None:
        super().__init__()
        self.input_size = WIDTH
        self.stiffness = nn.Parameter(torch.rand(3) + 0.5)
        self.input_weight = nn.Parameter(0.5 * torch.randn(3, WIDTH))
        self.coupling = nn.Parameter(0.3 * torch.randn(3, 3))
        self.log_mass = nn.Parameter(0.1 * torch.randn(3))
        self.q_init = nn.Parameter(0.3 * torch.randn(3))
        self.dt = nn.Parameter(torch.tensor(0.15))
        self.readout = nn.Parameter(torch.randn(2, 3))

    def kinetic(self, p):
        return (0.5 * p * p * torch.exp(-self.log_mass)).sum(-1)

    def potential(self, q, u):
        coupled = q @ self.coupling
        return (self.stiffness * (1 - torch.cos(q))).sum(-1) + 0.05 * (coupled * coupled).sum(-1) \
            - (q * (u @ self.input_weight.T)).sum(-1)

    def init_state(self, u_seq):
        batch = u_seq.shape[0]
        return self.q_init.expand(batch, 3), torch.zeros(batch, 3)

    def output(self, q):
        return torch.sin(q) @ self.readout.T


def make(name: str):
    if name == "linear_hru":
        return LinearHRU(WIDTH, 4, output_size=2)
    if name == "nonlinear_hru":
        return NonlinearHRU(WIDTH, 4, output_size=2)
    if name == "hssm_linear":
        return HSSM(WIDTH, 5, 2, num_layers=2, hru="linear")
    if name == "hssm_nonlinear":
        return HSSM(WIDTH, 5, 2, num_layers=3, hru="nonlinear", activation="glu")
    return CoupledPendulums()


def targets(kind: str):
    if kind == "final_mse":
        return SquaredError(), torch.randn(BATCH, 2)
    if kind == "per_step_mse":
        return SquaredError(), torch.randn(BATCH, STEPS, 2)
    return CrossEntropy(), torch.randint(0, 2, (BATCH,))


NONLINEAR = ["nonlinear_hru", "hssm_nonlinear", "user_defined"]


@pytest.mark.parametrize("name", NONLINEAR)
@pytest.mark.parametrize("kind", ["final_mse", "per_step_mse", "final_ce"])
def test_centered_rhel_matches_bptt_at_order_eps_squared(name, kind):
    model, x = make(name), torch.randn(BATCH, STEPS, WIDTH)
    cost, y = targets(kind)
    reference = bptt_through_integrator(model, x, y, PositionVerlet(), cost).grads
    epsilons = [4e-2, 2e-2, 1e-2]
    errors = [relative_error(RHEL(e, cost=cost).grads(model, x, y), reference) for e in epsilons]
    # error c·ε² ≫ round-off (1e-13) at these ε; slope 2 + O(ε²) → ±0.15
    assert min(errors) > 1e-11, errors
    assert abs(log_log_slope(epsilons, errors) - 2.0) < 0.15, errors
    assert errors[-1] < 1e-3, errors


@pytest.mark.parametrize("name", NONLINEAR + ["linear_hru"])
def test_one_sided_rhel_matches_bptt_at_order_eps(name):
    model, x = make(name), torch.randn(BATCH, STEPS, WIDTH)
    cost, y = targets("per_step_mse")
    reference = bptt_through_integrator(model, x, y, PositionVerlet(), cost).grads
    epsilons = [1e-2, 5e-3, 2.5e-3]
    errors = [relative_error(RHEL(e, "one_sided", cost=cost).grads(model, x, y), reference) for e in epsilons]
    # error c'·ε + O(ε²): slope 1 + O(ε) → ±0.1
    assert abs(log_log_slope(epsilons, errors) - 1.0) < 0.1, errors


@pytest.mark.parametrize("name", ["linear_hru", "hssm_linear"])
def test_centered_rhel_is_exact_for_linear_hrus(name):
    """Linear HRUs: the echo is affine in ε; with the linear readout and quadratic cost of a single
    HRU, G(ε) is quadratic and the centered difference exact. In the HSSM the mixing maps are
    evaluated at the ε→0 extrapolation, so the contrast is still exact: round-off only (1e-15·√T
    per step, ≪ 1e-9)."""
    model, x = make(name), torch.randn(BATCH, STEPS, WIDTH)
    for cost, y in (targets("final_mse"), targets("per_step_mse")):
        reference = bptt_through_integrator(model, x, y, PositionVerlet(), cost).grads
        assert relative_error(RHEL(1e-2, cost=cost).grads(model, x, y), reference) < 1e-9


@pytest.mark.parametrize("integrator", [PositionVerlet(), LeapFrog(), PositionVerlet(dt=0.2), LeapFrog(dt=0.2)])
def test_rhel_matches_bptt_for_every_reversible_integrator(integrator):
    model, x = make("hssm_nonlinear"), torch.randn(BATCH, STEPS, WIDTH)
    y = torch.randn(BATCH, STEPS, 2)
    reference = BPTT(integrator=integrator).grads(model, x, y)
    # centered at ε = 1e-3: c ε² with c ≲ 0.1 here → < 1e-6
    assert relative_error(RHEL(1e-3, integrator=integrator).grads(model, x, y), reference) < 1e-6
    if integrator.dt is not None:  # a fixed step: dt is not trained, its gradient is zero on both sides
        layer_dt = [n for n in reference if n.endswith(".dt")]
        assert layer_dt and all(float(reference[n].abs().max()) == 0.0 for n in layer_dt)


def test_bptt_dispatches_for_hamiltonian_models_and_trains_dt():
    model, x = make("user_defined"), torch.randn(BATCH, STEPS, WIDTH)
    y = torch.randn(BATCH, 2)
    reference = BPTT().grads(model, x, y)  # no integrator given: the model's dt with PositionVerlet
    estimate = RHEL(1e-3).grads(model, x, y)
    assert float(reference["dt"].abs()) > 1e-6  # the trainable step has a real gradient …
    assert float((estimate["dt"] - reference["dt"]).abs() / reference["dt"].abs()) < 1e-5  # … which RHEL finds
    # and the initial-state parameter, read from the echo's end (λ = dL/dΦ_0)
    assert relative_error(estimate["q_init"], reference["q_init"]) < 1e-5


def test_step_writes_the_gradient_and_loss_of_bptt():
    model, x = make("hssm_nonlinear"), torch.randn(BATCH, STEPS, WIDTH)
    y = torch.randint(0, 2, (BATCH,))
    learner, baseline = RHEL(1e-3, cost=CrossEntropy()), BPTT(integrator=PositionVerlet(), cost=CrossEntropy())
    model.zero_grad()
    out = learner.step(model, x, y)
    reference = baseline.grads(model, x, y)
    written = {n: p.grad for n, p in model.named_parameters()}
    assert relative_error(written, reference) < 1e-6
    assert torch.allclose(out.loss, baseline.estimate(model, x, y).loss, rtol=1e-12)
    assert torch.allclose(learner.predict(model, x), baseline.predict(model, x), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["hssm_nonlinear", "user_defined", "linear_hru"])
def test_zero_echo_returns_to_the_initial_state(name):
    model, x = make(name), torch.randn(BATCH, 200, WIDTH)
    learner = RHEL(1e-2)
    # round-off: ~1e-16 per step accumulated over 200 steps, ≪ 1e-12
    assert learner.echo_error(model, x) < 1e-12
    estimate = RHEL(1e-2, check_echo=True).estimate(model, x, torch.randn(BATCH, 2))
    assert estimate.info["echo_error"] < 1e-12


class ForceAtWholeStep(PositionVerlet):
    """A wrongly declared integrator: position Verlet with the force at q instead of q_h."""

    def step(self, model, q, p, u, dt, create_graph=False):
        p_new = p - dt * model.potential_grad(q, u, create_graph)
        q_new = q + dt * model.kinetic_grad(0.5 * (p + p_new), create_graph)
        return q_new, p_new


def test_echo_check_exposes_an_integrator_that_is_not_reversible():
    model, x = make("nonlinear_hru"), torch.randn(BATCH, 100, WIDTH)
    # the forward no longer matches the echo's step: the return error is O(dt), not round-off
    assert RHEL(1e-2, integrator=ForceAtWholeStep()).echo_error(model, x) > 1e-4
