"""Seeds, random-generator states and atomic checkpoints.

A checkpoint is one ``torch.save`` file written to a temporary name in the same directory,
flushed to disk, then moved over the old one with ``os.replace`` (atomic on POSIX and Windows):
a save that fails midway leaves the previous checkpoint untouched.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import EqpropError

__all__ = ["seed_everything", "rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint", "CheckpointError"]


class CheckpointError(EqpropError, RuntimeError):
    """A checkpoint that cannot be read, or that belongs to a different run."""


def seed_everything(seed: int, deterministic: bool = True) -> dict[str, Any]:
    """Seed python, numpy and torch (all devices); with ``deterministic``, ask torch for deterministic kernels.

    Returns the settings applied, to be recorded next to the resolved config.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return {
        "seed": int(seed),
        "deterministic": bool(deterministic),
        "torch_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "torch_version": torch.__version__,
        "num_threads": torch.get_num_threads(),
    }


def rng_state() -> dict[str, Any]:
    """The states of the python, numpy and torch (CPU and CUDA) global generators."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a damaged file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"No checkpoint at {path}; run without resume=true to start a new run there.")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several unrelated types for a damaged file
        raise CheckpointError(f"The checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); delete it to start over.") from exc
