"""The fast path of sequence simulation (eqprop.solvers.scan) against the reference path.

The fused in-place position-Verlet steps of the built-in HRUs (and of an HSSM of them, layer after
layer within a chunk) do the same arithmetic as
``PositionVerlet.step`` in another order (dt κ² and dt W formed once, the drive of a chunk by one
matrix product), so in float64 they agree to round-off: rtol 1e-12 over a few hundred steps of
O(1) states (measured ~1e-15). The reference is reached with a subclass of PositionVerlet, which
the fast path does not take. The ``cuda`` tests run the same comparison on a GPU (skipped only
where torch.cuda.is_available() is False).
"""

from __future__ import annotations

import pytest
import torch

from eqprop.costs import CrossEntropy
from eqprop.errors import ConfigurationError
from eqprop.estimators.sequence import simulate
from eqprop.learners import RHEL
from eqprop.models import HSSM, LinearHRU, NonlinearHRU
from eqprop.solvers import PositionVerlet
from eqprop.solvers.scan import fused_step, hru_forward, stack_forward


class ReferenceVerlet(PositionVerlet):
    """The same step; being a subclass, it takes the reference (unfused) path."""


def _models():
    return [LinearHRU(3, 8, output_size=4), NonlinearHRU(3, 8, output_size=4), NonlinearHRU(3, 8),
            HSSM(3, 8, 4, num_layers=2, hru="linear"), HSSM(3, 8, 4, num_layers=2, hru="nonlinear", pooling="mean")]


def _compare(model, x, keep_outputs, dt=None):
    fast = simulate(model, x, PositionVerlet(dt), keep_outputs=keep_outputs)
    reference = simulate(model, x, ReferenceVerlet(dt), keep_outputs=keep_outputs)
    for (q1, p1), (q2, p2) in zip(fast[0], reference[0]):
        assert torch.allclose(q1, q2, rtol=1e-12, atol=1e-12) and torch.allclose(p1, p2, rtol=1e-12, atol=1e-12)
    assert fast[1].shape == reference[1].shape
    assert torch.allclose(fast[1], reference[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("keep_outputs", [False, True])
def test_fast_simulation_equals_reference(index, keep_outputs):
    model = _models()[index]
    _compare(model, torch.randn(3, 300, 3), keep_outputs)
    _compare(model, torch.randn(3, 7, 3), keep_outputs, dt=0.2)  # a fixed step, fewer steps than a chunk


def test_fast_path_applies_only_to_the_builtin_physics():
    hru = NonlinearHRU(3, 8)
    assert fused_step(hru, PositionVerlet(), hru.dt) is not None
    assert fused_step(hru, ReferenceVerlet(), hru.dt) is None

    class Rewritten(NonlinearHRU):
        def potential_grad(self, q, u, create_graph=False):
            return super().potential_grad(q, u, create_graph) * 1.5

    assert fused_step(Rewritten(3, 8), PositionVerlet(), hru.dt) is None  # a user's physics: the reference path
    assert hru_forward(HSSM(3, 8, 4), torch.randn(2, 5, 3), PositionVerlet(), False) is None


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunk_sizes_agree(chunk):
    model, x = NonlinearHRU(3, 8, output_size=4), torch.randn(2, 50, 3)
    states, out = hru_forward(model, x, PositionVerlet(), True, chunk=chunk)
    ref_states, ref_out = hru_forward(model, x, PositionVerlet(), True, chunk=50)
    assert torch.allclose(out, ref_out, rtol=1e-13, atol=1e-13)
    assert torch.allclose(states[0][0], ref_states[0][0], rtol=1e-13, atol=1e-13)


def test_stacks_run_layer_after_layer_only_with_the_builtin_maps():
    x = torch.randn(2, 5, 3)
    assert stack_forward(HSSM(3, 8, 4), x, PositionVerlet(), False) is not None
    assert stack_forward(HSSM(3, 8, 4), x, ReferenceVerlet(), False) is None

    class BatchMixing(HSSM):  # a map that is not row-wise: the layer-major order would be wrong
        def mix(self, index, z, q):
            return super().mix(index, z, q) - q.mean(0)[: z.shape[-1]]

    assert stack_forward(BatchMixing(3, 8, 4), x, PositionVerlet(), False) is None
    assert stack_forward(NonlinearHRU(3, 8), x, PositionVerlet(), False) is None


@pytest.mark.parametrize("hru", ["linear", "nonlinear"])
def test_a_stack_with_its_own_map_steps_each_layer_fused(hru):
    """A user's mix is not known to be row-wise: no layer-major run, but each built-in layer still
    takes the fused in-place step, equal to the reference to round-off."""

    class OwnMix(HSSM):
        def mix(self, index, z, q):
            return 0.5 * super().mix(index, z, q)

    model, x = OwnMix(3, 8, 4, num_layers=2, hru=hru), torch.randn(3, 100, 3)
    assert stack_forward(model, x, PositionVerlet(), True) is None
    assert all(fused_step(layer, PositionVerlet(), layer.dt) is not None for layer in model.layers)
    _compare(model, x, True)


@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_stack_chunk_sizes_agree(pooling, chunk):
    model, x = HSSM(3, 8, 4, num_layers=3, hru="nonlinear", pooling=pooling), torch.randn(2, 50, 3)
    for keep in (False, True):
        states, out = stack_forward(model, x, PositionVerlet(), keep, chunk=chunk)
        ref_states, ref_out = stack_forward(model, x, PositionVerlet(), keep, chunk=50)
        assert torch.allclose(out, ref_out, rtol=1e-13, atol=1e-13)
        for (q, p), (q_ref, p_ref) in zip(states, ref_states):
            assert torch.allclose(q, q_ref, rtol=1e-13, atol=1e-13) and torch.allclose(p, p_ref, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("chunk", [0, -3, 2.5, True])
def test_chunk_below_one_is_refused(chunk):
    with pytest.raises(ConfigurationError, match="chunk size must be an integer >= 1"):
        hru_forward(NonlinearHRU(3, 8), torch.randn(2, 5, 3), PositionVerlet(), False, chunk=chunk)


@pytest.mark.cuda
@pytest.mark.parametrize("hru", ["linear", "nonlinear"])
def test_fast_path_and_float32_rhel_on_cuda(hru):
    """On a GPU: the fast path equals the reference path, and float32 RHEL on the docs' HSSM is
    within 1e-3 of float64 RHEL on the CPU (the difference-carrying echo, device-agnostic)."""
    device = torch.device("cuda")
    model = HSSM(1, 32, 10, num_layers=2, hru=hru)
    x, y = torch.randn(8, 100, 1), torch.randint(0, 10, (8,))
    _compare(model.to(device), x.to(device), True)
    reference = RHEL(1e-2, cost=CrossEntropy()).grads(model.cpu(), x, y)
    model32 = model.float().to(device)
    got = RHEL(1e-2, cost=CrossEntropy()).grads(model32, x.float().to(device), y.to(device))
    num = sum(float((got[k].double().cpu() - reference[k]).pow(2).sum()) for k in reference)
    den = sum(float(reference[k].pow(2).sum()) for k in reference)
    assert (num / den) ** 0.5 < 1e-3
