"""β sweeps: the empirical order of a learner's error against a reference.

    sweep = eqprop.check.beta_sweep(lambda beta: EP(beta, "centered"), ImplicitDifferentiation(),
                                    model, x, y, betas=[1e-1, 1e-2, 1e-3])
    sweep.order            # slope of log(error) against log(β): ≈ 2 for centered EP
    sweep.plot("sweep.png")

matplotlib is imported only by ``plot``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from torch import Tensor

from ..errors import ConfigurationError
from .compare import relative_error

__all__ = ["Sweep", "beta_sweep", "log_log_slope"]


def log_log_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    lx, ly = np.log(np.asarray(xs, dtype=float)), np.log(np.asarray(ys, dtype=float))
    return float(np.polyfit(lx, ly, 1)[0])


@dataclass
class Sweep:
    """Errors of an estimator against a reference over a list of nudging strengths."""

    betas: list[float]
    errors: list[float]
    label: str = "learner"

    @property
    def order(self) -> float:
        """Empirical order: the log-log slope of the error against β."""
        return log_log_slope(self.betas, self.errors)

    def __str__(self) -> str:
        rows = [f"{'beta':>10}  {'rel. error':>10}"] + [f"{b:10.3e}  {e:10.3e}" for b, e in zip(self.betas, self.errors)]
        rows.append(f"empirical order {self.order:.2f}")
        return "\n".join(rows)

    def plot(self, path: str | None = None, ax=None):
        """Log-log plot of the error against β; saved to ``path`` when given."""
        import matplotlib

        if ax is None and path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = None
        if ax is None:
            fig, ax = plt.subplots(figsize=(4.5, 3.5))
        ax.loglog(self.betas, self.errors, "o-", label=f"{self.label} (order {self.order:.2f})")
        ax.set_xlabel("β")
        ax.set_ylabel("relative error vs reference")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        if fig is not None:
            fig.tight_layout()
            if path is not None:
                fig.savefig(path, dpi=120)
                plt.close(fig)
        return ax


def beta_sweep(
    make_learner: Callable[[float], object],
    reference,
    model,
    x: Tensor,
    y: Tensor,
    betas: Sequence[float] = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3),
    label: str | None = None,
) -> Sweep:
    """Relative error of ``make_learner(β).grads`` against ``reference.grads`` for each β."""
    betas = [float(b) for b in betas]
    if len(betas) < 2 or any(not math.isfinite(b) or b <= 0 for b in betas):
        raise ConfigurationError(f"beta_sweep needs at least two positive finite β, got {betas}.")
    ref = reference.grads(model, x, y)
    errors = [relative_error(make_learner(b).grads(model, x, y), ref) for b in betas]
    name = label if label is not None else repr(make_learner(betas[0])).split("(")[0]
    return Sweep(betas, errors, name)
