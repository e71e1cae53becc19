r"""Continual equilibrium propagation (C-EP) and the per-step updates ΔEP of discrete-time EP.

Discrete-time dynamics (Ernoult et al. 2019, "Updates of EP match gradients of BPTT"; Ernoult
et al. 2020, "Continual EP"): one step of :class:`eqprop.solvers.FixedPoint` is the map

    s_{t+1} = ρ(u_{t+1}),   u_{t+1} = ∂Φ/∂s(s_t, x, θ) − β ∂ℓ/∂s(s_t)          (nudge inside ρ)

with Φ the model's primitive function (E = Σ G(s) − Φ, G' = ρ⁻¹). The free phase runs it with
β = 0 to a fixed point s_T; the nudged phase runs K steps of it from s^β_0 = s_T. Per step:

    ΔEP_θ(β, t) = [∂_θΦ(s^β_{t+1}) − ∂_θΦ(s^β_t)] / β       (weight update)
    ΔEP_s(β, t) = (u^β_{t+1} − u^β_t) / β,  u^β_0 = ∂Φ/∂s(s_T)    (neural update, pre-activation)

The GDU property: ΔEP_θ(β, t) → −∇_θ(t) and ΔEP_s(β, t) → −∇_s(t) = −∂L/∂s_{T−t} as β → 0, with
ΔEP_s(β, 0) = −∂ℓ/∂s(s_T) exactly. (The neural update is read on the pre-activation u: the
state difference (s^β_{t+1} − s^β_t)/β instead tends to −∂L/∂u_{T−t} = −ρ'(u)⊙∇_s(t).)

C-EP moves the parameters at every nudged step, the dynamics using the current ones:

    s_{t+1} = ρ(∂Φ/∂s(s_t, θ_t) − β ∂ℓ/∂s(s_t)),
    θ_{t+1} = θ_t + (η/β) [∂_θΦ(s_{t+1}, θ_t) − ∂_θΦ(s_t, θ_t)]     (a descent step)

Theorem 1 of the C-EP paper: (θ_{t+1} − θ_t)/η → −∇_θ(t) as η, β → 0; the deviation measured is
O(β) + c·η/β, so η ≪ β is required (docs/continual_ep.md). With η = 0, Σ_t ΔEP_θ telescopes to
positive EP with a K-step nudged phase.

Check: tests/test_continual_ep.py (no side effects of ``grads``; ``train_step`` equals
``grads`` + SGD(lr); η = 0 equals positive EP; deviation from BPTT shrinks with η) and
tests/test_gdu.py (ΔEP vs BPTT step by step, slopes in β).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..costs import Cost
from ..errors import ConfigurationError, NonFiniteError
from ..estimators.base import (Estimate, StepOutput, check_beta, check_inputs, check_model_kind, check_model_methods,
                               positive_int, trainable)
from ..estimators.capabilities import EPUpdates, discrete_map, offers_per_step_updates
from ..estimators.energy_based import EnergyLearner
from ..solvers.relaxation import Nudge, Relaxation

__all__ = ["ContinualEP", "EPUpdates", "ep_updates"]


@offers_per_step_updates
class ContinualEP(EnergyLearner):
    r"""Continual EP (Ernoult, Grollier, Querlioz, Bengio, Scellier 2020): C-EP updates of
    θ during the nudged phase, local in space and time.

    ``grads(model, x, y)`` runs the free phase, then K = ``steps`` nudged steps in which the
    parameters move by θ_{t+1} = θ_t + (η/β)[∂_θΦ(s_{t+1}, θ_t) − ∂_θΦ(s_t, θ_t)] (dynamics use
    θ_t), and returns ĝ = −(θ_K − θ_0)/η = −Σ_t ΔEP_θ(t), an estimate of dL/dθ; the parameters are
    then restored (no side effects). ``train_step(model, x, y)`` is C-EP proper: the same run
    with the parameters left at θ_K (updated in place; do not call an optimizer after it).

    Learning-rate semantics: ``lr`` = η is part of the *dynamics* (it changes the trajectory and
    hence the estimate), not only a step size. ``grads`` followed by ``torch.optim.SGD(lr=η)``
    (no momentum, no weight decay) gives exactly the parameters of ``train_step``. With another
    optimizer, or another optimizer learning rate, η only shapes the estimate and the optimizer
    sets the applied step; ``lr=0`` gives positive EP with a K-step nudged phase.

    Args:
        beta: nudging strength β, non-zero; keep η ≪ β (the deviation from BPTT is O(β) + c·η/β).
        lr: η ≥ 0, the rate of the parameter dynamics during the nudged phase.
        steps: K, the number of nudged steps (a fixed count: the parameters move at each step).
        solver: :class:`eqprop.solvers.FixedPoint` (its step is the discrete-time map), or any solver
            declaring ``discrete_time_map = True``; ``None``: the model's default, likewise.
        cost: the cost ℓ (``None``: squared error).
    """

    def __init__(
        self,
        beta: float,
        lr: float,
        steps: int = 20,
        solver: Relaxation | None = None,
        cost: Cost | None = None,
    ) -> None:
        super().__init__(solver, cost)
        self.beta = check_beta("beta", beta)
        try:
            lr = float(lr)
        except (TypeError, ValueError):
            raise ConfigurationError(f"lr must be a non-negative real number, got {lr!r}.") from None
        if not (lr >= 0.0 and lr < float("inf")):
            raise ConfigurationError(f"lr must be a finite non-negative number (0 gives plain EP), got {lr}.")
        self.lr = lr
        self.steps = positive_int("steps (the nudged phase length K)", steps)
        if solver is not None:
            discrete_map(solver)

    def map_for(self, model) -> Relaxation:
        """The discrete-time map: the given solver or the model's default, which must declare
        ``discrete_time_map`` (``FixedPoint`` does)."""
        return discrete_map(self.solver_for(model))

    # -- the contract ---------------------------------------------------------------------------
    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        updates = self._run_nudged(model, x, y, record=False, restore=True)
        grads = {n: -t for n, t in updates.total.items()}
        return Estimate(grads=grads, loss=updates.loss, prediction=updates.prediction, info=updates.info)

    def train_step(self, model, x: Tensor, y: Tensor) -> StepOutput:
        """C-EP proper: run the nudged phase with the parameters updated in place at every step."""
        check_model_kind(self, model)
        check_inputs(model, x, y)
        check_model_methods(model, x)
        snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
        updates = self._run_nudged(model, x, y, record=False, restore=False)
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            _restore(model, snapshot)
            raise NonFiniteError(
                "C-EP drove the parameters to NaN or infinity (restored); lower lr, β or the solver's step count."
            )
        grads = {n: -t for n, t in updates.total.items()}
        return StepOutput(loss=updates.loss, prediction=updates.prediction, grads=grads, info=updates.info)

    def updates(self, model, x: Tensor, y: Tensor, free: tuple[Tensor, ...] | None = None) -> EPUpdates:
        """The per-step updates ΔEP_θ(β, t), ΔEP_s(β, t) (with lr = 0: those of standard EP); no side effects.

        ``free``: the state s_T the nudged phase starts from (``None``: relax the free phase here).
        """
        check_inputs(model, x, y)
        return self._run_nudged(model, x, y, record=True, restore=True, free=free)

    # -- the nudged phase -----------------------------------------------------------------------
    def _run_nudged(self, model, x, y, *, record: bool, restore: bool, free=None) -> EPUpdates:
        solver = self.map_for(model)
        _check_output_parameter_free(model, self.cost, x)
        context = model.prepare(x)
        if free is None:
            free, status = solver.solve(model, x, model.init_state(x), context=context)
            solver.check_equilibrium(status, "ContinualEP")
        else:
            status = None
        free = tuple(s.detach() for s in free)
        out = model.output(free)
        self.cost.check_target(out, y)
        loss = self.cost.loss(out, y).detach()
        params = dict(trainable(model))
        snapshot = {n: p.detach().clone() for n, p in params.items()} if restore and self.lr != 0.0 else None
        try:
            with torch.no_grad():
                weights, neural, total = self._nudged_loop(model, x, y, free, context, solver, params, record)
        finally:
            if snapshot is not None:
                _restore(model, snapshot)
        info = {"free": status, "beta": self.beta, "lr": self.lr, "steps": self.steps}
        return EPUpdates(weights, neural, total, free, loss, out.detach(), info)

    def _nudged_loop(self, model, x, y, free, context, solver, params, record):
        beta, lr = self.beta, self.lr
        batch = x.shape[0]
        mean = torch.full((batch,), 1.0 / batch, dtype=free[0].dtype, device=free[0].device)
        nudge = Nudge(self.cost, y, beta)
        state = free
        drive_prev = solver.drive(model, x, state, context, None)  # u_0 = ∂Φ/∂s(s_T)
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        weights: dict[str, list[Tensor]] = {n: [] for n in params}
        neural: list[list[Tensor]] = [[] for _ in state]
        ctx = context if lr == 0.0 else None  # with moving θ the input drive is recomputed each step
        dE_new = None
        for _ in range(self.steps):
            # ∂_θΦ(s_t, θ_t): the previous step's value while θ is frozen, else at the current θ_t
            dE_prev = dE_new if lr == 0.0 and dE_new is not None else model.param_grads(state, x, mean)
            drive = solver.drive(model, x, state, ctx, nudge)
            new = tuple(a.rho(u) for a, u in zip(model.activations, drive))
            dE_new = model.param_grads(new, x, mean)
            for n, p in params.items():
                delta = -(dE_new[n] - dE_prev[n]) / beta  # ∂_θΦ = −∂_θE
                total[n] += delta
                if record:
                    weights[n].append(delta)
                if lr != 0.0:
                    p.add_(lr * delta)
            if record:
                for k, (u, u_prev) in enumerate(zip(drive, drive_prev)):
                    neural[k].append((u - u_prev) / beta)
            drive_prev, state = drive, new
        stacked_w = {n: torch.stack(v) for n, v in weights.items()} if record else {}
        stacked_s = tuple(torch.stack(v) for v in neural) if record else ()
        return stacked_w, stacked_s, total

    def __repr__(self) -> str:
        return (
            f"ContinualEP(beta={self.beta}, lr={self.lr}, steps={self.steps}, solver={self.solver!r}, "
            f"cost={self.cost!r})"
        )


def ep_updates(model, x: Tensor, y: Tensor, beta: float, steps: int = 20, solver=None, cost=None) -> EPUpdates:
    """ΔEP_θ(β, t) and ΔEP_s(β, t) of standard EP (frozen parameters) for t = 0..steps−1."""
    return ContinualEP(beta, lr=0.0, steps=steps, solver=solver, cost=cost).updates(model, x, y)


def _check_output_parameter_free(model, cost: Cost, x: Tensor) -> None:
    if getattr(model, "output_is_parameter_free", False):
        return
    state = tuple(s.detach() for s in model.init_state(x))
    params = [p for _, p in trainable(model)]
    with torch.enable_grad():
        out = model.output(state)
    if out.requires_grad and any(
        g is not None for g in torch.autograd.grad(out.sum(), params, allow_unused=True)
    ):
        raise ConfigurationError(
            f"{type(model).__name__}.output has trainable parameters, which the per-step updates "
            "ΔEP_θ of C-EP do not cover; make the output a state layer (no readout parameters)."
        )


def _restore(model, snapshot: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in snapshot:
                p.copy_(snapshot[n])
