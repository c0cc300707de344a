"""Data sets through their real loaders, on small files in their real on-disk formats."""

import pickle
import struct

import numpy as np
import pytest
import torch

from hpsearch.sources import load_data
from hpsearch.sources.torchvision_sets import Cifar10Source, FashionMnistSource
from hpsearch.trainables.data import DataError


def write_idx(path, array):
    """The MNIST/Fashion-MNIST idx format: magic (0, 0, dtype 0x08, ndim), big-endian sizes, uint8 data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist(root, n_train=60, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / "FashionMNIST" / "raw"
    sets = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        sets[prefix] = (images, labels)
    return sets


def write_cifar10(root, per_batch=12, n_test=10, seed=0):
    """The CIFAR-10 python format: pickled dicts with 'data' (N, 3072 uint8, channel-major) and 'labels'."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
        batches[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return batches


def test_fashion_mnist_through_torchvision(tmp_path):
    sets = write_fashion_mnist(tmp_path)
    data = load_data({"dataset": "fashion_mnist", "root": str(tmp_path), "val_fraction": 0.25, "seed": 0})
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert (len(data.train_y), len(data.val_y), len(data.test_y)) == (45, 15, 20)
    # the test split is the official test set, in order
    assert torch.equal(data.test_y, torch.from_numpy(sets["t10k"][1].astype(np.int64)))
    # standardised with train statistics: the test image is the same affine map of the file's pixels
    raw_test = torch.from_numpy(sets["t10k"][0]).float() / 255.0
    a = data.test_x[:, 0].flatten()
    b = raw_test.flatten()
    slope = ((a - a.mean()) * (b - b.mean())).sum() / ((b - b.mean()) ** 2).sum()
    assert torch.allclose(a, a.mean() + slope * (b - b.mean()), atol=1e-4)
    assert abs(float(data.train_x.mean())) < 1e-4


def test_cifar10_through_torchvision(tmp_path):
    batches = write_cifar10(tmp_path)
    spec = {"dataset": "cifar10", "root": str(tmp_path), "val_fraction": 0.2, "verify_checksums": False}
    data = load_data(spec)
    assert data.input_shape == (3, 32, 32)
    assert len(data.train_y) + len(data.val_y) == 60 and len(data.test_y) == 10
    assert data.test_y.tolist() == batches["test_batch"][1]
    # channel-major bytes -> (C, H, W): the red plane of the first test image is its first 1024 bytes
    red = torch.from_numpy(batches["test_batch"][0][0, :1024].reshape(32, 32).astype(np.float32))
    corr = torch.corrcoef(torch.stack([data.test_x[0, 0].flatten(), red.flatten()]))[0, 1]
    assert float(corr) > 0.999
    with pytest.raises(DataError, match=f"data.root: cifar10 files not found or incomplete under '{tmp_path}'"):
        load_data({**spec, "verify_checksums": True})  # these are not the official files


def test_missing_files_name_the_root(tmp_path):
    with pytest.raises(
        DataError, match=f"fashion_mnist files not found or incomplete under '{tmp_path}'.*download: true"
    ):
        load_data({"dataset": "fashion_mnist", "root": str(tmp_path)})
    assert Cifar10Source(root=str(tmp_path)).missing_files()[0] == "cifar-10-batches-py/data_batch_1"
    write_fashion_mnist(tmp_path)
    assert FashionMnistSource(root=str(tmp_path)).missing_files() == []


def test_npz_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 7)).astype(np.float32), np.arange(100) % 3
    np.savez(tmp_path / "mine.npz", X=x, y=y)
    data = load_data({"dataset": "npz", "path": str(tmp_path / "mine.npz"), "val_fraction": 0.2, "test_fraction": 0.1})
    assert data.input_shape == (7,) and data.num_classes == 3
    assert (len(data.train_y), len(data.val_y), len(data.test_y)) == (70, 20, 10)
    np.savez(tmp_path / "bad.npz", features=x, y=y)
    with pytest.raises(DataError, match="data.npz: .* has no array 'X' \\(has: features, y\\)"):
        load_data({"dataset": "npz", "path": str(tmp_path / "bad.npz")})
    np.savez(tmp_path / "float_labels.npz", X=x, y=y.astype(np.float32))
    with pytest.raises(DataError, match="y must hold class indices"):
        load_data({"dataset": "npz", "path": str(tmp_path / "float_labels.npz")})


def test_synthetic_any_shape_and_seeded():
    a = load_data({"dataset": "synthetic", "samples": 200, "shape": [3, 8, 8], "classes": 4, "seed": 1})
    b = load_data({"dataset": "synthetic", "samples": 200, "shape": [3, 8, 8], "classes": 4, "seed": 1})
    assert a.input_shape == (3, 8, 8) and torch.equal(a.train_x, b.train_x)
    assert load_data({"dataset": "synthetic", "features": 5}).input_shape == (5,)


@pytest.mark.parametrize("seed", [0, 1])
def test_splits_are_disjoint_and_cover_the_data(seed):
    data = load_data(
        {"dataset": "synthetic", "samples": 500, "features": 6, "seed": seed, "val_fraction": 0.2, "test_fraction": 0.2}
    )
    rows = [{tuple(r.tolist()) for r in part} for part in (data.train_x, data.val_x, data.test_x)]
    assert sum(len(r) for r in rows) == 500  # every sample once (synthetic rows are unique)
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])


def test_train_samples_caps_the_train_split_only():
    data = load_data({"dataset": "digits", "train_samples": 100})
    full = load_data({"dataset": "digits"})
    assert len(data.train_y) == 100 and len(data.val_y) == len(full.val_y) and torch.equal(data.test_y, full.test_y)


def test_digits_are_scikit_learns_read_without_importing_it():
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from hpsearch.trainables.data import digits

    x, y = digits()
    bunch = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.array_equal(x[:, 0] * 16.0, bunch.images) and np.array_equal(y, bunch.target)
    code = (
        "import sys; from hpsearch.sources import load_data; s = load_data({'dataset': 'digits'}); "
        "print(len(s.train_y) + len(s.val_y) + len(s.test_y), 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1797", "False"]
