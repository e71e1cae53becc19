"""Backprop: the loss gradient by autograd through a feedforward model.

The reference for the learners of feedforward networks (difference target propagation, binarized
networks): ``loss = mean_b C(model(x)_b, y_b)`` and ``dL/dθ = torch.autograd.grad(loss, θ)``.
Any ``nn.Module`` whose ``forward(x)`` returns the output works, built-in or not.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..costs import Cost, SquaredError
from ..errors import ConfigurationError, ShapeError
from ..estimators.base import Estimate, Learner, trainable

__all__ = ["Backprop"]


class Backprop(Learner):
    """dL/dθ by backpropagation through ``model(x)`` (Rumelhart, Hinton & Williams 1986).

    Args:
        cost: the per-sample cost C(output, y); :class:`eqprop.costs.SquaredError` by default.
            The loss is its batch mean.

    Check: tests/test_dtp.py checks it against a hand-written gradient of a linear network and
    uses it as the reference that DTP's forward updates are compared with.
    """

    def __init__(self, cost: Cost | None = None) -> None:
        self.cost = cost if cost is not None else SquaredError()

    def _output(self, model: nn.Module, x: Tensor) -> Tensor:
        if not isinstance(model, nn.Module):
            raise ConfigurationError(f"Backprop needs a torch.nn.Module with a forward(x), got {type(model).__name__}.")
        try:
            out = model(x)
        except RuntimeError as exc:
            if "shape" not in str(exc) and "size" not in str(exc):
                raise
            raise ShapeError(
                f"{type(model).__name__}'s forward cannot read an input of shape {tuple(x.shape)} "
                f"(torch: {str(exc).splitlines()[0]}); give it inputs of the shape its first layer expects."
            ) from exc
        if not isinstance(out, Tensor):
            raise ShapeError(
                f"Backprop needs forward(x) to return one tensor (the output), got {type(out).__name__}; "
                "wrap the model so that it returns its output alone."
            )
        return out

    def estimate(self, model: nn.Module, x: Tensor, y: Tensor) -> Estimate:
        params = dict(trainable(model))
        with torch.enable_grad():
            out = self._output(model, x)
            self.cost.check_target(out, y)
            loss = self.cost.loss(out, y)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True) if params else []
        by_name = {n: g for n, g in zip(params, grads) if g is not None}
        return Estimate(grads=by_name, loss=loss.detach(), prediction=out.detach())

    def predict(self, model: nn.Module, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self._output(model, x).detach()

    def __repr__(self) -> str:
        return f"Backprop(cost={self.cost!r})"
