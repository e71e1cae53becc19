"""ConvHopfield (DCHN): closed forms against autograd, EP against implicit differentiation, errors.

Theory (docs/theory.md, "EP and its variants"): at a converged equilibrium BPTT equals implicit differentiation to
round-off; one-sided EP has bias Kβ, centered EP Kβ². Average pooling makes the energy smooth;
max pooling makes it smooth wherever no pooling window ties, which holds at a generic
equilibrium, so the same orders are expected there (measured K ≈ 0.04–1.3 on these problems).
"""

import warnings

import pytest
import torch

from eqprop.baselines import BPTT, ImplicitDifferentiation
from eqprop.check import beta_sweep, compare
from eqprop.costs import CrossEntropy, SquaredError
from eqprop.errors import ConfigurationError, ConvergenceWarning, ShapeError
from eqprop.learners import EP
from eqprop.models import ConvHopfield
from eqprop.models.base import HopfieldEnergy
from eqprop.solvers import Asynchronous, FixedPoint

BETAS = [1e-2, 3e-3, 1e-3]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convolutions: one thread is fastest and does not fight other processes for the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make(pooling="avg", activation="sigmoid", init_scale=2.0, seed=0, **kwargs):
    torch.manual_seed(seed)
    options = dict(in_channels=1, channels=[2, 3], n_classes=3, input_size=6, kernel_size=3, padding=1)
    options.update(kwargs)
    return ConvHopfield(pooling=pooling, activation=activation, init_scale=init_scale, **options).double()


def data(model, batch=4, seed=0, classes=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, model.in_channels, *model.input_size, generator=g)
    if classes:
        return x, torch.randint(0, model.n_classes, (batch,), generator=g)
    return x, torch.rand(batch, model.n_classes, generator=g)


def random_state(model, x, seed=1):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(s.shape, generator=g) * 0.8 + 0.1 for s in model.init_state(x))


GEOMETRIES = [
    dict(),  # 6x6 → 3x3 → 1x1 (the remainder row of the second pool is dropped)
    dict(input_size=(7, 5), kernel_size=2, padding=0, channels=[3, 2, 2], pool_size=1),
    dict(input_size=7, channels=[2], n_classes=4),  # one conv layer: no feedback convolution
]


@pytest.mark.parametrize("pooling", ["avg", "max", "none"])
@pytest.mark.parametrize("geometry", range(len(GEOMETRIES)))
def test_closed_forms_equal_autograd(pooling, geometry):
    model = make(pooling, "sigmoid", **GEOMETRIES[geometry])
    x, _ = data(model, batch=5)
    state = random_state(model, x)
    weights = torch.randn(5)
    closed = (model.primitive_grad(state, x, model.prepare(x)), model.param_grads(state, x, weights))
    model.closed_form = False
    auto = (model.primitive_grad(state, x), model.param_grads(state, x, weights))
    # Same sums in another order (a random state has no ties in a max-pool window): round-off.
    for a, b in zip(closed[0], auto[0]):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-13)
    assert set(closed[1]) == {n for n, _ in model.named_parameters()}
    for name in closed[1]:
        assert torch.allclose(closed[1][name], auto[1][name], rtol=1e-12, atol=1e-13), name
    # HopfieldEnergy's force ρ⁻¹(s) − ∂Φ/∂s equals autograd of the whole energy.
    model.closed_form = True
    generic = super(HopfieldEnergy, model).energy_grad(state, x)
    for a, b in zip(model.energy_grad(state, x), generic):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_primitive_is_the_layered_sum():
    """Φ against a direct nn.Module computation (an independent check of what autograd differentiates)."""
    model = make("max", "sigmoid")
    x, _ = data(model)
    s1, s2, out = random_state(model, x)
    pool = torch.nn.MaxPool2d(2)
    expected = (s1 * pool(model.convs[0](x))).sum((1, 2, 3)) + (s2 * pool(model.convs[1](s1))).sum((1, 2, 3))
    expected = expected + (out * model.fc(s2.reshape(len(x), -1))).sum(1)
    assert torch.allclose(model.primitive((s1, s2, out), x), expected, rtol=1e-13, atol=1e-13)
    assert [tuple(s.shape[1:]) for s in (s1, s2)] == model.state_shapes == [(2, 3, 3), (3, 1, 1)]


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_fixed_point_is_a_stationary_point_of_the_energy(pooling):
    model = make(pooling, "sigmoid")
    x, _ = data(model)
    state, status = FixedPoint(tol=1e-14, max_steps=2000).solve(model, x, model.init_state(x))
    assert status.converged
    # ∂E/∂s = ρ⁻¹(s) − ∂Φ/∂s = 0 at s = ρ(∂Φ/∂s), up to the residual 1e-14 times |dρ⁻¹/ds| ≤ 1e2.
    assert max(float(g.detach().abs().max()) for g in model.energy_grad(state, x)) < 1e-11


PROBLEMS = {
    "avg-sigmoid-fixedpoint": (lambda: make("avg", "sigmoid"), FixedPoint(tol=1e-14, max_steps=3000), SquaredError()),
    "avg-tanh-asynchronous": (lambda: make("avg", "tanh", 1.5), Asynchronous(tol=1e-14, max_steps=3000), SquaredError()),
    "max-sigmoid-fixedpoint": (lambda: make("max", "sigmoid", 3.0, seed=2), FixedPoint(tol=1e-14, max_steps=3000),
                               SquaredError()),
    "avg-sigmoid-identity-out-crossentropy": (
        lambda: make("avg", "sigmoid", output_activation="identity", input_size=8, channels=[3, 2]),
        FixedPoint(tol=1e-14, max_steps=3000), CrossEntropy()),
}


