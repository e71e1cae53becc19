"""Shared pieces of the sequence learners (RHEL) and baselines (BPTT, adjoint) for Hamiltonian models.

* :func:`check_sequence` — x is [batch, T, input_size]; one-sentence errors otherwise (also for
  Lagrangian models, whose step input may have any shape: ``feature_axis=False``).
* :func:`target_mode` — a target [batch, ...] is a loss on the final output only, a target
  [batch, T, ...] a loss at every step (docs/rhel.md); anything else is a ShapeError. One rule
  for every sequence model (Hamiltonian stacks and Lagrangian models, eqprop.estimators.lagrangian).
* :func:`simulate` — the forward run of a Hamiltonian stack through an integrator: step k
  consumes u_k and the loss reads the output after the step.
* :func:`initial_state_vjp` — λ = dL/dΦ_0, read off an echo's end (or an adjoint's), pulled back
  through a parameter-dependent initial state.

This module knows models only through the stack protocol of ``HamiltonianModel`` (and a
Lagrangian model's ``initial_conditions`` and ``output``, to read the shape of one output).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

from ..costs import Cost
from ..errors import ConfigurationError, NotReversibleError, ShapeError
from ..models.hamiltonian import HamiltonianModel
from ..models.lagrangian import LagrangianModel
from ..solvers.scan import DEFAULT_CHUNK, fused_step, hru_forward, stack_forward

__all__ = ["check_sequence", "target_mode", "simulate", "check_hamiltonian", "check_single_hamiltonian",
           "check_reversible", "pooling", "initial_state_vjp", "check_echo_variant", "echo_return_error"]

Mode = Literal["final", "per_step"]


def pooling(model) -> str:
    """The model's output pooling over time: "last" (default) or "mean"."""
    value = getattr(model, "pooling", "last")
    if value not in ("last", "mean"):
        raise ConfigurationError(f"Unknown pooling {value!r} on {type(model).__name__}; choose 'last' or 'mean'.")
    return value


def check_hamiltonian(model) -> None:
    if not isinstance(model, HamiltonianModel):
        raise ConfigurationError(
            f"This learner needs an eqprop.models.HamiltonianModel (e.g. LinearHRU, HSSM), got {type(model).__name__}."
        )


def check_single_hamiltonian(model, learner: str) -> None:
    """A Hamiltonian model that is not a stack (one layer, itself)."""
    check_hamiltonian(model)
    layers = model.hamiltonian_layers()
    if len(layers) != 1 or layers[0] is not model:
        raise ConfigurationError(
            f"{learner} takes a single Hamiltonian model, but {type(model).__name__} is a stack of {len(layers)} "
            f"layers with feedforward maps between them; train stacks with the discrete eqprop.learners.RHEL."
        )


def echo_return_error(states: Sequence[tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]],
                      momentum_sign: float) -> float:
    """How far an ε = 0 echo lands from the start, relative to the largest |q|, |p| at start and end.

    ``states``: one (q_0, p_0, q_T, p_T, q_e, p_e) per layer; the echo should end at q_0 and at
    ``momentum_sign``·p_0 (−1 for RHEL, whose echo runs with flipped momenta; +1 for HEB).
    """
    error, scale = 0.0, 0.0
    with torch.no_grad():
        for q0, p0, q_end, p_end, q_echo, p_echo in states:
            error = max(error, float((q_echo - q0).abs().max()), float((p_echo - momentum_sign * p0).abs().max()))
            scale = max(scale, *(float(t.abs().max()) for t in (q0, p0, q_end, p_end)))
    return error / scale if scale > 0 else error


def check_reversible(integrator, learner: str = "RHEL") -> None:
    """An echo (RHEL's, HEB's) retraces the forward run only under an exactly reversible step."""
    if not getattr(integrator, "reversible", False):
        raise NotReversibleError(
            f"{type(integrator).__name__} is not exactly reversible, so the {learner} echo would not retrace the "
            f"forward trajectory; use eqprop.solvers.PositionVerlet() or eqprop.solvers.LeapFrog()."
        )


ECHO_VARIANTS = ("centered", "one_sided")


def check_echo_variant(learner: str, variant: str) -> str:
    """The two echo estimators: "centered" (±nudge, second order) or "one_sided" (nudge and 0, first order)."""
    if variant not in ECHO_VARIANTS:
        raise ConfigurationError(f"Unknown {learner} variant {variant!r}; choose 'centered' or 'one_sided'.")
    return variant


def check_sequence(model, x: Tensor, feature_axis: bool = True) -> None:
    """x must be [batch, T ≥ 1, input_size] — or, with ``feature_axis=False`` (Lagrangian models,
    whose step input may have any shape), [batch, T ≥ 1, ...] unless the model declares ``input_size``."""
    if (x.dim() != 3 if feature_axis else x.dim() < 2) or x.shape[1] < 1:
        raise ShapeError(
            f"A sequence input must be shaped [batch, T, features] with T >= 1, got {tuple(x.shape)}; "
            f"add a feature axis with x.unsqueeze(-1) for a scalar signal." if feature_axis else
            f"A sequence input must be shaped [batch, T, ...] with T >= 1, got {tuple(x.shape)}; "
            f"add a time axis with x.unsqueeze(1) for a single step."
        )
    width = getattr(model, "input_size", None)
    if width is not None and (x.dim() != 3 or x.shape[-1] != width):
        raise ShapeError(
            f"The input {tuple(x.shape)} has {x.shape[-1]} features per step but {type(model).__name__} takes "
            f"input_size={width}; pass x shaped [batch, T, {width}] or build the model with input_size={x.shape[-1]}."
        )


