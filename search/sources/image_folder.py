"""Images in class folders, torchvision's ``ImageFolder`` layout: ``root/<class>/<image>``, or
``root/train/<class>/...`` with ``root/val`` and ``root/test`` beside it (each optional: what is missing is
split off ``train``, seeded). Images are decoded when a batch needs them (never all in memory), resized
to ``size`` and standardised per channel with statistics of (up to 512) training images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from hpsearch.errors import Problem
from hpsearch.sources import HeldOutSource, register

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def scan(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """The classes (sub-folder names, sorted) under ``folder`` and its images with their class index.

    Raises:
        OSError: ``folder`` cannot be listed.
    """
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))
    samples = []
    for index, name in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(folder / name, followlinks=True)):
            samples += [(os.path.join(dirpath, f), index) for f in sorted(files) if f.lower().endswith(EXTENSIONS)]
    return classes, samples


def _pick(samples: list[tuple[str, int]], positions: Any) -> list[tuple[str, int]]:
    return [samples[int(i)] for i in positions]


@register
class ImageFolderSource(HeldOutSource):
    """Image files in one folder per class.

    Args:
        root: the folder (relative to the spec file).
        size: the height and width every image is resized to (one number: square).
        channels: 3 (RGB) or 1 (grey).
        test_fraction: share held out for the final test when there is no ``root/test``.
    """

    dataset: Literal["image_folder"] = "image_folder"
    root: str = Field(min_length=1)
    size: int | list[int] = 32
    channels: Literal[1, 3] = 3
    test_fraction: float = Field(0.2, ge=0, lt=1)

    path_fields: ClassVar[tuple[str, ...]] = ("root",)

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else (self.size[0], self.size[-1])

    def _folders(self) -> dict[str, Path]:
        root = Path(self.root)
        split = {name: root / name for name in ("train", "val", "test") if (root / name).is_dir()}
        return split if "train" in split else {"train": root}

    def problems(self) -> list[Problem]:
        root = Path(self.root)
        if isinstance(self.size, list) and (len(self.size) not in (1, 2) or min(self.size) < 1):
            return [Problem("size", f"must be a number or [height, width] of positive numbers, got {self.size}")]
        if isinstance(self.size, int) and self.size < 1:
            return [Problem("size", f"must be >= 1, got {self.size}")]
        if not root.is_dir():
            return [Problem("root", f"not a folder: {self.root!r}")]
        problems = []
        for name, folder in self._folders().items():
            try:
                classes, samples = scan(folder)
            except OSError as exc:
                problems.append(Problem("root", f"cannot read {str(folder)!r}: {exc.strerror or exc}"))
                continue
            if not samples:
                problems.append(
                    Problem("root", f"no images ({', '.join(EXTENSIONS)}) in class folders under {str(folder)!r}")
                )
            elif name == "train" and len(classes) < 2:
                problems.append(
                    Problem(
                        "root",
                        f"{str(folder)!r} has {len(classes)} class folder ({', '.join(classes)}): a classification needs at least 2",
                    )
                )
            elif name == "train":
                unreadable = [path for path, _ in samples[:1] if not os.access(path, os.R_OK)]
                if unreadable:
                    problems.append(Problem("root", f"cannot read {unreadable[0]!r}"))
        return problems

    def load(self, merge_val: bool = False) -> Any:
        import numpy as np

        from hpsearch.trainables.data import DataError
        from hpsearch.trainables.feeds import Streamed
        from hpsearch.trainables.images import ImageFiles, image_stats

        folders = self._folders()
        try:
            classes, samples = scan(folders["train"])
            extra = {name: scan(folder)[1] for name, folder in folders.items() if name != "train"}
        except OSError as exc:
            raise DataError(f"data.root: cannot read {self.root!r}: {exc}") from exc
        if not samples:
            raise DataError(f"data.root: no images under {self.root!r}")
        order = np.random.default_rng(self.seed).permutation(len(samples))
        n_test = 0 if "test" in extra else int(round(len(samples) * self.test_fraction))
        n_val = 0 if "val" in extra else int(round(len(samples) * self.val_fraction))
        test = extra.get("test", _pick(samples, order[:n_test]))
        val = extra.get("val", _pick(samples, order[n_test : n_test + n_val]))
        train = _pick(samples, order[n_test + n_val :])
        if self.train_samples:
            train = train[: self.train_samples]
        if merge_val:
            train, val = train + val, []
        mode = "RGB" if self.channels == 3 else "L"
        train_files = ImageFiles(train, self.hw, mode)
        mean, std = image_stats(train_files, self.seed)
        h, w = self.hw
        return Streamed(
            train_files,
            ImageFiles(val, self.hw, mode),
            ImageFiles(test, self.hw, mode),
            (self.channels, h, w),
            len(classes),
            False,
            mean=mean,
            std=std,
            sample_bytes=self.channels * h * w * 4,
        )
