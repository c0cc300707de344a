"""A team's own training code, as integration tests run it: a regression network trained on CSV files the
test wrote, reading its own data (the spec has no ``data``) or served by a ``loader``."""

import csv
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from hpsearch.trainables import Data, Trained, data_parallel

READS = "csv_reads"  # TrialContext.cache key: how often this worker process read the files


def write_csv(folder: Path, samples: int = 600, features: int = 6, seed: int = 0) -> Path:
    """train.csv, val.csv and test.csv under ``folder``: ``features`` inputs, then the target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features))
    y = np.tanh(x @ rng.normal(size=features) / 2) + 0.05 * rng.normal(size=samples)
    folder.mkdir(parents=True, exist_ok=True)
    cuts = {
        "train": (0, samples * 6 // 10),
        "val": (samples * 6 // 10, samples * 8 // 10),
        "test": (samples * 8 // 10, samples),
    }
    for name, (lo, hi) in cuts.items():
        with open(folder / f"{name}.csv", "w", newline="") as f:
            out = csv.writer(f)
            out.writerow([f"x{i}" for i in range(features)] + ["y"])
            out.writerows(np.column_stack([x[lo:hi], y[lo:hi]]).tolist())
    return folder


class CsvRows(Dataset):
    def __init__(self, path):
        with open(path) as f:
            table = torch.tensor([[float(v) for v in row] for row in list(csv.reader(f))[1:]])
        self.x, self.y = table[:, :-1], table[:, -1:]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def csv_loader(root, as_tensors=False):
    """``data: {loader: ...}``: the three files as datasets (or as (x, y) tensors)."""
    sets = [CsvRows(os.path.join(root, f"{name}.csv")) for name in ("train", "val", "test")]
    if as_tensors:
        return Data(*[(s.x, s.y) for s in sets])
    return Data(*sets)


def _mse(model, x, y):
    model.eval()
    with torch.no_grad():
        return nn.functional.mse_loss(model(x), y).item()


def _network(features, config, seed, resume, optimizer_class, device="cpu"):
    """The tests' small MLP and its optimizer, from ``resume`` (a state they reported) when given; and the
    epoch it continues after."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(features, config["hidden"]), nn.Tanh(), nn.Linear(config["hidden"], 1)).to(device)
    optimizer = optimizer_class(model.parameters(), lr=config["lr"])
    if resume is None:
        return model, optimizer, 0
    model.load_state_dict(resume["model"])
    optimizer.load_state_dict(resume["optimizer"])
    return model, optimizer, resume["epoch"]


def csv_regression(config, data, epochs, report, seed=0, resume=None, context=None):
    """Reads ``config["root"]``'s CSV files once per worker process (``context.cache``), trains a small MLP
    with full-batch steps, checkpoints every epoch. Besides ``val_mse`` it reports what the tests check:
    ``csv_reads`` (this worker's reads so far), ``resumed_from`` (the checkpoint's epoch, 0 on a fresh
    start) and ``scratch_empty`` (its scratch folder was its own and empty). With ``fail_once_at`` it
    raises once in that epoch (a marker file beside the data remembers); ``epoch_s`` slows its epochs."""
    cache = context.cache
    if cache.get("root") != config["root"]:
        cache.update(
            root=config["root"], sets={n: CsvRows(Path(config["root"]) / f"{n}.csv") for n in ("train", "val", "test")}
        )
        cache[READS] = cache.get(READS, 0) + 1
    train, val, test = (cache["sets"][n] for n in ("train", "val", "test"))
    train_x, train_y = train.x, train.y
    if context.final:  # hpsearch retrain: train + validation
        train_x, train_y = torch.cat([train.x, val.x]), torch.cat([train.y, val.y])
    scratch_empty = float(os.path.isdir(context.scratch_dir) and not os.listdir(context.scratch_dir))
    Path(context.scratch_dir, "notes.txt").write_text(context.trial_id)
    model, optimizer, start = _network(train_x.shape[1], config, seed, resume, torch.optim.Adam)
    for epoch in range(start + 1, epochs + 1):
        model.train()
        for _ in range(5):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(train_x), train_y).backward()
            optimizer.step()
        if config.get("fail_once_at") == epoch and not context.final:  # in the search only
            marker = Path(config["root"]) / f"failed-{context.trial_id}"
            if not marker.exists():
                marker.write_text("once")
                raise RuntimeError(f"scripted failure in epoch {epoch}")
        time.sleep(config.get("epoch_s", 0))
        metrics = {
            "epoch": epoch,
            "val_mse": _mse(model, val.x, val.y),
            READS: float(cache[READS]),
            "resumed_from": float(start),
            "scratch_empty": scratch_empty,
        }
        report(metrics, {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()})
        Path(config["root"], f"epoch-of-{os.getpid()}").write_text(str(epoch))  # checkpointed up to here
    return Trained(model, lambda m: {"test_mse": _mse(m, test.x, test.y)})


def untestable(config, data, epochs, report, seed=0):
    """Trains nothing, returns nothing retrain could test."""
    for epoch in range(1, epochs + 1):
        report({"val_mse": 1.0 / (epoch + config["lr"])})
    return {"weights": [1, 2, 3]}


def wrong_metric(config, data, epochs, report, seed=0):
    """Reports ``loss``, never the spec's ``val_mse``."""
    for epoch in range(1, epochs + 1):
        report({"loss": 1.0 / epoch, "accuracy": 0.5})


@data_parallel
def csv_data_parallel(config, data, epochs, report, seed=0, resume=None, context=None):
    """``csv_regression`` as one rank of a group: mini-batches of 32 (the global batch), each rank trains
    on ``context.shard`` of every batch through ``context.wrap_model``. Every rank writes
    ``rank-R-of-TRIAL`` (its pid and its last epoch) beside the data, for the test to find and kill; it
    reports ``world_size``, ``resumed_from`` and ``val_mse``; ``epoch_s`` slows its epochs."""
    root = Path(config["root"])
    train, val = CsvRows(root / "train.csv"), CsvRows(root / "val.csv")
    model, optimizer, start = _network(train.x.shape[1], config, seed, resume, torch.optim.SGD, context.device)
    trained = context.wrap_model(model)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(start + 1, epochs + 1):
        order = torch.randperm(len(train), generator=generator)
        trained.train()
        for begin in range(0, len(order), 32):
            idx = context.shard(order[begin : begin + 32])
            optimizer.zero_grad()
            nn.functional.mse_loss(trained(train.x[idx]), train.y[idx]).backward()
            optimizer.step()
        time.sleep(config.get("epoch_s", 0))
        metrics = {"epoch": epoch, "val_mse": _mse(model, val.x, val.y), "resumed_from": float(start),
                   "world_size": float(context.world_size)}  # fmt: skip
        report(metrics, {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()})
        Path(root, f"rank-{context.rank}-of-{context.trial_id}").write_text(f"{os.getpid()} {epoch}")
    return Trained(model, lambda m: {"test_mse": 0.0})