@torch.no_grad()
def _output_shape(model, x: Tensor) -> tuple[torch.Size, torch.dtype, torch.device]:
    """Shape (and dtype, device) of one output: the initial state read out, through the stack
    protocol for a Hamiltonian model, through ``initial_conditions`` for a Lagrangian one."""
    if isinstance(model, LagrangianModel):
        s0, _ = model.initial_conditions(x)
        return model.output(s0).shape, s0.dtype, s0.device
    z = model.encode(x[:, 0])
    for index, (q, _) in enumerate(model.init_states(x)):
        z = model.mix(index, z, q)
    return model.decode(z).shape, x.dtype, x.device


def target_mode(model, x: Tensor, y: Tensor, cost: Cost) -> Mode:
    """"final" for y shaped like one output, "per_step" for y with a time axis of length T."""
    shape, dtype, device = _output_shape(model, x)
    return mode_for_target(shape, x.shape[1], y, cost, dtype, device)


def mode_for_target(final_shape: torch.Size, steps: int, y: Tensor, cost: Cost, dtype, device) -> Mode:
    """Which loss a target asks for, given the shape of one output and the number of steps."""
    per_step_shape = final_shape[:1] + torch.Size([steps]) + final_shape[1:]
    errors = []
    for mode, shape in (("per_step", per_step_shape), ("final", final_shape)):
        try:  # a broadcast view of one zero: the probe of all T outputs must not cost O(T) memory
            cost.check_target(torch.zeros((), dtype=dtype, device=device).expand(shape), y)
            return mode
        except ShapeError as err:
            errors.append(str(err))
    raise ShapeError(
        f"The target {tuple(y.shape)} fits neither a final-step loss (output {tuple(final_shape)}) nor a per-step "
        f"loss (outputs {tuple(per_step_shape)}); {errors[-1]}"
    )


def simulate(model: HamiltonianModel, x: Tensor, integrator, create_graph: bool = False,
             keep_outputs: bool = False, chunk: int = DEFAULT_CHUNK) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """Run the stack over x; return the final (q, p) of each layer and the outputs.

    The outputs are [batch, T, ...] when ``keep_outputs`` else the final output [batch, ...].
    With ``model.pooling == "mean"`` the output at step k is the running mean of decode(z_0..k)
    (the final one is the time average). With ``create_graph`` the run is differentiable (BPTT);
    otherwise no graph is kept and the memory does not grow with T (apart from the outputs, when kept).
    ``chunk``: steps per chunk of the fast path (eqprop.solvers.scan), an integer ≥ 1.
    """
    layers = model.hamiltonian_layers()
    mean = pooling(model) == "mean"
    fused = [None] * len(layers)
    if not create_graph:  # the fast path (eqprop.solvers.scan): fused closed-form steps of the built-in HRUs
        fast = hru_forward(model, x, integrator, keep_outputs, chunk)
        if fast is None:
            fast = stack_forward(model, x, integrator, keep_outputs, chunk)
        if fast is not None:
            return fast
        fused = [fused_step(layer, integrator, integrator.step_size(layer)) for layer in layers]
    dts = [integrator.step_size(layer) for layer in layers]
    states = list(model.init_states(x))
    if any(step is not None for step in fused):  # stepped in place: own the initial states
        states = [(q.clone(), p.clone()) for q, p in states]
    outputs = []
    steps = x.shape[1]
    total = None
    context = torch.enable_grad() if create_graph else torch.no_grad()
    with context:
        for k in range(steps):
            z = model.encode(x[:, k])
            for index, layer in enumerate(layers):
                if fused[index] is not None:
                    q, p = fused[index](states[index][0], states[index][1], z)
                else:
                    q, p = integrator.step(layer, states[index][0], states[index][1], z, dts[index], create_graph)
                states[index] = (q, p)
                z = model.mix(index, z, q)
            if mean:
                out = model.decode(z)
                total = out if total is None else total + out
                if keep_outputs or k == steps - 1:
                    outputs.append(total / (k + 1))
            elif keep_outputs or k == steps - 1:
                outputs.append(model.decode(z))
    out = torch.stack(outputs, dim=1) if keep_outputs else outputs[-1]
    return states, out


def initial_state_vjp(initial: Sequence[tuple[Tensor, Tensor]], cotangents: Sequence[tuple[Tensor, Tensor]],
                      params: Sequence[Tensor]) -> list[Tensor | None]:
    """(∂Φ_0/∂θ)ᵀλ: the cotangents (λ_q, λ_p) of each layer pulled back through its (q_0, p_0).

    ``initial`` must have been built with a graph (under ``torch.enable_grad``); one entry per
    parameter, ``None`` where the initial state does not depend on it (all ``None`` when it
    depends on no parameter at all).
    """
    outs, grad_outputs = [], []
    for (q0, p0), (lam_q, lam_p) in zip(initial, cotangents):
        for state, cotangent in ((q0, lam_q), (p0, lam_p)):
            if state.requires_grad:
                outs.append(state)
                grad_outputs.append(cotangent)
    if not outs:
        return [None] * len(params)
    return list(torch.autograd.grad(outs, list(params), grad_outputs=grad_outputs, allow_unused=True))
