"""Loaders for image datasets in their published on-disk formats (no torchvision).

Every loader returns :class:`~eqprop.data.base.Splits` with x float32 in [0, 1] shaped
``[N, C, H, W]`` (``[N, C·H·W]`` with ``flatten=True``) and y int64 class indices:

=============  ================================================  ===============  =========
dataset        files under ``root``                              x                classes
=============  ================================================  ===============  =========
MNIST          ``train-images-idx3-ubyte[.gz]`` + 3 more (IDX)   [N, 1, 28, 28]   10
Fashion-MNIST  same names as MNIST (IDX)                         [N, 1, 28, 28]   10
CIFAR-10       ``cifar-10-batches-py/data_batch_1..5, test_batch``  [N, 3, 32, 32]   10
CIFAR-100      ``cifar-100-python/train, test``                  [N, 3, 32, 32]   100 (or 20)
SVHN           ``train_32x32.mat, test_32x32.mat``               [N, 3, 32, 32]   10
ImageNet 32²   ``train_data_batch_1..10.npz, val_data.npz``      [N, 3, 32, 32]   1000
=============  ================================================  ===============  =========

Directories are searched as given and in the sub-directories the publishers' archives unpack to.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from ..errors import ConfigurationError
from .base import CorruptDatasetError, DatasetNotFoundError, Splits, check_int, check_shape, make_splits

__all__ = ["read_idx", "load_mnist", "load_fashion_mnist", "load_cifar10", "load_cifar100", "load_svhn", "load_imagenet32"]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _find(root: str | os.PathLike, names: list[str], subdirs: list[str], dataset: str, how: str) -> Path:
    """The first existing ``root/sub/name`` over the candidates, or a DatasetNotFoundError listing them."""
    base = Path(root).expanduser()
    tried = []
    for sub in ["", *subdirs]:
        for name in names:
            path = base / sub / name if sub else base / name
            tried.append(path)
            if path.exists():
                return path
    raise DatasetNotFoundError(f"{dataset} file {names[0]} not found under {base} (looked for {', '.join(str(p) for p in tried)}); {how}")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not, into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise CorruptDatasetError(f"{path} could not be read ({exc}); download it again.") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise CorruptDatasetError(f"{path} is not an IDX file (bad magic number); download it again.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDatasetError(f"{path} is truncated inside its header; download it again.")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise CorruptDatasetError(
            f"{path} holds {len(raw) - header} data bytes but its header promises {expected} "
            f"(shape {dims}); the file is truncated or corrupt, download it again."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _load_idx_set(root, dataset: str, subdirs: list[str], how: str, **kwargs) -> Splits:
    arrays = []
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        arrays.append(read_idx(_find(root, [stem, stem + ".gz"], subdirs, dataset, how)))
    x_train, y_train, x_test, y_test = arrays
    for split, x, y in (("training", x_train, y_train), ("test", x_test, y_test)):
        check_shape(dataset, x, (None, 28, 28), f"the {split} images")  # the published 28x28 grey images
        check_shape(dataset, y, (len(x),), f"the {split} labels (one per image)")
    return _finish(dataset, x_train[:, None] / np.float32(255), y_train, x_test[:, None] / np.float32(255), y_test, 10, **kwargs)


def _finish(name, x_train, y_train, x_test, y_test, n_classes, *, flatten=False, standardize="none",
            limit_train=None, limit_test=None) -> Splits:
    if flatten:
        x_train = x_train.reshape(len(x_train), -1)
        x_test = x_test.reshape(len(x_test), -1)
    return make_splits(
        name, x_train, y_train, x_test, y_test, n_classes=n_classes, standardize_mode=standardize,
        channel_axis=1, limit_train=limit_train, limit_test=limit_test,
    )


def load_mnist(root: str | os.PathLike, flatten: bool = False, standardize: str = "none",
               limit_train: int | None = None, limit_test: int | None = None) -> Splits:
    """MNIST from its four IDX files (optionally .gz) in ``root``, ``root/MNIST/raw`` or ``root/mnist``."""
    return _load_idx_set(
        root, "MNIST", ["MNIST/raw", "mnist", "MNIST"],
        "download the four files from https://ossci-datasets.s3.amazonaws.com/mnist/ (or yann.lecun.com/exdb/mnist) into that directory.",
        flatten=flatten, standardize=standardize, limit_train=limit_train, limit_test=limit_test,
    )


def load_fashion_mnist(root: str | os.PathLike, flatten: bool = False, standardize: str = "none",
                       limit_train: int | None = None, limit_test: int | None = None) -> Splits:
    """Fashion-MNIST from its four IDX files in ``root``, ``root/FashionMNIST/raw`` or ``root/fashion``."""
    return _load_idx_set(
        root, "Fashion-MNIST", ["FashionMNIST/raw", "fashion", "fashion-mnist", "fashion_mnist"],
        "download the four files from https://github.com/zalandoresearch/fashion-mnist (data/fashion) into that directory.",
        flatten=flatten, standardize=standardize, limit_train=limit_train, limit_test=limit_test,
    )


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise CorruptDatasetError(f"{path} is not a complete CIFAR python batch ({exc}); download the archive again.") from exc


def _cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if b"data" not in batch or label_key not in batch:
        raise CorruptDatasetError(f"{path} lacks the 'data' or '{label_key.decode()}' entry of a CIFAR batch.")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise CorruptDatasetError(f"{path} holds data shaped {data.shape}, expected [N, 3072]; download the archive again.")
    labels = np.asarray(batch[label_key], dtype=np.int64)
    check_shape(str(path), labels, (len(data),), f"the '{label_key.decode()}' (one per image)")
    return data.reshape(-1, 3, 32, 32), labels


_CIFAR_HOW = "download and unpack https://www.cs.toronto.edu/~kriz/{} into that directory."


def load_cifar10(root: str | os.PathLike, flatten: bool = False, standardize: str = "none",
                 limit_train: int | None = None, limit_test: int | None = None) -> Splits:
    """CIFAR-10 from the python-pickle batches (``cifar-10-batches-py/``)."""
    how = _CIFAR_HOW.format("cifar-10-python.tar.gz")
    parts = [_cifar_batch(_find(root, [f"data_batch_{i}"], ["cifar-10-batches-py"], "CIFAR-10", how), b"labels") for i in range(1, 6)]
    x_test, y_test = _cifar_batch(_find(root, ["test_batch"], ["cifar-10-batches-py"], "CIFAR-10", how), b"labels")
    x_train = np.concatenate([p[0] for p in parts]) / np.float32(255)
    y_train = np.concatenate([p[1] for p in parts])
    return _finish("cifar10", x_train, y_train, x_test / np.float32(255), y_test, 10, flatten=flatten,
                   standardize=standardize, limit_train=limit_train, limit_test=limit_test)


def load_cifar100(root: str | os.PathLike, coarse: bool = False, flatten: bool = False, standardize: str = "none",
                  limit_train: int | None = None, limit_test: int | None = None) -> Splits:
    """CIFAR-100 from ``cifar-100-python/train`` and ``test``: 100 fine labels, or 20 coarse with ``coarse``."""
    how = _CIFAR_HOW.format("cifar-100-python.tar.gz")
    key = b"coarse_labels" if coarse else b"fine_labels"
    x_train, y_train = _cifar_batch(_find(root, ["train"], ["cifar-100-python"], "CIFAR-100", how), key)
    x_test, y_test = _cifar_batch(_find(root, ["test"], ["cifar-100-python"], "CIFAR-100", how), key)
    return _finish("cifar100", x_train / np.float32(255), y_train, x_test / np.float32(255), y_test,
                   20 if coarse else 100, flatten=flatten, standardize=standardize,
                   limit_train=limit_train, limit_test=limit_test)


def _svhn_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(str(path))
    except (MatReadError, ValueError, OSError, TypeError, IndexError, EOFError) as exc:
        raise CorruptDatasetError(f"{path} is not a complete SVHN .mat file ({exc}); download it again.") from exc
    if "X" not in mat or "y" not in mat:
        raise CorruptDatasetError(f"{path} lacks the 'X' or 'y' variable of an SVHN cropped-digits file.")
    x = np.asarray(mat["X"])
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise CorruptDatasetError(f"{path} holds X shaped {x.shape}, expected [32, 32, 3, N].")
    y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    check_shape(str(path), y, (x.shape[3],), "the labels y (one per image)")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise CorruptDatasetError(f"{path} holds labels {int(y.min())}..{int(y.max())}, but SVHN labels are 1..10 (10 for the digit 0).")
    y[y == 10] = 0  # SVHN labels the digit 0 as 10
    return np.transpose(x, (3, 2, 0, 1)) / np.float32(255), y


def load_svhn(root: str | os.PathLike, flatten: bool = False, standardize: str = "none",
              limit_train: int | None = None, limit_test: int | None = None) -> Splits:
    """SVHN cropped digits from ``train_32x32.mat`` and ``test_32x32.mat`` (label 10 becomes 0)."""
    how = "download train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/ into that directory."
    x_train, y_train = _svhn_split(_find(root, ["train_32x32.mat"], ["svhn", "SVHN"], "SVHN", how))
    x_test, y_test = _svhn_split(_find(root, ["test_32x32.mat"], ["svhn", "SVHN"], "SVHN", how))
    return _finish("svhn", x_train, y_train, x_test, y_test, 10, flatten=flatten, standardize=standardize,
                   limit_train=limit_train, limit_test=limit_test)


def _npz_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path) as data:
            x, y = np.asarray(data["data"]), np.asarray(data["labels"], dtype=np.int64)
    except (KeyError, ValueError, OSError, EOFError) as exc:
        raise CorruptDatasetError(f"{path} is not a complete ImageNet 32x32 npz batch ({exc}); download it again.") from exc
    if x.ndim != 2 or x.shape[1] != 3072:
        raise CorruptDatasetError(f"{path} holds data shaped {x.shape}, expected [N, 3072] (32x32x3).")
    y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    check_shape(str(path), y, (len(x),), "the labels (one per image)")
    if len(y) and (y.min() < 1 or y.max() > 1000):
        raise CorruptDatasetError(f"{path} holds labels {int(y.min())}..{int(y.max())}, but ImageNet 32x32 labels are 1..1000.")
    return x.reshape(-1, 3, 32, 32), y - 1  # published labels are 1..1000


def load_imagenet32(root: str | os.PathLike, train_batches: int = 10, flatten: bool = False, standardize: str = "none",
                    limit_train: int | None = None, limit_test: int | None = None) -> Splits:
    """Downsampled ImageNet 32×32 (Chrabaszcz et al. 2017) from its npz batches; labels 1..1000 become 0..999.

    ``train_batches`` (1..10) reads only the first batches, for a smaller training set.
    """
    if not 1 <= check_int("train_batches", train_batches) <= 10:
        raise ConfigurationError(f"train_batches must lie in 1..10, got {train_batches}.")
    how = "download Imagenet32_train_npz.zip and Imagenet32_val_npz.zip from https://image-net.org/download-images (downsampled) and unpack them there."
    subs = ["Imagenet32_train_npz", "Imagenet32_val_npz", "imagenet32"]
    parts = [_npz_batch(_find(root, [f"train_data_batch_{i}.npz", f"train_data_batch_{i}"], subs, "ImageNet 32x32", how))
             for i in range(1, int(train_batches) + 1)]
    x_test, y_test = _npz_batch(_find(root, ["val_data.npz", "val_data"], subs, "ImageNet 32x32", how))
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    limit_train = check_int("data.limit_train", limit_train, minimum=1, allow_none=True)
    if limit_train is not None:  # before the float conversion of the whole set
        x_train, y_train = x_train[:limit_train], y_train[:limit_train]
    return _finish("imagenet32", x_train / np.float32(255), y_train, x_test / np.float32(255), y_test, 1000,
                   flatten=flatten, standardize=standardize, limit_train=limit_train, limit_test=limit_test)
