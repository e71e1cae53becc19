"""The reliability catalogue: no silent wrong result, no unclear error (library side).

Each case is a bad or edge input a user met. It must end in an eqprop error of the stated class
whose one sentence names the fix, in a warning that carries the figure (the residual), or in a
correct result checked against a reference. Small float64 models; the whole module runs in a
few seconds.
"""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from torch import nn

from eqprop import baselines as B
from eqprop import learners as L
from eqprop.costs import CrossEntropy, SquaredError
from eqprop.errors import ConfigurationError, ConvergenceError, ConvergenceWarning, NonFiniteError, ShapeError
from eqprop.estimators.base import settings
from eqprop.models import ACTIVATIONS, Activation, EnergyModel, HamiltonianModel, HopfieldEnergy, HopfieldMLP, LinearHRU, hopfield_chain
from eqprop.models.base import _legendre_grad
from eqprop.solvers import Asynchronous, BoundaryNewton, FixedPoint, GradientDescent, LeapFrog, PositionVerlet

from catalogue import CATALOGUE, Oscillators, hamiltonian_problem, static_problem

D = torch.float64


def converged() -> FixedPoint:
    return FixedPoint(tol=1e-12, max_steps=2000)


# -- 1. user physics methods of the wrong shape -------------------------------------------------


class Quadratic(EnergyModel):
    """E = ½|s|² − s·Wx per sample; ``reduce`` breaks the per-sample shape on purpose."""

    output_is_parameter_free = True

    def __init__(self, reduce: str = "sample") -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 3, dtype=D))
        self.reduce = reduce

    def energy(self, state, x):
        e = 0.5 * (state[0] ** 2).sum(-1) - (state[0] * (x @ self.w.T)).sum(-1)
        if self.reduce == "scalar":
            return e.sum()  # summed over the batch: EP would get exactly 0
        if self.reduce == "column":
            return e.unsqueeze(1)  # [B, 1]: broadcast to [2B, 2B] in the contrast
        return e

    def init_state(self, x):
        return (torch.zeros(x.shape[0], 2, dtype=x.dtype),)

    def output(self, state):
        return state[0]


ENERGY_LEARNERS = [
    lambda: L.EP(0.1, solver=GradientDescent(0.5, tol=1e-10)),
    lambda: L.ContrastiveLearning(solver=GradientDescent(0.5, tol=1e-10)),
    lambda: L.CoupledLearning(0.5, solver=GradientDescent(0.5, tol=1e-10)),
    lambda: L.HolomorphicEP(0.1, solver=GradientDescent(0.5, tol=1e-10)),
    lambda: B.BPTT(solver=GradientDescent(0.5, tol=None, max_steps=50)),
    lambda: B.ImplicitDifferentiation(solver=GradientDescent(0.5, tol=1e-10)),
]


@pytest.mark.parametrize("reduce", ["scalar", "column"])
@pytest.mark.parametrize("make", ENERGY_LEARNERS)
def test_energy_of_wrong_shape_is_refused_by_every_energy_learner(make, reduce):
    model, x, y = Quadratic(reduce), torch.randn(4, 3, dtype=D), torch.randn(4, 2, dtype=D)
    learner = make()
    with pytest.raises(ShapeError, match=r"Quadratic\.energy must return one value per sample, shape \(4,\).*sum over every axis"):
        learner.grads(model, x, y)
    with pytest.raises(ShapeError, match=r"Quadratic\.energy"):
        learner.predict(model, x)


def test_energy_of_right_shape_gives_the_exact_gradient():
    """The same model with a per-sample energy: EP centered = implicit differentiation to O(β²)."""
    torch.manual_seed(0)
    model, x, y = Quadratic(), torch.randn(4, 3, dtype=D), torch.randn(4, 2, dtype=D)
    solver = GradientDescent(0.5, tol=1e-13, max_steps=10_000)
    ep = L.EP(1e-3, solver=solver).grads(model, x, y)["w"]
    exact = B.ImplicitDifferentiation(solver=solver).grads(model, x, y)["w"]
    # s^β = (Wx + βy)/(1 + β): the centered difference is off by O(β²) = 1e-6 relative.
    assert float((ep - exact).norm() / exact.norm()) < 1e-5


