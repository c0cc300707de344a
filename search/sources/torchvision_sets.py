"""Fashion-MNIST and CIFAR-10 through torchvision's own loaders and on-disk formats: downloaded into
``root`` where there is internet (``download: true``), else read from files already there. Their test
split is the data set's official test set; train and validation are a seeded split of its training set."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, ClassVar, Literal

from hpsearch.errors import Problem
from hpsearch.sources import HeldOutSource, register

if TYPE_CHECKING:
    from hpsearch.trainables.data import Splits

DEFAULT_ROOT = "~/.cache/hpsearch/data"


class TorchvisionSource(HeldOutSource):
    """A torchvision data set.

    Args:
        root: where torchvision finds (or downloads) the files; default ``~/.cache/hpsearch/data``.
        download: download them (needs internet; one download per folder at a time).
    """

    root: str | None = None
    download: bool = False

    path_fields: ClassVar[tuple[str, ...]] = ("root",)
    files: ClassVar[list[str]] = []  # the files torchvision's class reads, relative to root

    @property
    def folder(self) -> str:
        return os.path.expanduser(self.root or DEFAULT_ROOT)

    def missing_files(self) -> list[str]:
        """The files that are not under ``root`` (empty when all are there)."""
        return [f for f in self.files if not os.path.isfile(os.path.join(self.folder, f))]

    def problems(self) -> list[Problem]:
        missing = [] if self.download else self.missing_files()
        if not missing:
            return []
        root = self.root or f"{DEFAULT_ROOT} (the default)"
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        return [
            Problem(
                "root",
                f"{self.dataset} files not found under {root!r} (missing {missing[0]}{more}); set data.download: "
                "true where there is internet, or point data.root at a folder holding them",
            )
        ]

    def load(self, merge_val: bool = False) -> Splits:
        from hpsearch.trainables.data import official_test_splits

        verify = getattr(self, "verify_checksums", True)
        return official_test_splits(
            self.dataset,
            self.folder,
            self.download,
            verify,
            self.val_fraction,
            self.seed,
            self.train_samples,
            merge_val,
        )


@register
class FashionMnistSource(TorchvisionSource):
    """Fashion-MNIST: 70 000 28x28 grey images of clothes, 10 classes (60 000 train, 10 000 test)."""

    dataset: Literal["fashion_mnist"] = "fashion_mnist"
    node_shared: ClassVar[bool] = True
    files: ClassVar[list[str]] = [
        f"FashionMNIST/raw/{name}"
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ]


@register
class Cifar10Source(TorchvisionSource):
    """CIFAR-10: 60 000 32x32 colour images, 10 classes (50 000 train, 10 000 test).

    Args:
        verify_checksums: check the official files' MD5 (off for re-packed copies in the same format).
    """

    dataset: Literal["cifar10"] = "cifar10"
    node_shared: ClassVar[bool] = True
    verify_checksums: bool = True
    files: ClassVar[list[str]] = [
        f"cifar-10-batches-py/{name}"
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    ]