@pytest.fixture(params=sorted(PROBLEMS))
def problem(request):
    make_model, solver, cost = PROBLEMS[request.param]
    model = make_model()
    x, y = data(model, classes=isinstance(cost, CrossEntropy))
    return model, x, y, solver, cost


def test_bptt_equals_implicit_differentiation(problem):
    model, x, y, solver, cost = problem
    report = compare(BPTT(solver=solver, cost=cost), ImplicitDifferentiation(solver=solver, cost=cost), model, x, y)
    # The same converged equilibrium (residual ≤ 1e-14), round-off amplified by (I − J)⁻¹: 1e-9.
    assert report.relative_error < 1e-9, str(report)


@pytest.mark.parametrize("variant,order", [("positive", 1.0), ("centered", 2.0)])
def test_ep_error_order(problem, variant, order):
    model, x, y, solver, cost = problem
    reference = ImplicitDifferentiation(solver=solver, cost=cost)
    sweep = beta_sweep(lambda b: EP(b, variant, solver=solver, cost=cost), reference, model, x, y, BETAS)
    # Slope of log(error) against log(β): 1 one-sided, 2 centered; higher orders shift it by O(β): ±0.1.
    assert abs(sweep.order - order) < 0.1, str(sweep)
    # Size: error ≤ 10·β^order (measured K ≈ 0.04–1.3 here); a wrong estimator stays above 1e-2.
    assert sweep.errors[-1] < 10 * BETAS[-1] ** order, str(sweep)


@pytest.mark.parametrize("activation", ["sigmoid", "hard_sigmoid"])
def test_max_pool_asynchronous_sweeps_never_raise_the_energy(activation):
    # Non-negative units: each layer update is a concave–convex (CCCP) step, so E is non-increasing
    # along the asynchronous sweeps, up to the round-off of an energy of size ~10 (1e-12).
    model = make("max", activation, 3.0, channels=[3, 4], input_size=8)
    x, _ = data(model, batch=5)
    solver = Asynchronous(tol=None, max_steps=1)
    state, energies = model.init_state(x), [model.energy(model.init_state(x), x)]
    for _ in range(40):
        state, _ = solver.solve(model, x, state)
        energies.append(model.energy(state, x))
    increase = (torch.stack(energies).diff(dim=0)).max()
    assert increase < 1e-12
    assert energies[-1].mean() < energies[0].mean() - 1e-3  # and it did move


def test_max_pool_with_signed_units_warns():
    with pytest.warns(ConvergenceWarning, match="Max pooling with an activation that takes negative values"):
        make("max", "tanh")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make("max", "tanh", channels=[2])  # one conv layer: the max pool sees only the input
        make("avg", "tanh")


def test_init_state_and_output_activation():
    model = make("max", "sigmoid", output_activation="identity")
    x, _ = data(model)
    state = model.init_state(x)
    assert [a.name for a in model.activations] == ["sigmoid", "sigmoid", "identity"]
    assert torch.equal(state[0], torch.full((4, 2, 3, 3), 0.5)) and torch.equal(state[-1], torch.zeros(4, 3))
    assert model.output(state) is state[-1]
    per_layer = make("avg", ["hard_sigmoid", "tanh", "identity"])
    assert [a.name for a in per_layer.activations] == ["hard_sigmoid", "tanh", "identity"]


def test_bad_arguments():
    with pytest.raises(ConfigurationError, match="Unknown pooling 'maximum'"):
        make(pooling="maximum")
    with pytest.raises(ConfigurationError, match="at least one convolutional layer"):
        make(channels=[])
    with pytest.raises(ConfigurationError, match=r"channels\[1\] must be an integer ≥ 1"):
        make(channels=[2, 0])
    with pytest.raises(ConfigurationError, match="kernel_size"):
        make(kernel_size=0)
    with pytest.raises(ConfigurationError, match="padding"):
        make(padding=-1)
    with pytest.raises(ConfigurationError, match="input_size"):
        make(input_size="big")
    with pytest.raises(ConfigurationError, match="Conv layer 3 shrinks the image"):
        make(channels=[2, 2, 2])
    with pytest.raises(ConfigurationError, match="activation"):
        make(activation="relu6")
    with pytest.raises(ShapeError, match="3 layers"):
        make(activation=["tanh", "tanh"])


def test_input_shape_argument():
    model = ConvHopfield(input_shape=[3, 8, 6], channels=[2], n_classes=4)
    assert (model.in_channels, model.input_size, model.state_shapes) == (3, (8, 6), [(2, 4, 3)])
    with pytest.raises(ConfigurationError, match="needs the input geometry"):
        ConvHopfield(channels=[2])
    with pytest.raises(ConfigurationError, match=r"needs image inputs, input_shape \(C, H, W\), got \[64\]"):
        ConvHopfield(input_shape=[64], channels=[2])
    with pytest.raises(ConfigurationError, match="contradicts"):
        ConvHopfield(input_shape=[1, 8, 8], in_channels=3, channels=[2])


def test_wrong_input_shapes():
    model = make()
    with pytest.raises(ShapeError, match=r"images shaped \[batch, 1, 6, 6\].*not flattened"):
        model.init_state(torch.zeros(4, 36))
    with pytest.raises(ShapeError, match=r"got shape \(4, 3, 6, 6\)"):
        EP(0.1).grads(model, torch.zeros(4, 3, 6, 6), torch.zeros(4, 3))
    with pytest.raises(ShapeError, match=r"\[batch, 1, 6, 6\]"):
        model.prepare(torch.zeros(4, 1, 8, 8))