class SummedPrimitive(HopfieldEnergy):
    activations = (ACTIVATIONS["sigmoid"],)

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 3, dtype=D))

    def primitive(self, state, x):
        return (state[0] * (x @ self.w.T)).sum()  # summed over the batch

    def init_state(self, x):
        return (torch.full((x.shape[0], 2), 0.5, dtype=x.dtype),)

    def output(self, state):
        return state[0]


def test_primitive_of_wrong_shape_is_refused():
    with pytest.raises(ShapeError, match=r"SummedPrimitive\.primitive must return one value per sample"):
        L.EP(0.1).grads(SummedPrimitive(), torch.randn(4, 3, dtype=D), torch.rand(4, 2, dtype=D))


class BadHamiltonian(HamiltonianModel):
    dt = 0.1

    def __init__(self, which: str) -> None:
        super().__init__()
        self.which = which
        self.w = nn.Parameter(torch.randn(3, 1, dtype=D))

    def potential(self, q, u):
        v = 0.5 * (q * q).sum(-1) - (q * (u @ self.w.T)).sum(-1)
        return v.sum() if self.which == "potential" else v

    def kinetic(self, p):
        t = 0.5 * (p * p).sum(-1)
        return t.unsqueeze(1) if self.which == "kinetic" else t

    def init_state(self, u_seq):
        z = torch.zeros(u_seq.shape[0], 3, dtype=u_seq.dtype)
        return (z, z) if self.which != "init_state" else z

    def output(self, q):
        return q[:, :2]


@pytest.mark.parametrize("which", ["potential", "kinetic", "init_state"])
@pytest.mark.parametrize("make", [lambda: L.RHEL(1e-3), lambda: B.Adjoint(0.1), lambda: B.BPTT(integrator=PositionVerlet()),
                                  lambda: L.HEB(1e-3, integrator=LeapFrog(dt=0.1))])
def test_hamiltonian_methods_of_wrong_shape_are_refused(make, which):
    x, y = torch.randn(2, 4, 1, dtype=D), torch.randn(2, 2, dtype=D)
    with pytest.raises(ShapeError, match=rf"BadHamiltonian\.{which}"):
        make().grads(BadHamiltonian(which), x, y)


class SummedLagrangian(Oscillators):
    def lagrangian(self, s, s_dot, x_t):
        return super().lagrangian(s, s_dot, x_t).sum()


@pytest.mark.parametrize("make", [lambda: L.GLEP(0.1), lambda: B.LagrangianImplicit(), lambda: B.LagrangianBPTT()])
def test_lagrangian_of_wrong_shape_is_refused(make):
    x, y = torch.randn(2, 4, 2, dtype=D), torch.randn(2, 2, dtype=D)
    with pytest.raises(ShapeError, match=r"SummedLagrangian\.lagrangian must return one value per sample"):
        make().grads(SummedLagrangian(), x, y)


def test_init_state_returning_a_bare_tensor_is_refused():
    class Bare(Quadratic):
        def init_state(self, x):
            return torch.zeros(x.shape[0], 2, dtype=x.dtype)

    with pytest.raises(ShapeError, match=r"bare tensor; return a tuple.*\(s,\)"):
        L.EP(0.1).grads(Bare(), torch.randn(4, 3, dtype=D), torch.randn(4, 2, dtype=D))


# -- 2. activations: explicit fields, no name dispatch ------------------------------------------


