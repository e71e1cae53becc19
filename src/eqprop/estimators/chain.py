"""What chained EP and its autograd baseline share for feedforward-tied EBMs (eqprop.models.FFEBM).

* :func:`chain_free_pass` — relax every block in turn, keeping only the graph of each feedforward
  map F_k (a :class:`BlockPass` per block); :func:`predict_chain` — the top block's free output.
* :func:`feedforward_vjp` — backprop an error δx_k through F_k (g_ω and δ_{k−1}).
* :func:`check_ffebm`, :func:`check_solvers`, :func:`per_block` — the model and solver options.

This module knows models only through ``FFEBM`` and the energy-model contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigurationError, ShapeError
from ..models.ff_ebm import FFEBM
from ..solvers.relaxation import Relaxation
from .base import trainable
from .defaults import check_energy_solver, default_solver

__all__ = ["BlockPass", "chain_free_pass", "predict_chain", "check_ffebm", "check_solvers", "feedforward_vjp",
           "per_block"]


@dataclass
class BlockPass:
    """What the free pass keeps of block k: the F_k input leaf, x_k (with F_k's graph), the free state."""

    below: Tensor  # o_{k−1} (the model input for k = 0), a leaf that requires grad for k ≥ 1
    block_input: Tensor  # x_k = F_k(below), graph kept for the vector-Jacobian product
    context: Any  # block.prepare(x_k), computed once
    state: tuple[Tensor, ...]  # free equilibrium s_k (detached)
    status: Any


def check_solvers(value: Any, name: str) -> None:
    """``value`` is ``None``, a relaxation solver, or a list of them (one per block)."""
    for v in value if isinstance(value, (list, tuple)) else [value]:
        check_energy_solver(v, f"{name} (one for all blocks or one per block)")


def per_block(value: Any, n: int, name: str) -> list:
    """One solver for every block, or a list of one per block (``None`` entries allowed)."""
    check_solvers(value, name)
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ConfigurationError(f"{name} lists {len(values)} entries for a model of {n} blocks; give one or one per block.")
    return values


def check_ffebm(model: nn.Module, who: str) -> FFEBM:
    if not isinstance(model, FFEBM):
        raise ConfigurationError(f"{who} trains an eqprop.models.FFEBM (a chain of energy blocks), got {type(model).__name__}.")
    return model


def chain_free_pass(model: FFEBM, x: Tensor, solvers: Sequence[Relaxation | None],
                    learner: str | None = None) -> list[BlockPass]:
    """Relax every block in turn, keeping only the autograd graph of each feedforward map.

    ``learner``: the name of an estimator that assumes each block at its equilibrium; a
    fixed-step block relaxation that ended away from it is then reported (``check_equilibrium``).
    """
    passes: list[BlockPass] = []
    below = x
    for k, (block, solver) in enumerate(zip(model.blocks, solvers)):
        below = below.detach().requires_grad_(k > 0)
        with torch.enable_grad():
            x_k = model.block_input(k, below)
        x_free = x_k.detach()
        context = block.prepare(x_free)
        solver = solver if solver is not None else default_solver(block)
        state, status = solver.solve(block, x_free, block.init_state(x_free), context=context)
        if learner is not None:
            solver.check_equilibrium(status, learner, f"free phase of block {k}")
        state = tuple(s.detach() for s in state)
        output = block.output(state)
        model.check_block_output(k, output)
        if output.shape[0] != x.shape[0]:
            raise ShapeError(f"Energy block {k} returned a batch of {output.shape[0]} for an input batch of {x.shape[0]}.")
        passes.append(BlockPass(below, x_k, context, state, status))
        below = output
    return passes


def feedforward_vjp(model: FFEBM, k: int, record: BlockPass, delta_x: Tensor, batch: int) -> tuple[dict, Tensor | None]:
    """Backprop δx_k through F_k: (g_ω for the mean loss, δ_{k−1} = per-sample dℓ/do_{k−1} or None for k = 0)."""
    params = trainable(model.feedforward[k])
    targets = [p for _, p in params] + ([record.below] if k > 0 else [])
    if not targets or not record.block_input.requires_grad:
        return {}, (torch.zeros_like(record.below) if k > 0 else None)
    grads = torch.autograd.grad(record.block_input, targets, delta_x, allow_unused=True)
    out = {f"feedforward.{k}.{n}": g / batch for (n, _), g in zip(params, grads) if g is not None}
    delta = None
    if k > 0:
        delta = grads[-1] if grads[-1] is not None else torch.zeros_like(record.below)
    return out, delta


def predict_chain(model: FFEBM, x: Tensor, solvers: Sequence[Relaxation | None]) -> Tensor:
    """The top block's output at the free equilibria of the chain (no graph)."""
    with torch.no_grad():
        passes = chain_free_pass(model, x, solvers)
    return model.blocks[-1].output(passes[-1].state).detach()
