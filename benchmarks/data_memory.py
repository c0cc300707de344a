"""Data on disk: how much memory four concurrent trials hold, and how fast the streamed path reads.

    python -m benchmarks.data_memory                    # 2 GB of uint8 images, 4 trials at once
    python -m benchmarks.data_memory --gb 0.25 --samples-per-s-n 20000

1. **Memory.** A real search (``hpsearch.run.run_search``, local Ray, MLflow on SQLite) of four
   concurrent trials of the built-in MLP, one epoch each, on an ``npy`` data set of ``--gb`` GB of uint8
   images (N, 3, 32, 32). Every 0.25 s the proportional set size (PSS: a page shared by k processes
   counts 1/k in each) that holds data (mappings of the data files and of the node's data cache, and
   anonymous mappings over 96 MB, where big arrays live: not the libraries and heap every worker has) is
   summed over the Ray worker processes; the peak is reported against the size of the data on disk ("one
   copy"). The reference is the same four trials reading the same examples as a
   private in-memory copy each (``npz`` with ``HPSEARCH_DATA_CACHE=off``: what every source did before one copy per node), on a data set
   of ``--reference-gb`` (four private float32 copies of 2 GB of uint8 would not fit this machine).
2. **Streaming speed.** One epoch of the built-in MLP over a memory-mapped ``.npy`` data set through
   hpsearch's streamed path (whole batches gathered in one read) against a plain PyTorch loop over the
   same file and model (a ``Dataset`` returning one sample per ``__getitem__``, ``DataLoader`` with
   ``shuffle=True``, the same batch size, optimizer and standardisation), in this process, alternating
   after one warm-up epoch of each, best of ``--repeats``.

The reference data set is also searched as it is by default now (``npz``, written once to the node's data
cache as float32 and mapped by every trial process).

The last line: ``memory_ratio=X shared_npz_ratio=S private_npz_ratio=P streamed_vs_plain=Z`` (X: the
mapped data's memory per byte on disk; S, P: the npz data's memory per byte of one float32 copy; Z > 1:
hpsearch's streamed path is faster).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SHAPE = (3, 32, 32)


def write_images(folder: Path, gb: float, seed: int = 0) -> tuple[Path, Path]:
    """``x.npy`` (N, 3, 32, 32) uint8 of about ``gb`` GB, learnable (class-dependent brightness), written
    in chunks; ``y.npy`` (N,) int64 over 10 classes."""
    n = int(gb * 2**30 // np.prod(SHAPE))
    rng = np.random.default_rng(seed)
    x = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.uint8, shape=(n, *SHAPE))
    y = rng.integers(0, 10, size=n)
    for start in range(0, n, 65536):
        part = y[start : start + 65536]
        noise = rng.integers(0, 120, size=(len(part), *SHAPE), dtype=np.uint8)
        x[start : start + len(part)] = noise + (part * 12).astype(np.uint8)[:, None, None, None]
    x.flush()
    del x
    np.save(folder / "y.npy", y)
    return folder / "x.npy", folder / "y.npy"


BIG = 96 * 2**20  # anonymous mappings this large hold arrays (not glibc's 64 MB arenas, which every worker has)


def data_pss(pid: int, folder: str) -> int:
    """The PSS of process ``pid`` that holds data: mappings of files under ``folder`` (the data set, the
    node's data cache) and anonymous mappings of at least :data:`BIG` bytes (arrays of its own); not the
    libraries, interpreter and heap every worker has anyway."""
    total, counted = 0, False
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            head = line.split(None, 5)
            if (
                "-" in head[0] and len(head) >= 5 and ":" in head[3]
            ):  # a mapping's header: range perms offset dev inode [path]
                lo, hi = (int(v, 16) for v in head[0].split("-"))
                path = head[5].strip() if len(head) > 5 else ""
                counted = path.startswith(folder) or (not path and hi - lo >= BIG)
            elif counted and line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
    return total


def worker_pss(folder: str) -> int:
    """The summed data PSS (:func:`data_pss`) of this machine's Ray worker processes (``ray::...``)."""
    import psutil

    total = 0
    for p in psutil.process_iter(["name"]):
        try:
            if (p.info["name"] or "").startswith("ray::"):
                total += data_pss(p.pid, folder)
        except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError, ProcessLookupError):
            continue
    return total


def search_peak(data: dict[str, Any], folder: Path, name: str, cache: str) -> float:
    """Peak summed data PSS of the workers during a 4-trial search of ``data``, run in a fresh Python
    process with ``HPSEARCH_DATA_CACHE=cache`` (its own Ray, whose workers inherit that setting)."""
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(1)
    try:
        return float(pool.apply(_search_peak, (data, folder, name, cache)))
    finally:
        pool.close()  # the child ends by itself (terminate() would make Ray print a SIGTERM report)
        pool.join()