def test_user_activation_named_like_a_builtin_gets_its_own_legendre_term():
    """A user 'sigmoid' that is really ρ = tanh: the force must be the gradient of its own energy."""
    fake = Activation(name="sigmoid", rho=torch.tanh, rho_prime=lambda u: 1 - torch.tanh(u) ** 2,
                      legendre=ACTIVATIONS["tanh"].legendre, lower=-1.0, upper=1.0, holomorphic=True)
    model = HopfieldMLP([3, 4, 2], fake).to(D)
    x = torch.randn(5, 3, dtype=D)
    state = tuple(0.8 * torch.rand(5, n, dtype=D) - 0.4 for n in (4, 2))
    force = tuple(f.detach() for f in model.energy_grad(state, x))
    leaves = tuple(s.clone().requires_grad_() for s in state)
    reference = torch.autograd.grad(model.energy(leaves, x).sum(), leaves)
    # Before: the built-in sigmoid's ρ⁻¹ was used (error 4.75); now autograd-equal to round-off.
    for f, r in zip(force, reference):
        assert float((f - r).abs().max()) < 1e-12


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_builtin_closed_forms_match_autograd_of_their_legendre_term(name):
    activation = ACTIVATIONS[name]
    assert activation.rho_inverse is not None  # the built-ins keep their closed forms
    lower = max(activation.lower, -3.0) + 0.05
    upper = min(activation.upper, 3.0) - 0.05
    s = torch.linspace(lower, upper, 50, dtype=D)
    leaf = s.clone().requires_grad_()
    (auto,) = torch.autograd.grad(activation.legendre(leaf).sum(), leaf)
    assert float((_legendre_grad(activation, s) - auto).abs().max()) < 1e-10  # G' = ρ⁻¹, round-off only
    inside = (s > activation.lower) & (s < activation.upper)
    assert torch.allclose(activation.rho(activation.rho_inverse(s[inside])), s[inside], atol=1e-10)


def test_activation_fields_are_checked():
    with pytest.raises(ConfigurationError, match="lower"):
        Activation("bad", torch.tanh, torch.tanh, torch.tanh, lower=1.0, upper=-1.0, holomorphic=False)
    with pytest.raises(ConfigurationError, match="rho_inverse"):
        Activation("bad", torch.tanh, torch.tanh, torch.tanh, -1.0, 1.0, False, rho_inverse="atanh")


# -- 3. cross-entropy probability targets ------------------------------------------------------


@pytest.mark.parametrize("target, fix", [
    (lambda p: 5 * p, "sum to 1"),
    (lambda p: p - 0.5 * p.roll(1, -1), "non-negative"),
])
def test_cross_entropy_refuses_targets_that_are_no_distribution(target, fix):
    model, x, _ = static_problem()
    probabilities = torch.softmax(torch.randn(3, 2, dtype=D), -1)
    for learner in (L.EP(0.1, cost=CrossEntropy()), B.ImplicitDifferentiation(cost=CrossEntropy())):
        with pytest.raises(ShapeError, match=fix):
            learner.grads(model, x, target(probabilities))


def test_cross_entropy_accepts_a_distribution_in_float32():
    p = torch.softmax(torch.randn(6, 5), -1)  # rows sum to 1 within float32 round-off
    CrossEntropy().check_target(torch.zeros(6, 5), p)


# -- 4. a free phase away from equilibrium -----------------------------------------------------


@pytest.mark.parametrize("make", [lambda s: B.ImplicitDifferentiation(solver=s), lambda s: L.EP(0.01, solver=s),
                                  lambda s: L.CoupledLearning(0.5, solver=s), lambda s: L.ContinualEP(0.1, 0.0, solver=s)])
