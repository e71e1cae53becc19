"""What continuous-time RHEL and the continuous adjoint share: the grid, its checks and its run.

Setting: a single Hamiltonian model on t ∈ [0, T], inputs sampled on the grid t_n = n·h,
x[:, n] = u(t_n), n = 0..N. A terminal target [batch, ...] is a loss ℓ_T(q(T)); a running target
[batch, N + 1, ...] is the loss ∫₀ᵀ ℓ_t dt by the trapezoid rule (:func:`trapezoid_weights`).
:func:`grid_trajectory` runs any integrator over the grid, each step reading the inputs at both
of its ends (``u_end``), so learner (:class:`eqprop.learners.ContinuousRHEL`) and baseline
(:class:`eqprop.baselines.Adjoint`) simulate the same scheme from one place.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigurationError
from .sequence import check_single_hamiltonian

__all__ = ["check_continuous_model", "check_step_size", "check_grid_integrator", "trapezoid_weight",
           "trapezoid_weights", "grid_trajectory"]


def check_continuous_model(model) -> None:
    """A single Hamiltonian model (not a stack)."""
    check_single_hamiltonian(model, "Continuous-time RHEL (and the adjoint)")


def check_step_size(h: float) -> float:
    """The grid spacing h: a positive finite number."""
    try:
        h = float(h)
    except (TypeError, ValueError):
        raise ConfigurationError(f"step_size must be a positive number (the grid spacing h), got {h!r}.") from None
    if not 0 < h < float("inf"):
        raise ConfigurationError(f"step_size must be a positive finite number (the grid spacing h), got {h}.")
    return h


def check_grid_integrator(integrator, h: float, learner: str) -> None:
    """On the grid the step is h: an integrator with its own different dt is refused."""
    own = getattr(integrator, "dt", None)
    if own is not None and float(own) != h:
        raise ConfigurationError(
            f"{learner} steps on the sampling grid h = step_size = {h}, but the integrator has dt = {own}; "
            f"build it without a step, e.g. {type(integrator).__name__}()."
        )


def trapezoid_weight(n: int, n_points: int, h: float) -> float:
    """The trapezoid weight of grid point n of ∫₀ᵀ over n_points points: h/2 at both ends, h inside
    (one at a time, so that a loop over the grid keeps no list as long as the grid)."""
    return h * (0.5 if n in (0, n_points - 1) else 1.0)


def trapezoid_weights(n_points: int, h: float) -> list[float]:
    """All the trapezoid weights of ∫₀ᵀ over n_points grid points (:func:`trapezoid_weight`)."""
    return [trapezoid_weight(n, n_points, h) for n in range(n_points)]


def grid_trajectory(model, x: Tensor, h: float, integrator, create_graph: bool = False,
                    keep_outputs: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Step n goes from t_n to t_{n+1} with inputs x[:, n] and x[:, n + 1], from Φ(0) = init_state(x).

    Returns q_T, p_T and the outputs at every grid point [batch, N + 1, ...] when ``keep_outputs``,
    else the final output only; a graph only with ``create_graph``.
    """
    step = torch.tensor(h, dtype=x.dtype, device=x.device)
    q, p = model.init_state(x)
    with torch.enable_grad() if create_graph else torch.no_grad():
        outputs = [model.output(q)] if keep_outputs else []
        for n in range(x.shape[1] - 1):
            q, p = integrator.step(model, q, p, x[:, n], step, create_graph, u_end=x[:, n + 1])
            if keep_outputs:
                outputs.append(model.output(q))
        out = torch.stack(outputs, dim=1) if keep_outputs else model.output(q)
    return q, p, out
