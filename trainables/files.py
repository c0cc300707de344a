"""Which files the torchvision data sets need on disk (no torch import: used by spec validation)."""

from __future__ import annotations

import os

DATASETS = ("digits", "fashion_mnist", "cifar10", "synthetic", "npz")
DEFAULT_ROOT = "~/.cache/hpsearch/data"

# The layouts torchvision's FashionMNIST and CIFAR10 classes read.
EXPECTED = {
    "fashion_mnist": [
        f"FashionMNIST/raw/{name}"
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ],
    "cifar10": [
        f"cifar-10-batches-py/{name}"
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    ],
}


def missing_files(dataset: str, root: str | None) -> list[str]:
    """Files of ``dataset`` that are not under ``root`` (empty when all are there)."""
    base = os.path.expanduser(root or DEFAULT_ROOT)
    return [f for f in EXPECTED.get(dataset, []) if not os.path.isfile(os.path.join(base, f))]
