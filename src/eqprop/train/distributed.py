"""Data parallel training through ``torch.distributed`` (gloo on CPU, NCCL on GPU).

Started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``), every process computes ``learner.step`` on its share of the global batch; then
:func:`all_reduce_gradients` averages ``p.grad`` over the processes, so every process applies
the same optimizer step. Each rank's share of a global batch has the same size, so the average
of the per-rank batch-mean gradients is the gradient of the global batch mean: a run on N
processes follows a one-process run with the same global batch size, up to float round-off.

This module knows nothing of models or learners beyond ``nn.Module.parameters()``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import ConfigurationError

__all__ = ["DistributedContext", "init_distributed", "all_reduce_gradients", "all_reduce_sum", "broadcast_parameters", "all_gather_object"]


@dataclass
class DistributedContext:
    """Who this process is: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Leave the process group once every rank is done (no rank tears it down under another)."""
        if self.enabled:
            dist.barrier()
            dist.destroy_process_group()


def init_distributed(backend: str = "auto", device: str = "auto") -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    ``backend``: ``"auto"`` (NCCL when the device is CUDA, gloo otherwise), ``"gloo"`` or ``"nccl"``.
    Without ``WORLD_SIZE`` > 1 in the environment this is a one-process context and does nothing.
    """
    if backend not in ("auto", "gloo", "nccl"):
        raise ConfigurationError(f"distributed backend must be auto, gloo or nccl, got {backend!r}.")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend)


def all_reduce_gradients(model: nn.Module, ctx: DistributedContext) -> None:
    """Replace every ``p.grad`` by its mean over the processes (one flat all-reduce)."""
    if not ctx.enabled:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(ctx.world_size)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def all_reduce_sum(values: Tensor | list[float], ctx: DistributedContext, device: torch.device | str = "cpu") -> list[float]:
    """Sum numbers over the processes (float64, for metrics); a tensor stays on its device until the one read-back."""
    t = torch.as_tensor(values, dtype=torch.float64, device=values.device if isinstance(values, Tensor) else device)
    if ctx.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_parameters(model: nn.Module, ctx: DistributedContext) -> None:
    """Give every process rank 0's parameters and buffers."""
    if not ctx.enabled:
        return
    for tensor in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(tensor.data, src=0)


def all_gather_object(obj: Any, ctx: DistributedContext) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-element list without a process group)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
