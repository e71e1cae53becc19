"""BinaryFlip: the momentum-driven sign-flip optimizer of binary EP (Laydevant et al. 2021)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from .groups import closure_then_check, check_non_negative, check_unit_interval, iter_grads

__all__ = ["BinaryFlip"]


class BinaryFlip(torch.optim.Optimizer):
    r"""Bop-style flips of binary weights, driven by a momentum of the gradient.

    Laydevant, Ernoult, Querlioz & Grollier 2021, "Training dynamical binary neural networks with
    equilibrium propagation" (after Helwegen et al. 2019's Bop). For each latent binary weight p
    with gradient g = dL/dp (what learners write into ``p.grad``):

        m ← (1 − γ) m + γ g          (m = 0 before the first step, so the first m is γ g)
        p ← −p   where  sign(p) · m > τ

    sign(p)·m > 0 means that descent (−m) points to the other sign: the weight flips once the
    evidence exceeds the threshold τ. The momentum is kept after a flip. Only the sign of p
    matters to a binary model (it uses α·sign(p)); a latent 0 counts as +1 and flips to the
    smallest negative number. Groups with ``binary=False`` (biases, scales α; see
    :func:`eqprop.optim.param_groups`) get plain SGD, p ← p − lr·g, with ``scale_lr`` in place
    of ``lr`` for the groups marked ``scale=True`` (the learned α, whose gradient sums a whole
    matrix and needs a small rate).

    Flip counts: ``state[p]["flips"]`` (total) and ``state[p]["step_flips"]`` (last step) per
    tensor; ``total_flips`` and ``last_flips`` sum them over every tensor.

    Check (tests/test_optim.py): with γ = 1, τ = 0 a weight flips exactly where sign(g) = sign(p);
    with τ = ∞ none flips; the counts equal the sign changes.

    Args:
        params: tensors or param groups; a group may set its own ``gamma``, ``threshold``, ``lr``
            (the paper's per-layer values) and ``binary``.
        gamma: momentum rate γ in (0, 1].
        threshold: flip threshold τ ≥ 0 (``float("inf")``: never flip).
        lr: SGD learning rate of the ``binary=False`` groups.
        scale_lr: SGD learning rate of the ``scale=True`` groups (``None``: ``lr``).
    """

    def __init__(self, params: Iterable[Any], gamma: float, threshold: float, lr: float = 0.01,
                 scale_lr: float | None = None) -> None:
        defaults = {"gamma": check_unit_interval("gamma", gamma),
                    "threshold": check_non_negative("threshold", threshold, allow_inf=True),
                    "lr": check_non_negative("lr", lr), "binary": True, "scale": False,
                    "scale_lr": None if scale_lr is None else check_non_negative("scale_lr", scale_lr)}
        super().__init__(params, defaults)
        for group in self.param_groups:  # values a group sets itself are checked too
            check_unit_interval("gamma", group["gamma"])
            check_non_negative("threshold", group["threshold"], allow_inf=True)
            check_non_negative("lr", group["lr"])

    @property
    def total_flips(self) -> int:
        """Sign flips since construction, over every binary tensor."""
        return int(sum(int(s["flips"]) for s in self.state.values() if "flips" in s))

    @property
    def last_flips(self) -> int:
        """Sign flips of the last step, over every binary tensor."""
        return int(sum(int(s["step_flips"]) for s in self.state.values() if "step_flips" in s))

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = closure_then_check(self, closure)  # a bad gradient leaves every weight as it was
        for group in self.param_groups:
            if not group["binary"]:
                lr = group["scale_lr"] if group["scale"] and group["scale_lr"] is not None else group["lr"]
                for p, g in iter_grads(group):
                    p.add_(g, alpha=-lr)
                continue
            gamma, tau = group["gamma"], group["threshold"]
            for p, g in iter_grads(group):
                state = self.state[p]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(p)
                    state["flips"] = torch.zeros((), dtype=torch.int64)
                m = state["momentum"]
                m.mul_(1.0 - gamma).add_(g, alpha=gamma)
                signs = torch.where(p >= 0, 1.0, -1.0).to(p.dtype)
                flip = signs * m > tau
                tiny = torch.finfo(p.dtype).tiny
                flipped = torch.where(p == 0, torch.full_like(p, -tiny), -p)
                p.copy_(torch.where(flip, flipped, p))
                count = flip.sum().cpu()
                state["step_flips"] = count
                state["flips"] = state["flips"] + count
        return loss
