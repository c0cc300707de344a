"""One host copy of a data set per node: the first trial process of a node to load a source writes its
splits as ``.npy`` files into the node's data cache, and every trial process of the node maps them
(copy-on-write), so the operating system's page cache holds the data once, however many trial
processes read it. The cache is ``$HPSEARCH_DATA_CACHE``, else ``hpsearch-data-cache`` in the system's
temporary folder; it may be deleted whenever no search runs. ``HPSEARCH_DATA_CACHE=off``: no cache, each
trial process loads its own copy."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from hpsearch.trainables.data import Splits

ENV = "HPSEARCH_DATA_CACHE"
_TENSORS = [f.name for f in fields(Splits) if f.name != "num_classes"]


def enabled() -> bool:
    return os.environ.get(ENV, "").lower() != "off"


def cache_root() -> Path:
    return Path(os.environ.get(ENV) or Path(tempfile.gettempdir()) / "hpsearch-data-cache")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def shared_splits(key: str, load: Callable[[], Splits]) -> Splits:
    """The splits ``load`` returns, from the node's cache: written there once (under a lock, so the trial
    processes that start together load it once between them), then memory-mapped."""
    folder = cache_root() / hashlib.sha256(key.encode()).hexdigest()[:24]
    done = folder / "splits.json"
    if not done.is_file():
        with _locked(folder.with_suffix(".lock")):
            if not done.is_file():
                _write(folder, load())
    meta = json.loads(done.read_text())
    tensors = {name: torch.from_numpy(_map(folder / f"{name}.npy")) for name in _TENSORS}
    return Splits(num_classes=int(meta["num_classes"]), **tensors)


def _map(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="c")
    except ValueError:  # an empty array (no validation split in a retrain): nothing to map
        return np.load(path)


def _write(folder: Path, splits: Splits) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        for name in _TENSORS:
            np.save(staging / f"{name}.npy", getattr(splits, name).cpu().numpy())
        (staging / "splits.json").write_text(json.dumps({"num_classes": splits.num_classes}))
        if folder.exists():
            shutil.rmtree(folder)  # a copy left half-written by a process that died
        os.rename(staging, folder)  # whole, or not at all
    finally:
        shutil.rmtree(staging, ignore_errors=True)
