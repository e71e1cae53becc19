"""EqSpike: equilibrium propagation with spike-driven, event-based weight updates (Martin et al. 2021)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor

from ..costs import Cost
from ..errors import ConfigurationError
from ..estimators.base import Estimate, check_beta, check_seed
from ..estimators.defaults import check_energy_solver
from ..estimators.energy_based import EnergyLearner
from ..models.hopfield import HopfieldMLP
from ..solvers.relaxation import Nudge, Relaxation

__all__ = ["EqSpike", "event_update", "pairing_window"]

SPIKES = ("bernoulli", "rate")


def event_update(post_next: Tensor, pre_change: Tensor, pre: Tensor, post_change: Tensor) -> Tensor:
    """One step of the EqSpike rule for a weight matrix [post, pre], summed over the batch:

        ΔW_ij = S_i(t+1) Δρ_j(t) + S_j(t) Δρ_i(t)

    ``post_next`` = S_i(t+1) and ``pre`` = S_j(t) are spikes (or rates), ``pre_change`` = Δρ_j(t)
    and ``post_change`` = Δρ_i(t) the changes of the rates over the step; all shaped [batch, n].
    """
    return post_next.transpose(0, 1) @ pre_change + post_change.transpose(0, 1) @ pre


class EqSpike(EnergyLearner):
    r"""EqSpike (Martin, Ernoult, Laydevant, Li, Querlioz, Petrisor & Grollier 2021, "EqSpike:
    spike-driven equilibrium propagation for neuromorphic implementations", iScience; arXiv
    2010.07859): EP whose synapses change only when one of their two neurons spikes.

    Each unit k of a :class:`eqprop.models.HopfieldMLP` has a rate ρ_k = s_k ∈ [0, 1] (its state)
    and emits at every step t of a relaxation a spike S_k(t) ~ Bernoulli(ρ_k(t)). The weight
    update is accumulated during the nudged phase alone, event by event, from the free
    equilibrium s(0) = s⁰ to s(T) = s^β:

        ΔW_ij = (1/β) Σ_t [S_i(t+1) Δρ_j(t) + S_j(t) Δρ_i(t)],   Δρ(t) = ρ(t+1) − ρ(t)

    (post i, pre j; the input layer is clamped and passes its value, the bias its constant 1), and
    the gradient returned is −ΔW averaged over the batch. No snapshot of the free phase is stored.
    ``spikes="rate"`` replaces each spike by its rate; the discrete product rule
    a'b' − ab = a'(b' − b) + b(a' − a) then telescopes the sum into (ρ_i^β ρ_j^β − ρ_i⁰ ρ_j⁰)/β,
    which is ``EP(beta, "positive")`` with the same solvers. With Bernoulli spikes,
    E[S_k(t)] = ρ_k(t) and the spikes do not feed back into the rates, so the update is an
    unbiased estimate of the rate update whose error falls like 1/√n over n independent draws.

    Reading: the membrane states follow the solver's relaxation of the rate-coded input (the
    expectation of the incoming spikes), so the free and nudged equilibria are those of rate EP;
    the spikes are the events the synapses see (docs/eqspike.md).

    Check (tests/test_eqspike.py): float64, ``spikes="rate"`` equals ``EP(beta, "positive")`` to
    round-off; the Bernoulli update averaged over n draws approaches it with a log-log slope of −½.

    Args:
        beta: nudging strength, non-zero.
        spikes: ``"bernoulli"`` (spikes) or ``"rate"`` (spikes replaced by their rates).
        solver: relaxation of the free phase (``None``: the model's default).
        nudged_solver: relaxation of the nudged phase (``None``: ``solver``); the synapses read
            every step it takes, so its ``solve`` must go through its own ``step``.
        cost: :class:`eqprop.costs.SquaredError` (default) or :class:`eqprop.costs.CrossEntropy`.
        seed: seed of the spike generator (its state is in ``state_dict()``).
    """

    def __init__(
        self,
        beta: float,
        spikes: str = "bernoulli",
        solver: Relaxation | None = None,
        nudged_solver: Relaxation | None = None,
        cost: Cost | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(solver, cost)
        if spikes not in SPIKES:
            raise ConfigurationError(f"Unknown EqSpike spikes {spikes!r}; choose one of {SPIKES}.")
        check_energy_solver(nudged_solver, "nudged_solver")
        self.beta = check_beta("beta", beta)
        self.spikes = spikes
        self.nudged_solver = nudged_solver
        self.seed = check_seed("seed", seed)
        self.generator = torch.Generator()
        self.generator.manual_seed(0 if seed is None else self.seed)

    # -- checks ---------------------------------------------------------------------------------
    def check_model(self, model) -> None:
        """EqSpike reads the layered structure of a HopfieldMLP whose rates are probabilities."""
        if not isinstance(model, HopfieldMLP) or type(model).param_grads is not HopfieldMLP.param_grads:
            raise ConfigurationError(
                f"EqSpike trains an eqprop.models.HopfieldMLP (its synapses are the layers' weights), got "
                f"{type(model).__name__}; use EP for other energy models."
            )
        for k, act in enumerate(model.activations):
            if not (act.lower >= 0.0 and act.upper <= 1.0):
                raise ConfigurationError(
                    f"EqSpike needs rates that are probabilities, but layer {k + 1}'s activation {act.name!r} ranges "
                    f"over [{act.lower}, {act.upper}], not within [0, 1]; use activation='hard_sigmoid' or 'sigmoid'."
                )

    # -- the estimator --------------------------------------------------------------------------
    def spike(self, rate: Tensor) -> Tensor:
        """S ~ Bernoulli(rate) from the learner's generator (the rate itself for ``spikes="rate"``)."""
        if self.spikes == "rate":
            return rate
        u = torch.rand(rate.shape, generator=self.generator, dtype=rate.dtype)
        return (u.to(rate.device) < rate).to(rate.dtype)

    @torch.no_grad()
    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        self.check_model(model)
        context, free, free_status, out = self.free_equilibrium(model, x, y)
        loss = self.cost.loss(out, y).detach()
        solver = self.nudged_solver if self.nudged_solver is not None else self.solver_for(model)
        synapses = _Synapses(self, x.reshape(x.shape[0], -1), free)
        # The solver's own relaxation (its stopping rule, precision and warnings), with every step
        # it takes handed to the synapses as it happens.
        own = vars(solver).get("step")  # a step the solver keeps on itself, to put back
        solver.step = synapses.recording(solver.step)
        try:
            nudged, status = solver.solve(model, x, free, context=context, nudge=Nudge(self.cost, y, self.beta))
        finally:
            if own is None:
                del solver.step
            else:
                solver.step = own
        if synapses.steps == 0 or any(not torch.equal(a, b.to(a.dtype)) for a, b in zip(synapses.state, nudged)):
            raise ConfigurationError(
                f"EqSpike updates its synapses at every step of the nudged phase, but {type(solver).__name__}.solve "
                f"did not reach its result through its own step(...); use an eqprop solver such as FixedPoint."
            )
        info: dict[str, Any] = {"free": free_status, "nudged": [status], "spikes": self.spikes}
        scale = -1.0 / (self.beta * x.shape[0])  # the gradient is −ΔW/β, averaged over the batch
        grads: dict[str, Tensor] = {}
        for k in range(len(free)):
            grads[f"layers.{k}.weight"] = synapses.weights[k] * scale
            grads[f"layers.{k}.bias"] = synapses.changes[k].sum(dim=0) * scale
        return Estimate(grads=grads, loss=loss, prediction=out.detach(), info=info)

    def predict(self, model, x: Tensor) -> Tensor:
        self.check_model(model)
        return super().predict(model, x)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = set(state) - {"generator"}
        if unknown:
            raise ConfigurationError(f"EqSpike.load_state_dict got unknown keys {sorted(unknown)}.")
        if "generator" in state:
            self.generator.set_state(state["generator"])


class _Synapses:
    """The synaptic accumulators of one nudged phase, fed one step at a time (no trajectory kept)."""

    def __init__(self, learner: EqSpike, inputs: Tensor, free) -> None:
        self.learner, self.inputs = learner, inputs
        self.state = tuple(free)
        self.spikes = [learner.spike(s) for s in free]  # S(0), at the free equilibrium
        self.weights = [torch.zeros(s.shape[1], b.shape[1], dtype=s.dtype, device=s.device)
                        for s, b in zip(free, (inputs,) + tuple(free[:-1]))]
        self.changes = [torch.zeros_like(s) for s in free]  # Σ_t Δρ_k(t): the bias term, per sample
        self.steps = 0

    def recording(self, step):
        def recorded(*args, **kwargs):
            new = step(*args, **kwargs)
            self.add(new)
            return new

        return recorded

    def add(self, new) -> None:
        new = tuple(b.detach().to(a.dtype) for a, b in zip(self.state, new))  # a 16-bit step: in the model's dtype
        delta = [b - a for a, b in zip(self.state, new)]
        spikes = [self.learner.spike(s) for s in new]
        for k in range(len(new)):
            if k == 0:  # the clamped input: Δx = 0, it passes its value
                self.weights[0] += delta[0].transpose(0, 1) @ self.inputs
            else:
                self.weights[k] += event_update(spikes[k], delta[k - 1], self.spikes[k - 1], delta[k])
            self.changes[k] += delta[k]
        self.state, self.spikes = new, spikes
        self.steps += 1


def pairing_window(
    delays: Sequence[int],
    tau: float = 4.0,
    amplitude: float = 0.2,
    rest: float = 0.3,
    steps: int = 80,
) -> Tensor:
    r"""ΔW of one synapse against Δt = t_post − t_pre in an isolated pairing protocol.

    One pre neuron (an input unit: its rate is held at ``rest``) spikes once at t_pre, and one
    post neuron spikes once at t_post. The post rate is a membrane-like trace that charges toward
    its spike and relaxes after it,

        ρ_post(t) = rest + amplitude · exp(−|t − t_post| / tau),

    so Δρ_post > 0 before the post spike and < 0 after it. The synapse applies the EqSpike rule
    (:func:`event_update`) at every step; with a constant pre rate only S_pre(t) Δρ_post(t) is left:

        ΔW(Δt) = amplitude · e^{−(Δt−1)/τ}(1 − e^{−1/τ})   for Δt ≥ 1 (pre before post: potentiation),
        ΔW(Δt) = −amplitude · e^{Δt/τ}(1 − e^{−1/τ})       for Δt ≤ 0 (post first: depression),

    the STDP-like window. Returns one ΔW per delay (float64).
    """
    delays = [int(d) for d in delays]
    if not delays:
        raise ConfigurationError("pairing_window needs at least one delay t_post − t_pre.")
    if not (math.isfinite(tau) and tau > 0):
        raise ConfigurationError(f"tau must be a positive number of steps, got {tau!r}.")
    if 2 * max(abs(d) for d in delays) + 2 >= steps:
        raise ConfigurationError(f"steps={steps} is too short for delays up to {max(abs(d) for d in delays)}; use steps > 2·max|Δt| + 2.")
    t = torch.arange(steps + 1, dtype=torch.float64)
    t_post = steps // 2
    post = rest + amplitude * torch.exp(-(t - t_post).abs() / tau)
    pre = torch.full_like(post, rest)
    out = []
    for d in delays:
        s_pre = torch.zeros_like(post)
        s_pre[t_post - d] = 1.0
        s_post = torch.zeros_like(post)
        s_post[t_post] = 1.0
        total = torch.zeros((1, 1), dtype=torch.float64)
        for step in range(steps):
            total += event_update(s_post[step + 1].reshape(1, 1), (pre[step + 1] - pre[step]).reshape(1, 1),
                                  s_pre[step].reshape(1, 1), (post[step + 1] - post[step]).reshape(1, 1))
        out.append(total.item())
    return torch.tensor(out, dtype=torch.float64)
