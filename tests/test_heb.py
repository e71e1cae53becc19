"""HEB against autograd through the joint (q, θ) leapfrog (float64).

Theory (López-Pastor & Marquardt 2023; docs/theory.md, "HEB"): the echo map X₀ ↦ X_η is smooth in
η and, exactly for any mass m and step, π_η − π₀ = −η dC/dθ(0) + O(η²), where the derivative is
through the full dynamics with θ moving. The centered estimate is even in η, so its error is
c η² + O(η⁴) and the log-log slope over η ∈ [η₀/4, η₀] is 2 + O(η₀²); one-sided: 1 + O(η₀). With
η₀ = 1e-2 and |∇C| ≈ 1 the correction is ≲ 1e-3, far inside the ±0.15 allowed; round-off
(1e-16·|π|/η ≈ 1e-13) is far below the smallest error measured (≈ 4e-7). The η = 0 echo is the
identity up to round-off (≈ 1e-16 per step, N = 20 steps). With 1/m = 0 the full dynamics is
BPTT through the model's leapfrog. The gap between the full-dynamics and frozen gradients is
a/m + O(1/m²): growing m from 100 to 10⁴ divides it by 100 (1 ± 0.1 allowing the 1/m² term).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eqprop.baselines import BPTT
from eqprop.baselines.heb_full_dynamics import FullDynamicsBPTT
from eqprop.check import log_log_slope, relative_error
from eqprop.costs import CrossEntropy
from eqprop.errors import ConfigurationError, NotReversibleError
from eqprop.learners import HEB
from eqprop.estimators.joint import run
from eqprop.models import HSSM
from eqprop.models.hamiltonian import HamiltonianModel
from eqprop.solvers import LeapFrog, PositionVerlet, SymplecticEuler
from eqprop.solvers.integrators import Integrator

BATCH, FEATURES, HIDDEN, OUT, STEPS = 4, 3, 4, 2, 20
INF = float("inf")


class Oscillators(HamiltonianModel):
    """A Hamiltonian written by a user: coupled anharmonic oscillators with a quartic kinetic term,
    a trainable encoder into the initial position (θ in q₀) and a trainable readout (θ in C)."""

    def __init__(self) -> None:
        super().__init__()
        self.input_size = FEATURES
        self.coupling = nn.Parameter(0.4 * torch.randn(HIDDEN, HIDDEN))
        self.bias = nn.Parameter(0.1 * torch.randn(HIDDEN))
        self.drive = nn.Parameter(0.5 * torch.randn(HIDDEN, FEATURES))
        self.encoder = nn.Parameter(0.5 * torch.randn(HIDDEN, FEATURES))
        self.readout = nn.Parameter(torch.randn(OUT, HIDDEN))
        self.dt = 0.1

    def kinetic(self, p):
        return (0.5 * p * p + 0.05 * p ** 4).sum(-1)

    def potential(self, q, u):
        return (0.5 * q * q).sum(-1) + torch.log(torch.cosh(q @ self.coupling.T + self.bias)).sum(-1) \
            - (q * (u @ self.drive.T)).sum(-1)

    def init_state(self, u_seq):
        return torch.tanh(u_seq[:, 0] @ self.encoder.T), torch.zeros(u_seq.shape[0], HIDDEN)

    def output(self, q):
        return torch.tanh(q) @ self.readout.T


@pytest.fixture
def problem():
    torch.manual_seed(0)
    return Oscillators(), torch.randn(BATCH, FEATURES), torch.randn(BATCH, OUT)


def _errors(model, x, y, mass, variant, etas, integrator=None):
    reference = FullDynamicsBPTT(mass=mass, integrator=integrator, steps=STEPS).grads(model, x, y)
    return [relative_error(HEB(eta, variant, mass=mass, integrator=integrator, steps=STEPS).grads(model, x, y),
                           reference) for eta in etas]


@pytest.mark.parametrize("mass", [1.0, 100.0, INF])
def test_centered_heb_matches_full_dynamics_at_order_two(problem, mass):
    model, x, y = problem
    etas = [1e-2, 5e-3, 2.5e-3]
    errors = _errors(model, x, y, mass, "centered", etas)
    assert errors[-1] < 1e-4  # measured 6.9e-7 (m = ∞), 6.1e-7 (m = 100), 3.5e-5 (m = 1) at η = 2.5e-3
    assert abs(log_log_slope(etas, errors) - 2.0) < 0.15  # O(η²); see the module docstring


@pytest.mark.parametrize("mass", [1.0, 100.0, INF])
def test_one_sided_heb_matches_full_dynamics_at_order_one(problem, mass):
    model, x, y = problem
    etas = [1e-2, 5e-3, 2.5e-3]
    errors = _errors(model, x, y, mass, "one_sided", etas)
    assert errors[-1] < 1e-2  # measured 3.6e-4 (m = ∞), 3.4e-4 (m = 100), 3.9e-3 (m = 1) at η = 2.5e-3
    assert abs(log_log_slope(etas, errors) - 1.0) < 0.15  # O(η)


def test_frozen_heb_equals_bptt_through_the_leapfrog(problem):
    """1/m = 0: HEB gives dL/dθ of the frozen-parameter dynamics with a final-time loss (BPTT)."""
    model, x, y = problem
    sequence = x.unsqueeze(1).expand(BATCH, STEPS, FEATURES)
    bptt = BPTT(integrator=LeapFrog()).grads(model, sequence, y)
    assert relative_error(FullDynamicsBPTT(steps=STEPS).grads(model, x, y), bptt) < 1e-13  # same graph
    assert relative_error(HEB(1e-3, steps=STEPS).grads(model, x, y), bptt) < 1e-6  # O(η²), measured 1.1e-7


class JointLeapFrog(LeapFrog):
    """LeapFrog without its echo step, so HEB takes the per-row joint path even at 1/m = 0."""

    echo = Integrator.echo


@pytest.mark.parametrize("variant", ["centered", "one_sided"])
def test_frozen_fast_path_equals_the_joint_path(problem, variant):
    """At 1/m = 0 HEB reads Σ π from the integrator's echo contrast instead of per-row θ copies."""
    model, x, y = problem
    fast = HEB(1e-3, variant, steps=STEPS).step(model, x, y)
    joint = HEB(1e-3, variant, integrator=JointLeapFrog(), steps=STEPS).grads(model, x, y)
    assert relative_error(fast.grads, joint) < 1e-9  # same estimator, different round-off (measured 1.8e-13 centered, 3.2e-13 one-sided)
    if variant == "one_sided":
        assert fast.info["echo_error"] < 1e-13


