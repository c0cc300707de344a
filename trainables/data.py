"""Data sets as whole tensors on the trial's device; batches are index slices.

Splits are seeded and disjoint: train / validation for the search, test held out
(never used by the search).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

DATASETS = ("digits", "synthetic")


@dataclass(frozen=True)
class Splits:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def num_features(self) -> int:
        return int(self.train_x[0].numel())

    def to(self, device: torch.device | str) -> Splits:
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return Splits(
            *(move(t) for t in (self.train_x, self.train_y, self.val_x, self.val_y, self.test_x, self.test_y)),
            num_classes=self.num_classes,
        )


def load_data(spec: dict[str, Any]) -> Splits:
    """Load ``spec['dataset']`` and split it (``val_fraction``, ``test_fraction``, ``seed``)."""
    name = spec["dataset"]
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        # Pixel values are 0..16; scale to [0, 1] so every activation starts in its useful range.
        x, y = bunch.data.astype(np.float32) / 16.0, bunch.target.astype(np.int64)
    elif name == "synthetic":
        x, y = synthetic(
            spec.get("samples", 2000), spec.get("features", 64), spec.get("classes", 10), spec.get("seed", 0)
        )
    else:
        raise ValueError(f"data.dataset: unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    return split(x, y, spec.get("val_fraction", 0.2), spec.get("test_fraction", 0.2), spec.get("seed", 0))


def synthetic(samples: int, features: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, learnable classification set: Gaussian clusters around random class centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, features)).astype(np.float32)
    y = rng.integers(0, classes, size=samples)
    x = centres[y] + rng.normal(scale=1.0, size=(samples, features)).astype(np.float32)
    return x.astype(np.float32), y.astype(np.int64)


def split(x: np.ndarray, y: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    n = len(x)
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    t = lambda a, idx: torch.from_numpy(np.ascontiguousarray(a[idx]))  # noqa: E731
    return Splits(t(x, train), t(y, train), t(x, val), t(y, val), t(x, test), t(y, test), int(y.max()) + 1)