def _search_peak(data: dict[str, Any], folder: Path, name: str, cache: str) -> float:
    os.environ["HPSEARCH_DATA_CACHE"] = cache
    from hpsearch.run import run_search
    from hpsearch.spec import parse_spec

    spec = parse_spec(
        {
            "name": name,
            "data": data,
            "space": {
                "units": 16,
                "hidden_layers": 1,
                "batch_size": 1024,
                "optimizer": {"choice": {"adam": {"lr": 0.001}}},
            },
            "search": {"num_trials": 4, "max_concurrent": 4, "scheduler": {"max_epochs": 1, "grace_period": 1}},
            "resources": {"cpu": 0.5},
        }
    )
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], worker_pss(str(folder)))
            stop.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run_search(spec, tracking_uri=f"sqlite:///{folder / 'mlruns.db'}", storage=folder / "runs", quiet=True)
    finally:
        stop.set()
        sampler.join()
    assert result.counts["completed"] == 4, [r.error for r in result.records]
    return float(peak[0])


def plain_epoch(x_path: Path, y_path: Path, batch: int, seed: int) -> float:
    """Samples per second of one epoch of a plain PyTorch loop over the memory-mapped file."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    from hpsearch.trainables.feeds import channel_stats

    x, y = np.load(x_path, mmap_mode="r"), np.load(y_path, mmap_mode="r")
    mean, std = channel_stats(x, np.arange(len(x)))

    class Rows(Dataset):
        def __len__(self) -> int:
            return len(x)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.from_numpy(np.array(x[i])), int(y[i])

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(int(np.prod(SHAPE)), 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    started = time.perf_counter()
    for xb, yb in DataLoader(Rows(), batch_size=batch, shuffle=True):
        loss = torch.nn.functional.cross_entropy(model((xb.float() - mean) / std), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return len(x) / (time.perf_counter() - started)


def streamed_epoch(x_path: Path, y_path: Path, batch: int, seed: int) -> float:
    """Samples per second of one epoch of the built-in MLP through hpsearch's streamed path."""
    from hpsearch.sources import REGISTRY
    from hpsearch.trainables.loop import train_model

    source = REGISTRY.validate(
        {"dataset": "npy", "x": str(x_path), "y": str(y_path), "val_fraction": 0.01, "test_fraction": 0.0}
    )
    feed = source.load()
    config = {"units": 16, "hidden_layers": 1, "batch_size": batch, "optimizer": "adam", "optimizer.lr": 1e-3}
    started = time.perf_counter()
    train_model("mlp", config, feed, 1, lambda *a: None, seed)
    return len(feed.train) / (time.perf_counter() - started)  # the epoch's validation pass is included


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=2.0, help="size of the memory benchmark's data set")
    parser.add_argument("--reference-gb", type=float, default=0.25, help="size of the private-copy reference's")
    parser.add_argument("--speed-gb", type=float, default=0.25, help="size of the streaming-speed data set")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        folder = Path(tmp)
        (folder / "big").mkdir()
        x_path, y_path = write_images(folder / "big", args.gb)
        one_copy = x_path.stat().st_size + y_path.stat().st_size
        mapped = search_peak(
            {"dataset": "npy", "x": str(x_path), "y": str(y_path)}, folder, "bench-mapped", str(folder / "cache")
        )
        gib = lambda n: f"{n / 2**30:.2f} GiB"  # noqa: E731
        print(f"mapped (npy, {gib(one_copy)} on disk): the data's peak PSS {gib(mapped)} = {mapped / one_copy:.2f}x")

        (folder / "ref").mkdir()
        rx, ry = write_images(folder / "ref", args.reference_gb, seed=1)
        np.savez(folder / "ref" / "data.npz", X=np.load(rx), y=np.load(ry))
        ref_copy = rx.stat().st_size + ry.stat().st_size
        float_copy = 4 * rx.stat().st_size  # the splits as float32
        shared = search_peak({"npz": str(folder / "ref" / "data.npz")}, folder, "bench-shared", str(folder / "cache"))
        print(
            f"node-shared (npz, {gib(ref_copy)} on disk, {gib(float_copy)} as float32 in the node's cache): "
            f"the data's peak PSS {gib(shared)} = {shared / float_copy:.2f}x the float32 copy"
        )
        # what every source did before: a copy per trial process
        private = search_peak({"npz": str(folder / "ref" / "data.npz")}, folder, "bench-private", "off")
        print(
            f"private copies (npz, HPSEARCH_DATA_CACHE=off): the data's peak PSS {gib(private)} = "
            f"{private / float_copy:.2f}x the float32 copy"
        )

        (folder / "speed").mkdir()
        sx, sy = write_images(folder / "speed", args.speed_gb, seed=2)
        streamed_epoch(sx, sy, 256, 99)  # warm-up: torch's first steps, the file in the page cache
        plain_epoch(sx, sy, 256, 99)
        streamed, plain = [], []
        for repeat in range(args.repeats):
            streamed.append(streamed_epoch(sx, sy, 256, repeat))
            plain.append(plain_epoch(sx, sy, 256, repeat))
        print(
            f"one epoch, batch 256: hpsearch streamed {max(streamed):,.0f} samples/s, plain DataLoader loop {max(plain):,.0f} samples/s"
        )
        print(
            f"memory_ratio={mapped / one_copy:.2f} shared_npz_ratio={shared / float_copy:.2f} "
            f"private_npz_ratio={private / float_copy:.2f} streamed_vs_plain={max(streamed) / max(plain):.2f}"
        )


if __name__ == "__main__":
    main()
