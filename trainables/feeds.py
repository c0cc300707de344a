"""How the built-in loop gets its batches.

- :class:`Resident`: the splits are whole tensors (on the trial's device, or in host memory); a batch is
  an index slice, augmented where the data is.
- :class:`Streamed`: the splits are datasets read batch by batch through a ``DataLoader`` (data bigger than
  memory, images decoded from files, a user's ``Dataset``): ``workers`` loader processes, pinned memory and
  prefetching when the trial trains on a GPU, so reading overlaps compute. The order of an epoch depends
  only on the seed and the epoch (:class:`EpochSampler`), so a restored trial reads exactly the batches
  an uninterrupted one would have; augmentation runs on the device with a generator seeded the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from hpsearch.trainables.augment import augment


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed of its own for every (seed, epoch)."""
    return (seed * 1_000_003 + epoch * 7_919) % (2**62)


class EpochSampler(Sampler[int]):
    """A permutation of ``n`` indices that depends only on ``seed`` and the epoch set with :meth:`set_epoch`."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


class RankBatches(Sampler[list[int]]):
    """One rank's part of every batch of an epoch's permutation (:class:`EpochSampler`'s): the ``world``
    ranks of a group read disjoint parts of the same global batches, step by step."""

    def __init__(self, n: int, seed: int, batch_size: int, rank: int, world: int):
        self.order, self.batch_size, self.rank, self.world = EpochSampler(n, seed), batch_size, rank, world

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        order = list(self.order)
        for start in range(0, len(order), self.batch_size):
            part = order[start : start + self.batch_size][self.rank :: self.world]
            if len(order[start : start + self.batch_size]) >= 2 * self.world:  # every rank gets 2 or more
                yield part

    def __len__(self) -> int:
        n, bs = self.order.n, self.batch_size
        return n // bs + (1 if n % bs >= 2 * self.world else 0)


def _loader_context() -> Any:
    """The fork server loader processes start from; it imports torch once, so each starts in milliseconds."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "numpy", "hpsearch.trainables.feeds"])
    return context


def _batch(samples: Any) -> Any:
    """``collate_fn`` of a dataset that reads whole batches (``__getitems__``): the batch as it is."""
    return samples


@dataclass
class Streamed:
    """Datasets read through ``DataLoader``s; ``mean``/``std`` (per channel or feature) standardise each
    batch on the device. ``val``/``test`` may be ``None``; a split may also be a user's ``DataLoader``,
    used as it is (its own order: such a trial resumes at the right epoch, not with the same batches)."""

    train: Any
    val: Any
    test: Any
    input_shape: tuple[int, ...]
    outputs: int
    regression: bool
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    workers: int = 0
    sample_bytes: int = 0

    def has_val(self) -> bool:
        return self.val is not None and _length(self.val) > 0

    def train_size(self) -> int:
        return _length(self.train)

    def loader(
        self,
        split: Any,
        batch_size: int,
        device: torch.device,
        sampler: Sampler[int] | None,
        batch_sampler: Sampler[list[int]] | None = None,
    ) -> Any:
        if isinstance(split, DataLoader):
            return split
        batched = callable(getattr(split, "__getitems__", None))
        kwargs: dict[str, Any] = {}
        if self.workers > 0:
            # Loader processes start from a fork server, not by forking this (multi-threaded: Ray's, torch's)
            # process: a forked copy can inherit a lock some thread held and never finish.
            kwargs.update(
                num_workers=self.workers, persistent_workers=True, prefetch_factor=4,
                multiprocessing_context=_loader_context(),
            )  # fmt: skip
        batching: dict[str, Any] = (
            {"batch_sampler": batch_sampler}
            if batch_sampler is not None
            else {"batch_size": batch_size, "sampler": sampler, "drop_last": False}
        )
        return DataLoader(
            split,
            **batching,
            collate_fn=_batch if batched else None,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(0),  # worker seeds; never the global RNG's draws
            **kwargs,
        )

    def read(self, loader: Any, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``loader``'s batches on ``device``, as float inputs (standardised) and the task's targets."""
        mean = std = None
        if self.mean is not None and self.std is not None:
            mean, std = self.mean.to(device), self.std.to(device)  # once per pass, not per batch
        for x, y in loader:
            x = x.to(device, non_blocking=True).float()
            y = y.to(device, non_blocking=True)
            if mean is not None and std is not None:
                x = (x - mean) / std
            yield x, (y.float() if self.regression else y.long())


class TrainBatches:
    """The training batches of a :class:`Streamed` feed, epoch after epoch, from one ``DataLoader`` (its
    worker processes live as long as the trial)."""

    def __init__(
        self,
        feed: Streamed,
        batch_size: int,
        seed: int,
        device: torch.device,
        crop: int,
        flip: bool,
        rank: int = 0,
        world: int = 1,
    ):
        self.feed, self.seed, self.device, self.crop, self.flip = feed, seed, device, crop, flip
        self.rank = rank
        self.sampler: EpochSampler | RankBatches | None = None
        if isinstance(feed.train, DataLoader):
            if world > 1:
                raise ValueError(
                    "a DataLoader given as the train split reads in its own order, so the workers of a group "
                    "cannot share its batches: give the Dataset instead"
                )
            self.loader = feed.train
        elif world > 1:  # this rank reads its own part of each batch
            self.sampler = RankBatches(feed.train_size(), seed, batch_size, rank, world)
            self.loader = feed.loader(feed.train, batch_size, device, None, self.sampler)
        else:
            self.sampler = EpochSampler(feed.train_size(), seed)
            self.loader = feed.loader(feed.train, batch_size, device, self.sampler)

    def steps(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        generator = None
        if self.crop or self.flip:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed + 1 + self.rank, epoch))
        for x, y in self.feed.read(self.loader, self.device):
            if generator is not None:
                x = augment(x, self.crop, self.flip, generator)
            if len(y) == 1 and x.dim() > 1:
                continue  # BatchNorm cannot normalise a batch of one sample
            yield x, y


def eval_batches(
    feed: Streamed, split: Any, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A split of a :class:`Streamed` feed in order, standardised, on ``device`` (a loader of its own: for a
    split read every epoch, keep ``feed.loader(...)`` and ``feed.read`` it, so its loader processes stay)."""
    return feed.read(feed.loader(split, batch_size, device, None), device)


def tensor_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Whole tensors in order, batch by batch, copied to ``device`` when they live elsewhere."""
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        if xb.device != device:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        yield xb, yb


def _length(split: Any) -> int:
    if isinstance(split, DataLoader):
        return len(split.dataset)  # type: ignore[arg-type]
    return len(split)


class ArrayDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Rows ``index`` of two arrays (memory-mapped ``.npy`` files, say), read a whole batch at a time:
    a batch gathers its rows in one sorted read, not one Python call per sample."""

    def __init__(self, x: Any, y: Any, index: Sequence[int] | Any):
        import numpy as np

        self.x, self.y, self.index = x, y, np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict[str, Any]:
        """Memory-mapped arrays travel to loader processes as their files (mapped again there), not as
        their contents."""
        import numpy as np

        state = dict(self.__dict__)
        for name in ("x", "y"):
            array = state[name]
            if isinstance(array, np.memmap) and array.filename and array.base is not None:
                state[name] = ("memmap", str(array.filename))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import numpy as np

        for name in ("x", "y"):
            if isinstance(state[name], tuple) and state[name][0] == "memmap":
                state[name] = np.load(state[name][1], mmap_mode="r")
        self.__dict__.update(state)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([i])
        return x[0], y[0]

    def __getitems__(self, positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        import numpy as np

        rows = self.index[np.asarray(positions, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        x = np.asarray(self.x[sorted_rows])[back]  # one forward pass over the file, then the batch's order
        y = np.asarray(self.y[sorted_rows])[back]
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


def channel_stats(x: Any, rows: Any, chunk_bytes: int = 8 * 2**20) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation per channel (images, shaped (1, C, 1, 1)) or feature (shaped (1, F)) of
    rows ``rows`` of ``x``, read in chunks of about ``chunk_bytes`` as float32 (``x`` may be bigger than
    memory; the sums are kept in float64)."""
    import numpy as np

    rows = np.sort(np.asarray(rows, dtype=np.int64))
    image = len(x.shape) == 4
    dims: tuple[int, ...] = (0, 2, 3) if image else (0,)
    per_row = int(np.prod(x.shape[1:])) * 4
    step = max(1, chunk_bytes // per_row)
    total = total_sq = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, len(rows), step):
        block = np.asarray(x[rows[start : start + step]], dtype=np.float32)
        total = total + block.sum(axis=dims, dtype=np.float64)
        total_sq = total_sq + np.square(block).sum(axis=dims, dtype=np.float64)
    count = max(len(rows) * (int(np.prod(x.shape[2:])) if image else 1), 1)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std < 1e-3, 1.0, std)
    shape = (1, -1, 1, 1) if image else (1, -1)
    return (
        torch.as_tensor(mean, dtype=torch.float32).reshape(shape),
        torch.as_tensor(std, dtype=torch.float32).reshape(shape),
    )


def streamed_from(splits: Any) -> Streamed:
    """Whole tensors in host memory (a data set too big for a trial's GPU share) read as a stream: each
    batch gathered in this process (loader processes would each get a copy of the arrays), pinned, and
    copied while the GPU computes."""
    pairs = [(getattr(splits, f"{name}_x"), getattr(splits, f"{name}_y")) for name in ("train", "val", "test")]
    sets = [ArrayDataset(x.numpy(), y.numpy(), range(len(y))) for x, y in pairs]
    return Streamed(
        sets[0], sets[1], sets[2], tuple(splits.input_shape), splits.num_classes, splits.regression,
        workers=0, sample_bytes=splits.train_x[0].numel() * splits.train_x.element_size(),
    )  # fmt: skip
