"""What every dataset loader returns, its errors, and the shared preprocessing.

A loader returns :class:`Splits`: a train and a test :class:`torch.utils.data.TensorDataset`
of ``(x, y)`` with ``x`` float32 and ``y`` int64 class indices, plus the facts a model config
needs (``n_features``, ``n_classes``, ``input_shape``). Standardisation statistics always come
from the training split only.

This module knows tensors and files only; it never names a model, solver or learner.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ..errors import ConfigurationError, EqpropError

__all__ = [
    "Splits",
    "DatasetNotFoundError",
    "CorruptDatasetError",
    "STANDARDIZE_MODES",
    "standardize",
    "make_splits",
    "cache_dir",
    "require_file",
    "check_int",
    "check_labels",
    "check_shape",
]

STANDARDIZE_MODES = ("none", "global", "feature", "channel")


class DatasetNotFoundError(EqpropError, FileNotFoundError):
    """A dataset file that is not on disk; the message says where it was looked for and how to get it."""


class CorruptDatasetError(EqpropError, ValueError):
    """A dataset file that exists but is truncated or not in the expected format."""


@dataclass
class Splits:
    """A train/test pair of ``TensorDataset(x, y)`` and what a model needs to know about them.

    ``x`` is float32 shaped ``[N, *input_shape]``; ``y`` is int64 shaped ``[N]`` with values in
    ``[0, n_classes)``. ``n_features`` is the product of ``input_shape`` (the input size of an MLP);
    for sequences shaped ``[N, T, C]`` it is ``C``, the size of one step's input.
    """

    train: TensorDataset
    test: TensorDataset
    n_classes: int
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.tensors[0].shape[1:])

    @property
    def is_sequence(self) -> bool:
        return bool(self.info.get("sequence", False))

    @property
    def n_features(self) -> int:
        shape = self.input_shape
        if self.is_sequence:
            return int(shape[-1])
        return int(np.prod(shape)) if shape else 1

    @property
    def sequence_length(self) -> int | None:
        return int(self.input_shape[0]) if self.is_sequence else None

    def __repr__(self) -> str:
        return (
            f"Splits({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"input_shape={self.input_shape}, n_classes={self.n_classes})"
        )


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Where generated datasets are cached: ``path``, else ``$EQPROP_CACHE``, else ``~/.cache/eqprop``."""
    if path is None:
        path = os.environ.get("EQPROP_CACHE") or Path.home() / ".cache" / "eqprop"
    out = Path(path).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    return out


def require_file(path: Path, dataset: str, how: str) -> Path:
    """Return ``path`` if it exists, else raise :class:`DatasetNotFoundError` naming it and how to obtain it."""
    if not path.exists():
        raise DatasetNotFoundError(f"{dataset} file not found at {path}; {how}")
    return path


def _check_mode(mode: str) -> str:
    if mode not in STANDARDIZE_MODES:
        raise ConfigurationError(
            f"standardize must be one of {', '.join(STANDARDIZE_MODES)}, got {mode!r}."
        )
    return mode


