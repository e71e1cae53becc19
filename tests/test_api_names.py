"""The public names and keyword arguments, as the docs and examples spell them: user code calls them as written."""

import torch

import eqprop


def test_names_and_keywords_as_documented():
    eqprop.costs.SquaredError()
    eqprop.costs.CrossEntropy()
    gd = eqprop.solvers.GradientDescent(step_size=0.1, tol=1e-6, max_steps=100)
    fp = eqprop.solvers.FixedPoint(tol=1e-6, max_steps=100)
    eqprop.solvers.Asynchronous(tol=1e-6, max_steps=100)
    eqprop.solvers.GradientDescent(0.1, 1e-6, 100)  # positional, in the documented order
    eqprop.solvers.PositionVerlet(dt=0.1)
    eqprop.solvers.PositionVerlet(dt=None)
    eqprop.solvers.LeapFrog(dt=0.1)
    for variant in ("positive", "negative", "centered", "random_sign"):
        eqprop.learners.EP(0.1, variant=variant, solver=fp, nudged_solver=fp, cost=None)
    model = eqprop.models.HopfieldMLP(sizes=[784, 512, 10], activation="hard_sigmoid")
    assert model.sizes == [784, 512, 10]
    eqprop.learners.HolomorphicEP(0.1, points=4, solver=None, cost=None)
    eqprop.learners.ContinualEP(0.1, lr=1e-3)
    eqprop.learners.ContrastiveLearning(solver=None, cost=None)
    for variant in ("positive", "negative", "centered"):
        eqprop.learners.CoupledLearning(0.1, variant=variant)
    for variant in ("centered", "one_sided"):
        eqprop.learners.RHEL(0.01, variant=variant, integrator=None, cost=None)
    eqprop.learners.HEB(0.01)
    eqprop.learners.GLEP(0.01, boundary="echo")
    eqprop.baselines.BPTT(solver=gd, cost=None)
    eqprop.baselines.BPTT(integrator=eqprop.solvers.PositionVerlet(), cost=None)
    eqprop.baselines.ImplicitDifferentiation(solver=None, cost=None)
    eqprop.baselines.Adjoint(step_size=0.1)
    assert issubclass(eqprop.models.EnergyModel, torch.nn.Module)
    assert issubclass(eqprop.models.HamiltonianModel, torch.nn.Module)
    assert issubclass(eqprop.models.LagrangianModel, torch.nn.Module)
    for name in ("HopfieldMLP", "ConvHopfield", "LinearHRU", "NonlinearHRU", "HSSM"):
        assert hasattr(eqprop.models, name)
    assert callable(eqprop.check.compare)
