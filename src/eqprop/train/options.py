"""Checks of the scalar options of a run (integers and real numbers), each a one-sentence error.

Hydra parses ``trainer.epochs=2.5`` as a float and ``optim.lr=abc`` as a string; without a check
the first would train 3 epochs (``range`` over a rounded count) and the second fail deep inside
torch. Every integer option of the trainer and the run goes through :func:`integer`, every
real-valued optimizer option through :func:`real`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..errors import ConfigurationError

__all__ = ["integer", "real", "check_run_options", "check_label_range", "OPTIMIZER_REALS", "SCHEDULER_INTEGERS", "SCHEDULER_REALS"]

OPTIMIZER_REALS = ("lr", "momentum", "dampening", "weight_decay", "eps", "alpha", "rho", "lr_decay", "betas")
"""Optimizer options that must be real numbers (``betas``: a pair of them)."""


def integer(name: str, value: Any, minimum: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as an int, or a :class:`ConfigurationError` naming ``name``.

    An integer-valued float (``3.0``) is accepted; ``2.5``, a string, or a bool is refused.
    """
    if value is None and allow_none:
        return None
    kind = f"an integer ≥ {minimum}" if minimum is not None else "an integer"
    kind += " or null" if allow_none else ""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        ok = True
    if not ok:
        raise ConfigurationError(f"{name} must be {kind}, got {value!r}; write it as a whole number, e.g. {name}=3.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ConfigurationError(f"{name} must be {kind}, got {value}.")
    return value


def real(name: str, value: Any, minimum: float | None = None) -> float:
    """``value`` as a finite float, or a :class:`ConfigurationError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ConfigurationError(f"{name} must be a finite real number, got {value!r}; e.g. {name}=0.01.")
    if minimum is not None and float(value) < minimum:
        raise ConfigurationError(f"{name} must be ≥ {minimum}, got {value}.")
    return float(value)


SCHEDULER_INTEGERS = ("T_max", "step_size", "T_0", "T_mult", "total_iters")
SCHEDULER_REALS = ("eta_min", "gamma", "factor", "start_factor", "end_factor")


def check_label_range(train_labels: Any, test_labels: Any, n_classes: int) -> None:
    """Integer class labels must lie in ``0..n_classes-1`` (one-hot targets and accuracy assume it)."""
    for split, labels in (("training", train_labels), ("test", test_labels)):
        if labels.is_floating_point() or not len(labels):
            continue
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= n_classes:
            raise ConfigurationError(
                f"The {split} labels span {low}..{high}, outside 0..{n_classes - 1} of n_classes={n_classes}; "
                f"pass the dataset's class count or fix the labels."
            )


def check_run_options(cfg: Any) -> None:
    """Check the top-level integers (seed, num_threads), the optimizer's and the scheduler's numbers of a composed config."""
    integer("seed", cfg.get("seed"))
    integer("num_threads", cfg.get("num_threads"), minimum=1, allow_none=True)
    scheduler = cfg.get("scheduler") or {}
    for key in SCHEDULER_INTEGERS:
        if key in scheduler:
            integer(f"scheduler.{key}", scheduler[key], minimum=1)
    for key in SCHEDULER_REALS:
        if key in scheduler:
            real(f"scheduler.{key}", scheduler[key], minimum=0.0)
    optim = cfg.get("optim") or {}
    for key in OPTIMIZER_REALS:
        if key not in optim:
            continue
        value = optim[key]
        if key == "betas":
            values = list(value) if not isinstance(value, (str, bytes, numbers.Number)) and value is not None else [value]
            if len(values) != 2:
                raise ConfigurationError(f"optim.betas must be a pair of real numbers, got {value!r}; e.g. optim.betas=[0.9,0.999].")
            for i, v in enumerate(values):
                real(f"optim.betas[{i}]", v, minimum=0.0)
        else:
            real(f"optim.{key}", value, minimum=0.0)
