r"""The GDU check: EP's per-step updates against BPTT's per-step gradients, time step by time step.

Ernoult, Grollier, Querlioz, Bengio, Scellier (2019), "Updates of Equilibrium Prop Match
Gradients of Backprop Through Time in an RNN with Static Input" (GDU property). On one converged
free phase of the discrete-time map s_{t+1} = ρ(∂Φ/∂s(s_t, θ)) (:class:`eqprop.solvers.FixedPoint`):

* BPTT side: the last K free transitions are unrolled, each with its own copy of θ;
  ∇_θ(k) = ∂L/∂(the copy that computes s_{T−k} from s_{T−k−1}), ∇_s(k) = ∂L/∂s_{T−k}, L = ℓ(s_T).
  Σ_{k<K} ∇_θ(k) is BPTT truncated to K transitions (→ dL/dθ as K grows, for a converged phase).
* EP side: K nudged steps from s_T give ΔEP_θ(β, t), ΔEP_s(β, t) (see
  :mod:`eqprop.learners.continual_ep`); centered: the mean of the +β and −β sequences.

Theory (float64): ΔEP(β, t) = −∇(t) + O(β) one-sided, + O(β²) centered, at every t;
ΔEP_s(β, 0) = −∂ℓ/∂s exactly. With lr = η > 0 (C-EP) the deviation is O(β) + c·η/β.
Weights are compared with the batch-mean loss; neural updates per sample (loss Σ_b ℓ_b).
Check: tests/test_gdu.py. This module knows learners only through the declared capability
:class:`eqprop.estimators.capabilities.PerStepUpdates` (``eqprop.learners.ContinualEP`` by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from ..costs import Cost, SquaredError
from ..errors import ConfigurationError
from ..estimators.base import check_beta, check_inputs, trainable
from ..estimators.capabilities import PerStepUpdates, discrete_map, per_step_learner
from ..estimators.defaults import default_solver

__all__ = ["GDUReport", "gdu", "bptt_per_step"]

VARIANTS = ("positive", "negative", "centered")


@dataclass
class GDUReport:
    """EP updates and BPTT gradients per parameter and per time step, with their agreement.

    ``ep_weights[name]`` / ``bptt_weights[name]``: [K, *shape] (ΔEP_θ(β, t) and ∇_θ(t));
    ``ep_neural[k]`` / ``bptt_neural[k]``: [K, batch, ...] per state layer k. ``relative_error``,
    ``rmse`` and ``sign_agreement`` compare ΔEP with −∇ over the whole sequence (keys: parameter
    names and ``"state.k"``); ``bptt_total[name]`` = Σ_t ∇_θ(t), BPTT truncated to K transitions.
    """

    beta: float
    variant: str
    lr: float
    ep_weights: dict[str, Tensor]
    bptt_weights: dict[str, Tensor]
    ep_neural: tuple[Tensor, ...]
    bptt_neural: tuple[Tensor, ...]
    bptt_total: dict[str, Tensor]
    relative_error: dict[str, float] = field(default_factory=dict)
    rmse: dict[str, float] = field(default_factory=dict)
    sign_agreement: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pairs = list(self.ep_weights.items()) + [(f"state.{k}", e) for k, e in enumerate(self.ep_neural)]
        refs = dict(self.bptt_weights, **{f"state.{k}": b for k, b in enumerate(self.bptt_neural)})
        for name, ep in pairs:
            target = -refs[name]
            diff = ep - target
            self.rmse[name] = float(diff.pow(2).mean().sqrt())
            self.relative_error[name] = float(diff.norm() / target.norm().clamp_min(1e-300))
            mask = target.abs() > 1e-12 * float(target.abs().max().clamp_min(1e-300))
            agree = (torch.sign(ep) == torch.sign(target))[mask]
            self.sign_agreement[name] = float(agree.double().mean()) if agree.numel() else math.nan

    @property
    def max_relative_error(self) -> float:
        return max(self.relative_error.values())

    def __str__(self) -> str:
        head = f"GDU check ({self.variant} β = {self.beta:g}, lr = {self.lr:g}, K = {self.steps} steps)"
        rows = [f"{'quantity':<24} {'rel. error':>11} {'RMSE':>11} {'sign agr.':>10}"]
        for name in self.relative_error:
            rows.append(
                f"{name:<24} {self.relative_error[name]:>11.3e} {self.rmse[name]:>11.3e} {self.sign_agreement[name]:>10.3f}"
            )
        return "\n".join([head] + rows)

    @property
    def steps(self) -> int:
        return next(iter(self.ep_weights.values())).shape[0] if self.ep_weights else 0

    def plot(self, path: str | None = None, components: int = 4, sample: int = 0):
        """The paper-style figure: ΔEP (solid) and −∇BPTT (dashed) over t, per layer; returns the figure."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        weight_names = [n for n, w in self.ep_weights.items() if w.dim() >= 3] or list(self.ep_weights)
        columns = max(len(self.ep_neural), len(weight_names))
        fig, axes = plt.subplots(2, columns, figsize=(3.4 * columns, 5.6), squeeze=False)
        t = torch.arange(self.steps)
        for k, (ep, bp) in enumerate(zip(self.ep_neural, self.bptt_neural)):
            _curves(axes[0][k], t, ep[:, sample].reshape(self.steps, -1), -bp[:, sample].reshape(self.steps, -1), components)
            axes[0][k].set_title(f"neurons, layer {k + 1}")
        for j, name in enumerate(weight_names):
            _curves(axes[1][j], t, self.ep_weights[name].reshape(self.steps, -1),
                    -self.bptt_weights[name].reshape(self.steps, -1), components)
            axes[1][j].set_title(name)
        for row, used in zip(axes, (len(self.ep_neural), len(weight_names))):
            for ax in row[used:]:
                ax.axis("off")
        for ax in axes[1]:
            ax.set_xlabel("t (nudged step = transition from the end)", fontsize=8)
        axes[0][0].plot([], [], "k-", label=r"$\Delta^{EP}(\beta, t)$")
        axes[0][0].plot([], [], "k--", label=r"$-\nabla^{BPTT}(t)$")
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"GDU: {self.variant} EP, β = {self.beta:g}, max rel. error {self.max_relative_error:.2e}")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def _curves(ax, t, ep: Tensor, target: Tensor, components: int) -> None:
    strongest = target.abs().sum(0).argsort(descending=True)[:components]
    for i, c in enumerate(strongest.tolist()):
        color = f"C{i}"
        ax.plot(t, ep[:, c].detach().cpu(), "-", color=color, lw=1.5)
        ax.plot(t, target[:, c].detach().cpu(), "--", color=color, lw=2.5, alpha=0.6)


