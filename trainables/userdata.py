"""A user's data, as a ``loader`` function returns it (:class:`hpsearch.trainables.Data`), and how the
built-in trainables read it: pairs of tensors become :class:`~hpsearch.trainables.data.Splits` (whole
tensors, as the built-in sources give), anything else a :class:`~hpsearch.trainables.feeds.Streamed` feed."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from hpsearch.trainables import Data
from hpsearch.trainables.data import DataError, Splits
from hpsearch.trainables.feeds import Streamed

_SPLITS = ("train", "val", "test")


def as_data(returned: Any, loader: str) -> Data:
    """What a loader returned, checked: a :class:`Data`, ``(train, val[, test])`` or a dict of those keys.

    Raises:
        DataError: it returned something else, or a split that is neither a dataset, a data loader nor a
            pair of tensors of equal length (the message names ``data.loader``).
    """
    where = f"data.loader {loader}"
    if isinstance(returned, Data):
        data = returned
    elif isinstance(returned, dict) and "train" in returned and set(returned) <= {*_SPLITS, "num_classes"}:
        data = Data(**returned)
    elif isinstance(returned, (tuple, list)) and len(returned) in (2, 3) and not _is_pair(returned):
        data = Data(*returned)
    else:
        raise DataError(
            f"{where}: must return hpsearch.trainables.Data, (train, val[, test]) or a dict with keys "
            f"train, val[, test]; got {type(returned).__name__}"
        )
    for name in _SPLITS:
        split = getattr(data, name)
        if split is None and name != "train":
            continue
        if isinstance(split, (Dataset, DataLoader)) or _is_pair(split):
            if _is_pair(split) and len(split[0]) != len(split[1]):
                raise DataError(f"{where}: {name} has {len(split[0])} inputs but {len(split[1])} targets")
            continue
        raise DataError(
            f"{where}: {name} must be a torch Dataset, a DataLoader or a pair of tensors (x, y); "
            f"got {type(split).__name__}"
        )
    return data


def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(t, torch.Tensor) for t in value)


def merge_validation(data: Data) -> Data:
    """Train on train + validation (``hpsearch retrain``); the test split stays as it is."""
    train, val = data.train, data.val
    if val is None:
        return data
    if _is_pair(train) and _is_pair(val):
        merged: Any = (torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]]))
    else:
        parts = [_dataset(train), _dataset(val)]
        merged = ConcatDataset(parts)
        if isinstance(train, DataLoader):
            merged = DataLoader(merged, batch_size=train.batch_size, shuffle=True, num_workers=train.num_workers)
    return Data(merged, None, data.test, data.num_classes)


def _dataset(split: Any) -> Any:
    if isinstance(split, DataLoader):
        return split.dataset
    if _is_pair(split):
        return torch.utils.data.TensorDataset(*split)
    return split


def for_builtin(data: Data, regression: bool, workers: int = 0) -> Splits | Streamed:
    """A loader's data as the built-in trainables read it (no standardising: the loader's data is used
    as it comes).

    Raises:
        DataError: the targets do not fit the task, or classes cannot be counted.
    """
    if all(_is_pair(s) or s is None for s in (data.train, data.val, data.test)):
        empty = lambda like: (like[0][:0], like[1][:0])  # noqa: E731
        train = data.train
        val = data.val if data.val is not None else empty(train)
        test = data.test if data.test is not None else empty(train)
        outputs = _outputs(train[1], regression, data.num_classes)
        return Splits(
            train[0].float(),
            _targets(train[1], regression),
            val[0].float(),
            _targets(val[1], regression),
            test[0].float(),
            _targets(test[1], regression),
            outputs,
        )
    x, y = _dataset(data.train)[0]
    y = torch.as_tensor(y)
    if regression:
        outputs = int(y.numel()) if y.dim() else 1
    else:
        classes = data.num_classes or len(getattr(_dataset(data.train), "classes", ()))
        if not classes:
            raise DataError(
                "data.loader: the built-in trainables need the number of classes of a dataset: return "
                "hpsearch.trainables.Data(train, val, test, num_classes=K)"
            )
        outputs = int(classes)
    x = torch.as_tensor(x)
    return Streamed(
        data.train,
        data.val,
        data.test,
        tuple(x.shape),
        outputs,
        regression,
        workers=workers,
        sample_bytes=x.numel() * 4,
    )


def _targets(y: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return y.float()
    if y.is_floating_point():
        raise DataError(
            "data.loader: a classification needs integer class indices as targets, got floats "
            "(set task: regression for real-valued targets)"
        )
    return y.long()


def _outputs(y: torch.Tensor, regression: bool, num_classes: int | None) -> int:
    if regression:
        return int(y.shape[1]) if y.dim() == 2 else 1
    return int(num_classes or (int(y.max()) + 1 if len(y) else 1))
