"""Difference target propagation with learned feedback weights (L-DRL).

Ernoult, Normandin, Moudgil, Spinney, Belilovsky, Rish, Richards & Bengio 2022, "Towards scaling
difference target propagation by learning backprop targets" (ICML). Per batch:

1. forward pass ``s_0 = x, s_{n} = F_n(s_{n-1})`` with no graph;
2. feedback training (:meth:`DTP.train_feedback`): for each block n ≥ 2, ``K_n`` SGD steps on the
   layer-local difference reconstruction loss (ε, η ~ N(0, σ_n² I))

       ℒ_n(B_n) = E[ −2 εᵀ (G_n(F_n(s_{n-1} + ε)) − G_n(s_n)) + ‖G_n(s_n + η) − G_n(s_n)‖² ],

   whose σ → 0 limit is ``σ² (‖J_G‖² − 2 tr(J_G J_F)) = σ² (‖J_G − J_Fᵀ‖² − ‖J_F‖²)``: minimising
   it makes the feedback Jacobian the transpose of the forward one;
3. targets ``t_N = s_N − β ∂C/∂s_N`` and ``t_{n-1} = s_{n-1} + G_n(t_n) − G_n(s_n)``;
4. forward update: each ``W_n`` descends its own ``½‖F_n(s_{n-1}) − t_n‖²`` (inputs detached).

``grads`` returns step 4's gradient divided by β and by the batch size, so that with linear
blocks and ``G_n = W_nᵀ`` it equals the backprop gradient of the batch-mean loss exactly, for
any β (the targets then move each layer by exactly −β ∂L/∂s_n). ``grads`` has no side effect;
``step`` trains the feedback layers first (the paper's per-batch schedule) unless
``feedback_in_step=False``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..costs import Cost, SquaredError
from ..errors import ConfigurationError, NonFiniteError, ShapeError
from ..estimators.base import Estimate, Learner, StepOutput, check_beta, check_inputs

__all__ = ["DTP", "difference_reconstruction_loss"]


def _noise(like: Tensor, sigma: float, generator: torch.Generator | None) -> Tensor:
    return sigma * torch.randn(like.shape, dtype=like.dtype, device=like.device, generator=generator)


def difference_reconstruction_loss(model: nn.Module, i: int, s_in: Tensor, sigma: float, *,
                                   s_out: Tensor | None = None, context: Any = None, samples: int = 1,
                                   generator: torch.Generator | None = None) -> Tensor:
    """The Monte-Carlo L-DRL loss ℒ of feedback block ``i`` (0-based: it maps ``s_{i+1}`` to ``s_i``).

    The batch mean of ``−2 εᵀ(G(F(s_in + ε)) − G(s_out)) + ‖G(s_out + η) − G(s_out)‖²`` averaged
    over ``samples`` noise draws; ``s_out = F(s_in)`` and ``context`` (e.g. pooling indices) are
    those of the clean forward pass (computed when not given). The graph reaches the feedback
    parameters only (the forward pass runs without one).
    """
    if s_out is None:
        with torch.no_grad():
            s_out, context = model.forward_step(i, s_in)
    r = model.feedback_step(i, s_out, context)
    total = s_in.new_zeros(())
    for _ in range(samples):
        eps = _noise(s_in, sigma, generator)
        with torch.no_grad():
            noisy_out, _ = model.forward_step(i, s_in + eps)
        dr = model.feedback_step(i, noisy_out, context) - r
        dr_y = model.feedback_step(i, s_out + _noise(s_out, sigma, generator), context) - r
        total = total - 2 * (eps * dr).flatten(1).sum(1).mean() + dr_y.pow(2).flatten(1).sum(1).mean()
    return total / samples


def _per_layer(name: str, value: Any, integer: bool = False, allow_zero: bool = False) -> Any:
    """A finite positive number (≥ 0 with ``allow_zero``), or a list of them (one per feedback layer)."""
    many = not isinstance(value, (str, bytes, Tensor)) and hasattr(value, "__iter__")
    values = list(value) if many else [value]
    out = []
    for v in values:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
        if not ok or (integer and not float(v).is_integer()):
            kind, bound = ("integer" if integer else "number"), ("≥ 0" if allow_zero else "> 0")
            raise ConfigurationError(f"{name} must be a finite {kind} {bound} or a list of them, got {value!r}.")
        out.append(int(v) if integer else float(v))
    if many and not out:
        raise ConfigurationError(f"{name} must not be an empty list; give one value or one per feedback layer.")
    return out if many else out[0]


class DTP(Learner):
    """Difference target propagation with L-DRL feedback training (Ernoult et al. 2022).

    Args:
        beta: target step β (t_N = s_N − β ∂C/∂s_N); any finite non-zero value.
        cost: per-sample cost C of the logits; :class:`eqprop.costs.SquaredError` by default
            (the paper uses :class:`eqprop.costs.CrossEntropy`).
        feedback_steps: K, SGD steps per batch on each feedback layer's loss (one value, or one per
            feedback layer, block 2 first).
        noise: σ of the L-DRL noise (one value or one per feedback layer).
        feedback_lr: SGD rate of the feedback weights (one value or one per feedback layer).
        feedback_momentum: SGD momentum of the feedback weights (buffers kept across batches).
        noise_samples: noise draws per feedback SGD step.
        feedback_in_step: ``step`` runs :meth:`train_feedback` on the batch before the estimate.
        seed: seeds the learner's own noise generator (``None``: torch's global generator).

    Check: tests/test_dtp.py — with linear blocks and G = Wᵀ, ``grads`` equals
    :class:`eqprop.baselines.Backprop` to round-off for several β; L-DRL on linear blocks drives
    B → Wᵀ; ℒ/σ² matches ‖J_G‖² − 2 tr(J_G J_F); trained feedback gives smaller per-layer angles
    to backprop than random feedback.
    """

    def __init__(self, beta: float, cost: Cost | None = None, feedback_steps: int | Sequence[int] = 20,
                 noise: float | Sequence[float] = 0.1, feedback_lr: float | Sequence[float] = 0.05,
                 feedback_momentum: float = 0.9, noise_samples: int = 1, feedback_in_step: bool = True,
                 seed: int | None = None) -> None:
        self.beta = check_beta("beta", beta)
        self.cost = cost if cost is not None else SquaredError()
        self.feedback_steps = _per_layer("feedback_steps", feedback_steps, integer=True, allow_zero=True)
        self.noise = _per_layer("noise", noise)
        self.feedback_lr = _per_layer("feedback_lr", feedback_lr)
        momentum = _per_layer("feedback_momentum", feedback_momentum, allow_zero=True)
        if not isinstance(momentum, float) or momentum >= 1:
            raise ConfigurationError(f"feedback_momentum must be a number in [0, 1), got {feedback_momentum!r}.")
        self.feedback_momentum = momentum
        self.noise_samples = _per_layer("noise_samples", noise_samples, integer=True)
        if not isinstance(self.noise_samples, int):
            raise ConfigurationError(f"noise_samples must be one integer ≥ 1, got {noise_samples!r}.")
        if not isinstance(feedback_in_step, bool):
            raise ConfigurationError(f"feedback_in_step must be true or false, got {feedback_in_step!r}.")
        self.feedback_in_step = feedback_in_step
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigurationError(f"seed must be an integer or None, got {seed!r}.")
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._generator_state: tuple[str, Tensor] | None = None
        self._momentum: dict[str, Tensor] = {}

    # -- model checks ---------------------------------------------------------------------------
    def _check_model(self, model: nn.Module) -> None:
        needs = ("forward_step", "feedback_step", "check_feedback", "states")
        if not (hasattr(model, "feedback_layers") and hasattr(model, "forward_layers")
                and all(callable(getattr(model, name, None)) for name in needs)):
            raise ConfigurationError(
                f"DTP needs a model with feedback layers (eqprop.models.DTPNetwork or DTPConvNetwork), got "
                f"{type(model).__name__}; train a plain feedforward model with eqprop.baselines.Backprop."
            )
        model.check_feedback()

    def _setting(self, name: str, value: Any, i: int, n_feedback: int) -> Any:
        if not isinstance(value, list):
            return value
        if len(value) != n_feedback:
            raise ConfigurationError(
                f"{name} lists {len(value)} values but the model has {n_feedback} trained feedback layers; "
                f"give one value or {n_feedback}."
            )
        return value[i - 1]

    def _rng(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
            if self._generator_state is not None:
                saved, self._generator_state = self._generator_state, None
                if saved[0] != device.type:
                    raise ConfigurationError(
                        f"DTP's noise generator was saved on {saved[0]} and cannot continue on {device.type}; "
                        "resume on the same kind of device."
                    )
                self._generator.set_state(saved[1])
        return self._generator

    @staticmethod
    def _check_reconstruction(model: nn.Module, i: int, reconstruction: Tensor, like: Tensor) -> None:
        if reconstruction.shape != like.shape:
            raise ShapeError(
                f"feedback_layers[{i}] maps layer {i + 1} to shape {tuple(reconstruction.shape)} but layer {i} has "
                f"shape {tuple(like.shape)}; give the feedback layer the stride, padding and sizes of its forward layer."
            )

    # -- feedback training ----------------------------------------------------------------------
    def train_feedback(self, model: nn.Module, x: Tensor) -> dict[str, float]:
        """L-DRL: ``K_n`` SGD steps per feedback layer on ℒ_n at this batch, in place.

        Returns the last loss of each trained feedback layer (``{"feedback_layers.i": ℒ}``).
        """
        self._check_model(model)
        check_inputs(model, x, None)
        s, contexts = model.states(x)
        generator = self._rng(x.device)
        n_feedback = model.n_layers - 1
        losses: dict[str, float] = {}
        for i in range(1, model.n_layers):
            steps = self._setting("feedback_steps", self.feedback_steps, i, n_feedback)
            sigma = self._setting("noise", self.noise, i, n_feedback)
            lr = self._setting("feedback_lr", self.feedback_lr, i, n_feedback)
            named = [(f"feedback_layers.{i}.{n}", p) for n, p in model.feedback_layers[i].named_parameters()]
            params = [p for _, p in named]
            flags = [p.requires_grad for p in params]
            with torch.no_grad():
                self._check_reconstruction(model, i, model.feedback_step(i, s[i + 1], contexts[i]), s[i])
            try:
                for p in params:
                    p.requires_grad_(True)
                loss = None
                for _ in range(steps):
                    with torch.enable_grad():
                        loss = difference_reconstruction_loss(
                            model, i, s[i], sigma, s_out=s[i + 1], context=contexts[i],
                            samples=self.noise_samples, generator=generator)
                        grads = torch.autograd.grad(loss, params)
                    with torch.no_grad():
                        for (name, p), g in zip(named, grads):
                            if self.feedback_momentum:
                                buf = self._momentum.get(name)
                                if buf is None or buf.shape != g.shape:
                                    buf = torch.zeros_like(g)
                                elif buf.device != g.device or buf.dtype != g.dtype:
                                    buf = buf.to(g)
                                buf.mul_(self.feedback_momentum).add_(g)
                                self._momentum[name] = buf
                                g = buf
                            p.sub_(lr * g)
                if loss is not None:  # one read-back per layer, not per step
                    losses[f"feedback_layers.{i}"] = float(loss.detach())
            finally:
                for p, flag in zip(params, flags):
                    p.requires_grad_(flag)
        if not all(math.isfinite(v) for v in losses.values()):
            raise NonFiniteError("The feedback loss became non-finite; lower feedback_lr or noise.")
        return losses

    # -- the contract ---------------------------------------------------------------------------
    def targets(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[list[Tensor], list[Tensor | None]]:
        """``(s, t)``: the forward states ``s_0..s_N`` and the DTP targets ``t_1..t_N`` (``t[0]`` is None)."""
        s, contexts = model.states(x)
        self.cost.check_target(s[-1], y)
        t: list[Tensor | None] = [None] * len(s)
        with torch.no_grad():
            t[-1] = s[-1] - self.beta * self.cost.grad(s[-1], y)
            for i in range(model.n_layers - 1, 0, -1):
                reconstruction = model.feedback_step(i, s[i + 1], contexts[i])
                self._check_reconstruction(model, i, reconstruction, s[i])
                t[i] = s[i] + model.feedback_step(i, t[i + 1], contexts[i]) - reconstruction
        return s, t

    def estimate(self, model: nn.Module, x: Tensor, y: Tensor) -> Estimate:
        self._check_model(model)
        s, t = self.targets(model, x, y)
        named = [(f"forward_layers.{i}.{n}", p) for i in range(model.n_layers)
                 for n, p in model.forward_layers[i].named_parameters() if p.requires_grad]
        scale = 1.0 / (self.beta * x.shape[0])
        with torch.enable_grad():
            total = sum(0.5 * (model.forward_step(i, s[i])[0] - t[i + 1]).pow(2).sum() for i in range(model.n_layers))
            grads = torch.autograd.grad(total, [p for _, p in named], allow_unused=True) if named else []
        by_name = {n: g * scale for (n, _), g in zip(named, grads) if g is not None}
        loss = self.cost.loss(s[-1], y)
        return Estimate(grads=by_name, loss=loss.detach(), prediction=s[-1])

    def step(self, model: nn.Module, x: Tensor, y: Tensor) -> StepOutput:
        """Train the feedback layers on this batch (unless ``feedback_in_step=False``), then write
        the forward weights' DTP update into ``p.grad``."""
        info = {}
        if self.feedback_in_step:
            check_inputs(model, x, y)
            info["feedback_loss"] = self.train_feedback(model, x)
        out = super().step(model, x, y)
        out.info.update(info)
        return out

    def predict(self, model: nn.Module, x: Tensor) -> Tensor:
        self._check_model(model)
        with torch.no_grad():
            return model(x)

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"momentum": {k: v.detach().cpu().clone() for k, v in self._momentum.items()}}
        if self._generator is not None:
            state["generator"] = (self._generator.device.type, self._generator.get_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = sorted(set(state) - {"momentum", "generator"})
        if unknown:
            raise ConfigurationError(f"DTP's state holds 'momentum' and 'generator', got keys {unknown}.")
        self._momentum = {k: v.clone() for k, v in state.get("momentum", {}).items()}
        self._generator_state = state.get("generator")
        self._generator = None

