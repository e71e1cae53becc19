"""Datasets for eqprop's training layer: embedded sets and loaders for standard files on disk.

Every loader returns :class:`Splits` (train and test ``TensorDataset(x, y)``, x float32, y int64
class indices) — see each loader for the shape of x. :func:`load` picks a loader by name, and
falls back to an embedded set when no ``root`` is given, so that an experiment config runs on
the embedded data by default and on the paper's dataset with ``data.root=...``.

This package may use numpy, scipy and torch, and scikit-learn / mnist1d lazily; it knows
nothing of models, solvers or learners.
"""

from __future__ import annotations

import inspect
import logging
import numbers
import os
from typing import Any, Callable

from ..errors import ConfigurationError
from .base import (
    STANDARDIZE_MODES,
    CorruptDatasetError,
    DatasetNotFoundError,
    Splits,
    cache_dir,
    check_int,
    make_splits,
    standardize,
)
from .embedded import load_digits, load_mnist1d
from .images import (
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_imagenet32,
    load_mnist,
    load_svhn,
    read_idx,
)
from .timeseries import load_uea, read_ts

__all__ = [
    "Splits", "DatasetNotFoundError", "CorruptDatasetError", "STANDARDIZE_MODES", "LOADERS",
    "load", "standardize", "make_splits", "cache_dir", "read_idx", "read_ts",
    "load_digits", "load_mnist1d", "load_mnist", "load_fashion_mnist", "load_cifar10",
    "load_cifar100", "load_svhn", "load_imagenet32", "load_uea",
]

log = logging.getLogger(__name__)

LOADERS: dict[str, Callable[..., Splits]] = {
    "digits": load_digits,
    "mnist1d": load_mnist1d,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "svhn": load_svhn,
    "imagenet32": load_imagenet32,
    "uea": load_uea,
}
"""Loaders by name; add your own entry (an open registry) to make it reachable from :func:`load`."""

EMBEDDED = ("digits", "mnist1d")


def _loader(name: str) -> Callable[..., Splits]:
    if name not in LOADERS:
        raise ConfigurationError(f"Unknown dataset {name!r}; choose one of {', '.join(sorted(LOADERS))}.")
    return LOADERS[name]


def _check_options(name: str, loader: Callable[..., Splits], options: dict[str, Any]) -> None:
    params = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ConfigurationError(
            f"Dataset {name!r} takes no option {', '.join(unknown)}; its options are "
            f"{', '.join(p for p in params if p != 'root')}."
        )
    for key, value in options.items():  # a value must have the type of the option's default
        default = params[key].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigurationError(f"data.{key} must be true or false, got {value!r}.")
        if isinstance(default, int) and not isinstance(default, bool):
            check_int(f"data.{key}", value)
        if isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise ConfigurationError(f"data.{key} must be a real number, got {value!r}.")


def load(name: str, root: str | os.PathLike | None = None, fallback: str | None = None,
         fallback_options: dict[str, Any] | None = None, **options: Any) -> Splits:
    """Load dataset ``name`` from ``root``; with no ``root``, load the embedded ``fallback`` instead.

    ``options`` go to the named loader (an option it does not take is an error).
    ``fallback_options`` go to the fallback loader, together with those of ``options`` it
    also takes. Without a root and without a fallback, a dataset that needs files raises
    :class:`DatasetNotFoundError`.
    """
    if root is not None:
        options["root"] = root
    loader = _loader(name)
    _check_options(name, loader, options)
    if root is None and name not in EMBEDDED:
        if fallback is None:
            raise DatasetNotFoundError(
                f"Dataset {name!r} needs its files on disk; set data.root to the directory that holds them "
                f"(see docs/datasets.md for where to get them)."
            )
        fb = _loader(fallback)
        fb_params = inspect.signature(fb).parameters
        kwargs = {k: v for k, v in options.items() if k in fb_params}
        kwargs.update(fallback_options or {})
        _check_options(fallback, fb, kwargs)
        log.warning("data.root is not set: training on the embedded %r dataset in place of %r.", fallback, name)
        return fb(**kwargs)
    return loader(**options)
