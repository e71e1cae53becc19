"""BPTT on an HSSM layer after layer (eqprop.solvers.scan_vjp.stack_outputs) against autograd
through the reference step.

An HSSM is feedforward in depth, so ``BPTT`` runs each layer over the whole sequence by the
closed-form adjoint of position Verlet and the row-wise maps (encoder, read-out, activation,
residual, layer norm, decoder, mean pooling) under autograd on all T steps at once. That is the
same arithmetic as the eager reference reordered: the per-layer scans agree with autograd through
each step to round-off (tests/test_bptt_fast.py), the feedforward maps are the same formulas
batched over T, and the sums over time are taken in another order. In float64 (u ≈ 1.1e-16) over
T ≤ 60 steps of a stable (symplectic) recurrence through up to three layers the disagreement is
measured ≤ 1.5e-13 relative (the largest over HRU × 1–3 layers × pooling × target × activation ×
norm, the maximum error of a parameter's gradient over its largest entry); the assertions use
rtol 1e-10, far below any dropped or mis-signed term (which changes a gradient at O(1)). The
reference is reached with a subclass of PositionVerlet, which the fast path does not take.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eqprop.baselines import BPTT
from eqprop.baselines.bptt_time import bptt_through_integrator
from eqprop.costs import CrossEntropy, SquaredError
from eqprop.estimators.sequence import simulate
from eqprop.models import HSSM, LinearHRU, NonlinearHRU
from eqprop.solvers import LeapFrog, PositionVerlet
from eqprop.solvers.scan_vjp import stack_outputs
from closeness import assert_close

RTOL = 1e-10  # round-off of the reordered arithmetic (module docstring), measured ≤ 1.5e-13


class ReferenceVerlet(PositionVerlet):
    """The same step; being a subclass, it takes the reference path (autograd through each step)."""


def _stack(hru="linear", num_layers=2, activation="gelu", norm=True, pooling="last", state_size=None):
    """A float64 HSSM with its parameters spread (non-zero biases, LayerNorm weights ≠ 1), so
    that every gradient term is exercised."""
    model = HSSM(2, 6, 3, num_layers=num_layers, hru=hru, activation=activation, norm=norm, pooling=pooling,
                 state_size=state_size)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _data(per_step, steps=60, classes=False):
    x = torch.randn(3, steps, 2, dtype=torch.float64)
    if classes:
        return x, torch.randint(0, 3, (3, steps) if per_step else (3,))
    return x, torch.randn((3, steps, 3) if per_step else (3, 3), dtype=torch.float64)


def _assert_close(got: dict, want: dict):
    assert_close(got, want, RTOL)  # round-off, see RTOL


def _compare(model, x, y, cost=None, dt=None, chunk=None):
    if chunk is not None:  # the checkpoint interval of each layer's scan
        got = bptt_through_integrator(model, x, y, PositionVerlet(dt), cost, chunk=chunk)
    else:
        got = BPTT(integrator=PositionVerlet(dt), cost=cost).estimate(model, x, y)
    want = BPTT(integrator=ReferenceVerlet(dt), cost=cost).estimate(model, x, y)
    _assert_close(got.grads, want.grads)
    assert torch.allclose(got.loss, want.loss, rtol=RTOL)
    assert torch.allclose(got.prediction, want.prediction, rtol=RTOL, atol=RTOL)
    return got


@pytest.mark.parametrize("hru", ["linear", "nonlinear"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("per_step", [False, True])
def test_stack_bptt_equals_reference(hru, num_layers, pooling, per_step):
    torch.manual_seed(num_layers)
    model = _stack(hru, num_layers, pooling=pooling)
    x, y = _data(per_step)
    got = _compare(model, x, y)
    assert set(got.grads) == {n for n, _ in model.named_parameters()}


@pytest.mark.parametrize("hru", ["linear", "nonlinear"])
@pytest.mark.parametrize("activation", ["gelu", "glu", "tanh", "identity"])
@pytest.mark.parametrize("norm", [True, False])
def test_activations_and_norm(hru, activation, norm):
    torch.manual_seed(1)
    model = _stack(hru, 2, activation=activation, norm=norm)
    _compare(model, *_data(per_step=False, steps=40))


@pytest.mark.parametrize("per_step", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_cross_entropy_and_a_fixed_step(per_step, pooling):
    """Class targets; PositionVerlet(0.2) fixes dt, so the layers' dt get no gradient; HRU states
    narrower than the stream (state_size 4, H = 6)."""
    torch.manual_seed(2)
    model = _stack("nonlinear", 2, activation="glu", pooling=pooling, state_size=4)
    got = _compare(model, *_data(per_step, classes=True), cost=CrossEntropy(), dt=0.2)
    assert not any(name.endswith(".dt") for name in got.grads)


@pytest.mark.parametrize("chunk", [1, 7, 1000])  # one step a chunk, chunks that do not divide T, chunk > T
def test_chunk_sizes(chunk):
    torch.manual_seed(3)
    model = _stack("nonlinear", 2, pooling="mean")
    _compare(model, *_data(per_step=True, steps=50), cost=SquaredError(), chunk=chunk)


@pytest.mark.parametrize("hru", ["linear", "nonlinear"])
@pytest.mark.parametrize("per_step", [False, True])
def test_input_gradient(hru, per_step):
    """The gradient also reaches x (through the encoder and the first layer's stream)."""
    torch.manual_seed(7)
    model = _stack(hru, 2, pooling="mean")
    x = torch.randn(2, 40, 2, dtype=torch.float64, requires_grad=True)
    params = [x, *model.parameters()]
    out = stack_outputs(model, x, PositionVerlet(), per_step, chunk=16)
    _, reference = simulate(model, x, ReferenceVerlet(), create_graph=True, keep_outputs=per_step)
    weights = torch.randn_like(reference)
    got = torch.autograd.grad((out * weights).sum(), params)
    want = torch.autograd.grad((reference * weights).sum(), params)
    _assert_close(dict(enumerate(got)), dict(enumerate(want)))


def test_trainable_initial_state_of_a_layer():
    """Each layer's (q0, p0) comes from HSSM.init_states and enters the layer's scan as an input:
    a learned initial state gets its gradient."""

    class LearnedStart(LinearHRU):
        def __init__(self, input_size, hidden_size, **kwargs):
            super().__init__(input_size, hidden_size, **kwargs)
            self.q0 = nn.Parameter(torch.randn(hidden_size))
            self.p0 = nn.Parameter(torch.randn(hidden_size))

        def init_state(self, u_seq):
            return self.q0.expand(u_seq.shape[0], -1), self.p0.expand(u_seq.shape[0], -1)

    torch.manual_seed(4)
    model = HSSM(2, 6, 3, num_layers=2, hru=LearnedStart).double()
    x, y = _data(per_step=False)
    assert stack_outputs(model, x, PositionVerlet(), False) is not None
    got = _compare(model, x, y)
    assert {"layers.0.q0", "layers.1.p0"} <= set(got.grads)


def test_what_takes_the_layer_major_path():
    x = torch.randn(2, 5, 2)
    assert stack_outputs(HSSM(2, 6, 3), x, PositionVerlet(), False) is not None
    assert stack_outputs(HSSM(2, 6, 3, hru="nonlinear", pooling="mean"), x, PositionVerlet(0.1), True) is not None
    assert stack_outputs(HSSM(2, 6, 3), x, ReferenceVerlet(), False) is None  # a subclass: the reference
    assert stack_outputs(HSSM(2, 6, 3), x, LeapFrog(), False) is None
    assert stack_outputs(NonlinearHRU(2, 6), x, PositionVerlet(), False) is None  # not a stack

    class Rewritten(NonlinearHRU):
        def potential_grad(self, q, u, create_graph=False):
            return super().potential_grad(q, u, create_graph) * 1.5

    assert stack_outputs(HSSM(2, 6, 3, hru=Rewritten), x, PositionVerlet(), False) is None  # a user's physics

    class OwnMix(HSSM):  # a user's feedforward map need not be row-wise: the reference
        def mix(self, index, z, q):
            return super().mix(index, z, q)

    assert stack_outputs(OwnMix(2, 6, 3), x, PositionVerlet(), False) is None


@pytest.mark.parametrize("hru", ["linear", "nonlinear"])
def test_float32_is_as_accurate_as_float32_autograd(hru):
    """HSSM(1, 16, 4, num_layers=2), float32 layer-major BPTT vs the float64 reference, relative
    over all parameters: float32 round-off (u ≈ 6e-8) carried over T steps and two layers,
    measured 5.4e-7 / 4.1e-7 (linear / nonlinear) at T = 200, float32 autograd 4.2e-7 / 9.3e-7;
    1e-4 would catch a sum in a lower precision or a dropped term."""
    torch.manual_seed(5)
    model = HSSM(1, 16, 4, num_layers=2, hru=hru).double()
    x, y = torch.randn(4, 200, 1, dtype=torch.float64), torch.randint(0, 4, (4,))
    reference = BPTT(integrator=ReferenceVerlet(), cost=CrossEntropy()).grads(model, x, y)
    got = BPTT(cost=CrossEntropy()).grads(model.float(), x.float(), y)
    num = sum(float((got[k].double() - reference[k]).pow(2).sum()) for k in reference)
    den = sum(float(reference[k].pow(2).sum()) for k in reference)
    assert all(g.dtype == torch.float32 for g in got.values())
    assert (num / den) ** 0.5 < 1e-4


@pytest.mark.cuda
@pytest.mark.parametrize("hru", ["linear", "nonlinear"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("per_step", [False, True])
def test_stack_bptt_equals_reference_on_cuda(hru, pooling, per_step):
    """On a GPU: the layer-major path equals the reference path there, and both the CPU's."""
    device = torch.device("cuda")
    torch.manual_seed(6)
    model = _stack(hru, 2, activation="glu", pooling=pooling)
    x, y = _data(per_step)
    cpu = BPTT(integrator=ReferenceVerlet()).estimate(model, x, y).grads
    model.to(device)
    x, y = x.to(device), y.to(device)
    fast = BPTT(integrator=PositionVerlet()).estimate(model, x, y).grads
    reference = BPTT(integrator=ReferenceVerlet()).estimate(model, x, y).grads
    _assert_close(fast, reference)
    _assert_close({k: v.cpu() for k, v in fast.items()}, cpu)
