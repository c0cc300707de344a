"""Arrays bigger than memory: ``data: {dataset: npy, x: X.npy, y: y.npy}`` maps the two ``.npy`` files
(``numpy.load(mmap_mode="r")``) instead of reading them. Every trial process of a node maps the same
files, so the node holds one copy (the operating system's page cache), and batches are read from it as
they are needed (:class:`hpsearch.trainables.feeds.Streamed`). Inputs are standardised per channel or
feature with statistics of the train split, computed in chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from hpsearch.errors import Problem
from hpsearch.sources import HeldOutSource, register


@register
class NpySource(HeldOutSource):
    """Two memory-mapped ``.npy`` files.

    Args:
        x: inputs, (N, F) or (N, C, H, W), any numeric dtype (uint8 images stay uint8 on disk).
        y: targets, (N,) class indices, or (N,) / (N, K) real values for ``task: regression``.
        test_fraction: share of the examples held out for the final test (``hpsearch retrain``).
    """

    dataset: Literal["npy"] = "npy"
    x: str = Field(min_length=1)
    y: str = Field(min_length=1)
    test_fraction: float = Field(0.2, ge=0, lt=1)

    path_fields: ClassVar[tuple[str, ...]] = ("x", "y")
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")

    def _open(self) -> tuple[Any, Any]:
        import numpy as np

        return np.load(self.x, mmap_mode="r"), np.load(self.y, mmap_mode="r")

    def problems(self) -> list[Problem]:
        missing = [
            Problem(f, f"file not found: {getattr(self, f)!r}")
            for f in ("x", "y")
            if not Path(getattr(self, f)).is_file()
        ]
        if missing:
            return missing
        try:
            x, y = self._open()
        except (OSError, ValueError) as exc:
            return [Problem("x", f"cannot read {self.x!r} / {self.y!r} as .npy arrays: {exc}")]
        if x.ndim not in (2, 4) or y.ndim not in (1, 2) or len(x) != len(y):
            return [
                Problem(
                    "x",
                    f"x must be (N, F) or (N, C, H, W) and y (N,) or (N, K) of the same N, got x {x.shape}, y {y.shape}",
                )
            ]
        if len(x) < 3:
            return [Problem("x", f"{self.x!r} holds {len(x)} examples: too few to split")]
        return []

    def task_problems(self, task: str) -> list[Problem]:
        import numpy as np

        if task != "classification" or not Path(self.y).is_file():
            return []
        try:
            y = np.load(self.y, mmap_mode="r")
        except (OSError, ValueError):
            return []
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
            return [
                Problem(
                    "y",
                    f"holds {y.dtype} {y.shape}, not class indices (N,): set task: regression for real-valued targets",
                )
            ]
        return []

    def load(self, merge_val: bool = False) -> Any:
        import numpy as np

        from hpsearch.trainables.data import DataError
        from hpsearch.trainables.feeds import ArrayDataset, Streamed, channel_stats

        try:
            x, y = self._open()
        except (OSError, ValueError) as exc:
            raise DataError(f"data.x: cannot map {self.x!r} / {self.y!r}: {exc}") from exc
        n = len(x)
        order = np.random.default_rng(self.seed).permutation(n)
        n_test, n_val = int(round(n * self.test_fraction)), int(round(n * self.val_fraction))
        test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
        if self.train_samples:
            train = train[: self.train_samples]
        if merge_val:
            train, val = np.concatenate([train, val]), val[:0]
        if self.regression:
            outputs = y.shape[1] if y.ndim == 2 else 1
        else:
            if not np.issubdtype(y.dtype, np.integer):
                raise DataError(f"data.y: {self.y!r} holds {y.dtype}, not class indices (set task: regression)")
            outputs = int(np.max(y)) + 1  # one pass over the targets (small next to x)
        mean, std = channel_stats(x, train)
        return Streamed(
            ArrayDataset(x, y, train),
            ArrayDataset(x, y, val),
            ArrayDataset(x, y, test),
            tuple(x.shape[1:]),
            outputs,
            self.regression,
            mean=mean,
            std=std,
            sample_bytes=int(np.prod(x.shape[1:])) * 4,
        )
