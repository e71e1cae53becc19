"""The angle between two estimators' updates, per parameter or per layer.

    eqprop.check.angles(DTP(0.1), Backprop(), model, x, y)            # {name: degrees}
    eqprop.check.angles(DTP(0.1), Backprop(), model, x, y, by="layer")

The alignment measure of the target-propagation papers (Ernoult et al. 2022 report the angle
between DTP's weight updates and backprop's gradients, layer by layer): 0° is the same direction,
90° orthogonal. This module knows learners only through ``grads(model, x, y)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ConfigurationError

__all__ = ["angle_deg", "angles"]


def angle_deg(a: Tensor, b: Tensor) -> float:
    """arccos(⟨a, b⟩ / (‖a‖‖b‖)) in degrees; 0 when both are zero, 90 when only one is."""
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0:
        return 0.0 if na == nb else 90.0
    cosine = float((a * b).sum()) / (na * nb)
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


def angles(a, b, model, x: Tensor, y: Tensor, by: str = "parameter") -> dict[str, float]:
    """Angle in degrees between ``a.grads`` and ``b.grads`` on one batch.

    ``by="parameter"``: one entry per parameter name; ``by="layer"``: the parameters of one
    module (``forward_layers.0.weight`` and ``.bias``) joined into one vector.
    """
    if by not in ("parameter", "layer"):
        raise ConfigurationError(f"by must be 'parameter' or 'layer', got {by!r}.")
    ga, gb = a.grads(model, x, y), b.grads(model, x, y)
    missing = sorted(set(ga) ^ set(gb))
    if missing:
        raise ConfigurationError(f"The two estimators give gradients for different parameters ({', '.join(missing)}).")
    if by == "parameter":
        return {name: angle_deg(ga[name], gb[name]) for name in gb}
    groups: dict[str, list[str]] = {}
    for name in gb:
        groups.setdefault(name.rsplit(".", 1)[0] if "." in name else name, []).append(name)
    return {
        layer: angle_deg(torch.cat([ga[n].flatten() for n in names]), torch.cat([gb[n].flatten() for n in names]))
        for layer, names in groups.items()
    }
