"""Record the replay workloads' learning curves: every config of each discretised space trained once, with
hpsearch's own training loop, for ``MAX_EPOCHS`` epochs; per epoch the validation accuracy and loss and the
seconds it took, and what the model costs (params, latency). Written to ``benchmarks/replay_data/``.

    python -m benchmarks.replay_record                     # both workloads, 2 processes (~10 minutes here)
    python -m benchmarks.replay_record --workloads images_cnn --processes 1
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import multiprocessing
import platform
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.replay_spaces import MAX_EPOCHS, WORKLOADS, config_key, configs_of

DATA = Path(__file__).parent / "replay_data"
SEED = 0


def _record(args: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    import torch

    from hpsearch.protocol import TrialDiverged
    from hpsearch.trainables.loop import train_model

    name, config = args
    torch.set_num_threads(1)
    load = WORKLOADS[name]
    data = _data(name)
    epochs: list[list[float]] = []
    extra: dict[str, float] = {}
    start = time.perf_counter()

    def report(metrics: dict[str, float], state: Any = None) -> None:
        nonlocal start
        now = time.perf_counter()
        epochs.append([round(now - start, 4), metrics["val_accuracy"], metrics["val_loss"]])
        extra.update(params=metrics["params"], latency_ms=metrics["latency_ms"])
        start = time.perf_counter()

    diverged = None
    try:
        train_model(load.trainable, config, data, MAX_EPOCHS, report, seed=SEED)
    except TrialDiverged:
        diverged = len(epochs) + 1
    return {"config": config, "epochs": epochs, "diverged_at": diverged, **extra}


@functools.cache
def _data(name: str) -> Any:
    """The workload's data, loaded once per process."""
    from hpsearch.sources import load_data

    return load_data(WORKLOADS[name].data)


def record(name: str, processes: int) -> Path:
    load = WORKLOADS[name]
    configs = configs_of(load.space)
    started = time.time()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        rows = pool.map(_record, [(name, c) for c in configs], chunksize=4)
    table = {
        "workload": name,
        "about": load.about,
        "trainable": load.trainable,
        "data": load.data,
        "space": load.space,
        "max_epochs": MAX_EPOCHS,
        "seed": SEED,
        "recorded": {"date": date.today().isoformat(), "machine": platform.machine(), "processes": processes,
                     "seconds": round(time.time() - started, 1)},
        "configs": {config_key(r["config"]): {k: v for k, v in r.items() if k != "config"} for r in rows},
    }  # fmt: skip
    path = DATA / f"{name}.json.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(table, f, separators=(",", ":"))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    for name in args.workloads:
        t = time.time()
        path = record(name, args.processes)
        print(f"{name}: {len(configs_of(WORKLOADS[name].space))} configs in {time.time() - t:.0f} s -> {path}")


if __name__ == "__main__":
    main()
