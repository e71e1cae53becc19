"""Closed-form echo kernels (eqprop.models.echo_kernels) against their autograd references (float64).

A closed form and autograd compute the same arithmetic in a different order, so they agree to
round-off: every comparison below is at rtol 1e-10 on O(1) quantities (a few steps of float64
arithmetic give ~1e-15; the margin allows for cancellation in the ± contrasts).
"""

from __future__ import annotations

import pytest
import torch

from eqprop.baselines.bptt_time import bptt_through_integrator
from eqprop.check import relative_error
from eqprop.costs import CrossEntropy, SquaredError
from eqprop.learners import RHEL
from eqprop.models import HSSM, LinearHRU, NonlinearHRU
from eqprop.models.echo_kernels import (AutogradEchoKernel, AutogradStackKernel, HSSMStackKernel, LinearHRUKernel,
                                        NonlinearHRUKernel, contrast_rows, copy_rows)
from eqprop.solvers import LeapFrog, PositionVerlet

BATCH = 3


def _close(a, b):
    return torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def _grads(kernel):
    return {id(p): g for p, g in kernel.grads()}


def _run(kernel, integrator, q, p, inputs):
    inputs_grad = []
    for u in inputs:
        kernel.input_grad = None
        q, p = integrator.echo(kernel, q, p, u)
        inputs_grad.append(kernel.input_grad)
    return q, p, inputs_grad


@pytest.mark.parametrize("cls, closed, scalar_dt", [(LinearHRU, LinearHRUKernel, False), (LinearHRU, LinearHRUKernel, True),
                                                     (NonlinearHRU, NonlinearHRUKernel, True)])
@pytest.mark.parametrize("integrator", [PositionVerlet(), LeapFrog(), PositionVerlet(dt=0.2)])
@pytest.mark.parametrize("copies", [2, 3])
def test_hru_closed_form_kernel_equals_autograd(cls, closed, scalar_dt, integrator, copies):
    """Forces, new states, input gradients and every parameter's contrast (dt included), both
    integrators, a fixed or trainable step, a vector or scalar dt, with and without the ε = 0 copy."""
    model = cls(3, 4)
    if scalar_dt and model.dt.dim():
        model.dt = torch.nn.Parameter(torch.tensor(0.3))
    dt = integrator.step_size(model)
    kernel = model.echo_kernel(dt, BATCH, copies)
    assert isinstance(kernel, closed)
    reference = AutogradEchoKernel(model, dt, BATCH, copies)
    q, p = torch.randn(copies * BATCH, 4), torch.randn(copies * BATCH, 4)
    inputs = [torch.randn(BATCH, 3) for _ in range(4)]
    assert kernel.difference and not getattr(reference, "difference", False)

    def layout(t):  # the closed form carries copy 0 − copy 1 in rows [0, B)
        t = t.clone()
        t[:BATCH] -= t[BATCH:2 * BATCH]
        return t

    q1, p1, du1 = _run(kernel, integrator, layout(q), layout(p), inputs)
    q2, p2, du2 = _run(reference, integrator, q, p, inputs)
    for c in range(copies):
        assert _close(copy_rows(kernel, q1, c, BATCH), copy_rows(reference, q2, c, BATCH))
        assert _close(copy_rows(kernel, p1, c, BATCH), copy_rows(reference, p2, c, BATCH))
    assert _close(contrast_rows(kernel, q1, BATCH), contrast_rows(reference, q2, BATCH))
    assert all(_close(a, b) for a, b in zip(du1, du2))
    closed_grads, autograd_grads = _grads(kernel), _grads(reference)
    expected = {id(p) for p in model.parameters() if p.requires_grad and p is not model.readout}
    expected -= {id(p) for p in (model.readout.parameters() if model.readout is not None else [])}
    if integrator.dt is not None:  # a fixed step: the model's dt is not in the simulation
        expected.discard(id(model.dt))
    assert set(closed_grads) == set(autograd_grads) == expected
    for key, g in closed_grads.items():
        assert _close(g, autograd_grads[key]), key


