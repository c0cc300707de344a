"""Data sources: where a search's examples come from (the spec's ``data`` section). One module per
source, each a spec model registered here (:class:`hpsearch.registry.Registry`) under its ``dataset``
name: ``digits``, ``fashion_mnist``, ``cifar10``, ``synthetic``, ``npz``, ``npy`` (memory-mapped arrays),
``image_folder`` and ``loader`` (a user's own function).

A source is a :class:`DataSource` subclass: its fields are its ``data`` keys (validation names only
those), :meth:`DataSource.problems` checks what can be checked before anything starts (files on
disk), and :meth:`DataSource.load` returns the seeded, disjoint train / validation / test splits. A
source with no official test split subclasses :class:`SplitSource` and only says how to read its
arrays. The source object itself travels to each trial's worker, which calls ``load`` there (once per
worker process), so a source registered from outside the package works on every node that can import
its module.

Nothing here imports torch; :meth:`DataSource.load` does.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PrivateAttr

from hpsearch.errors import Problem
from hpsearch.registry import Registry, Strict

if TYPE_CHECKING:
    import numpy as np

    from hpsearch.trainables.data import Splits


class DataSource(Strict):
    """What every source is.

    Args:
        dataset: the source's registered name.
    """

    dataset: str
    _task: str = PrivateAttr("classification")  # the spec's task (JobSpec sets it)

    path_fields: ClassVar[tuple[str, ...]] = ()
    """Fields holding paths: relative ones are taken relative to the spec file."""
    shorthand: ClassVar[str | None] = None
    """A field the spec may give as ``{<dataset>: value}`` (``{npz: path}`` for ``{dataset: npz, path: path}``)."""
    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    """The spec ``task``s this source's targets can serve."""
    node_shared: ClassVar[bool] = False
    """Its splits are written once per node as memory-mapped files that every trial process of the node
    maps (one copy in memory per node, not one per process): worth it for data sets of some size."""

    @property
    def regression(self) -> bool:
        return self._task == "regression"

    def with_task(self, task: str) -> DataSource:
        """This source, loading its targets for ``task``."""
        copy = self.model_copy()
        copy._task = task
        return copy

    def load(self, merge_val: bool = False) -> Any:
        """The train / validation / test splits (on the CPU; ``Splits.to(device)`` moves them), or, for a
        user's ``loader``, what it returned (:class:`hpsearch.trainables.Data`).

        Args:
            merge_val: train on train + validation (the final retrain of chosen configs): the validation
                split is then empty and the test split the same as in the search.

        Raises:
            hpsearch.trainables.data.DataError: the files are missing or not in the expected format (the
                message names the field).
        """
        raise NotImplementedError(f"{type(self).__qualname__} does not load data")

    def task_problems(self, task: str) -> list[Problem]:
        """Why this source's targets do not fit the spec's ``task`` (paths relative to the section)."""
        if task not in self.tasks:
            return [
                Problem(
                    "dataset", f"{self.dataset} is a {' / '.join(self.tasks)} data set: it cannot serve task: {task}"
                )
            ]
        return []

    def cache_key(self) -> str:
        """Equal for sources that load the same splits: a worker process loads them once (a file's size and
        modification time are part of it: a file written again is read again)."""
        files = []
        for name in self.path_fields:
            path = getattr(self, name, None)
            with contextlib.suppress(OSError, TypeError):
                stat = os.stat(path)  # type: ignore[arg-type]
                files.append(f"{stat.st_size}:{stat.st_mtime_ns}")
        return (
            f"{type(self).__module__}.{type(self).__qualname__}:{self.model_dump_json()}:{self._task}:{','.join(files)}"
        )


class HeldOutSource(DataSource):
    """A source whose examples hpsearch splits itself into train and validation parts.

    Args:
        val_fraction: share of the training examples held out to rank trials on.
        seed: the seed of the split (the same examples in the same splits for every trial).
        train_samples: at most this many training examples (quick searches); none = all.
    """

    val_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 0
    train_samples: int | None = Field(None, ge=1)


class SplitSource(HeldOutSource):
    """A source without an official test split: its examples are cut into seeded test | val | train parts.

    Args:
        test_fraction: share of the examples held out for the final test (``hpsearch retrain``); the
            search never looks at it.
    """

    test_fraction: float = Field(0.2, ge=0, lt=1)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All examples ``x`` (N, F) or (N, C, H, W) float32 and their targets ``y``: class indices (N,) int64,
        or, for a regression, float32 values (N,) or (N, K)."""
        raise NotImplementedError(f"{type(self).__qualname__} reads no arrays")

    def load(self, merge_val: bool = False) -> Splits:
        from hpsearch.trainables.data import merge_validation, split, standardise

        x, y = self.arrays()
        splits = split(x, y, self.val_fraction, self.test_fraction, self.seed, self.train_samples)
        del x, y  # the splits are copies: the whole array goes before they are standardised
        return standardise(merge_validation(splits) if merge_val else splits)


REGISTRY: Registry[DataSource] = Registry("data source", DataSource, key="dataset")
register = REGISTRY.register


def load_data(data: dict[str, Any], merge_val: bool = False) -> Any:
    """The splits of a ``data`` section given as a mapping (``{dataset: digits, seed: 1}``)."""
    source: DataSource = REGISTRY.validate(dict(data))
    return source.load(merge_val=merge_val)


# The built-ins register themselves, in the order the spec's errors list them.
# isort: off
from hpsearch.sources import digits  # noqa: E402
from hpsearch.sources import torchvision_sets  # noqa: E402
from hpsearch.sources import synthetic  # noqa: E402
from hpsearch.sources import npz  # noqa: E402
from hpsearch.sources import npy  # noqa: E402
from hpsearch.sources import image_folder  # noqa: E402
from hpsearch.sources import loader  # noqa: E402

# isort: on

__all__ = [
    "REGISTRY",
    "DataSource",
    "HeldOutSource",
    "SplitSource",
    "digits",
    "image_folder",
    "loader",
    "npy",
    "load_data",
    "npz",
    "register",
    "synthetic",
    "torchvision_sets",
]