def test_unconverged_fixed_step_free_phase_warns_with_its_residual(make):
    model, x, y = static_problem()
    with pytest.warns(ConvergenceWarning, match=r"residual \d\.\d+e[-+]\d+ > equilibrium_tol=1e-03"):
        make(FixedPoint(tol=None, max_steps=2)).grads(model, x, y)
    with pytest.raises(ConvergenceError, match="raise max_steps"):
        make(FixedPoint(tol=None, max_steps=2, on_nonconvergence="raise")).grads(model, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(FixedPoint(tol=None, max_steps=2, on_nonconvergence="ignore")).grads(model, x, y)  # on purpose: silent
        make(FixedPoint(tol=None, max_steps=200)).grads(model, x, y)  # converged: silent


def test_the_free_residual_is_reported_and_bptt_is_exact_for_any_steps():
    model, x, y = static_problem()
    solver = FixedPoint(tol=None, max_steps=2, on_nonconvergence="ignore")
    info = L.EP(0.01, solver=solver).step(model, x, y).info
    assert info["free"].residual > 1e-3  # two steps from rest are far from equilibrium
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # BPTT differentiates the 2-step map itself: no assumption, no warning
        B.BPTT(solver=FixedPoint(tol=None, max_steps=2)).grads(model, x, y)


def test_unconverged_ff_ebm_block_warns():
    model = hopfield_chain([[3, 4], [4, 2]]).to(D)
    x, y = torch.rand(3, 3, dtype=D), torch.rand(3, 2, dtype=D)
    with pytest.warns(ConvergenceWarning, match=r"block \d"):
        L.ChainedEP(0.1, solver=FixedPoint(tol=None, max_steps=1)).grads(model, x, y)


# -- 5. non-finite values in the fixed-step path ------------------------------------------------


def test_nan_parameter_is_named_by_predict_grads_and_the_solver():
    model, x, y = static_problem()
    with torch.no_grad():
        model.layers[1].weight[0, 0] = float("nan")
    for call in (lambda: L.EP(0.1, solver=FixedPoint(tol=None, max_steps=5)).predict(model, x),
                 lambda: B.BPTT(solver=FixedPoint(tol=None, max_steps=5)).grads(model, x, y),
                 lambda: FixedPoint(tol=None, max_steps=5).solve(model, x, model.init_state(x))):
        with pytest.raises(NonFiniteError, match=r"layers\.1\.weight .*reload a checkpoint"):
            call()


def test_nan_energy_in_a_fixed_step_relaxation_is_reported():
    class LogEnergy(Quadratic):
        def energy(self, state, x):  # √s of a state that gradient descent drives negative: NaN force
            return torch.sqrt(state[0]).sum(-1) + super().energy(state, x)

        def init_state(self, x):
            return (torch.full((x.shape[0], 2), 0.5, dtype=x.dtype),)

    model, x = LogEnergy(), torch.randn(4, 3, dtype=D)
    with pytest.raises(NonFiniteError, match=r"GradientDescent reached NaN or infinity .*LogEnergy\.energy"):
        L.EP(0.1, solver=GradientDescent(1.0, tol=None, max_steps=50)).predict(model, x)


# -- 6. step() owns its gradient ---------------------------------------------------------------


@pytest.mark.parametrize("entry", [e for e in CATALOGUE if e.name in ("EP", "RHEL", "GLEP", "BPTT")], ids=lambda e: e.name)
def test_step_grads_are_not_aliased_to_p_grad(entry):
    model, x, y = entry.problem()
    learner = entry.learner()
    first = learner.step(model, x, y)
    kept = {k: v.clone() for k, v in first.grads.items()}
    learner.step(model, x, y)
    for name, p in model.named_parameters():
        assert first.grads[name] is not p.grad
        assert torch.equal(first.grads[name], kept[name])  # unchanged by the second step
        assert torch.allclose(p.grad, 2 * kept[name])  # p.grad accumulated both


# -- unclear errors that now name the fix --------------------------------------------------------


@pytest.mark.parametrize("x, fix", [
    (torch.zeros(0, 3, dtype=D), "at least one sample"),
    (torch.zeros(3, dtype=D), r"x\.unsqueeze\(0\)"),
    (torch.zeros(3, 3, dtype=torch.long), r"x\.to\(torch\.float64\)"),
    (torch.zeros(3, 3, dtype=torch.complex128), "pass a real input"),
    (torch.zeros(3, 3, dtype=torch.float32), r"x\.to\(torch\.float64\)"),
    (torch.zeros(3, 3, dtype=D, device="meta"), "meta device"),
])
def test_bad_inputs_name_the_fix(x, fix):
    model, _, y = static_problem()
    for learner in (L.EP(0.1), B.BPTT()):
        with pytest.raises(ShapeError, match=fix):
            learner.predict(model, x)


def test_model_on_the_meta_device_names_the_fix():
    model, x, y = static_problem()
    with pytest.raises(ShapeError, match=r"to_empty\(device='cpu'\)"):
        L.EP(0.1).grads(model.to("meta"), x, y)


@pytest.mark.parametrize("make, field", [
    (lambda: FixedPoint(max_steps="abc"), "max_steps"), (lambda: FixedPoint(max_steps=None), "max_steps"),
    (lambda: FixedPoint(tol="abc"), "tol"), (lambda: GradientDescent(step_size="abc"), "step_size"),
    (lambda: Asynchronous(max_steps=2.5), "max_steps"), (lambda: BoundaryNewton(max_steps="abc"), "max_steps"),
    (lambda: B.ImplicitDifferentiation(tol="abc"), "tol"), (lambda: B.ChainedBackprop(max_iter=0), "max_iter"),
    (lambda: L.ContinualEP(0.1, 0.1, steps="abc"), "steps"), (lambda: L.EP(0.1, seed="abc"), "seed"),
    (lambda: L.EP(0.1, batch_phases="no"), "batch_phases"), (lambda: B.BPTT(integrator="verlet"), "integrator"),
])
def test_bad_numbers_and_options_are_refused_at_construction(make, field):
    with pytest.raises(ConfigurationError, match=rf"^{field}"):
        make()


def test_bptt_works_under_no_grad_and_inference_mode():
    model, x, y = static_problem()
    learner = B.BPTT(solver=FixedPoint(tol=None, max_steps=30))
    reference = learner.grads(model, x, y)
    with torch.no_grad():
        quiet = learner.grads(model, x, y)
    with torch.inference_mode():
        inferred = learner.grads(model, x, y)
    for name in reference:
        assert torch.equal(quiet[name], reference[name]) and torch.equal(inferred[name], reference[name])


@pytest.mark.parametrize("make, model, right", [
    (lambda: L.EP(0.1), lambda: LinearHRU(1, 3, output_size=2), "RHEL"),
    (lambda: L.EP(0.1), lambda: hopfield_chain([[3, 4], [4, 2]]), "ChainedEP"),
    (lambda: B.ImplicitDifferentiation(), lambda: Oscillators(), "GLEP"),
    (lambda: L.RHEL(1e-3), lambda: HopfieldMLP([3, 4, 2]), "EP"),
    (lambda: L.GLEP(0.1), lambda: LinearHRU(1, 3, output_size=2), "RHEL"),
    (lambda: L.ChainedEP(0.1), lambda: HopfieldMLP([3, 4, 2]), "EP"),
])
def test_a_model_of_another_kind_is_refused_naming_the_right_learner(make, model, right):
    x, y = torch.randn(2, 4, 1), torch.randn(2, 2)
    with pytest.raises(ConfigurationError, match=rf"train it with .*\b{right}\b"):
        make().grads(model(), x, y)
    with pytest.raises(ConfigurationError, match=rf"train it with .*\b{right}\b"):
        make().predict(model(), x)


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.name for e in CATALOGUE])
def test_a_model_with_no_trainable_parameters(entry):
    """Nothing to learn: an empty gradient where the estimator copes, else one sentence naming the fix."""
    model, x, y = entry.problem()
    model.requires_grad_(False)
    learner = entry.learner()
    try:
        grads = learner.grads(model, x, y)
    except ConfigurationError as err:
        assert re.search(r"no trainable parameters.*requires_grad_\(True\)", str(err)), err
    else:
        assert grads == {}
    assert torch.isfinite(learner.predict(model, x)).all()  # prediction needs no parameter to learn


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.name for e in CATALOGUE])
def test_every_learner_validates_its_cost_and_repr_names_every_setting(entry):
    learner = entry.learner()
    held = settings(learner)
    assert "?" not in [v for v in held.values() if isinstance(v, str)], held  # every setting is kept by name
    text = repr(learner)
    for name in held:
        assert re.search(rf"\b{name}=", text), f"{type(learner).__name__} repr hides {name}: {text}"
    if "cost" in held:
        for bad, fix in (("mse", r"SquaredError\(\)"), (SquaredError, r"SquaredError\(\)")):
            with pytest.raises(ConfigurationError, match=fix):
                type(learner)(**{**held, "cost": bad})


