"""Data sets as whole tensors on the trial's device; batches are index slices. The readers and the split
live here; which data set a search uses, with what settings, is a data source (:mod:`hpsearch.sources`).

Splits are seeded and disjoint. The search trains on ``train`` and ranks on ``val``; ``test`` is
held out and never used by the search. For fashion_mnist and cifar10 the test split is the
data set's official test set and train/val are a seeded split of its training set.

Images are (N, C, H, W) float32, standardised per channel with statistics of the train split
only; tabular data (npz with 2-D X, synthetic without ``shape``) is (N, F), standardised per feature.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch


class DataError(ValueError):
    """The data set cannot be loaded (missing files, wrong arrays); the message names the field."""


@dataclass(frozen=True)
class Splits:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int  # a classifier's classes; a regression's number of targets

    @property
    def regression(self) -> bool:
        """Real-valued targets (a regression), not class indices."""
        return bool(self.train_y.is_floating_point())

    @property
    def outputs(self) -> int:
        return self.num_classes

    def has_val(self) -> bool:
        return len(self.val_y) > 0

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def num_features(self) -> int:
        return int(self.train_x[0].numel())

    @property
    def search_bytes(self) -> int:
        """Memory the splits a search uses (train and validation) take."""
        return sum(t.numel() * t.element_size() for t in (self.train_x, self.train_y, self.val_x, self.val_y))

    def to(self, device: torch.device | str, test: bool = True) -> Splits:
        """The splits on ``device``; ``test=False`` leaves the test split where it is (a search never
        uses it: on a shared GPU it would only take memory)."""
        names = [f.name for f in fields(self) if f.name != "num_classes" and (test or not f.name.startswith("test_"))]
        moved = {name: getattr(self, name).to(device) for name in names}
        return replace(self, **moved)


def official_test_splits(
    name: str,
    root: str,
    download: bool,
    verify_checksums: bool,
    val_fraction: float,
    seed: int,
    train_samples: int | None,
    merge_val: bool = False,
) -> Splits:
    """fashion_mnist / cifar10 from ``root`` (downloaded there if asked): a seeded train / validation split
    of the training set, and the official test set.

    Raises:
        DataError: the files are missing or incomplete (the message names ``data.root``).
    """
    (x, y), (test_x, test_y) = _torchvision(name, root, download, verify_checksums)
    splits = split(x, y, val_fraction, 0.0, seed, train_samples)
    splits = Splits(
        splits.train_x,
        splits.train_y,
        splits.val_x,
        splits.val_y,
        torch.from_numpy(test_x),
        torch.from_numpy(test_y),
        max(splits.num_classes, int(test_y.max()) + 1),
    )
    return standardise(merge_validation(splits) if merge_val else splits)


def merge_validation(s: Splits) -> Splits:
    """Validation samples join the training split (before standardising: its statistics cover both)."""
    return Splits(
        torch.cat([s.train_x, s.val_x]),
        torch.cat([s.train_y, s.val_y]),
        s.val_x[:0],
        s.val_y[:0],
        s.test_x,
        s.test_y,
        s.num_classes,
    )


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (1797 x 1x8x8 in [0, 1], labels 0-9), read from the CSV scikit-learn
    ships, as ``sklearn.datasets.load_digits`` reads it, but without importing scikit-learn: that
    import costs each trial worker ~0.8 s of CPU at start-up. Falls back to ``load_digits``."""
    import importlib.util

    found = importlib.util.find_spec("sklearn")
    locations = (found.submodule_search_locations or []) if found else []
    path = next((Path(d) / "datasets" / "data" / "digits.csv.gz" for d in locations), None)
    if path is not None and path.is_file():
        data = np.loadtxt(path, delimiter=",")
        images, target = data[:, :-1].reshape(-1, 8, 8), data[:, -1]
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, target = bunch.images, bunch.target
    return images.astype(np.float32)[:, None] / 16.0, target.astype(np.int64)  # N,1,8,8


