"""Compare two gradient estimators on the same problem: per-parameter error and cosine.

    report = eqprop.check.compare(EP(0.01, "centered"), ImplicitDifferentiation(), model, x, y)
    print(report)               # a table, one row per parameter
    report.relative_error       # ‖a − b‖ / ‖b‖ over all parameters at once

This module knows learners only through ``grads(model, x, y)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["Comparison", "ParameterComparison", "compare", "relative_error"]


def relative_error(a: dict[str, Tensor] | Tensor, b: dict[str, Tensor] | Tensor) -> float:
    """‖a − b‖ / ‖b‖ (Frobenius, over every parameter when given dictionaries)."""
    if isinstance(a, Tensor):
        a, b = {"_": a}, {"_": b}
    num = sum(float((a[k] - b[k]).pow(2).sum()) for k in b)
    den = sum(float(b[k].pow(2).sum()) for k in b)
    return math.sqrt(num) / math.sqrt(den) if den > 0 else math.sqrt(num)


def _cosine(a: Tensor, b: Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float((a * b).sum()) / (na * nb)


@dataclass
class ParameterComparison:
    """One parameter: relative error ‖a − b‖/‖b‖, cosine similarity, and the two norms."""

    name: str
    relative_error: float
    cosine: float
    norm_a: float
    norm_b: float


@dataclass
class Comparison:
    """The result of :func:`compare`: per-parameter rows and whole-model figures."""

    rows: list[ParameterComparison]
    relative_error: float
    cosine: float
    grads_a: dict[str, Tensor] = field(repr=False)
    grads_b: dict[str, Tensor] = field(repr=False)

    @property
    def max_relative_error(self) -> float:
        return max((r.relative_error for r in self.rows), default=0.0)

    def __getitem__(self, name: str) -> ParameterComparison:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def __str__(self) -> str:
        width = max([len(r.name) for r in self.rows] + [9])
        lines = [f"{'parameter':<{width}}  {'rel. error':>10}  {'cosine':>9}  {'|a|':>10}  {'|b|':>10}"]
        for r in self.rows:
            lines.append(
                f"{r.name:<{width}}  {r.relative_error:10.3e}  {r.cosine:9.6f}  {r.norm_a:10.3e}  {r.norm_b:10.3e}"
            )
        lines.append(f"{'(all)':<{width}}  {self.relative_error:10.3e}  {self.cosine:9.6f}")
        return "\n".join(lines)


def compare(a, b, model, x: Tensor, y: Tensor) -> Comparison:
    """Run estimators ``a`` and ``b`` (anything with ``grads(model, x, y)``) and compare them.

    ``b`` is the reference: relative errors are ‖a − b‖ / ‖b‖.
    """
    grads_a = a.grads(model, x, y)
    grads_b = b.grads(model, x, y)
    if set(grads_a) != set(grads_b):
        raise KeyError(f"The estimators return different parameters: {sorted(set(grads_a) ^ set(grads_b))}.")
    rows = [
        ParameterComparison(
            name=name,
            relative_error=relative_error(grads_a[name], grads_b[name]),
            cosine=_cosine(grads_a[name], grads_b[name]),
            norm_a=float(grads_a[name].norm()),
            norm_b=float(grads_b[name].norm()),
        )
        for name in grads_b
    ]
    flat_a = torch.cat([grads_a[n].reshape(-1) for n in grads_b])
    flat_b = torch.cat([grads_b[n].reshape(-1) for n in grads_b])
    return Comparison(rows, relative_error(grads_a, grads_b), _cosine(flat_a, flat_b), grads_a, grads_b)
