"""MetaplasticAdam: Adam whose steps toward a sign change fade as |W| grows (Laborieux et al. 2021)."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from ..errors import ConfigurationError
from .groups import closure_then_check, check_non_negative, iter_grads

__all__ = ["MetaplasticAdam", "meta_factor"]


def meta_factor(weight: Tensor, meta: float) -> Tensor:
    """f_meta = 1 − tanh²(m·|W|), in (0, 1]: the attenuation of a step toward a sign change."""
    return 1.0 - torch.tanh(meta * weight.abs()) ** 2


class MetaplasticAdam(torch.optim.Optimizer):
    r"""Adam with synaptic metaplasticity for binarized networks with real hidden weights W_h.

    Laborieux, Ernoult, Hirtzlin & Querlioz 2021, "Synaptic metaplasticity in binarized neural
    networks" (Nature Communications 12:2549). With g = dL/dW (+ weight_decay·W), Adam's moments
    m, v and bias corrections, the step is

        u = −lr · m̂ / (√v̂ + ε),    m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)

    and for the consolidated tensors (groups with ``binary=True``; without that key, every
    tensor of two or more dimensions, i.e. the weights and not the biases or BatchNorm
    parameters)

        u ← (1 − tanh²(m_meta·|W|)) · u   where sign(W)·m̂ > 0  (the step points toward zero)

    and u unchanged elsewhere; then W ← W + u. W is never clipped, so |W| grows where the sign
    is consistently useful and acts as the metaplastic (consolidation) variable. ``meta = 0``
    is Adam: ε is placed as in ``torch.optim.Adam`` (after the bias correction), so the two
    agree to round-off.

    Check (tests/test_optim.py): meta = 0 against ``torch.optim.Adam``; 0 < f_meta ≤ 1; a step
    that increases |W| is never attenuated; a large m·|W| keeps a constant adversarial gradient
    from flipping a sign within N steps, while m = 0 flips it.

    Args:
        params: tensors or param groups (a group may set its own ``meta``, the paper's per-layer m).
        lr: as ``torch.optim.Adam``.
        betas: as ``torch.optim.Adam``.
        eps: as ``torch.optim.Adam``.
        weight_decay: as ``torch.optim.Adam`` (L2 weight decay added to g).
        meta: metaplasticity m ≥ 0 (the paper: 1.35 on permuted MNIST, 1.5 MNIST → FMNIST).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.005,
        meta: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        betas = tuple(betas)
        if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):
            raise ConfigurationError(f"betas must be two numbers in [0, 1), got {betas!r}.")
        defaults = {"lr": check_non_negative("lr", lr), "meta": check_non_negative("meta", meta),
                    "betas": (float(betas[0]), float(betas[1])), "eps": check_non_negative("eps", eps),
                    "weight_decay": check_non_negative("weight_decay", weight_decay), "binary": None}
        super().__init__(params, defaults)
        for group in self.param_groups:
            check_non_negative("meta", group["meta"])
            check_non_negative("lr", group["lr"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = closure_then_check(self, closure)  # a bad gradient leaves every weight as it was
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p, g in iter_grads(group):
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                bias1, bias2 = 1 - beta1**t, 1 - beta2**t
                denom = (v.sqrt() / math.sqrt(bias2)).add_(group["eps"])
                update = (m / bias1).div_(denom).mul_(-group["lr"])
                consolidated = group["binary"] if group["binary"] is not None else p.dim() >= 2
                if consolidated and group["meta"] > 0:
                    toward_zero = torch.sign(p) * m > 0
                    update = torch.where(toward_zero, update * meta_factor(p, group["meta"]), update)
                p.add_(update)
        return loss
