"""Hamiltonian recurrent units (HRUs) of Pourcel & Ernoult 2025, with trainable step sizes.

``LinearHRU``: one oscillator per unit, H = Σ_i ½p_i² + ½a_i q_i² − q_i (B u + b)_i, a_i = κ_i² ≥ 0,
a step size dt_i per unit (the linear HRU/LinOSS family). Its step under position Verlet is an
affine map of (q, p), so a whole trajectory is also computed by a parallel scan
(:meth:`LinearHRU.trajectory`, log-depth doubling; see ``eqprop.models.scan``).

``NonlinearHRU``: H = ½|p|² + ½ Σ_i a_i q_i² + Σ_j log cosh((W q + B u + b)_j), a_i = κ_i², one
trainable scalar dt (the log cosh coupling is not separable per unit, so dt is shared).

Both give their forces in closed form; tests/test_hamiltonian_models.py checks them against
autograd, and tests/test_rhel.py checks RHEL on them against BPTT.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import ConfigurationError
from . import echo_kernels
from ._checks import positive_int
from .hamiltonian import HamiltonianModel
from .scan import affine_scan

__all__ = ["LinearHRU", "NonlinearHRU", "readout_jacobian"]


def _physics_is_builtin(model: HamiltonianModel, cls: type) -> bool:
    """True unless a subclass rewrote the physics (then its echo falls back to autograd)."""
    names = ("potential", "potential_terms", "potential_grad", "kinetic", "kinetic_terms", "drive", "_preactivation")
    return all(getattr(type(model), n, None) is getattr(cls, n, None) for n in names)


def _init_dt(hidden_size: int, dt_min: float, dt_max: float, vector: bool) -> Tensor:
    if not 0 < dt_min <= dt_max:
        raise ConfigurationError(f"Need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}.")
    if not vector:
        return torch.tensor(math.sqrt(dt_min * dt_max))
    log_dt = torch.rand(hidden_size) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    return log_dt.exp()


class _HRU(HamiltonianModel):
    """What the built-in HRUs share: the rest initial state, the optional linear read-out, and the
    closed-form echo kernel named by ``_kernel`` (autograd when a subclass rewrote the physics)."""

    _kernel: str

    def init_state(self, u_seq: Tensor) -> tuple[Tensor, Tensor]:
        zeros = u_seq.new_zeros(u_seq.shape[0], self.hidden_size)
        return zeros, zeros.clone()

    def output(self, q: Tensor) -> Tensor:
        return q if self.readout is None else self.readout(q)

    def echo_kernel(self, dt: Tensor, batch: int, copies: int):
        """Closed-form forces and contrasts (:mod:`eqprop.models.echo_kernels`)."""
        builtin = next(c for c in type(self).__mro__ if "_kernel" in c.__dict__)
        if _physics_is_builtin(self, builtin):
            return getattr(echo_kernels, builtin._kernel)(self, dt, batch, copies)
        return super().echo_kernel(dt, batch, copies)


def readout_jacobian(model) -> Tensor | None:
    """∂output/∂q [out, n] of a built-in HRU whose read-out is the identity or an ``nn.Linear``
    (constant in q), detached; None for any other model or read-out."""
    if not isinstance(model, _HRU) or type(model).output is not _HRU.output:
        return None
    if model.readout is None:
        return torch.eye(model.hidden_size, dtype=model.frequency.dtype, device=model.frequency.device)
    if type(model.readout) is nn.Linear:
        return model.readout.weight.detach()
    return None


class LinearHRU(_HRU):
    """Linear HRU: uncoupled oscillators driven by the input, one trainable dt_i per unit.

        V(q, u) = Σ_i [½ κ_i² q_i² − q_i (B u + b)_i],   T(p) = ½|p|²

    Args:
        input_size: width of u_t.
        hidden_size: width of q (= p).
        output_size: a linear readout C q + c when given; ``output(q) = q`` when ``None``.
        dt_min: the initial dt_i are log-uniform in [dt_min, dt_max].
        dt_max: see ``dt_min``.
        frequency_max: initial κ_i uniform in [0, frequency_max] (Verlet is stable for κ dt < 2).
    """

    _kernel = "LinearHRUKernel"

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None,
                 dt_min: float = 0.05, dt_max: float = 0.5, frequency_max: float = 1.0) -> None:
        super().__init__()
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.frequency = nn.Parameter(torch.rand(hidden_size) * frequency_max)
        self.input_weight = nn.Parameter(torch.randn(hidden_size, input_size) / math.sqrt(input_size))
        self.input_bias = nn.Parameter(torch.zeros(hidden_size))
        self.dt = nn.Parameter(_init_dt(hidden_size, dt_min, dt_max, vector=True))
        self.readout = nn.Linear(hidden_size, output_size) if output_size is not None else None

    def drive(self, u: Tensor) -> Tensor:
        """The input force B u + b."""
        return u @ self.input_weight.T + self.input_bias

    def potential_terms(self, q: Tensor, u: Tensor) -> Tensor:
        return 0.5 * self.frequency**2 * q * q - q * self.drive(u)

    def potential_grad(self, q: Tensor, u: Tensor, create_graph: bool = False) -> Tensor:
        return self.frequency**2 * q - self.drive(u)


    # -- parallel scan ---------------------------------------------------------------------------
    def verlet_matrix(self, dt: Tensor | None = None) -> Tensor:
        """The per-unit 2×2 matrix M of one position-Verlet step (q, p) → M (q, p) + c_k, shape [n, 2, 2].

        With d = dt_i, a = κ_i²: M = [[1 − d²a/2, d − d³a/4], [−da, 1 − d²a/2]] (det M = 1), and
        c_k = ((d²/2) w_k, d w_k) with w_k = B u_k + b.
        """
        d = self.dt if dt is None else dt
        a = self.frequency**2
        d = d.expand_as(a)
        top = torch.stack([1 - d * d * a / 2, d - d**3 * a / 4], dim=-1)
        bottom = torch.stack([-d * a, 1 - d * d * a / 2], dim=-1)
        return torch.stack([top, bottom], dim=-2)

    def trajectory(self, u_seq: Tensor, q0: Tensor | None = None, p0: Tensor | None = None,
                   dt: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """All states (q_k, p_k), k = 1..T, of position Verlet by a parallel scan; each [batch, T, n].

        Equal to the sequential loop (tests/test_hamiltonian_models.py) with O(log T) depth.
        """
        d = self.dt if dt is None else dt
        w = self.drive(u_seq)  # [B, T, n]
        d = d.expand(self.hidden_size)
        forcing = torch.stack([0.5 * d * d * w, d * w], dim=-1)  # [B, T, n, 2]
        if q0 is None:
            q0 = u_seq.new_zeros(u_seq.shape[0], self.hidden_size)
        if p0 is None:
            p0 = torch.zeros_like(q0)
        states = affine_scan(self.verlet_matrix(dt), forcing, torch.stack([q0, p0], dim=-1))
        return states[..., 0], states[..., 1]


class NonlinearHRU(_HRU):
    """Nonlinear HRU: oscillators coupled through a log-cosh interaction, one trainable scalar dt.

        V(q, u) = ½ Σ_i κ_i² q_i² + Σ_j log cosh((W q + B u + b)_j),   T(p) = ½|p|²
        −∂_qV = −κ² ⊙ q − Wᵀ tanh(W q + B u + b)

    Args as :class:`LinearHRU`; ``dt`` is a scalar initialised at √(dt_min·dt_max).
    """

    _kernel = "NonlinearHRUKernel"

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None,
                 dt_min: float = 0.05, dt_max: float = 0.5, frequency_max: float = 1.0,
                 coupling_scale: float = 0.5) -> None:
        super().__init__()
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.frequency = nn.Parameter(torch.rand(hidden_size) * frequency_max)
        self.coupling = nn.Parameter(coupling_scale * torch.randn(hidden_size, hidden_size) / math.sqrt(hidden_size))
        self.input_weight = nn.Parameter(torch.randn(hidden_size, input_size) / math.sqrt(input_size))
        self.input_bias = nn.Parameter(torch.zeros(hidden_size))
        self.dt = nn.Parameter(_init_dt(hidden_size, dt_min, dt_max, vector=False))
        self.readout = nn.Linear(hidden_size, output_size) if output_size is not None else None

    def _preactivation(self, q: Tensor, u: Tensor) -> Tensor:
        return q @ self.coupling.T + u @ self.input_weight.T + self.input_bias

    def potential(self, q: Tensor, u: Tensor) -> Tensor:
        h = self._preactivation(q, u)
        # log cosh h = |h| + log1p(exp(−2|h|)) − log 2, stable for large |h|
        log_cosh = h.abs() + torch.log1p(torch.exp(-2 * h.abs())) - math.log(2.0)
        return (0.5 * self.frequency**2 * q * q).sum(-1) + log_cosh.sum(-1)

    def potential_grad(self, q: Tensor, u: Tensor, create_graph: bool = False) -> Tensor:
        return self.frequency**2 * q + torch.tanh(self._preactivation(q, u)) @ self.coupling

