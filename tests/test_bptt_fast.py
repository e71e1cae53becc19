"""BPTT's closed-form path (eqprop.solvers.scan_vjp) against autograd through the reference step.

For a single built-in HRU under exactly ``PositionVerlet``, ``BPTT`` runs the hand-derived adjoint
of the position-Verlet step instead of autograd through every step. It is the same arithmetic
reordered (merged half drifts, the kick as one product with a stacked matrix, the parameter sums
formed a chunk at a time), so in float64 over a few hundred steps of O(1) states the two agree
to round-off: ~1e-16 per operation, carried by a stable (symplectic) recurrence over T ≤ 300
steps, measured ≤ 1.1e-14 relative; the assertions use rtol 1e-10. The reference is reached with a
subclass of PositionVerlet, which the closed-form path does not take.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eqprop.baselines import BPTT
from eqprop.baselines.bptt_time import bptt_through_integrator
from eqprop.costs import CrossEntropy, SquaredError
from eqprop.errors import ConfigurationError
from eqprop.estimators.sequence import simulate
from eqprop.models import HSSM, LinearHRU, NonlinearHRU
from eqprop.solvers import LeapFrog, PositionVerlet
from eqprop.solvers.scan_vjp import _HRUScan, hru_outputs
from closeness import assert_close

RTOL = 1e-10  # round-off of the reordered arithmetic (module docstring), measured ≤ 1.1e-14


class ReferenceVerlet(PositionVerlet):
    """The same step; being a subclass, it takes the reference path (autograd through each step)."""


def _perturbed(model):
    """Non-zero biases and a larger spread of parameters, so that every gradient term is exercised."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


MODELS = {
    "linear": lambda: LinearHRU(3, 8, output_size=4),
    "linear, no readout": lambda: LinearHRU(3, 8),
    "nonlinear": lambda: NonlinearHRU(3, 8, output_size=4),
    "nonlinear, no readout": lambda: NonlinearHRU(3, 8),
}


def _target(model, x, per_step):
    width = model.hidden_size if model.readout is None else model.readout.out_features
    shape = (x.shape[0], x.shape[1], width) if per_step else (x.shape[0], width)
    return torch.randn(shape)


