"""Feedforward-tied energy-based models (ff-EBMs): feedforward maps and energy blocks in a chain.

Nest & Ernoult (2024), "Towards training digitally-tied analog blocks via hybrid gradient
computation". Block k reads the previous block's output through a differentiable feedforward
map (the "digital" part) and relaxes to the minimum of its own energy (the "analog" part):

    x_k = F_k(o_{k−1}, ω_k),   s_k = argmin_s E_k(s, θ_k, x_k),   o_k = output_k(s_k),   o_0 = x

The model's output is o_L, the last block's output. F_k is any torch module (linear, conv,
pooling, normalisation, ``nn.Identity``); E_k is any :class:`eqprop.models.EnergyModel` taking
x_k as its input (e.g. a :class:`HopfieldMLP` whose first width is that of x_k).

This module only describes the system. How it is relaxed is up to a learner
(:class:`eqprop.learners.ChainedEP`) or a baseline (:class:`eqprop.baselines.ChainedBackprop`);
it knows nothing of either.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ..errors import ConfigurationError, ShapeError
from .base import EnergyModel
from .hopfield import HopfieldMLP

__all__ = ["FFEBM", "hopfield_chain"]


class FFEBM(nn.Module):
    """A feedforward-tied EBM: a list of (feedforward module F_k, energy block E_k) pairs.

    Parameters are named ``feedforward.{k}.…`` (ω_k) and ``blocks.{k}.…`` (θ_k), k from 0.

        model = FFEBM([(nn.Flatten(), HopfieldMLP([64, 32], "tanh")),
                       (nn.Linear(32, 16), HopfieldMLP([16, 10], "sigmoid"))])

    Args:
        blocks: the (feedforward, energy block) pairs, input first; the feedforward map of the
            first pair reads the model input, each later one the output of the block below.
    """

    def __init__(self, blocks: Sequence[tuple[nn.Module, EnergyModel]]) -> None:
        super().__init__()
        pairs = list(blocks)
        if not pairs:
            raise ConfigurationError("FFEBM needs at least one (feedforward module, energy block) pair.")
        for k, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ConfigurationError(
                    f"Block {k} of the FFEBM must be a (feedforward module, energy block) pair, got {type(pair).__name__}."
                )
            feedforward, block = pair
            if not isinstance(feedforward, nn.Module):
                raise ConfigurationError(
                    f"The feedforward map of block {k} must be a torch.nn.Module (use nn.Identity() for none), "
                    f"got {type(feedforward).__name__}."
                )
            if not isinstance(block, EnergyModel):
                raise ConfigurationError(
                    f"Energy block {k} must be an eqprop.models.EnergyModel, got {type(block).__name__}."
                )
        self.feedforward = nn.ModuleList(f for f, _ in pairs)
        self.blocks = nn.ModuleList(b for _, b in pairs)

    def __len__(self) -> int:
        return len(self.blocks)

    def block_input(self, k: int, below: Tensor) -> Tensor:
        """x_k = F_k(o_{k−1}) with a one-sentence error if it does not fit block k."""
        try:
            return self.feedforward[k](below)
        except RuntimeError as exc:  # a torch shape mismatch: name the block and the shapes
            raise ShapeError(
                f"The feedforward map of block {k} cannot take an input of shape {tuple(below.shape)} "
                f"({str(exc).splitlines()[0]}); make its input width match the output of block {k - 1}"
                f"{'' if k else ' (the model input)'}."
            ) from None

    def check_block_output(self, k: int, output: Tensor) -> None:
        """The output of block k must be a batch of tensors (what F_{k+1} or the cost reads)."""
        if not isinstance(output, Tensor) or output.dim() < 1:
            raise ShapeError(f"Energy block {k} must return a batched tensor from output(state).")

    def check_physics(self, x: Tensor) -> None:
        """Each block's own check (``init_state``, ``energy`` one value per sample) on the input it
        receives, block by block from x (the outputs of the blocks' initial states carry the shapes)."""
        below = x
        for k, block in enumerate(self.blocks):
            x_k = self.block_input(k, below)
            check = getattr(block, "check_physics", None)
            if check is not None:
                check(x_k)
            below = block.output(block.init_state(x_k))
            self.check_block_output(k, below)

    def extra_repr(self) -> str:
        return f"{len(self.blocks)} blocks"


def hopfield_chain(
    sizes: Sequence[Sequence[int]],
    activation: str = "sigmoid",
    output_activation: str | None = None,
    init_scale: float = 1.0,
) -> FFEBM:
    """An ff-EBM of linear maps and :class:`HopfieldMLP` blocks (the paper's split DHN).

    ``sizes[k]`` lists the widths of block k, its input (the output of the linear map F_k)
    first. F_0 = identity (the model input feeds block 0 directly, so ``sizes[0][0]`` is the
    number of input features) and ``F_k = nn.Linear(sizes[k−1][−1], sizes[k][0])`` for k ≥ 1::

        hopfield_chain([[64, 64, 32], [32, 32, 10]])   # 64 → [64 → 32] → lin → [32 → 10]

    Args:
        sizes: one width list per block (at least two widths each).
        activation: activation of every state layer ("sigmoid", "tanh", "hard_sigmoid", ...).
        output_activation: activation of the last block's last layer (default: ``activation``);
            "identity" gives a linear read-out inside the last energy.
        init_scale: multiplies each HopfieldMLP's default initialisation.
    """
    sizes = [list(map(int, s)) for s in sizes]
    if not sizes or any(len(s) < 2 for s in sizes):
        raise ConfigurationError(f"sizes must list at least one block of at least two widths, got {sizes}.")
    pairs = []
    for k, widths in enumerate(sizes):
        acts: list[str] = [activation] * (len(widths) - 1)
        if k == len(sizes) - 1 and output_activation is not None:
            acts[-1] = output_activation
        feedforward: nn.Module = nn.Identity() if k == 0 else nn.Linear(sizes[k - 1][-1], widths[0])
        pairs.append((feedforward, HopfieldMLP(widths, acts, init_scale=init_scale)))
    return FFEBM(pairs)