def synthetic(samples: int, shape: list[int], classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, learnable classification set of any sample shape: noisy copies of random class prototypes."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(classes, *shape)).astype(np.float32)
    y = rng.integers(0, classes, size=samples)
    x = prototypes[y] + rng.normal(scale=1.0, size=(samples, *shape)).astype(np.float32)
    return x.astype(np.float32), y.astype(np.int64)


def load_npz(path: str, regression: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The user's own arrays: ``X`` (N, F) or (N, C, H, W) and integer labels ``y`` (N,) in 0..K-1, or,
    for a regression, real-valued targets ``y`` (N,) or (N, K)."""
    try:
        with np.load(path) as archive:
            missing = [k for k in ("X", "y") if k not in archive.files]
            if missing:
                raise DataError(f"data.npz: {path} has no array {missing[0]!r} (has: {', '.join(archive.files)})")
            x, y = archive["X"], archive["y"]
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"data.npz: cannot read {path!r}: {exc}") from exc
    return check_arrays(x, y, regression, "data.npz")


def check_arrays(x: np.ndarray, y: np.ndarray, regression: bool, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as float32 inputs and class indices (int64) or regression targets (float32).

    Raises:
        DataError: shapes or targets that do not fit (the message starts with ``where``).
    """
    if regression:
        if x.ndim not in (2, 4) or y.ndim not in (1, 2) or len(x) != len(y):
            raise DataError(
                f"{where}: X must be (N, F) or (N, C, H, W) and y (N,) or (N, K), got X {x.shape}, y {y.shape}"
            )
        if not (np.issubdtype(y.dtype, np.number) and np.isfinite(y).all()):
            raise DataError(f"{where}: a regression needs finite numeric targets y, got dtype {y.dtype}")
        return x.astype(np.float32), y.astype(np.float32)
    if x.ndim not in (2, 4) or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{where}: X must be (N, F) or (N, C, H, W) and y (N,), got X {x.shape}, y {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise DataError(
            f"{where}: y must hold class indices 0..K-1, got dtype {y.dtype}, min {y.min()} "
            "(real-valued targets: set task: regression)"
        )
    return x.astype(np.float32), y.astype(np.int64)


def split(
    x: np.ndarray, y: np.ndarray, val_fraction: float, test_fraction: float, seed: int, train_samples: int | None = None
) -> Splits:
    """A seeded permutation cut into test | val | train; ``train_samples`` caps the train part."""
    n = len(x)
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    if train_samples:
        train = train[:train_samples]
    t = lambda a, idx: torch.from_numpy(np.ascontiguousarray(a[idx]))  # noqa: E731
    outputs = (y.shape[1] if y.ndim == 2 else 1) if np.issubdtype(y.dtype, np.floating) else int(y.max()) + 1
    return Splits(t(x, train), t(y, train), t(x, val), t(y, val), t(x, test), t(y, test), outputs)


def standardise(s: Splits) -> Splits:
    """Zero mean, unit variance per channel (images) or feature (tables), from the train split alone.
    float32 inputs are standardised in place (the splits a source just made: no second copy of the data)."""
    dims = (0, 2, 3) if s.train_x.dim() == 4 else (0,)
    mean = s.train_x.mean(dim=dims, keepdim=True)
    std = s.train_x.std(dim=dims, keepdim=True)
    std = torch.where(std < 1e-3, torch.ones_like(std), std)  # constant pixels (digits' borders) stay put

    def norm(t: torch.Tensor) -> torch.Tensor:
        if t.dtype == torch.float32:
            return t.sub_(mean).div_(std) if len(t) else t
        return ((t - mean) / std).float() if len(t) else t.float()

    return Splits(norm(s.train_x), s.train_y, norm(s.val_x), s.val_y, norm(s.test_x), s.test_y, s.num_classes)


def _torchvision(
    name: str, root: str, download: bool, verify_checksums: bool
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Train and test arrays of fashion_mnist / cifar10 from ``root`` (downloaded there if asked)."""
    try:
        with download_lock(root) if download else contextlib.nullcontext():
            return _read_torchvision(name, root, download, verify_checksums)
    except RuntimeError as exc:  # torchvision: "Dataset not found ..." / "... or corrupted"
        hint = "set data.download: true (needs internet)" if not download else "the download failed"
        raise DataError(
            f"data.root: {name} files not found or incomplete under {root!r} ({exc}); {hint}, "
            f"or point data.root at a folder that holds them"
        ) from exc


@contextlib.contextmanager
def download_lock(root: str) -> Iterator[None]:
    """One download into ``root`` at a time, across processes: the trials of a node (or of a pod
    sharing a volume) that start together would otherwise write the same archive at once."""
    import fcntl

    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, ".hpsearch-download.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _read_torchvision(
    name: str, root: str, download: bool, verify_checksums: bool
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Train and test arrays through torchvision's own dataset classes (its on-disk formats)."""
    if name == "fashion_mnist":
        from torchvision.datasets import FashionMNIST

        sets = [FashionMNIST(root, train=train, download=download) for train in (True, False)]
        # uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1]
        arrays = [
            (d.data.numpy()[:, None].astype(np.float32) / 255.0, d.targets.numpy().astype(np.int64)) for d in sets
        ]
    else:
        cls = _cifar10_class(verify=verify_checksums)
        sets = [cls(root, train=train, download=download) for train in (True, False)]
        # uint8 (N, 32, 32, 3) -> float (N, 3, 32, 32) in [0, 1]
        arrays = [
            (d.data.transpose(0, 3, 1, 2).astype(np.float32) / 255.0, np.asarray(d.targets, np.int64)) for d in sets
        ]
    return arrays[0], arrays[1]


def _cifar10_class(verify: bool) -> type:
    from torchvision.datasets import CIFAR10

    if verify:
        return CIFAR10

    class CIFAR10Unverified(CIFAR10):
        """torchvision's CIFAR10 reader without the MD5 check of the official files
        (for re-packed or sub-sampled copies in the same on-disk format)."""

        meta = {**CIFAR10.meta, "md5": None}  # torchvision checks only existence without an MD5

        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

    return CIFAR10Unverified
