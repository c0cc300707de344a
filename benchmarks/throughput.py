"""Trainable throughput: training samples per second of hpsearch's tensor-batched loop against a
reference torchvision-style loop (a per-sample ``Dataset`` through a ``DataLoader``) on the same data,
model, optimizer and batch size.

    python -m benchmarks.throughput [--repeats 3] [--mlp-samples 60000] [--cnn-samples 50000]

MLP: a Fashion-MNIST-shaped synthetic set (N x 1x28x28), 2 x 256 ReLU, Adam, batch 64.
CNN: a CIFAR-10-shaped synthetic set (N x 3x32x32), the built-in CNN, Adam, batch 64.
One training epoch each (the time of evaluation excluded), on this machine's device and threads.
The last line is ``mlp_speedup=X cnn_speedup=Y`` (``--cnn-samples 0`` skips the CNN, and so on).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from hpsearch.trainables.config import TrainConfig
from hpsearch.trainables.data import Splits, synthetic
from hpsearch.trainables.loop import train_model
from hpsearch.trainables.models import BUILDERS
from hpsearch.trainables.optim import build_optimizer

CONFIGS = {
    "mlp": {
        "hidden_layers": 2,
        "units": 256,
        "activation": "relu",
        "optimizer": "adam",
        "optimizer.lr": 1e-3,
        "batch_size": 64,
    },
    "cnn": {"optimizer": "adam", "optimizer.lr": 1e-3, "batch_size": 64},
}
SHAPES = {"mlp": [1, 28, 28], "cnn": [3, 32, 32]}


def make_data(kind: str, samples: int, device: str) -> Splits:
    x, y = synthetic(samples + 2, SHAPES[kind], 10, seed=0)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    # two validation samples: the loop's per-epoch evaluation is not what is measured here
    return Splits(t(x[:samples]), t(y[:samples]), t(x[samples:]), t(y[samples:]), t(x[:0]), t(y[:0]), 10).to(device)


def ours(kind: str, data: Splits) -> float:
    """hpsearch's loop: the data set is one tensor on the device, batches are index slices of it."""
    started = time.perf_counter()
    marks: list[float] = []
    train_model(kind, CONFIGS[kind], data, 1, lambda metrics, state=None: marks.append(time.perf_counter()))
    # the report comes after the epoch's validation pass over two samples: negligible
    return len(data.train_y) / (marks[0] - started)


class PerSample(Dataset):
    """The torchvision pattern: one (image, label) per ``__getitem__``, collated by the DataLoader."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x.cpu(), y.cpu()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


def reference(kind: str, data: Splits) -> float:
    device = data.train_x.device
    cfg = TrainConfig.from_dict(kind, CONFIGS[kind])
    torch.manual_seed(0)
    model = BUILDERS[kind](data.input_shape, data.num_classes, cfg).to(device)
    optimizer = build_optimizer(model.parameters(), cfg)
    loader = DataLoader(
        PerSample(data.train_x, data.train_y), batch_size=cfg["batch_size"], shuffle=True, drop_last=False
    )
    started = time.perf_counter()
    model.train()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(data.train_y) / (time.perf_counter() - started)


def measure(kind: str, samples: int, repeats: int, device: str) -> dict[str, Any]:
    data = make_data(kind, samples, device)
    warm = make_data(kind, min(samples, 2048), device)
    ours(kind, warm), reference(kind, warm)  # first-call costs (allocator, kernels) are not throughput
    ours_runs, ref_runs = [], []
    for r in range(repeats):  # alternating order
        pair = [("ours", ours), ("ref", reference)] if r % 2 == 0 else [("ref", reference), ("ours", ours)]
        for name, fn in pair:
            (ours_runs if name == "ours" else ref_runs).append(fn(kind, data))
    mine, ref = statistics.median(ours_runs), statistics.median(ref_runs)
    return {"kind": kind, "samples": samples, "ours": mine, "reference": ref, "speedup": mine / ref}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mlp-samples", type=int, default=60000)
    p.add_argument("--cnn-samples", type=int, default=50000)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, torch {torch.__version__}, {args.threads} threads, medians of {args.repeats}")
    results = {}
    for kind, samples in (("mlp", args.mlp_samples), ("cnn", args.cnn_samples)):
        if samples <= 0:  # 0: skip this one
            continue
        r = measure(kind, samples, args.repeats, device)
        results[kind] = r
        print(
            f"{kind}: {samples} samples, ours {r['ours']:.0f} samples/s, DataLoader reference {r['reference']:.0f} samples/s, speedup {r['speedup']:.2f}x",
            flush=True,
        )
    print(" ".join(f"{kind}_speedup={r['speedup']:.2f}" for kind, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
