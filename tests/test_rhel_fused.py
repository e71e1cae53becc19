"""RHEL's fused echo (eqprop.models.echo_kernels.fused) against the step-by-step echo.

The fused echo of a single built-in HRU does the arithmetic of ``PositionVerlet.echo`` through
the closed-form kernel in another order (half drifts merged, the contrast summed once per chunk
instead of once per step), so in float64 the two gradients agree to round-off: rtol 1e-11 over a
few hundred steps of O(1) states (measured ≤ 3e-14), for a final-step loss and a loss at every step. The step-by-step echo is reached with a
subclass of PositionVerlet, which the fused path does not take. Both are also checked against
BPTT (the O(ε²) of the centered estimate) and in float32 against float64.
"""

from __future__ import annotations

import copy

import pytest
import torch

from eqprop.baselines import BPTT
from eqprop.check import relative_error
from eqprop.costs import CrossEntropy, SquaredError
from eqprop.errors import ConfigurationError
from eqprop.learners import RHEL
from eqprop.models import HSSM, LinearHRU, NonlinearHRU
from eqprop.models.echo_kernels import fused, stepper
from eqprop.solvers import PositionVerlet
from closeness import assert_close


class ReferenceVerlet(PositionVerlet):
    """The same step; being a subclass, it takes the step-by-step echo."""


def _problem(kind, readout, steps=300, per_step=False):
    torch.manual_seed(3)
    model = (LinearHRU if kind == "linear" else NonlinearHRU)(3, 8, output_size=4 if readout else None)
    x = torch.randn(5, steps, 3)
    time = (steps,) if per_step else ()
    if readout:
        return model, x, torch.randint(0, 4, (5, *time)), CrossEntropy()
    return model, x, torch.randn(5, *time, 8), SquaredError()


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("readout", [True, False])
@pytest.mark.parametrize("variant", ["centered", "one_sided"])
@pytest.mark.parametrize("dt", [None, 0.2])
@pytest.mark.parametrize("per_step", [False, True])
def test_fused_echo_equals_the_step_by_step_echo(kind, readout, variant, dt, per_step, monkeypatch):
    """Final-step loss (one nudge, merged drifts) and a loss at every step (a nudge per step)."""
    model, x, y, cost = _problem(kind, readout, per_step=per_step)
    calls = []
    original = fused.fused_verlet_echo
    monkeypatch.setattr("eqprop.learners.rhel.fused_verlet_echo", lambda *a: calls.append(1) or original(*a))
    fast = RHEL(1e-2, variant=variant, cost=cost, integrator=PositionVerlet(dt), chunk=64).grads(model, x, y)
    assert calls == [1]  # the fused path ran (four chunks of 64 and one of 44)
    reference = RHEL(1e-2, variant=variant, cost=cost, integrator=ReferenceVerlet(dt)).grads(model, x, y)
    assert len(calls) == 1  # and the reference did not take it
    assert_close(fast, reference, 1e-11)  # round-off of a reordered sum


