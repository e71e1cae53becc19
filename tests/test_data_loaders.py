"""eqprop.data: every on-disk format is written small by the test, loaded, and checked;
missing and corrupt files get their own clear errors."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from eqprop.data import (
    CorruptDatasetError,
    DatasetNotFoundError,
    load,
    load_cifar10,
    load_cifar100,
    load_digits,
    load_fashion_mnist,
    load_imagenet32,
    load_mnist,
    load_mnist1d,
    load_svhn,
    load_uea,
    read_idx,
    standardize,
)
from eqprop.errors import ConfigurationError

RNG = np.random.default_rng(0)


def write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def write_mnist(root, n_train=6, n_test=4, gz=False) -> tuple[np.ndarray, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    x = RNG.integers(0, 256, size=(n_train, 28, 28))
    y = RNG.integers(0, 10, size=n_train)
    write_idx(root / f"train-images-idx3-ubyte{ext}", x, gz)
    write_idx(root / f"train-labels-idx1-ubyte{ext}", y, gz)
    write_idx(root / f"t10k-images-idx3-ubyte{ext}", RNG.integers(0, 256, size=(n_test, 28, 28)), gz)
    write_idx(root / f"t10k-labels-idx1-ubyte{ext}", RNG.integers(0, 10, size=n_test), gz)
    return x, y


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_roundtrip(tmp_path, gz):
    x, y = write_mnist(tmp_path, gz=gz)
    splits = load_mnist(tmp_path)
    xt, yt = splits.train.tensors
    assert xt.shape == (6, 1, 28, 28) and xt.dtype == torch.float32 and yt.dtype == torch.int64
    assert torch.equal(xt[:, 0], torch.tensor(x / 255.0, dtype=torch.float32))
    assert torch.equal(yt, torch.tensor(y))
    assert len(splits.test) == 4 and splits.n_classes == 10 and splits.n_features == 784
    assert load_mnist(tmp_path, flatten=True).train.tensors[0].shape == (6, 784)


def test_fashion_mnist_in_torchvision_layout(tmp_path):
    write_mnist(tmp_path / "FashionMNIST" / "raw")
    assert load_fashion_mnist(tmp_path).input_shape == (1, 28, 28)


def test_idx_truncated_and_bad_magic(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptDatasetError, match="truncated"):
        load_mnist(tmp_path)
    path.write_bytes(b"\x01\x02\x03")
    with pytest.raises(CorruptDatasetError, match="magic"):
        read_idx(path)


def test_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path)) as info:
        load_mnist(tmp_path)
    assert isinstance(info.value, FileNotFoundError) and "download" in str(info.value)
    for loader in (load_cifar10, load_cifar100, load_svhn, load_imagenet32):
        with pytest.raises(FileNotFoundError, match="download"):
            loader(tmp_path)
    with pytest.raises(FileNotFoundError, match="timeseriesclassification"):
        load_uea("BasicMotions", tmp_path)


def _cifar_batch(n, label_key):
    return {b"data": RNG.integers(0, 256, size=(n, 3072), dtype=np.uint8), label_key: list(RNG.integers(0, 10, n))}


def test_cifar10_and_100(tmp_path):
    d10 = tmp_path / "cifar-10-batches-py"
    d10.mkdir()
    batches = {f"data_batch_{i}": _cifar_batch(3, b"labels") for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(2, b"labels")
    for name, batch in batches.items():
        pickle.dump(batch, open(d10 / name, "wb"))
    s = load_cifar10(tmp_path)
    assert s.train.tensors[0].shape == (15, 3, 32, 32) and len(s.test) == 2
    first = batches["data_batch_1"][b"data"][0].reshape(3, 32, 32) / 255.0
    assert torch.allclose(s.train.tensors[0][0], torch.tensor(first, dtype=torch.float32))
    d100 = tmp_path / "cifar-100-python"
    d100.mkdir()
    for name, n in (("train", 4), ("test", 2)):
        batch = _cifar_batch(n, b"fine_labels")
        batch[b"coarse_labels"] = [1] * n
        pickle.dump(batch, open(d100 / name, "wb"))
    assert load_cifar100(tmp_path).n_classes == 100
    assert load_cifar100(tmp_path, coarse=True).train.tensors[1].tolist() == [1] * 4
    (d100 / "test").write_bytes((d100 / "test").read_bytes()[:100])
    with pytest.raises(CorruptDatasetError, match="CIFAR"):
        load_cifar100(tmp_path)


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    for split, n in (("train", 5), ("test", 3)):
        y = np.array([[10], [1], [2], [3], [4]][:n])
        savemat(tmp_path / f"{split}_32x32.mat", {"X": RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8), "y": y})
    s = load_svhn(tmp_path, flatten=True)
    assert s.train.tensors[0].shape == (5, 3072) and s.train.tensors[1].tolist() == [0, 1, 2, 3, 4]
    (tmp_path / "test_32x32.mat").write_bytes(b"garbage" * 10)
    with pytest.raises(CorruptDatasetError, match="SVHN"):
        load_svhn(tmp_path)


def test_imagenet32_npz(tmp_path):
    for i in (1, 2):
        np.savez(tmp_path / f"train_data_batch_{i}.npz", data=RNG.integers(0, 256, (4, 3072), dtype=np.uint8),
                 labels=np.array([1, 2, 1000, 5]))
    np.savez(tmp_path / "val_data.npz", data=RNG.integers(0, 256, (2, 3072), dtype=np.uint8), labels=np.array([1, 3]))
    s = load_imagenet32(tmp_path, train_batches=2)
    assert s.train.tensors[0].shape == (8, 3, 32, 32) and s.n_classes == 1000
    assert s.train.tensors[1][:4].tolist() == [0, 1, 999, 4]
    with pytest.raises(ConfigurationError, match="train_batches"):
        load_imagenet32(tmp_path, train_batches=11)
    with pytest.raises(ConfigurationError, match="limit_train must be an integer"):
        load_imagenet32(tmp_path, train_batches=2, limit_train=0)


TS_HEADER = """# comment
@problemName Toy
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength true
@seriesLength 3
@classLabel true up down
@data
"""


def test_uea_ts_multivariate(tmp_path):
    d = tmp_path / "Toy"
    d.mkdir()
    (d / "Toy_TRAIN.ts").write_text(TS_HEADER + "1,2,3:4,5,6:up\n0.5,0.25,0:1,1,1:down\n")
    (d / "Toy_TEST.ts").write_text(TS_HEADER + "3,2,1:6,5,4:down\n")
    s = load_uea("Toy", tmp_path)
    x, y = s.train.tensors
    assert x.shape == (2, 3, 2) and s.is_sequence and s.n_features == 2 and s.sequence_length == 3
    assert x[0, :, 0].tolist() == [1, 2, 3] and x[0, :, 1].tolist() == [4, 5, 6]
    assert y.tolist() == [0, 1] and s.test.tensors[1].tolist() == [1]
    (d / "Toy_TEST.ts").write_text(TS_HEADER + "3,2,1:6,5:down\n")
    with pytest.raises(CorruptDatasetError, match="unequal lengths"):
        load_uea("Toy", tmp_path)
    (d / "Toy_TEST.ts").write_text(TS_HEADER.replace("@data\n", ""))
    with pytest.raises(CorruptDatasetError, match="no @data"):
        load_uea("Toy", tmp_path)
    (d / "Toy_TEST.ts").write_text(TS_HEADER + "3,?,1:6,5,4:down\n")
    with pytest.raises(CorruptDatasetError, match="missing"):
        load_uea("Toy", tmp_path)
    assert load_uea("Toy", tmp_path, missing="zero").test.tensors[0][0, 1, 0] == 0


def test_embedded_digits_and_mnist1d(tmp_path):
    s = load_digits(seed=0)
    assert s.train.tensors[0].shape == (1438, 64) and len(s.test) == 359
    assert float(s.train.tensors[0].max()) <= 1.0
    assert torch.equal(load_digits(seed=0).test.tensors[1], s.test.tensors[1])  # the split is seeded
    m = load_mnist1d(cache=tmp_path, as_sequence=True)
    assert m.train.tensors[0].shape == (4000, 40, 1) and len(m.test) == 1000 and m.sequence_length == 40
    assert len(list(tmp_path.glob("mnist1d_*.npz"))) == 1
    again = load_mnist1d(cache=tmp_path)  # read back from the cache
    assert torch.equal(again.train.tensors[0], m.train.tensors[0][..., 0])


def test_standardize_uses_training_statistics():
    train = torch.randn(100, 3) * 5 + 2
    test = torch.randn(10, 3)
    a, b = standardize(train, test, "feature")
    assert torch.allclose(a.mean(0), torch.zeros(3), atol=1e-5) and torch.allclose(a.std(0), torch.ones(3), atol=1e-5)
    assert torch.allclose(b, (test - train.mean(0)) / train.std(0))
    with pytest.raises(ConfigurationError, match="standardize"):
        standardize(train, test, "zscore")


def test_load_by_name_fallback_and_unknown_options(tmp_path):
    assert load("mnist", fallback="digits", flatten=True).name == "digits"
    with pytest.raises(DatasetNotFoundError, match="data.root"):
        load("cifar10")
    with pytest.raises(ConfigurationError, match="no option"):
        load("digits", flaten=True)
    with pytest.raises(ConfigurationError, match="Unknown dataset"):
        load("mnits")
    with pytest.raises(ConfigurationError, match="'digits' takes no option root"):
        load("digits", root=tmp_path)
    with pytest.raises(ConfigurationError, match="'digits' takes no option flaten"):
        load("mnist", fallback="digits", fallback_options={"flaten": True})
    write_mnist(tmp_path)
    assert load("mnist", root=tmp_path, fallback="digits").name == "MNIST"