class UserReadout(EnergyModel):
    """Three documented methods only; output returns a state layer (no output_layer declared)."""

    def __init__(self, readout: bool = False):
        super().__init__()
        self.w = nn.Parameter(0.5 * torch.randn(3, 3, dtype=D))
        self.v = nn.Parameter(0.2 * torch.randn(2, 3, dtype=D))  # |v| < 1: the energy is convex
        self.readout = readout

    def energy(self, state, x):
        h, o = state
        return 0.5 * (h * h).sum(-1) + 0.5 * (o * o).sum(-1) - (h * (x @ self.w.T)).sum(-1) - (o * (h @ self.v.T)).sum(-1)

    def init_state(self, x):
        return (torch.zeros(x.shape[0], 3, dtype=x.dtype), torch.zeros(x.shape[0], 2, dtype=x.dtype))

    def output(self, state):
        return 2.0 * state[1] if self.readout else state[1]


@pytest.mark.parametrize("make", [lambda s: L.ContrastiveLearning(solver=s), lambda s: L.CoupledLearning(0.5, solver=s)])
def test_clamped_learners_find_the_output_layer_by_identity(make):
    torch.manual_seed(0)
    model, x, y = UserReadout(), torch.randn(4, 3, dtype=D), torch.randn(4, 2, dtype=D)
    solver = GradientDescent(0.3, tol=1e-12, max_steps=20_000)
    found = make(solver).grads(model, x, y)
    model.output_layer = 1
    declared = make(solver).grads(model, x, y)
    for name in found:
        assert torch.allclose(found[name], declared[name], atol=1e-14)  # one computation, two ways to name the layer
    with pytest.raises(ConfigurationError, match="output_layer"):
        make(solver).grads(UserReadout(readout=True), x, y)


