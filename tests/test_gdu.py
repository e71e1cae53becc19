"""The GDU check (Ernoult et al. 2019): EP's per-step updates equal BPTT's per-step gradients.

float64, a 5-4-3 sigmoid HopfieldMLP relaxed by the FixedPoint map to a 1e-14 residual (so the
residual/β term of docs/theory.md's pitfalls is negligible). Theory: ΔEP(β, t) = −∇(t) + O(β) one-sided and
+ O(β²) centered at every t; ΔEP_s(β, 0) = −∂ℓ/∂s exactly; Σ_t ∇_θ(t) → dL/dθ as K grows; C-EP
deviates by O(β) + c·η/β.
"""

import math

import pytest
import torch

from eqprop.baselines import ImplicitDifferentiation
from eqprop.check import GDUReport, gdu
from eqprop.costs import CrossEntropy, SquaredError
from eqprop.errors import ConfigurationError
from eqprop.models import HopfieldMLP
from eqprop.solvers import FixedPoint, GradientDescent

SOLVER = FixedPoint(tol=1e-14, max_steps=3000)


def setup(cross_entropy=False):
    torch.manual_seed(0)
    if cross_entropy:
        model = HopfieldMLP([5, 6, 4], "sigmoid", init_scale=2.0)
        x = torch.randn(6, 5)
        return model, x, torch.randint(0, 4, (6,)), CrossEntropy()
    model = HopfieldMLP([5, 4, 3], "sigmoid")
    return model, torch.randn(6, 5), torch.rand(6, 3), SquaredError()


def slope(betas, errors):
    return math.log(errors[0] / errors[-1]) / math.log(betas[0] / betas[-1])


@pytest.mark.parametrize("variant,order", [("positive", 1), ("negative", 1), ("centered", 2)])
@pytest.mark.parametrize("cross_entropy", [False, True])
def test_updates_match_bptt_at_every_step_with_the_order_of_the_theory(variant, order, cross_entropy):
    model, x, y, cost = setup(cross_entropy)
    betas = [1e-2, 1e-3] if order == 2 else [1e-2, 1e-3, 1e-4]  # centered hits round-off (~1e-9) at 1e-4
    reports = [gdu(model, x, y, beta=b, steps=30, variant=variant, solver=SOLVER, cost=cost) for b in betas]
    for name in reports[0].relative_error:
        errors = [r.relative_error[name] for r in reports]
        # O(β) one-sided, O(β²) centered: the log-log slope is the order (±0.15 for the next term)
        assert abs(slope(betas, errors) - order) < 0.15, (name, errors)
        # the constant of the O(β^order) term is O(1) (measured 0.25 one-sided, 0.07 centered)
        assert errors[-1] < 2.0 * betas[-1] ** order, (name, errors)
    assert min(reports[-1].sign_agreement.values()) > 0.8  # nearly every component has the BPTT sign


def test_first_neural_update_is_minus_the_cost_gradient_exactly():
    model, x, y, cost = setup()
    beta = 1e-3
    report = gdu(model, x, y, beta=beta, steps=3, variant="positive", solver=SOLVER)
    free, _ = SOLVER.solve(model, x, model.init_state(x))
    grad = cost.grad(model.output(free), y)
    # ΔEP_s(β, 0) = (u₁ − u₀)/β = −∂ℓ/∂s(s_T): only round-off eps·|u|/β ≈ 1e-13 remains
    assert torch.allclose(report.ep_neural[-1][0], -grad, rtol=0, atol=1e-11)
    assert float(report.ep_neural[0][0].abs().max()) == 0.0  # the hidden layer sees no nudge at t = 0
    assert torch.allclose(report.bptt_neural[-1][0], grad, rtol=0, atol=1e-14)  # ∇_s(0) = ∂ℓ/∂s


def test_sums_over_steps_give_the_loss_gradient():
    model, x, y, _ = setup()
    exact = ImplicitDifferentiation(solver=SOLVER).grads(model, x, y)

    def error(grads):
        return max(float((grads[n] - exact[n]).norm() / exact[n].norm()) for n in exact)

    short = gdu(model, x, y, beta=1e-4, steps=5, variant="centered", solver=SOLVER)
    long = gdu(model, x, y, beta=1e-4, steps=40, variant="centered", solver=SOLVER)
    # truncated BPTT → dL/dθ as K grows (truncation error decays like the contraction rate^K)
    assert error(long.bptt_total) < 1e-10 < error(short.bptt_total)
    # −Σ_t ΔEP_θ = dL/dθ + O(β²) + truncation; β² = 1e-8
    assert error({n: -w.sum(0) for n, w in long.ep_weights.items()}) < 1e-7


def test_a_shifted_or_flipped_sequence_is_caught():
    model, x, y, _ = setup()
    report = gdu(model, x, y, beta=1e-3, steps=20, variant="centered", solver=SOLVER)
    shifted = GDUReport(report.beta, "shifted", 0.0,
                        {n: w[1:] for n, w in report.ep_weights.items()},
                        {n: w[:-1] for n, w in report.bptt_weights.items()},
                        tuple(s[1:] for s in report.ep_neural), tuple(s[:-1] for s in report.bptt_neural),
                        report.bptt_total)
    assert min(shifted.relative_error.values()) > 0.1  # an index shift is an O(1) error
    flipped = GDUReport(report.beta, "flipped", 0.0, {n: -w for n, w in report.ep_weights.items()},
                        report.bptt_weights, report.ep_neural, report.bptt_neural, report.bptt_total)
    assert min(flipped.relative_error[n] for n in report.ep_weights) > 1.99  # wrong sign: error 2


def test_continual_ep_follows_bptt_as_the_rate_shrinks():
    model, x, y, _ = setup()
    beta = 1e-3
    deviation = {
        lr: gdu(model, x, y, beta=beta, steps=30, variant="positive", lr=lr, solver=SOLVER).max_relative_error
        for lr in (0.0, 1e-6, 1e-5, 1e-4)
    }
    floor = deviation[0.0]  # plain EP: O(β)
    # Theorem 1 with the measured law O(β) + c·η/β: decreasing in η, linear above the floor
    assert deviation[1e-4] > deviation[1e-5] > deviation[1e-6] > floor
    ratio = (deviation[1e-4] - floor) / (deviation[1e-5] - floor)
    assert 5 < ratio < 20, deviation  # ≈ 10 for a ten-fold η


def test_the_figure_is_drawn(tmp_path):
    import matplotlib  # a test dependency: fail loudly if missing

    matplotlib.use("Agg")
    model, x, y, _ = setup()
    report = gdu(model, x, y, beta=1e-3, steps=10, solver=SOLVER)
    path = tmp_path / "gdu.png"
    fig = report.plot(str(path))
    assert path.stat().st_size > 10_000
    assert len(fig.axes) == 4  # two state layers, two weight matrices
    assert "state.1" in str(report)


@pytest.mark.parametrize(
    "kwargs",
    [{"variant": "sideways"}, {"beta": 0.0}, {"lr": 1e-5, "variant": "centered"},
     {"solver": GradientDescent(step_size=0.1)}],
)
def test_bad_options_are_rejected(kwargs):
    model, x, y, _ = setup()
    with pytest.raises(ConfigurationError):
        gdu(model, x, y, **kwargs)