def _assert_close(got: dict, want: dict):
    assert_close(got, want, RTOL)  # round-off, see RTOL


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("per_step", [False, True])
@pytest.mark.parametrize("dt", [None, 0.2])  # the model's trainable dt, a fixed step
def test_bptt_equals_reference(name, per_step, dt):
    model = _perturbed(MODELS[name]())
    x = torch.randn(3, 300, 3)
    y = _target(model, x, per_step)
    fast = BPTT(integrator=PositionVerlet(dt)).estimate(model, x, y)
    reference = BPTT(integrator=ReferenceVerlet(dt)).estimate(model, x, y)
    _assert_close(fast.grads, reference.grads)
    assert ("dt" in fast.grads) == (dt is None)  # a fixed step: the model's dt is not used
    assert torch.allclose(fast.loss, reference.loss, rtol=RTOL)
    assert torch.allclose(fast.prediction, reference.prediction, rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("per_step", [False, True])
def test_default_bptt_on_a_cross_entropy_classifier(per_step):
    """BPTT() without an integrator (the model's dt, PositionVerlet) and a class target."""
    model = _perturbed(NonlinearHRU(2, 8, output_size=5))
    x = torch.randn(4, 60, 2)
    y = torch.randint(0, 5, (4, 60) if per_step else (4,))
    fast = BPTT(cost=CrossEntropy()).estimate(model, x, y)
    reference = BPTT(integrator=ReferenceVerlet(), cost=CrossEntropy()).estimate(model, x, y)
    _assert_close(fast.grads, reference.grads)


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_float32_closed_form_is_as_accurate_as_float32_autograd(kind):
    """float32 closed form vs the float64 reference, relative over all parameters: the error is
    float32 round-off (u ≈ 6e-8) carried over T = 300 steps, measured 2e-7 – 5e-6 for both paths
    (T = 100 – 1000); 1e-4 would catch a sum formed in a lower precision or a dropped term."""
    model = _perturbed(MODELS[kind]())
    x, y = torch.randn(4, 300, 3), torch.randint(0, 4, (4,))
    reference = BPTT(integrator=ReferenceVerlet(), cost=CrossEntropy()).grads(model, x, y)
    got = BPTT(integrator=PositionVerlet(), cost=CrossEntropy()).grads(model.float(), x.float(), y)
    num = sum(float((got[k].double() - reference[k]).pow(2).sum()) for k in reference)
    den = sum(float(reference[k].pow(2).sum()) for k in reference)
    assert all(g.dtype == torch.float32 for g in got.values())
    assert (num / den) ** 0.5 < 1e-4


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("chunk", [1, 7, 1000])  # one step a chunk, chunks that do not divide T, chunk > T
@pytest.mark.parametrize("per_step", [False, True])
def test_input_gradients_and_chunk_sizes(kind, chunk, per_step):
    model = _perturbed(MODELS[kind]())
    x = torch.randn(2, 50, 3, requires_grad=True)
    params = [x, *model.parameters()]
    out = hru_outputs(model, x, PositionVerlet(), per_step, chunk=chunk)
    _, reference = simulate(model, x, ReferenceVerlet(), create_graph=True, keep_outputs=per_step)
    weights = torch.randn_like(reference)
    got = torch.autograd.grad((out * weights).sum(), params)
    want = torch.autograd.grad((reference * weights).sum(), params)
    _assert_close(dict(enumerate(got)), dict(enumerate(want)))
    estimate = bptt_through_integrator(model, x.detach(), _target(model, x, per_step), chunk=chunk)
    assert set(estimate.grads) == {n for n, _ in model.named_parameters()}


def test_backward_twice_gives_the_same_gradient():
    """The backward recomputes chunks into buffers; a second backward (retain_graph) must not read stale ones."""
    model = _perturbed(NonlinearHRU(3, 8, output_size=4))
    out = hru_outputs(model, torch.randn(2, 40, 3), PositionVerlet(), False, chunk=7)
    first = torch.autograd.grad(out.square().sum(), list(model.parameters()), retain_graph=True)
    second = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_trainable_initial_state_gets_its_gradient():
    """q0, p0 are inputs of the Function: a learned initial state is differentiated too."""

    class LearnedStart(LinearHRU):
        def __init__(self):
            super().__init__(3, 8, output_size=4)
            self.q0 = nn.Parameter(torch.randn(8))
            self.p0 = nn.Parameter(torch.randn(8))

        def init_state(self, u_seq):
            return self.q0.expand(u_seq.shape[0], -1), self.p0.expand(u_seq.shape[0], -1)

    model = _perturbed(LearnedStart())
    x, y = torch.randn(3, 80, 3), torch.randn(3, 4)
    fast = BPTT(integrator=PositionVerlet()).estimate(model, x, y)
    _assert_close(fast.grads, BPTT(integrator=ReferenceVerlet()).estimate(model, x, y).grads)
    assert {"q0", "p0"} <= set(fast.grads)


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("keep_outputs", [False, True])
def test_gradcheck_of_the_function(kind, keep_outputs):
    """An independent check: the adjoint against finite differences, every input (q0, p0 non-zero)."""
    n, m = 3, 2
    inputs = [torch.randn(2, 5, m), torch.randn(2, n), torch.randn(2, n), torch.rand(n) + 0.5,
              torch.randn(n, m), torch.randn(n), torch.rand(n) * 0.3 + 0.1 if kind == "linear" else torch.tensor(0.2),
              torch.randn(n, n) if kind == "nonlinear" else None]
    inputs = [t.requires_grad_() if t is not None else None for t in inputs]

    def run(*tensors):
        return _HRUScan.apply(kind, keep_outputs, 2, *tensors)

    assert torch.autograd.gradcheck(run, tuple(inputs), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_what_takes_the_closed_form_path():
    x, hru = torch.randn(2, 5, 3), NonlinearHRU(3, 8)
    assert hru_outputs(hru, x, PositionVerlet(), False) is not None
    assert hru_outputs(LinearHRU(3, 8), x, PositionVerlet(0.1), True) is not None
    assert hru_outputs(hru, x, ReferenceVerlet(), False) is None  # a subclass: the reference
    assert hru_outputs(hru, x, LeapFrog(), False) is None
    assert hru_outputs(HSSM(3, 8, 4), x, PositionVerlet(), False) is None

    class Rewritten(NonlinearHRU):
        def potential_grad(self, q, u, create_graph=False):
            return super().potential_grad(q, u, create_graph) * 1.5

    assert hru_outputs(Rewritten(3, 8), x, PositionVerlet(), False) is None  # a user's physics
    pooled = NonlinearHRU(3, 8)
    pooled.pooling = "mean"
    assert hru_outputs(pooled, x, PositionVerlet(), False) is None


@pytest.mark.parametrize("chunk", [0, -3, 2.5, True])
def test_chunk_below_one_is_refused(chunk):
    with pytest.raises(ConfigurationError, match="chunk size must be an integer >= 1"):
        bptt_through_integrator(NonlinearHRU(3, 8), torch.randn(2, 5, 3), torch.randn(2, 8), chunk=chunk)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["linear", "nonlinear"])
@pytest.mark.parametrize("per_step", [False, True])
def test_bptt_equals_reference_on_cuda(name, per_step):
    """On a GPU: the closed-form path equals the reference path there, and both the CPU's."""
    device = torch.device("cuda")
    model = _perturbed(MODELS[name]())
    x = torch.randn(3, 300, 3)
    y = _target(model, x, per_step)
    cpu = BPTT(integrator=ReferenceVerlet(), cost=SquaredError()).estimate(model, x, y).grads
    model.to(device)
    fast = BPTT(integrator=PositionVerlet()).estimate(model, x.to(device), y.to(device)).grads
    reference = BPTT(integrator=ReferenceVerlet()).estimate(model, x.to(device), y.to(device)).grads
    _assert_close(fast, reference)
    _assert_close({k: v.cpu() for k, v in fast.items()}, cpu)
