"""The ``compile`` option of the relaxation solvers: each step through ``torch.compile``.

A compiled step computes the same step as the eager one; the kernels it fuses may sum in another
order, so the two agree to float32 round-off, not bit for bit. The inductor comparisons compile
(tens of seconds on a small CPU) and are marked slow; the option's validation, the eager
fallback and the plumbing (traced by dynamo with its eager backend, no code generation) are
fast. Speed is measured by benchmarks/relaxation.py --compile.
"""

import copy
import warnings

import pytest
import torch

from eqprop.baselines import BPTT
from eqprop.costs import SquaredError
from eqprop.errors import CompileWarning, ConfigurationError
from eqprop.learners import EP
from eqprop.models import ConvHopfield, HopfieldMLP
from eqprop.solvers import Asynchronous, FixedPoint, GradientDescent, Nudge

SOLVERS = {"fixed_point": FixedPoint, "asynchronous": Asynchronous,
           "gradient_descent": lambda **kw: GradientDescent(step_size=0.5, **kw)}
REAL_COMPILE = torch.compile


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def conv_net():
    model = ConvHopfield(1, [4, 6], 3, 8, kernel_size=3, padding=1, pooling="max", init_scale=2.0).float()
    return model, torch.rand(4, 1, 8, 8, dtype=torch.float32), torch.rand(4, 3, dtype=torch.float32)


def mlp():
    model = HopfieldMLP([12, 10, 8, 4], activation="sigmoid").float()
    return model, torch.rand(6, 12, dtype=torch.float32), torch.rand(6, 4, dtype=torch.float32)


def relative_gap(a, b) -> float:
    return max(float((u - v).abs().max() / v.abs().max().clamp_min(1e-30)) for u, v in zip(a, b))


def both(make, model, x, y, steps=6):
    """Eager and compile=True relaxations from the same start, free and ± nudged (per-sample β)."""
    beta = torch.tensor([0.5, -0.5] * (x.shape[0] // 2), dtype=torch.float32)
    eager, compiled = make(tol=None, max_steps=steps), make(tol=None, max_steps=steps, compile=True)
    gaps = []
    for nudge in (None, Nudge(SquaredError(), y, beta)):
        a, _ = eager.solve(model, x, model.init_state(x), nudge=nudge)
        b, _ = compiled.solve(model, x, model.init_state(x), nudge=nudge)
        gaps.append(relative_gap(b, a))
    return max(gaps), compiled


@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("value", ["yes", 1, None])
def test_non_bool_compile_refused(name, value):
    with pytest.raises(ConfigurationError, match="compile must be True or False"):
        SOLVERS[name](compile=value)


def test_option_shown_and_compiled_function_not_copied():
    solver = FixedPoint(compile=True)
    solver._compiled = lambda *a: None
    assert "compile=True" in repr(solver) and "_compiled" not in repr(solver)
    assert "_compiled" not in vars(copy.deepcopy(solver)) and copy.deepcopy(solver).compile is True


@pytest.mark.parametrize("name", SOLVERS)
def test_traced_step_matches_eager(name, monkeypatch):
    # dynamo traces the step (graph breaks allowed) but runs it with the eager backend: the same
    # kernels, so the result equals eager to 1e-6 relative (float32 eps 1.2e-7; only op order may change)
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: calls.append(kw) or REAL_COMPILE(fn, backend="eager", **kw))
    model, x, y = conv_net() if name != "gradient_descent" else mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileWarning)
        gap, solver = both(SOLVERS[name], model, x, y)
    assert calls == [{"dynamic": False}] and solver._compiled is not False  # compiled once, and used
    assert gap <= 1e-6


def _failing_backend(graph, example_inputs):
    raise RuntimeError("no code generator for this model")


def test_failed_compilation_warns_once_and_matches_eager(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: REAL_COMPILE(fn, backend=_failing_backend, **kw))
    model, x, y = conv_net()
    eager = Asynchronous(tol=None, max_steps=5)
    solver = Asynchronous(tol=None, max_steps=5, compile=True)
    with pytest.warns(CompileWarning, match="steps eagerly from now on") as record:
        a, _ = solver.solve(model, x, model.init_state(x))
        b, _ = solver.solve(model, x, model.init_state(x))  # already eager: no second warning
    assert len([w for w in record if issubclass(w.category, CompileWarning)]) == 1
    ref, _ = eager.solve(model, x, model.init_state(x))
    assert all(torch.equal(u, v) for u, v in zip(a, ref)) and all(torch.equal(u, v) for u, v in zip(b, ref))


def test_autograd_relaxations_step_eagerly(monkeypatch):
    # BPTT differentiates through the relaxation: the compiled step must not be used there
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: pytest.fail("compiled a differentiable relaxation"))
    model, x, y = mlp()
    grads = BPTT(solver=FixedPoint(tol=None, max_steps=8, compile=True), cost=SquaredError()).grads(model, x, y)
    ref = BPTT(solver=FixedPoint(tol=None, max_steps=8), cost=SquaredError()).grads(model, x, y)
    assert all(torch.equal(grads[k], ref[k]) for k in ref)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fixed_point", "asynchronous"])
def test_inductor_step_matches_eager_conv(name):
    # float32: fused kernels reorder sums of ≤ 54 terms over 6 steps of a contracting map; measured
    # gap 2e-7, asserted within 1e-5 relative (≈ 100 float32 eps)
    gap, solver = both(SOLVERS[name], *conv_net())
    assert solver._compiled is not False and gap <= 1e-5


@pytest.mark.slow
def test_inductor_step_matches_eager_mlp_and_ep():
    model, x, y = mlp()
    for name in ("fixed_point", "gradient_descent"):
        gap, solver = both(SOLVERS[name], model, x, y)
        assert solver._compiled is not False and gap <= 1e-5  # float32 round-off, as above
    # a learner on the compiled solver: EP's contrast divides state differences by 2β = 0.4, so the
    # 1e-7-level state gap grows to ≲ 1e-5 relative in the gradient; asserted within 1e-4
    ref = EP(0.2, solver=FixedPoint(tol=None, max_steps=20), cost=SquaredError()).grads(model, x, y)
    got = EP(0.2, solver=FixedPoint(tol=None, max_steps=20, compile=True), cost=SquaredError()).grads(model, x, y)
    assert max(float((got[k] - ref[k]).abs().max() / ref[k].abs().max()) for k in ref) <= 1e-4
