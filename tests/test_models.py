"""Built-in models: closed forms against autograd, and the energy's stationary points."""

import pytest
import torch

from eqprop.errors import ConfigurationError, ShapeError
from eqprop.models import HopfieldMLP
from eqprop.models.base import HopfieldEnergy
from eqprop.solvers import FixedPoint


@pytest.mark.parametrize("activation", ["hard_sigmoid", "sigmoid", "tanh", "identity"])
def test_closed_forms_equal_autograd(activation):
    torch.manual_seed(0)
    model = HopfieldMLP([6, 5, 4, 3], activation).double()
    x = torch.randn(7, 6)
    state = tuple(torch.rand(7, n) * 0.8 + 0.1 for n in (5, 4, 3))
    weights = torch.randn(7)
    closed = (model.primitive_grad(state, x), model.param_grads(state, x, weights), model.energy_grad(state, x))
    model.closed_form = False
    auto = (model.primitive_grad(state, x), model.param_grads(state, x, weights), model.energy_grad(state, x))
    for a, b in zip(closed[0], auto[0]):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-13)  # same sums in another order: round-off
    for name in closed[1]:
        assert torch.allclose(closed[1][name], auto[1][name], rtol=1e-12, atol=1e-13)
    for a, b in zip(closed[2], auto[2]):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-13)
    # The generic path (HopfieldEnergy's autograd of the energy itself) agrees too.
    generic = super(HopfieldEnergy, model).energy_grad(state, x)
    for a, b in zip(generic, auto[2]):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_fixed_point_is_a_stationary_point_of_the_energy(activation):
    torch.manual_seed(1)
    model = HopfieldMLP([5, 4, 3], activation).double()
    x = torch.randn(4, 5)
    state, status = FixedPoint(tol=1e-14, max_steps=2000).solve(model, x, model.init_state(x))
    assert status.converged
    grad = model.energy_grad(state, x)
    # ∂E/∂s = ρ⁻¹(s) − ∂Φ/∂s = 0 at s = ρ(∂Φ/∂s), up to the residual 1e-14 times |dρ⁻¹/ds| ≤ 1e2.
    assert max(float(g.detach().abs().max()) for g in grad) < 1e-11


def test_init_state_is_rest():
    model = HopfieldMLP([3, 2, 2], "sigmoid").double()
    state = model.init_state(torch.zeros(4, 3))
    assert all(torch.equal(s, torch.full((4, 2), 0.5)) for s in state)


def test_bad_model_arguments():
    with pytest.raises(ConfigurationError, match="activation"):
        HopfieldMLP([3, 2], "relu6")
    with pytest.raises(ConfigurationError, match="sizes"):
        HopfieldMLP([3])
    with pytest.raises(ShapeError, match="activations"):
        HopfieldMLP([3, 2, 2], ["tanh"])
    model = HopfieldMLP([3, 2])
    with pytest.raises(ShapeError, match="3 features"):
        model.init_state(torch.zeros(4, 5))


def test_in_place_activation_never_touches_the_context():
    """A single-layer network's drive is the context itself: the solver must not overwrite it."""
    torch.manual_seed(2)
    model = HopfieldMLP([3, 4], "hard_sigmoid").double()
    x = torch.randn(5, 3) * 3
    context = model.prepare(x).detach()
    saved = context.clone()
    with torch.no_grad():
        state, _ = FixedPoint(tol=None, max_steps=3).solve(model, x, model.init_state(x), context=context)
    assert torch.equal(context, saved)
    assert torch.equal(state[0], saved.clamp(0, 1))


def test_relaxation_with_and_without_autograd_agree():
    """The in-place path (no graph) and the differentiable path compute the same numbers."""
    torch.manual_seed(3)
    model = HopfieldMLP([6, 5, 4, 3], "sigmoid").double()
    x = torch.randn(4, 6)
    solver = FixedPoint(tol=None, max_steps=25)
    fast, _ = solver.solve(model, x, model.init_state(x))
    graph, _ = solver.solve(model, x, model.init_state(x), differentiable=True)
    for a, b in zip(fast, graph):
        assert torch.equal(a, b.detach())