@pytest.mark.parametrize("activation", ["gelu", "glu", "tanh", "identity"])
@pytest.mark.parametrize("norm", [True, False])
def test_hssm_stack_kernel_equals_autograd(activation, norm):
    model = HSSM(2, 5, 3, num_layers=2, state_size=4, activation=activation, norm=norm)
    closed, reference = model.stack_kernel(), AutogradStackKernel(model)
    assert isinstance(closed, HSSMStackKernel)
    for _ in range(3):  # a few steps: the accumulators add up
        x_t, delta_out = torch.randn(BATCH, 2), torch.randn(BATCH, 3)
        q = [torch.randn(BATCH, 4) for _ in range(2)]
        outs = []
        for kernel in (closed, reference):
            z = kernel.encode(x_t)
            zs = []
            for i in range(2):
                zs.append(z)
                z = kernel.mix(i, z, q[i])
            delta = kernel.decode_vjp(z, delta_out)
            pulled = []
            for i in reversed(range(2)):
                dz, dq = kernel.mix_vjp(i, delta)
                pulled += [dz, dq]
                delta = dz
            kernel.encode_vjp(x_t, delta)
            outs.append((z, pulled))
        assert _close(outs[0][0], outs[1][0])
        assert all(_close(a, b) for a, b in zip(outs[0][1], outs[1][1]))
    closed_grads, autograd_grads = _grads(closed), _grads(reference)
    assert set(closed_grads) == set(autograd_grads) == {id(p) for p in model.parameters()} - \
        {id(layer_p) for layer in model.layers for layer_p in layer.parameters()}
    for key, g in closed_grads.items():
        assert _close(g, autograd_grads[key])


def test_subclass_that_rewrites_the_physics_falls_back_to_autograd():
    class Quartic(NonlinearHRU):
        def potential(self, q, u):
            return super().potential(q, u) + 0.1 * (q ** 4).sum(-1)

        def potential_grad(self, q, u, create_graph=False):
            return super().potential_grad(q, u) + 0.4 * q ** 3

    model = Quartic(2, 3)
    assert isinstance(model.echo_kernel(model.dt, BATCH, 2), AutogradEchoKernel)
    x, y = torch.randn(BATCH, 10, 2), torch.randn(BATCH, 3)
    reference = bptt_through_integrator(model, x, y, PositionVerlet(), SquaredError()).grads
    assert relative_error(RHEL(1e-3).grads(model, x, y), reference) < 1e-5  # c ε², c ≲ 10


@pytest.mark.parametrize("hru", ["linear", "nonlinear"])
@pytest.mark.parametrize("per_step", [False, True])
def test_mean_pooling_rhel_matches_bptt(hru, per_step):
    """pooling="mean": the output is the running time average; RHEL nudges every step with
    Σ_{i≥k} g_i/(i+1). Linear HRUs: exact (round-off, < 1e-9); nonlinear: c ε² at ε = 1e-3 (< 1e-5)."""
    model = HSSM(2, 5, 3, num_layers=2, hru=hru, pooling="mean")
    x = torch.randn(BATCH, 12, 2)
    cost, y = (SquaredError(), torch.randn(BATCH, 12, 3)) if per_step else (CrossEntropy(), torch.randint(0, 3, (BATCH,)))
    reference = bptt_through_integrator(model, x, y, PositionVerlet(), cost)
    learner = RHEL(1e-3, cost=cost)
    estimate = learner.estimate(model, x, y)
    assert relative_error(estimate.grads, reference.grads) < (1e-9 if hru == "linear" else 1e-5)
    assert torch.allclose(estimate.loss, reference.loss, rtol=1e-12)
    averaged = learner.predict(model, x)
    model.pooling = "last"
    per_step = learner.predict(model, x)
    steps = torch.arange(1, 13, dtype=x.dtype).reshape(1, -1, 1)
    assert torch.allclose(averaged, per_step.cumsum(1) / steps, rtol=1e-12, atol=1e-14)


def test_log_cosh_difference_is_exact_at_small_and_finite_at_large_separation():
    """log cosh(h + δ) − log cosh h without cancellation at small δ (relative error ~1e-15 against
    the float64 direct difference at δ = 1e-3, where that difference itself is good to ~1e-13)
    and finite, equal to the direct difference, when the copies are far apart (|δ| ≥ 1, |h| ≫ 1)."""
    from eqprop.models.echo_kernels.hru import _log_cosh_difference

    h = torch.linspace(-30, 30, 61)
    for scale in (1e-3, 3.0, 40.0):
        delta = scale * torch.linspace(-1, 1, 61).flip(0)
        direct = torch.log(torch.cosh((h + delta).to(torch.float64))) - torch.log(torch.cosh(h.to(torch.float64)))
        got = _log_cosh_difference(h.float(), delta.float(), torch.tanh(h.float()))
        assert torch.isfinite(got).all()
        assert torch.allclose(got.double(), direct, rtol=1e-5, atol=1e-5 * scale)