def test_time_varying_input_is_replayed_in_reverse(problem):
    """A sequence input: the echo replays u_{N−1} … u_0 and HEB still equals BPTT (m = ∞)."""
    model, _, y = problem
    sequence = torch.randn(BATCH, STEPS, FEATURES)
    bptt = BPTT(integrator=LeapFrog()).grads(model, sequence, y)
    assert relative_error(HEB(1e-3).grads(model, sequence, y), bptt) < 1e-6  # measured 2.6e-7
    assert relative_error(HEB(1e-3, mass=10.0).grads(model, sequence, y),
                          FullDynamicsBPTT(mass=10.0).grads(model, sequence, y)) < 1e-6  # measured 2.8e-7


def test_position_verlet_and_cross_entropy(problem):
    model, x, _ = problem
    labels = torch.randint(0, OUT, (BATCH,))
    integrator = PositionVerlet()
    reference = FullDynamicsBPTT(mass=3.0, integrator=integrator, steps=STEPS, cost=CrossEntropy()).grads(model, x, labels)
    heb = HEB(1e-3, mass=3.0, integrator=integrator, steps=STEPS, cost=CrossEntropy()).grads(model, x, labels)
    assert relative_error(heb, reference) < 1e-6


@pytest.mark.parametrize("mass", [1.0, INF])
def test_zero_nudge_echo_returns_to_the_start(problem, mass):
    model, x, _ = problem
    error = HEB(1e-3, mass=mass, steps=STEPS).echo_error(model, x)
    assert error < 1e-13  # round-off: measured 2.6e-15 (m = 1) and 4.0e-16 (m = ∞)


def test_gap_to_frozen_gradient_scales_as_one_over_mass(problem):
    model, x, y = problem
    frozen = FullDynamicsBPTT(steps=STEPS).grads(model, x, y)
    gaps = [relative_error(FullDynamicsBPTT(mass=m, steps=STEPS).grads(model, x, y), frozen) for m in (100.0, 1e4)]
    assert 90 < gaps[0] / gaps[1] < 110  # O(T²/m): ×100 in m → ÷100 in the gap (measured 97.3)
    heb = HEB(1e-3, mass=1e4, steps=STEPS).grads(model, x, y)
    assert relative_error(heb, frozen) < 2 * gaps[1]  # a heavy parameter: HEB ≈ the frozen gradient