@pytest.mark.parametrize("hru", ["linear", "nonlinear"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("per_step", [False, True])
@pytest.mark.parametrize("variant", ["centered", "one_sided"])
def test_stack_echo_through_the_stepper_equals_the_kernel_sub_steps(hru, pooling, per_step, variant, monkeypatch):
    """An HSSM echoes step by step (its layers are coupled at every step); each layer's step goes
    through the fused stepper. Same arithmetic reordered: rtol 1e-11 (measured ≤ 6e-13)."""
    torch.manual_seed(4)
    model = HSSM(3, 8, 4, num_layers=2, hru=hru, pooling=pooling)
    x = torch.randn(5, 70, 3)
    y = torch.randint(0, 4, (5, 70) if per_step else (5,))
    steps = []
    original = stepper.VerletEchoStepper.step
    monkeypatch.setattr(stepper.VerletEchoStepper, "step", lambda self, *a: steps.append(1) or original(self, *a))
    fast = RHEL(1e-2, variant=variant, cost=CrossEntropy(), chunk=32).grads(model, x, y)
    assert len(steps) == 2 * 70  # both layers, every step, through the stepper
    reference = RHEL(1e-2, variant=variant, cost=CrossEntropy(), integrator=ReferenceVerlet()).grads(model, x, y)
    assert len(steps) == 2 * 70
    assert_close(fast, reference, 1e-11)


def test_stack_echo_in_float32_matches_float64():
    """The stepper keeps the difference of the copies as a state: float32 within 1e-4 of float64."""
    torch.manual_seed(5)
    model = HSSM(1, 16, 4, num_layers=2, hru="nonlinear")
    x, y = torch.randn(4, 400, 1), torch.randint(0, 4, (4,))
    g64 = RHEL(1e-2, cost=CrossEntropy()).grads(model, x, y)
    g32 = RHEL(1e-2, cost=CrossEntropy()).grads(copy.deepcopy(model).float(), x.float(), y)
    assert relative_error({k: v.double() for k, v in g32.items()}, g64) < 1e-4


@pytest.mark.parametrize("chunk", [1, 7, 1000])
@pytest.mark.parametrize("per_step", [False, True])
def test_chunk_sizes_agree(chunk, per_step):
    model, x, y, cost = _problem("nonlinear", True, steps=50, per_step=per_step)
    a = RHEL(1e-2, cost=cost, chunk=chunk).grads(model, x, y)
    b = RHEL(1e-2, cost=cost, chunk=50).grads(model, x, y)
    assert_close(a, b, 1e-12)


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("per_step", [False, True])
def test_fused_echo_is_second_order_against_bptt(kind, per_step):
    """Centered RHEL = BPTT + O(ε²) (exact for the linear HRU): ε 1e-2 → 1e-3 shrinks the error ~100×."""
    model, x, y, cost = _problem(kind, True, steps=200, per_step=per_step)
    reference = BPTT(integrator=PositionVerlet(), cost=cost).grads(model, x, y)
    errors = [relative_error(RHEL(eps, cost=cost).grads(model, x, y), reference) for eps in (1e-2, 1e-3)]
    if kind == "linear":
        assert max(errors) < 1e-10, errors  # linear dynamics: the contrast is exact at any ε
    else:
        assert 50 < errors[0] / errors[1] < 200, errors  # slope 2 in log-log


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("per_step", [False, True])
def test_fused_echo_float32_matches_float64(kind, per_step):
    """float32 within 1e-4 of float64 at T = 2000 (the difference of the copies is a state of its
    own; round-off ~u√T·conditioning; measured ~1e-6)."""
    model, x, y, cost = _problem(kind, True, steps=2000, per_step=per_step)
    model32 = copy.deepcopy(model).float()
    g64 = RHEL(1e-2, cost=cost).grads(model, x, y)
    g32 = RHEL(1e-2, cost=cost).grads(model32, x.float(), y)
    assert all(g.dtype == torch.float32 for g in g32.values())
    assert relative_error({k: v.double() for k, v in g32.items()}, g64) < 1e-4


def test_echo_error_and_check_echo_still_report():
    model, x, y, cost = _problem("nonlinear", True, steps=100)
    info = RHEL(1e-2, variant="one_sided", cost=cost).estimate(model, x, y).info
    assert info["echo_error"] < 1e-12  # the ε = 0 copy of the fused echo returns to the start
    info = RHEL(1e-2, cost=cost, check_echo=True).estimate(model, x, y).info  # three copies: step by step
    assert info["echo_error"] < 1e-12


@pytest.mark.parametrize("chunk", [0, -1, 2.5, True])
def test_chunk_below_one_is_refused(chunk):
    with pytest.raises(ConfigurationError, match="chunk size must be an integer >= 1"):
        RHEL(1e-2, chunk=chunk)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_fused_echo_on_cuda(kind):
    """On a GPU the fused echo equals the step-by-step echo (float64, round-off) and float32 is
    within 1e-4 of float64 on the CPU."""
    model, x, y, cost = _problem(kind, True)
    reference = RHEL(1e-2, cost=cost).grads(model, x, y)
    device = torch.device("cuda")
    on_gpu = copy.deepcopy(model).to(device)
    fast = RHEL(1e-2, cost=cost, chunk=64).grads(on_gpu, x.to(device), y.to(device))
    step = RHEL(1e-2, cost=cost, integrator=ReferenceVerlet()).grads(on_gpu, x.to(device), y.to(device))
    assert_close({k: v.cpu() for k, v in fast.items()}, {k: v.cpu() for k, v in step.items()}, 1e-11)
    got = RHEL(1e-2, cost=cost).grads(on_gpu.float(), x.float().to(device), y.to(device))
    assert relative_error({k: v.double().cpu() for k, v in got.items()}, reference) < 1e-4