def standardize(train: Tensor, test: Tensor, mode: str = "none", channel_axis: int = 1) -> tuple[Tensor, Tensor]:
    """Subtract the mean and divide by the standard deviation of the *training* split.

    ``mode``: ``"none"`` (unchanged), ``"global"`` (one scalar mean and std), ``"feature"`` (per
    input element), ``"channel"`` (per index of ``channel_axis``: colour channel of ``[N, C, H, W]``
    images, or ``-1`` for the channels of ``[N, T, C]`` sequences). A zero std is replaced by 1.
    """
    _check_mode(mode)
    if mode == "none":
        return train, test
    if mode == "global":
        mean, std = train.mean(), train.std()
    elif mode == "feature":
        mean, std = train.mean(dim=0, keepdim=True), train.std(dim=0, keepdim=True)
    else:
        axis = channel_axis % train.dim()
        if axis == 0:
            raise ConfigurationError("standardize='channel' needs a channel axis other than the batch axis.")
        dims = tuple(d for d in range(train.dim()) if d != axis)
        mean, std = train.mean(dim=dims, keepdim=True), train.std(dim=dims, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std


def check_int(name: str, value: Any, minimum: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as an int (an integer-valued float is accepted), or a one-sentence ConfigurationError naming ``name``."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if not ok or (minimum is not None and int(value) < minimum):
        bound = f" ≥ {minimum}" if minimum is not None else ""
        raise ConfigurationError(f"{name} must be an integer{bound}{' or null' if allow_none else ''}, got {value!r}.")
    return int(value)


def _limit(x: Tensor, y: Tensor, limit: int | None, name: str) -> tuple[Tensor, Tensor]:
    limit = check_int(name, limit, minimum=1, allow_none=True)
    if limit is None:
        return x, y
    return x[:limit], y[:limit]


def check_labels(name: str, labels: Tensor, n_classes: int, split: str) -> None:
    """Class labels must lie in ``[0, n_classes)``: a file with others is not of this dataset."""
    if not len(labels):
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= n_classes:
        bad = low if low < 0 else high
        raise CorruptDatasetError(
            f"{name}: the {split} labels hold class {bad}, outside 0..{n_classes - 1} of the dataset's "
            f"{n_classes} classes; the file is corrupt or belongs to another dataset."
        )


def check_shape(name: str, array: Any, expected: tuple[int | None, ...], what: str) -> None:
    """``array.shape`` must match ``expected`` (None: any size); else a CorruptDatasetError naming both."""
    shape = tuple(np.shape(array))
    if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected)):
        pattern = ", ".join("N" if e is None else str(e) for e in expected)
        raise CorruptDatasetError(
            f"{name}: {what} are shaped {list(shape)}, but this dataset's files hold [{pattern}]; the file is "
            f"corrupt or belongs to another dataset (point data.root at the right files, or pick the matching data=...)."
        )


def make_splits(
    name: str,
    x_train: np.ndarray | Tensor,
    y_train: np.ndarray | Tensor,
    x_test: np.ndarray | Tensor,
    y_test: np.ndarray | Tensor,
    *,
    n_classes: int | None = None,
    standardize_mode: str = "none",
    channel_axis: int = 1,
    limit_train: int | None = None,
    limit_test: int | None = None,
    info: dict[str, Any] | None = None,
) -> Splits:
    """Convert arrays to float32 / int64 tensors, subsample, standardise, and wrap them."""
    xtr = torch.as_tensor(np.asarray(x_train), dtype=torch.float32)
    xte = torch.as_tensor(np.asarray(x_test), dtype=torch.float32)
    ytr = torch.as_tensor(np.asarray(y_train)).long().reshape(-1)
    yte = torch.as_tensor(np.asarray(y_test)).long().reshape(-1)
    if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
        raise CorruptDatasetError(
            f"{name}: {xtr.shape[0]} training inputs for {ytr.shape[0]} labels and {xte.shape[0]} test "
            f"inputs for {yte.shape[0]} labels; the files do not belong together."
        )
    if xtr.shape[1:] != xte.shape[1:]:
        raise CorruptDatasetError(
            f"{name}: training inputs are shaped {list(xtr.shape[1:])} but test inputs {list(xte.shape[1:])}; "
            f"the files do not belong together."
        )
    if n_classes is not None:  # the declared count, checked against every label before any subsampling
        n_classes = check_int("n_classes", n_classes, minimum=1)
        check_labels(name, ytr, n_classes, "training")
        check_labels(name, yte, n_classes, "test")
    xtr, ytr = _limit(xtr, ytr, limit_train, "data.limit_train")
    xte, yte = _limit(xte, yte, limit_test, "data.limit_test")
    xtr, xte = standardize(xtr, xte, standardize_mode, channel_axis)
    if n_classes is None:
        n_classes = int(max(ytr.max().item(), yte.max().item() if len(yte) else 0)) + 1
    return Splits(
        train=TensorDataset(xtr.contiguous(), ytr),
        test=TensorDataset(xte.contiguous(), yte),
        n_classes=int(n_classes),
        name=name,
        info=dict(info or {}),
    )


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random train/test partition of ``range(n)``."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not 0.0 < float(test_fraction) < 1.0:
        raise ConfigurationError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}.")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * float(test_fraction))))
    return perm[n_test:], perm[:n_test]