def test_step_writes_grad_and_leaves_parameters_untouched(problem):
    model, x, y = problem
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = HEB(1e-3, mass=1.0, steps=STEPS, variant="one_sided").step(model, x, y)
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name])  # θ restored: the echo never moves the model
        assert p.grad is not None and torch.equal(p.grad, out.grads[name])
    assert out.info["echo_error"] < 1e-13  # the η = 0 copy of the one-sided variant
    assert out.prediction.shape == (BATCH, OUT)
    assert torch.allclose(out.prediction, HEB(1e-3, mass=1.0, steps=STEPS).predict(model, x))


class FlipThenKick(HEB):
    """The wrong order: flip the momenta first, then kick with the same written sign."""

    def _echo(self, joint, dt, Q_T, P_T, force, x_seq, etas, batch):
        eta_col = torch.repeat_interleave(Q_T.new_tensor(etas), batch).unsqueeze(1)
        Q, P = Q_T.repeat(2, 1), -P_T.repeat(2, 1) - eta_col * force.repeat(2, 1)
        inputs = [x_seq[:, k].repeat(2, 1) for k in reversed(range(x_seq.shape[1]))]
        Q, P = run(joint, self.integrator, Q, P, inputs, dt)
        return joint, Q, -P


def test_nudge_then_flip_is_the_sign_convention(problem):
    """docs/heb.md: kicking after the flip with the same written sign reverses the gradient."""
    model, x, y = problem
    reference = FullDynamicsBPTT(mass=1.0, steps=STEPS).grads(model, x, y)
    wrong = FlipThenKick(1e-3, mass=1.0, steps=STEPS).grads(model, x, y)
    assert relative_error(wrong, {n: -g for n, g in reference.items()}) < 1e-4  # measured 5.7e-6: it is −dL/dθ


def test_bad_input_gets_one_sentence_errors(problem):
    model, x, y = problem
    with pytest.raises(ConfigurationError, match="eta = 0.0"):
        HEB(0.0)
    with pytest.raises(NotReversibleError, match="not exactly reversible"):
        HEB(1e-3, integrator=SymplecticEuler(0.1))
    with pytest.raises(ConfigurationError, match="mass must be positive"):
        HEB(1e-3, mass=-1.0)
    with pytest.raises(ConfigurationError, match="mass must be a positive number"):
        HEB(1e-3, mass="heavy")  # validated before anything converts it
    with pytest.raises(ConfigurationError, match="mass must be a positive number"):
        FullDynamicsBPTT(mass="heavy")
    with pytest.raises(ConfigurationError, match="Unknown HEB variant"):
        HEB(1e-3, variant="forward")
    with pytest.raises(ConfigurationError, match="steps must be a positive integer"):
        HEB(1e-3, steps=0)
    for dtype in (torch.int32, "float64", torch.complex64):
        with pytest.raises(ConfigurationError, match="echo_dtype must be None or a real floating"):
            HEB(1e-3, echo_dtype=dtype)
    with pytest.raises(ConfigurationError, match="steps=N"):
        HEB(1e-3).grads(model, x, y)
    with pytest.raises(ConfigurationError, match="final time only"):
        HEB(1e-3, steps=STEPS).grads(model, x, torch.randn(BATCH, STEPS, OUT))
    with pytest.raises(ConfigurationError, match="stack"):
        HEB(1e-3).grads(HSSM(FEATURES, 3, OUT, num_layers=2, hru="linear"), torch.randn(2, 5, FEATURES),
                        torch.randn(2, OUT))
    model.kinetic = lambda p: (0.5 * p * p * torch.exp(model.bias)).sum(-1)  # T depends on θ
    with pytest.raises(ConfigurationError, match="kinetic energy"):
        HEB(1e-3, steps=STEPS).grads(model, x, y)
    del model.kinetic
    model.dt = nn.Parameter(torch.tensor(0.1))
    with pytest.raises(ConfigurationError, match="dt is trainable"):
        HEB(1e-3, steps=STEPS).grads(model, x, y)
