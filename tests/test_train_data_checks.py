"""The data readers check the published shapes and the class labels of every file, on small files
the tests write; n_classes is the dataset's declared count, not the largest label seen."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

import eqprop
from eqprop.data import CorruptDatasetError, load_cifar10, load_cifar100, load_digits, load_imagenet32, load_mnist, load_svhn, load_uea
from eqprop.errors import ConfigurationError
from eqprop.train import Trainer, TrainerConfig

RNG = np.random.default_rng(1)


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def write_idx_set(root, size=28, n_train=6, n_test=4, labels=None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    y = RNG.integers(0, 10, n_train) if labels is None else np.asarray(labels)
    write_idx(root / "train-images-idx3-ubyte.gz", RNG.integers(0, 256, (n_train, size, size)))
    write_idx(root / "train-labels-idx1-ubyte.gz", y)
    write_idx(root / "t10k-images-idx3-ubyte.gz", RNG.integers(0, 256, (n_test, size, size)))
    write_idx(root / "t10k-labels-idx1-ubyte.gz", RNG.integers(0, 10, n_test))


def test_idx_images_of_another_size_are_refused(tmp_path):
    write_idx_set(tmp_path, size=8)  # 8x8 digits written as IDX: not MNIST
    with pytest.raises(CorruptDatasetError, match=r"shaped \[6, 8, 8\], but this dataset's files hold \[N, 28, 28\]"):
        load_mnist(tmp_path)


def test_idx_labels_outside_the_classes_or_count_are_refused(tmp_path):
    write_idx_set(tmp_path / "a", labels=[0, 1, 2, 3, 4, 12])
    with pytest.raises(CorruptDatasetError, match="training labels hold class 12, outside 0..9"):
        load_mnist(tmp_path / "a")
    write_idx_set(tmp_path / "b", labels=[0, 1, 2])  # 3 labels for 6 images
    with pytest.raises(CorruptDatasetError, match=r"labels \(one per image\) are shaped \[3\]"):
        load_mnist(tmp_path / "b")


def _cifar(root, sub, names, label_key, n, high):
    d = root / sub
    d.mkdir(parents=True, exist_ok=True)
    for name in names:
        batch = {b"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: [high] + [0] * (n - 1)}
        pickle.dump(batch, open(d / name, "wb"))


def test_cifar_labels_outside_the_classes_are_refused(tmp_path):
    _cifar(tmp_path, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 2, 10)
    with pytest.raises(CorruptDatasetError, match="outside 0..9"):
        load_cifar10(tmp_path)
    _cifar(tmp_path, "cifar-100-python", ["train", "test"], b"fine_labels", 2, 99)
    for name in ("train", "test"):  # coarse labels: 20 classes, so 99 is refused there
        batch = pickle.load(open(tmp_path / "cifar-100-python" / name, "rb"))
        batch[b"coarse_labels"] = [25, 0]
        pickle.dump(batch, open(tmp_path / "cifar-100-python" / name, "wb"))
    assert load_cifar100(tmp_path).n_classes == 100
    with pytest.raises(CorruptDatasetError, match="class 25, outside 0..19"):
        load_cifar100(tmp_path, coarse=True)


def test_svhn_and_imagenet32_labels_are_checked(tmp_path):
    from scipy.io import savemat

    for split in ("train", "test"):
        savemat(tmp_path / f"{split}_32x32.mat", {"X": RNG.integers(0, 256, (32, 32, 3, 3), dtype=np.uint8),
                                                 "y": np.array([[1], [11], [10]])})
    with pytest.raises(CorruptDatasetError, match="SVHN labels are 1..10"):
        load_svhn(tmp_path)
    for name in ("train_data_batch_1.npz", "val_data.npz"):
        np.savez(tmp_path / name, data=RNG.integers(0, 256, (2, 3072), dtype=np.uint8), labels=np.array([0, 5]))
    with pytest.raises(CorruptDatasetError, match="labels are 1..1000"):
        load_imagenet32(tmp_path, train_batches=1)


TS = """@problemName Toy
@univariate {univariate}
@dimensions {dims}
@equalLength true
@seriesLength 3
@classLabel true up down
@data
1,2,3:4,5,6:up
0.5,0.25,0:1,1,1:down
"""


@pytest.mark.parametrize("univariate, dims, message", [("false", 3, "@dimensions 3 but cases have 2"),
                                                       ("true", 2, "@univariate true but cases have 2")])
def test_uea_declared_channels_are_checked(tmp_path, univariate, dims, message):
    d = tmp_path / "Toy"
    d.mkdir()
    for split in ("TRAIN", "TEST"):
        (d / f"Toy_{split}.ts").write_text(TS.format(univariate=univariate, dims=dims))
    with pytest.raises(CorruptDatasetError, match=message):
        load_uea("Toy", tmp_path)


@pytest.mark.parametrize("limit", [2.5, "abc", True, 0])
def test_sample_limits_must_be_positive_integers(limit):
    with pytest.raises(ConfigurationError, match="data.limit_train must be an integer ≥ 1"):
        load_digits(limit_train=limit)


def test_two_samples_keep_the_declared_ten_classes(tmp_path):
    """data.limit_train=2: the labels seen are two digits, but the targets stay 10-wide (the dataset's classes)."""
    splits = load_digits(limit_train=2, limit_test=3)
    seen = int(max(splits.train.tensors[1].max(), splits.test.tensors[1].max())) + 1
    assert splits.n_classes == 10 and seen < 10  # the largest label seen would give fewer classes
    model = eqprop.models.HopfieldMLP([64, 8, 10])
    learner = eqprop.learners.EP(0.5, solver=eqprop.solvers.FixedPoint(tol=None, max_steps=3, on_nonconvergence="ignore"))
    trainer = Trainer(model, learner, torch.optim.SGD(model.parameters(), lr=0.01), splits.train, splits.test, tmp_path,
                      TrainerConfig(epochs=1, batch_size=2, progress=False, tensorboard=False, plot=False),
                      n_classes=splits.n_classes)
    assert trainer._target(splits.train.tensors[1]).shape == (2, 10)
    assert trainer.fit()["step"] == 1


@pytest.mark.parametrize("name, options, message", [
    ("mnist", {"fallback": "digits", "flatten": "maybe"}, "data.flatten must be true or false, got 'maybe'"),
    ("digits", {"test_fraction": "abc"}, "data.test_fraction must be a real number"),
    ("digits", {"seed": 1.5}, "data.seed must be an integer, got 1.5"),
    ("digits", {"image": 1}, "data.image must be true or false"),
])
def test_dataset_options_have_the_type_of_their_default(name, options, message):
    from eqprop.data import load

    with pytest.raises(ConfigurationError, match=message):
        load(name, **options)
