"""Costs C(output, y): what a learner nudges with and what the loss measures.

A cost maps a model output ``o`` of shape ``[..., d]`` and a target to a per-sample value of
shape ``[...]`` (the last axis is reduced). The loss a learner reports and differentiates is the
mean of the per-sample costs over the batch (and the sum over time for per-step sequence
losses). Each cost also gives ``grad(o, y) = ∂C/∂o`` in closed form, which the relaxations use
as the nudging force βC without calling autograd at every step.

This module knows nothing of models, solvers or learners.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import NonFiniteError, ShapeError

__all__ = ["Cost", "SquaredError", "CrossEntropy"]


class Cost:
    """Base class: a per-sample cost C(o, y) with its closed-form gradient ∂C/∂o.

    ``target_encoding`` declares how class labels reach the cost: ``"one_hot"`` (a target shaped
    like the output, as :class:`SquaredError` takes it) or ``"index"`` (integer class indices, as
    :class:`CrossEntropy` takes them); the training loop encodes labels accordingly.
    """

    target_encoding: str = "index"

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad(self, output: Tensor, target: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_target(self, output: Tensor, target: Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean over the batch (first axis) of the per-sample cost, summed over other axes."""
        per_sample = self(output, target)
        return per_sample.reshape(per_sample.shape[0], -1).sum(dim=1).mean()

    def clamp_value(self, output: Tensor, target: Tensor) -> Tensor:
        """The output value that makes C zero (what contrastive learning clamps to)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _check_finite(name: str, tensor: Tensor) -> None:
    if (tensor.is_floating_point() or tensor.is_complex()) and tensor.numel():
        # One reduction: a sum is non-finite whenever an element is (exact check only then).
        if not math.isfinite(abs(tensor.sum().item())) and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteError(f"The {name} contains NaN or infinity; clean the data before training.")


def _check_probabilities(target: Tensor) -> None:
    """Probability targets: no negative entry, and each row summing to 1 within a few hundred ulps
    of the target's dtype (1e3·eps: 1.2e-4 in float32, 2.2e-13 in float64). A scaled or signed
    target would make the cost unbounded below and every estimator of its gradient meaningless."""
    if not target.numel():
        return
    if target.is_complex():
        raise ShapeError("CrossEntropy takes real class probabilities, got a complex target; pass class indices or real probabilities.")
    if bool((target < 0).any()):
        raise ShapeError(
            f"CrossEntropy class probabilities must be non-negative, got a minimum of {float(target.min()):.3g}; "
            f"pass class indices or a distribution (e.g. torch.softmax(logits, -1))."
        )
    totals = target.sum(dim=-1)
    tol = 1e3 * torch.finfo(target.dtype).eps
    worst = float((totals - 1).abs().max())
    if worst > tol:
        raise ShapeError(
            f"CrossEntropy class probabilities must sum to 1 over the last axis, but a row sums to "
            f"{float(totals.flatten()[(totals - 1).abs().flatten().argmax()]):.6g}; normalise the target "
            f"(y / y.sum(-1, keepdim=True)) or pass class indices."
        )


class SquaredError(Cost):
    """C(o, y) = ½ Σ_i (o_i − y_i)², per sample; y has the shape of the output.

    The square is written without a complex conjugate so that C stays complex-analytic in o,
    as holomorphic EP requires.
    """

    target_encoding = "one_hot"

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        diff = output - target.to(output.dtype)
        return 0.5 * (diff * diff).sum(dim=-1)

    def grad(self, output: Tensor, target: Tensor) -> Tensor:
        return output - (target if target.dtype == output.dtype else target.to(output.dtype))

    def check_target(self, output: Tensor, target: Tensor) -> None:
        if target.shape != output.shape:
            raise ShapeError(
                f"SquaredError needs a target shaped like the model output {tuple(output.shape)}, "
                f"got {tuple(target.shape)}; one-hot encode class labels or use CrossEntropy."
            )
        _check_finite("target", target)

    def clamp_value(self, output: Tensor, target: Tensor) -> Tensor:
        return target.to(output.dtype)


class CrossEntropy(Cost):
    """C(o, y) = −Σ_i y_i log softmax(o)_i, the softmax read-out of the scaling-EP paper.

    The target is either class indices (integer tensor shaped like the output without its last
    axis) or class probabilities shaped like the output. ∂C/∂o = softmax(o) − y.
    """

    def _probabilities(self, output: Tensor, target: Tensor) -> Tensor:
        if not (target.is_floating_point() or target.is_complex()):  # class indices, of any integer type
            return torch.nn.functional.one_hot(target.long(), output.shape[-1]).to(output.dtype)
        return target.to(output.dtype)

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        log_p = output - torch.logsumexp(output, dim=-1, keepdim=True)
        return -(self._probabilities(output, target) * log_p).sum(dim=-1)

    def grad(self, output: Tensor, target: Tensor) -> Tensor:
        return torch.softmax(output, dim=-1) - self._probabilities(output, target)

    def check_target(self, output: Tensor, target: Tensor) -> None:
        if target.is_floating_point():
            if target.shape != output.shape:
                raise ShapeError(
                    f"CrossEntropy takes class indices shaped {tuple(output.shape[:-1])} or class "
                    f"probabilities shaped {tuple(output.shape)}, got {tuple(target.shape)}."
                )
            _check_finite("target", target)
            _check_probabilities(target)
            return
        if target.dtype == torch.bool:
            raise ShapeError("CrossEntropy got a boolean target; pass class indices as integers (y.long()) or probabilities.")
        if target.shape != output.shape[:-1]:
            raise ShapeError(
                f"CrossEntropy takes class indices shaped {tuple(output.shape[:-1])}, "
                f"got {tuple(target.shape)}."
            )
        n_classes = output.shape[-1]
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= n_classes):
            raise ShapeError(
                f"CrossEntropy class indices must lie in [0, {n_classes - 1}] for an output of "
                f"{n_classes} units, got values from {int(target.min())} to {int(target.max())}."
            )

    def clamp_value(self, output: Tensor, target: Tensor) -> Tensor:
        return self._probabilities(output, target)
