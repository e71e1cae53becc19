"""UEA / UCR time-series classification archives in the sktime ``.ts`` format, parsed directly.

A ``.ts`` file is a header of ``@key value`` lines (``@problemName``, ``@univariate``,
``@equalLength``, ``@seriesLength``, ``@classLabel true a b c``...), then ``@data`` and one line
per case: the channels separated by ``:``, each a comma-separated series, the class label last.
Missing values are written ``?``. Timestamped series (``@timeStamps true``) are not supported.

:func:`load_uea` returns x float32 shaped ``[N, T, C]`` (batch, time, channel — the sequence
layout of eqprop's Hamiltonian models) and y int64 indices into the declared class labels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigurationError
from .base import CorruptDatasetError, Splits, make_splits, require_file

__all__ = ["read_ts", "load_uea"]


def _parse_header(line: str, header: dict, path: Path, lineno: int) -> None:
    parts = line.split(maxsplit=1)
    key = parts[0][1:].lower()
    value = parts[1].strip() if len(parts) > 1 else ""
    if key == "classlabel":
        tokens = value.split()
        if not tokens or tokens[0].lower() not in ("true", "false"):
            raise CorruptDatasetError(f"{path}:{lineno}: @classLabel must start with true or false.")
        header["labels"] = tokens[1:] if tokens[0].lower() == "true" else None
    else:
        header[key] = value


def _parse_case(line: str, has_label: bool, path: Path, lineno: int) -> tuple[list[np.ndarray], str | None]:
    fields = line.split(":")
    label = fields.pop().strip() if has_label else None
    if not fields:
        raise CorruptDatasetError(f"{path}:{lineno}: a case needs at least one channel before its label.")
    channels = []
    for text in fields:
        if text.lstrip().startswith("("):
            raise CorruptDatasetError(f"{path}:{lineno}: timestamped series are not supported; convert the file to plain values.")
        try:
            channels.append(np.array([float("nan") if v.strip() == "?" else float(v) for v in text.split(",")], dtype=np.float64))
        except ValueError as exc:
            raise CorruptDatasetError(f"{path}:{lineno}: could not read a number ({exc}).") from None
    return channels, label


def read_ts(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Parse a ``.ts`` file into (x float64 ``[N, T, C]``, raw labels ``[N]`` as str, declared labels).

    Equal-length series are required (pad or resample unequal ones first); ``?`` becomes NaN.
    """
    path = Path(path)
    header: dict = {}
    cases: list[list[np.ndarray]] = []
    labels: list[str] = []
    in_data = False
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise CorruptDatasetError(f"{path} is not a text .ts file ({exc}).") from None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise CorruptDatasetError(f"{path}:{lineno}: expected an @header line before @data, got {line[:40]!r}.")
            if line.lower() == "@data":
                in_data = True
                if header.get("timestamps", "false").lower() == "true":
                    raise CorruptDatasetError(f"{path}: timestamped series (@timeStamps true) are not supported.")
                if "labels" not in header:
                    raise CorruptDatasetError(f"{path}: the header has no @classLabel line; it is not a classification file.")
                continue
            _parse_header(line, header, path, lineno)
            continue
        channels, label = _parse_case(line, header["labels"] is not None, path, lineno)
        cases.append(channels)
        if label is not None:
            labels.append(label)
    if not in_data:
        raise CorruptDatasetError(f"{path} has no @data section; the file is truncated or not in .ts format.")
    if not cases:
        raise CorruptDatasetError(f"{path} has an @data section with no cases; the file is truncated.")
    n_channels = {len(c) for c in cases}
    lengths = {len(s) for c in cases for s in c}
    if len(n_channels) != 1:
        raise CorruptDatasetError(f"{path}: cases have different numbers of channels {sorted(n_channels)}; the file is corrupt.")
    if len(lengths) != 1:
        raise CorruptDatasetError(
            f"{path}: series have unequal lengths {min(lengths)}..{max(lengths)}; eqprop reads equal-length "
            f"archives only, so pad or resample the series first."
        )
    declared_length = header.get("serieslength")
    if declared_length and declared_length.isdigit() and int(declared_length) != lengths.pop():
        raise CorruptDatasetError(f"{path}: series are shorter or longer than the declared @seriesLength {declared_length}; the file is corrupt.")
    x = np.stack([np.stack(c, axis=-1) for c in cases])  # [N, T, C]
    univariate = header.get("univariate", "").lower()
    declared_channels = header.get("dimensions") or header.get("dimension")
    if univariate == "true" and x.shape[2] != 1:
        raise CorruptDatasetError(f"{path}: the header declares @univariate true but cases have {x.shape[2]} channels; the file is corrupt.")
    if declared_channels and declared_channels.isdigit() and int(declared_channels) != x.shape[2]:
        raise CorruptDatasetError(
            f"{path}: the header declares @dimensions {declared_channels} but cases have {x.shape[2]} channels; the file is corrupt."
        )
    return x, np.array(labels), list(header["labels"] or [])


def _encode(labels: np.ndarray, classes: list[str], path: Path) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels.tolist()) - set(index))
    if unknown:
        raise CorruptDatasetError(f"{path}: labels {unknown[:5]} are not among the declared @classLabel values {classes}.")
    return np.array([index[v] for v in labels], dtype=np.int64)


def load_uea(
    problem: str,
    root: str | os.PathLike,
    standardize: str = "none",
    missing: str = "raise",
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> Splits:
    """UEA/UCR ``problem`` from ``root/<problem>/<problem>_TRAIN.ts`` and ``_TEST.ts`` (or directly in ``root``).

    x float32 ``[N, T, C]``; y int64 indices into the train file's declared class labels.
    ``missing``: ``"raise"`` on a ``?`` value, or ``"zero"`` to replace missing values by 0 (before
    standardisation). ``standardize="channel"`` uses per-channel statistics of the training split.
    """
    if missing not in ("raise", "zero"):
        raise ConfigurationError(f"missing must be 'raise' or 'zero', got {missing!r}.")
    name = str(problem)
    base = Path(root).expanduser()
    how = (f"download {name}.zip from https://www.timeseriesclassification.com (the .ts files) and unpack it "
           f"so that {name}_TRAIN.ts and {name}_TEST.ts lie in {base / name}.")
    paths = []
    for split in ("TRAIN", "TEST"):
        candidate = base / name / f"{name}_{split}.ts"
        if not candidate.exists() and (base / f"{name}_{split}.ts").exists():
            candidate = base / f"{name}_{split}.ts"
        paths.append(require_file(candidate, f"UEA {name}", how))
    x_train, raw_train, classes = read_ts(paths[0])
    x_test, raw_test, _ = read_ts(paths[1])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise CorruptDatasetError(f"{name}: train series are {x_train.shape[1:]} but test series are {x_test.shape[1:]} (T, C).")
    if not classes:
        classes = sorted(set(raw_train.tolist()))
    y_train, y_test = _encode(raw_train, classes, paths[0]), _encode(raw_test, classes, paths[1])
    has_nan = bool(np.isnan(x_train).any() or np.isnan(x_test).any())
    if has_nan and missing == "raise":
        raise CorruptDatasetError(f"{name} has missing values ('?'); pass missing='zero' to replace them by 0.")
    splits = make_splits(
        f"uea/{name}", np.nan_to_num(x_train) if has_nan else x_train, y_train,
        np.nan_to_num(x_test) if has_nan else x_test, y_test, n_classes=len(classes),
        standardize_mode=standardize, channel_axis=-1, limit_train=limit_train, limit_test=limit_test,
        info={"sequence": True, "classes": classes},
    )
    return splits
