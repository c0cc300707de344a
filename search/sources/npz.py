"""The user's own arrays in a NumPy ``.npz`` file: ``X`` (N, F) or (N, C, H, W) and integer labels ``y``
(N,) in 0..K-1, or real-valued targets (N,) or (N, K) for ``task: regression``. ``data: {npz: path}`` is
short for ``data: {dataset: npz, path: path}``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from hpsearch.errors import Problem
from hpsearch.sources import SplitSource, register

if TYPE_CHECKING:
    import numpy as np


@register
class NpzSource(SplitSource):
    """Arrays from a file.

    Args:
        path: the ``.npz`` file (relative to the spec file).
    """

    dataset: Literal["npz"] = "npz"
    path: str = Field(min_length=1)

    path_fields: ClassVar[tuple[str, ...]] = ("path",)
    shorthand: ClassVar[str | None] = "path"
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")
    node_shared: ClassVar[bool] = True

    def problems(self) -> list[Problem]:
        if not Path(self.path).is_file():
            return [Problem("npz", f"file not found: {self.path!r}")]
        return []

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        from hpsearch.trainables.data import load_npz

        return load_npz(self.path, self.regression)

    def task_problems(self, task: str) -> list[Problem]:
        if task != "classification" or not Path(self.path).is_file():
            return []
        import numpy as np

        try:
            with np.load(self.path) as archive:
                dtype = archive["y"].dtype if "y" in archive.files else None
        except (OSError, ValueError):
            return []  # the trial says why it cannot read it
        if dtype is not None and not np.issubdtype(dtype, np.integer):
            return [
                Problem(
                    "npz", f"y holds {dtype} values, not class indices: set task: regression for real-valued targets"
                )
            ]
        return []
