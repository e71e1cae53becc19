"""The contract every learner and every baseline keeps.

    grads = learner.grads(model, x, y)   # {name: dL/dθ}, shaped like each parameter; no side effects
    out = learner.step(model, x, y)      # adds the same into p.grad (zero_grad() first); out.loss
    pred = learner.predict(model, x)     # model output at the free equilibrium / final state

The gradient is that of the loss, the batch mean of the per-sample cost, with torch's sign
convention: a ``torch.optim`` optimizer descends it. The base class validates the inputs
(template method): a subclass implements :meth:`Learner.estimate` and nothing else.

This module knows learners only; it never names a concrete model, solver or dataset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..costs import Cost
from ..errors import ConfigurationError, NonFiniteError, ShapeError

__all__ = ["Estimate", "StepOutput", "Learner", "check_inputs", "check_beta", "complete_grads", "all_finite"]


@dataclass
class Estimate:
    """What :meth:`Learner.estimate` returns.

    ``grads`` maps parameter names to dL/dθ; ``loss`` is the detached batch-mean loss of the
    free phase; ``prediction`` the free-phase output; ``info`` solver statuses and diagnostics.
    """

    grads: dict[str, Tensor]
    loss: Tensor
    prediction: Tensor
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepOutput:
    """What :meth:`Learner.step` returns: the loss, the prediction, and the gradient it wrote."""

    loss: Tensor
    prediction: Tensor
    grads: dict[str, Tensor]
    info: dict[str, Any] = field(default_factory=dict)


def check_beta(name: str, value: float) -> float:
    """A nudging strength must be a finite non-zero real number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a real number, got {value!r}.") from None
    if value == 0.0 or not torch.isfinite(torch.tensor(value)):
        raise ConfigurationError(
            f"{name} = {value} gives no gradient estimate; use a small finite non-zero value such as 0.1."
        )
    return value


def check_inputs(model: nn.Module, x: Tensor, y: Tensor | None) -> None:
    """Check the batch, dtype and finiteness of an input (and a target), with one-sentence errors."""
    if not isinstance(x, Tensor):
        raise ShapeError(f"The input must be a torch.Tensor, got {type(x).__name__}.")
    if x.dim() == 0 or x.shape[0] == 0:
        raise ShapeError(f"The input must have a non-empty batch as its first axis, got shape {tuple(x.shape)}.")
    if x.is_floating_point() or x.is_complex():
        if not all_finite([x]):
            raise NonFiniteError("The input contains NaN or infinity; clean the data before training.")
        dtype = _model_dtype(model)
        if dtype is not None and x.dtype != dtype and not x.is_complex():
            raise ShapeError(
                f"The input is {x.dtype} but the model's parameters are {dtype}; convert one of them "
                f"(e.g. x.to({dtype}) or model.to({x.dtype}))."
            )
    if y is not None:
        if not isinstance(y, Tensor):
            raise ShapeError(f"The target must be a torch.Tensor, got {type(y).__name__}.")
        if y.dim() == 0 or y.shape[0] != x.shape[0]:
            got = "a scalar" if y.dim() == 0 else f"a batch of {y.shape[0]}"
            raise ShapeError(f"The target has {got} but the input has a batch of {x.shape[0]}; pass one target per sample.")


def all_finite(tensors: list[Tensor]) -> bool:
    """True when no tensor holds NaN or ±inf (one reduction per tensor, one sync in all).

    A sum is non-finite whenever an element is; only when the total is non-finite is the exact
    element-wise check run, so finite values whose sum overflows are not mistaken for NaN.
    """
    total = None
    for t in tensors:
        if t.numel():
            partial = t.sum()
            total = partial if total is None else total + partial
    if total is None or math.isfinite(abs(total.item())):
        return True
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    for p in model.parameters():
        return p.dtype
    return None


def trainable(model: nn.Module) -> list[tuple[str, Tensor]]:
    """The (name, parameter) pairs that receive a gradient."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def complete_grads(model: nn.Module, grads: dict[str, Tensor], params: list | None = None) -> dict[str, Tensor]:
    """Every trainable parameter gets an entry (zeros where the estimator has no term)."""
    out: dict[str, Tensor] = {}
    for name, p in trainable(model) if params is None else params:
        g = grads.get(name)
        if g is None:
            g = torch.zeros_like(p)
        elif g.shape != p.shape:
            raise ShapeError(f"Gradient for {name} has shape {tuple(g.shape)}, expected {tuple(p.shape)}.")
        if g.requires_grad:
            g = g.detach()
        out[name] = g if g.dtype == p.dtype else g.to(p.dtype)
    return out


class Learner:
    """Base class of learners and baselines.

    Subclasses implement :meth:`estimate` (and, for stateful learners, ``state_dict`` /
    ``load_state_dict``); the base class validates, fills missing gradients with zeros and
    writes ``.grad``.
    """

    cost: Cost

    def estimate(self, model: nn.Module, x: Tensor, y: Tensor) -> Estimate:  # pragma: no cover
        raise NotImplementedError

    def predict(self, model: nn.Module, x: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    # -- the contract -------------------------------------------------------------------------
    def grads(self, model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """dL/dθ for every trainable parameter, keyed as in ``model.named_parameters()``."""
        return self._run(model, x, y).grads

    def step(self, model: nn.Module, x: Tensor, y: Tensor) -> StepOutput:
        """Add dL/dθ into ``p.grad`` (as ``loss.backward()`` would) and return the loss."""
        params: list = []
        est = self._run(model, x, y, params)
        for name, p in params:
            g = est.grads[name]
            if p.grad is None:
                p.grad = g  # a fresh tensor the learner owns: no copy (out.grads aliases p.grad)
            else:
                p.grad.add_(g)
        return StepOutput(loss=est.loss, prediction=est.prediction, grads=est.grads, info=est.info)

    def _run(self, model: nn.Module, x: Tensor, y: Tensor, params: list | None = None) -> Estimate:
        """Validate, estimate, complete; ``params`` (a list) is filled with the trainable pairs."""
        check_inputs(model, x, y)
        est = self.estimate(model, x, y)
        pairs = trainable(model)
        if params is not None:
            params.extend(pairs)
        est.grads = complete_grads(model, est.grads, pairs)
        if not all_finite(list(est.grads.values())):
            name = next(n for n, g in est.grads.items() if not bool(torch.isfinite(g).all()))
            raise NonFiniteError(
                f"The gradient of {name} is not finite; the dynamics diverged — lower the step "
                f"size, β or the learning rate."
            )
        return est

    # -- state (random generators, running quantities) ----------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The learner's own state (e.g. a random generator), for exact checkpoint and resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ConfigurationError(f"{type(self).__name__} keeps no state, got keys {sorted(state)}.")
