"""Parallel (associative) scan for linear time-invariant recurrences s_{k+1} = M s_k + c_k.

A linear HRU stepped by position Verlet is such a recurrence per unit (M is 2×2, constant in
time; c_k carries the input). Composition of affine maps is associative, so all states follow
in ⌈log₂ T⌉ rounds of log-depth doubling (Hillis–Steele): after round r, x_k holds the effect of
c_{k−2^{r+1}+1..k}; each round adds M^{2^r} x_{k−2^r}. Work O(T log T), depth O(log T) — the way
to simulate sequences of ~50k steps without a Python loop.

This module knows nothing of models: it takes the matrices and the forcing.
Check: tests/test_hamiltonian_models.py compares it with the sequential loop.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ShapeError

__all__ = ["affine_scan"]


def affine_scan(matrix: Tensor, forcing: Tensor, initial: Tensor) -> Tensor:
    """States s_1..s_T of s_{k+1} = M s_k + c_k, s_0 = initial.

    Args:
        matrix: M, shape [n, d, d] (one d×d block per unit), constant in time.
        forcing: c_k, shape [batch, T, n, d].
        initial: s_0, shape [batch, n, d].

    Returns:
        [batch, T, n, d], entry k being s_{k+1} (the state after consuming c_k).
    """
    if forcing.dim() != 4 or matrix.dim() != 3 or forcing.shape[2:] != matrix.shape[:1] + matrix.shape[2:]:
        raise ShapeError(
            f"affine_scan takes M [n, d, d] and forcing [batch, T, n, d], got {tuple(matrix.shape)} and "
            f"{tuple(forcing.shape)}."
        )
    x = forcing.clone()
    x[:, 0] = x[:, 0] + torch.einsum("nij,bnj->bni", matrix, initial)
    power = matrix
    shift = 1
    steps = x.shape[1]
    while shift < steps:
        x = torch.cat([x[:, :shift], x[:, shift:] + torch.einsum("nij,btnj->btni", power, x[:, :-shift])], dim=1)
        power = power @ power
        shift *= 2
    return x
