"""Batched Newton pieces for the boundary-value solvers: banded Jacobians and dense per-sample solves.

The discrete Euler–Lagrange equations couple only neighbouring time points: the residual at
point k depends on s_{k−1}, s_k, s_{k+1} (cyclically for periodic problems). Their Jacobian is
block tridiagonal, so it is recovered from a few reverse-mode passes by colouring: points
k ≡ r (mod c), c ≥ 3, have disjoint supports, so one vector-Jacobian product with the unit
vectors of a whole colour class returns all their rows at once (c·n passes instead of M·n).
Samples are independent, so the same pass serves the whole batch. The Jacobian is then stored
dense per sample, [batch, M·n, M·n], and solved with ``torch.linalg.solve`` — meant for the small
systems of the checks and examples (M·n up to a few hundred).

This module knows nothing of models, costs or learners.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import Tensor

from ..errors import ConfigurationError, ConvergenceError, ConvergenceWarning

__all__ = ["banded_jacobian", "colour_count", "newton_step", "newton_update", "report_failure", "default_tol"]


def default_tol(dtype: torch.dtype) -> float:
    """Residual tolerance of the Newton solves: 1e-12 in float64, 1e-5 in lower precision."""
    return 1e-12 if dtype == torch.float64 else 1e-5


def colour_count(points: int, periodic: bool) -> int:
    """Smallest c ≥ 3 such that points of equal k mod c are ≥ 3 apart (cyclically when periodic)."""
    if points <= 3:
        return points
    if not periodic:
        return 3
    for c in range(3, points + 1):
        if points % c == 0 or points % c >= 3:
            return c
    return points  # pragma: no cover - c = points always qualifies


def _neighbours(k: int, points: int, periodic: bool) -> list[int]:
    out = []
    for d in (-1, 0, 1):
        j = k + d
        if periodic:
            j %= points
        if 0 <= j < points and j not in out:
            out.append(j)
    return out


def banded_jacobian(residual: Callable[[Tensor], Tensor], z: Tensor, periodic: bool) -> tuple[Tensor, Tensor]:
    """(r, J): the residual r(z) [batch, M, n] and its Jacobian [batch, M·n, M·n] (detached).

    J[b, (k, i), (k', j)] = ∂r_{k,i}/∂z_{k',j}; r_k must depend on z_{k−1}, z_k, z_{k+1} only
    (cyclic neighbours when ``periodic``). M = 1 gives a plain dense n × n Jacobian.
    """
    batch, points, width = z.shape
    colours = colour_count(points, periodic)
    jac = z.new_zeros(batch, points, width, points, width)
    with torch.enable_grad():
        leaf = z.detach().requires_grad_(True)
        r = residual(leaf)
        if r.shape != z.shape:
            raise ConfigurationError(f"A residual shaped {tuple(r.shape)} does not match its unknowns {tuple(z.shape)}.")
        for colour in range(colours):
            rows = [k for k in range(points) if k % colours == colour]
            pairs = [(k, j) for k in rows for j in _neighbours(k, points, periodic)]
            row_idx = torch.tensor([p[0] for p in pairs], device=z.device)
            col_idx = torch.tensor([p[1] for p in pairs], device=z.device)
            for i in range(width):
                seed = torch.zeros_like(r)
                seed[:, rows, i] = 1.0
                (g,) = torch.autograd.grad(r, leaf, seed, retain_graph=True, allow_unused=True)
                if g is None:
                    continue
                jac[:, row_idx, i, col_idx, :] = g[:, col_idx, :]
    return r.detach(), jac.reshape(batch, points * width, points * width)


def newton_step(r: Tensor, jac: Tensor) -> Tensor:
    """J⁻¹ r, per sample, shaped like r (r: [batch, M, n]; J: [batch, M·n, M·n])."""
    return torch.linalg.solve(jac, r.reshape(r.shape[0], -1, 1)).reshape(r.shape)


def newton_update(z: Tensor, r: Tensor, jac: Tensor) -> Tensor:
    """z − J⁻¹ r, per sample (z, r: [batch, M, n]; J: [batch, M·n, M·n])."""
    return z - newton_step(r, jac)


def report_failure(what: str, residual: float, tol: float, steps: int, on_failure: str) -> None:
    """Warn (or raise, with ``on_failure="raise"``) about a Newton solve that missed its tolerance."""
    message = (
        f"The {what} stopped after {steps} Newton steps with residual {residual:.3e} > tol {tol:.1e}; "
        f"lower the step size dt, raise max_steps, or check that the boundary-value problem has a solution."
    )
    if on_failure == "raise":
        raise ConvergenceError(message)
    warnings.warn(message, ConvergenceWarning, stacklevel=3)
