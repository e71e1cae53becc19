"""Continual EP (Ernoult et al. 2020) and the per-step updates ΔEP of discrete-time EP.

float64, a 5-4-3 sigmoid HopfieldMLP, FixedPoint map. The step-by-step agreement with BPTT
(Theorem 1) is in tests/test_gdu.py; here: the contract (no side effects, C-EP proper =
grads + SGD), the η = 0 limit (positive EP exactly, by telescoping), training, bad input.
"""

import pytest
import torch

from eqprop.baselines import ImplicitDifferentiation
from eqprop.errors import ConfigurationError, NonFiniteError
from eqprop.learners import EP, ContinualEP, ep_updates
from eqprop.models import HopfieldMLP
from eqprop.solvers import FixedPoint, GradientDescent

SOLVER = FixedPoint(tol=1e-14, max_steps=3000)


def setup():
    torch.manual_seed(0)
    return HopfieldMLP([5, 4, 3], "sigmoid"), torch.randn(6, 5), torch.rand(6, 3)


def test_grads_has_no_side_effects():
    model, x, y = setup()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = ContinualEP(beta=0.05, lr=0.01, steps=15, solver=SOLVER).grads(model, x, y)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])  # restored bit for bit
        assert p.grad is None
        assert grads[n].abs().max() > 0


def test_zero_rate_is_positive_ep_with_a_k_step_nudged_phase():
    model, x, y = setup()
    k, beta = 12, 1e-2
    cep = ContinualEP(beta=beta, lr=0.0, steps=k, solver=SOLVER).grads(model, x, y)
    ep = EP(beta, "positive", solver=SOLVER, nudged_solver=FixedPoint(tol=None, max_steps=k)).grads(model, x, y)
    for n in ep:  # Σ_t ΔEP_θ telescopes exactly; round-off ≈ K·eps·|∂E|/β ≈ 1e-13
        assert torch.allclose(cep[n], ep[n], rtol=0, atol=1e-11)


def test_train_step_is_grads_followed_by_sgd_with_the_same_rate():
    model, x, y = setup()
    learner = ContinualEP(beta=0.05, lr=0.02, steps=15, solver=SOLVER)
    grads = learner.grads(model, x, y)
    optimizer = torch.optim.SGD(model.parameters(), lr=learner.lr)
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    model_b, _, _ = setup()
    out = learner.train_step(model_b, x, y)
    for (n, p), (_, q) in zip(model.named_parameters(), model_b.named_parameters()):
        p.grad = grads[n]
    optimizer.step()
    for (n, p), (_, q) in zip(model.named_parameters(), model_b.named_parameters()):
        assert not torch.equal(q, reference[n])  # C-EP proper moved the parameters in place
        # same displacement Σ_t Δθ_t = −η ĝ, summed in another order: round-off only
        assert torch.allclose(p, q, rtol=0, atol=1e-13)
        assert torch.allclose(out.grads[n], grads[n], rtol=0, atol=1e-12)
    assert out.loss > 0


def test_updates_are_recorded_per_step_and_sum_to_minus_the_estimate():
    model, x, y = setup()
    up = ep_updates(model, x, y, beta=1e-3, steps=7, solver=SOLVER)
    assert up.weights["layers.0.weight"].shape == (7, 4, 5)
    assert up.neural[1].shape == (7, 6, 3)
    for n, w in up.weights.items():
        assert torch.allclose(w.sum(0), up.total[n], rtol=0, atol=1e-13)


def test_continual_ep_training_tracks_gradient_descent_at_the_same_rate():
    solver = FixedPoint(tol=1e-10, max_steps=1000)
    model, x, y = setup()
    learner = ContinualEP(beta=0.2, lr=0.02, steps=40, solver=solver)
    cep = [float(learner.train_step(model, x, y).loss) for _ in range(30)]
    model, x, y = setup()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    exact = ImplicitDifferentiation(solver=solver)
    sgd = []
    for _ in range(30):
        optimizer.zero_grad()
        sgd.append(float(exact.step(model, x, y).loss))
        optimizer.step()
    assert cep[-1] < cep[0]
    # each C-EP step moves θ by −η(dL/dθ + O(β) + c·η/β): the loss decrease matches SGD's to
    # O(β) + O(η/β) ≈ 0.25·0.2 + 0.3·0.1 ≈ 8 % (measured 0.4 %)
    assert abs((cep[0] - cep[-1]) / (sgd[0] - sgd[-1]) - 1) < 0.08


def test_a_diverging_rate_is_reported_and_the_parameters_restored():
    model, x, y = setup()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(NonFiniteError):
        ContinualEP(beta=1e-3, lr=1e306, steps=5, solver=SOLVER).train_step(model, x, y)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])


@pytest.mark.parametrize(
    "kwargs",
    [{"beta": 0.0, "lr": 0.1}, {"beta": 0.1, "lr": -1.0}, {"beta": 0.1, "lr": float("nan")},
     {"beta": 0.1, "lr": 0.1, "steps": 0}, {"beta": 0.1, "lr": 0.1, "steps": 2.5},
     {"beta": 0.1, "lr": 0.1, "solver": GradientDescent(step_size=0.1)}],
)
def test_bad_options_are_rejected(kwargs):
    with pytest.raises(ConfigurationError):
        ContinualEP(**kwargs)


def test_unknown_options_are_rejected():
    with pytest.raises(TypeError):
        ContinualEP(beta=0.1, lr=0.1, momentum=0.9)