def test_sequence_inputs_of_one_axis_name_the_sequence_shape():
    model, x, y = hamiltonian_problem()
    with pytest.raises(ShapeError, match=r"\[batch, T, features\]"):
        L.RHEL(1e-3).grads(model, x[:, :, 0].reshape(-1), y)
    assert math.isfinite(float(L.RHEL(1e-3).grads(model, x, y)["dt"].sum()))


def test_hopfield_activation_given_by_name_is_refused_naming_get_activation():
    class Named(SummedPrimitive):
        activations = ("sigmoid",)

    with pytest.raises(ConfigurationError, match=r"get_activation"):
        L.EP(0.1).grads(Named(), torch.randn(4, 3, dtype=D), torch.rand(4, 2, dtype=D))


def test_solver_refuses_a_bare_tensor_state():
    model, x, _ = static_problem()
    with pytest.raises(ShapeError, match=r"tuple of tensors.*\(s,\)"):
        FixedPoint().solve(model, x, torch.zeros(3, 4, dtype=D))  # tuple(tensor) would split the batch


def test_cross_entropy_refuses_a_boolean_target():
    """A bool [B] target passed the class-index checks and was then read as one probability per sample."""
    model, x, _ = static_problem()
    with pytest.raises(ShapeError, match=r"y\.long\(\)"):
        L.EP(0.1, cost=CrossEntropy()).grads(model, x, torch.tensor([True, False, True]))


def test_ff_ebm_block_with_a_summed_energy_is_refused():
    from eqprop.models import FFEBM

    class Block(Quadratic):
        def energy(self, state, x):
            return super().energy(state, x).sum()

    model = FFEBM([(nn.Identity(), Block())])
    for learner in (L.ChainedEP(0.1, solver=GradientDescent(0.5, tol=1e-10)), B.ChainedBackprop(solver=GradientDescent(0.5, tol=1e-10))):
        with pytest.raises(ShapeError, match=r"Block\.energy must return one value per sample"):
            learner.grads(model, torch.randn(4, 3, dtype=D), torch.randn(4, 2, dtype=D))


def test_continual_ep_train_step_checks_like_step():
    with pytest.raises(ConfigurationError, match="train it with RHEL"):
        L.ContinualEP(0.1, 0.01).train_step(LinearHRU(1, 3, output_size=2), torch.randn(2, 4, 1), torch.randn(2, 2))
    with pytest.raises(ShapeError, match=r"Quadratic\.energy"):
        L.ContinualEP(0.1, 0.01, solver=FixedPoint()).train_step(Quadratic("scalar"), torch.randn(4, 3, dtype=D), torch.randn(4, 2, dtype=D))
