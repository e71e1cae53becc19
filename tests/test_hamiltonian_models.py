"""Hamiltonian models and integrators: closed forms vs autograd, reversibility, the parallel scan."""

from __future__ import annotations

import pytest
import torch

from eqprop.errors import ConfigurationError
from eqprop.learners import RHEL
from eqprop.models import HSSM, HamiltonianModel, LinearHRU, NonlinearHRU
from eqprop.solvers import LeapFrog, PositionVerlet, SymplecticEuler, affine_scan


@pytest.mark.parametrize("cls", [LinearHRU, NonlinearHRU])
def test_closed_form_forces_equal_autograd(cls):
    model = cls(3, 4)
    q, u = torch.randn(5, 4), torch.randn(5, 3)
    autograd_force = HamiltonianModel.potential_grad(model, q, u)
    assert torch.allclose(model.potential_grad(q, u), autograd_force, rtol=1e-12, atol=1e-13)


def test_vector_step_scales_each_coordinate():
    model = LinearHRU(3, 4)
    q, u = torch.randn(5, 4), torch.randn(5, 3)
    expected = (model.dt * model.potential_terms(q, u)).sum(-1)
    assert torch.allclose(model.scaled_potential(q, u, model.dt), expected, rtol=1e-13)
    assert torch.allclose(model.potential(q, u), model.potential_terms(q, u).sum(-1), rtol=1e-13)


def _flip_step_flip_step(integrator, model, q, p, u):
    dt = integrator.step_size(model)
    q1, p1 = integrator.step(model, q, p, u, dt)
    return integrator.step(model, q1, -p1, u, dt)


@pytest.mark.parametrize("integrator", [PositionVerlet(), LeapFrog()])
def test_reversible_integrators_satisfy_sigma_m_sigma_m_identity(integrator):
    model = NonlinearHRU(3, 4)
    q, p, u = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 3)
    q2, p2 = _flip_step_flip_step(integrator, model, q, p, u)
    assert integrator.reversible
    assert torch.allclose(q2, q, atol=1e-14) and torch.allclose(-p2, p, atol=1e-14)


def test_symplectic_euler_is_not_reversible_and_says_so():
    integrator, model = SymplecticEuler(), NonlinearHRU(3, 4)
    q, p, u = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 3)
    q2, p2 = _flip_step_flip_step(integrator, model, q, p, u)
    assert not integrator.reversible
    assert float((q2 - q).detach().abs().max()) > 1e-4  # O(dt²) mismatch, far from round-off


def test_echo_step_moves_like_step():
    """The RHEL echo step and the plain step are the same map (the echo adds only bookkeeping):
    through the closed-form and the autograd kernel, on contrast rows (w = ±1) and ε = 0 rows (w = 0)."""
    from eqprop.models.echo_kernels import AutogradEchoKernel, copy_rows

    model = NonlinearHRU(3, 4)
    batch, copies = 2, 3
    q, p, u = torch.randn(copies * batch, 4), torch.randn(copies * batch, 4), torch.randn(batch, 3)
    for integrator in (PositionVerlet(), LeapFrog()):
        dt = integrator.step_size(model)
        expected = integrator.step(model, q, p, u.repeat(copies, 1), dt)
        for kernel in (model.echo_kernel(dt, batch, copies), AutogradEchoKernel(model, dt, batch, copies)):
            # the closed form's rows [0, B) carry copy 0 − copy 1 (echo_kernels.copy_rows reads either layout)
            start = [t.clone() for t in (q, p)]
            if getattr(kernel, "difference", False):
                for t in start:
                    t[:batch] -= t[batch:2 * batch]
            got = integrator.echo(kernel, *start, u)
            for a, b in zip(got, expected):
                for c in range(copies):
                    assert torch.allclose(copy_rows(kernel, a, c, batch), b[c * batch:(c + 1) * batch],
                                          rtol=1e-13, atol=1e-14)


def test_affine_scan_equals_the_sequential_verlet_loop():
    model = LinearHRU(2, 6)
    u = torch.randn(3, 333, 2)  # not a power of two
    q0, p0 = torch.randn(3, 6), torch.randn(3, 6)
    q_scan, p_scan = model.trajectory(u, q0, p0)
    integrator, dt = PositionVerlet(), model.dt
    q, p = q0, p0
    qs, ps = [], []
    with torch.no_grad():
        for k in range(u.shape[1]):
            q, p = integrator.step(model, q, p, u[:, k], dt)
            qs.append(q)
            ps.append(p)
    # both are exact arithmetic of the same affine map, in a different order: round-off only
    assert torch.allclose(q_scan, torch.stack(qs, 1), rtol=1e-9, atol=1e-10)
    assert torch.allclose(p_scan, torch.stack(ps, 1), rtol=1e-9, atol=1e-10)


def test_affine_scan_rejects_mismatched_shapes():
    from eqprop.errors import ShapeError

    with pytest.raises(ShapeError):
        affine_scan(torch.randn(3, 2, 2), torch.randn(1, 5, 4, 2), torch.randn(1, 3, 2))


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_hssm_parallel_prediction_equals_the_sequential_simulation(pooling):
    model = HSSM(2, 5, 3, num_layers=2, hru="linear", pooling=pooling)
    x = torch.randn(2, 300, 2)
    sequential = RHEL(1e-3).predict(model, x)
    with torch.no_grad():
        parallel = model.predict_parallel(x)
    assert torch.allclose(parallel, sequential, rtol=1e-9, atol=1e-10)
    with pytest.raises(Exception, match="LinearHRU"):
        HSSM(2, 5, 3, hru="nonlinear").predict_parallel(x)


@pytest.mark.parametrize("activation", ["gelu", "glu", "tanh", "identity"])
def test_hssm_mix_is_readout_activation_residual_layernorm(activation):
    model = HSSM(2, 5, 3, activation=activation)
    z, q = torch.randn(4, 5), torch.randn(4, 5)
    y = model.readouts[0](q)
    y = {"gelu": torch.nn.functional.gelu, "glu": lambda t: torch.nn.functional.glu(t, -1),
         "tanh": torch.tanh, "identity": lambda t: t}[activation](y)
    assert torch.allclose(model.mix(0, z, q), model.norms[0](z + y), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("field", ["input_size", "hidden_size", "output_size", "num_layers", "state_size"])
def test_hssm_rejects_bad_sizes_by_name(field):
    kwargs = dict(input_size=3, hidden_size=4, output_size=2, num_layers=2, state_size=5)
    kwargs[field] = 0
    with pytest.raises(ConfigurationError, match=f"{field} must be an integer ≥ 1"):
        HSSM(**kwargs)