def bptt_per_step(model, x: Tensor, y: Tensor, free, solver, cost: Cost, steps: int):
    """∇_θ(k) (batch-mean loss) and ∇_s(k) (per-sample loss) for the last ``steps`` transitions.

    The transitions are unrolled from the converged ``free`` state with the solver's map; each
    ∇_θ(k) is the vector-Jacobian product of one transition with ∇_s(k) (one parameter copy per
    transition). Returns (weights {name: [K, ...]}, neural per layer [K, ...], s_T).
    """
    params = dict(trainable(model))
    batch = x.shape[0]
    with torch.enable_grad():
        states = [tuple(s.detach().clone().requires_grad_() for s in free)]
        for _ in range(steps):
            states.append(solver.step(model, x, states[-1], None, None, None))
        total = cost(model.output(states[-1]), y).reshape(batch, -1).sum()
        flat = [s for state in states[1:] for s in state]
        grads = torch.autograd.grad(total, flat, allow_unused=True)
    n_layers = len(free)
    per_state = [
        tuple(torch.zeros_like(s) if g is None else g for s, g in zip(states[i + 1], grads[i * n_layers:(i + 1) * n_layers]))
        for i in range(steps)
    ]
    weights: dict[str, list[Tensor]] = {n: [] for n in params}
    for k in range(steps):  # transition computing s_{T−k} = states[steps − k] from states[steps − k − 1]
        i = steps - k
        with torch.enable_grad():
            start = tuple(s.detach().requires_grad_() for s in states[i - 1])
            out = solver.step(model, x, start, None, None, None)
            vjp = torch.autograd.grad(out, list(params.values()), per_state[i - 1], allow_unused=True)
        for (n, p), g in zip(params.items(), vjp):
            weights[n].append((torch.zeros_like(p) if g is None else g) / batch)
    neural = tuple(torch.stack([per_state[steps - 1 - k][layer] for k in range(steps)]) for layer in range(n_layers))
    return {n: torch.stack(v) for n, v in weights.items()}, neural, tuple(s.detach() for s in states[-1])


def gdu(
    model,
    x: Tensor,
    y: Tensor,
    *,
    beta: float = 1e-3,
    steps: int = 20,
    variant: str = "centered",
    lr: float = 0.0,
    solver=None,
    cost: Cost | None = None,
    learner: Callable[..., PerStepUpdates] | None = None,
) -> GDUReport:
    """Run BPTT and EP (or C-EP with ``lr`` > 0) on the same converged free phase; see the module doc.

    Args:
        beta: nudging strength; ``variant``: ``"positive"``, ``"negative"`` or ``"centered"``.
        steps: K, the number of transitions compared (nudged steps and BPTT transitions).
        lr: η of C-EP (0: standard EP); C-EP proper is one-sided, so ``lr`` > 0 needs a one-sided variant.
        solver: an :class:`eqprop.solvers.FixedPoint` whose free relaxation must converge
            (residual ≪ β|∇|, or the residual enters as residual/β); ``None``: the model's default.
        cost: ℓ (``None``: squared error).
        learner: the factory of the per-step learner, called as ``learner(±beta, lr=, steps=,
            solver=, cost=)`` (``None``: :class:`eqprop.learners.ContinualEP`).
    """
    if variant not in VARIANTS:
        raise ConfigurationError(f"Unknown GDU variant {variant!r}; choose one of {VARIANTS}.")
    beta = abs(check_beta("beta", beta))
    check_inputs(model, x, y)
    cost = cost if cost is not None else SquaredError()
    solver = discrete_map(solver if solver is not None else default_solver(model))
    signs = {"positive": (1.0,), "negative": (-1.0,), "centered": (1.0, -1.0)}[variant]
    # built first: they validate lr and steps before any relaxation runs
    learners = [per_step_learner(learner, sign * beta, lr=lr, steps=steps, solver=solver, cost=cost) for sign in signs]
    lr = learners[0].lr
    if lr != 0.0 and variant == "centered":
        raise ConfigurationError("C-EP (lr > 0) moves the parameters along one nudged phase; use variant='positive' or 'negative'.")
    free, status = solver.solve(model, x, model.init_state(x))
    bptt_w, bptt_s, end = bptt_per_step(model, x, y, free, solver, cost, learners[0].steps)
    runs = [learner.updates(model, x, y, free=end) for learner in learners]
    ep_w = {n: sum(r.weights[n] for r in runs) / len(runs) for n in runs[0].weights}
    ep_s = tuple(sum(r.neural[k] for r in runs) / len(runs) for k in range(len(end)))
    total = {n: v.sum(0) for n, v in bptt_w.items()}
    info = {"free": status, "loss": runs[0].loss}
    return GDUReport(beta, variant, float(lr), ep_w, bptt_w, ep_s, bptt_s, total, info=info)
