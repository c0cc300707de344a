"""Users' data: a loader's splits, regression targets, memory-mapped arrays and image folders on disk
(real files the tests write), streamed through a DataLoader with exact resume, one copy per node."""

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from hpsearch.sources import REGISTRY, load_data
from hpsearch.trainables import Data, loop, nodecache, signature_problem
from hpsearch.trainables.costs import COST_METRICS
from hpsearch.trainables.data import DataError, Splits
from hpsearch.trainables.feeds import ArrayDataset, EpochSampler, Streamed
from hpsearch.trainables.userdata import as_data, for_builtin, merge_validation
from tests.helpers import untimed

MLP = {"units": 16, "hidden_layers": 1, "batch_size": 16, "optimizer": "adam", "optimizer.lr": 0.01}
CNN = {"channels": 8, "blocks": 1, "batch_size": 16, "optimizer": "adam", "optimizer.lr": 0.01}


def run(data, config, epochs, resume=None, trainable="mlp"):
    out = []
    keep = lambda m, s=None: out.append((m, copy.deepcopy(s)))  # noqa: E731
    loop.train_model(trainable, config, data, epochs, keep, 0, resume, 1)
    return out


def regression_arrays(n=300, outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    w = rng.normal(size=(5, outputs))
    y = np.tanh(x @ w).astype(np.float32)
    return x, (y[:, 0] if outputs == 1 else y)


# The contract -------------------------------------------------------------------------------------
def test_signatures_are_checked_without_calling():
    def good(config, data, epochs, report, seed=0, resume=None, context=None):
        pass

    assert signature_problem(good, "trainable") is None
    why = signature_problem(os.system, "trainable")
    assert why is not None and "expected a function fn(config, data, epochs, report" in why and "system" in why
    assert "found" in signature_problem(lambda config: None, "trainable")
    assert signature_problem(lambda root: None, "loader", {"root": "x"}) is None
    assert "unexpected keyword argument 'size'" in signature_problem(
        lambda root: None, "loader", {"root": 1, "size": 2}
    )
    assert "found int" in signature_problem(3, "loader")


def test_what_a_loader_returns_is_checked_and_merged():
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    data = as_data((TensorDataset(x, y), (x[:4], y[:4])), "m:f")
    assert isinstance(data, Data) and data.test is None
    assert as_data({"train": (x, y), "val": (x, y), "test": (x, y)}, "m:f").test is not None
    with pytest.raises(DataError, match="data.loader m:f: must return"):
        as_data(x, "m:f")
    with pytest.raises(DataError, match="val must be a torch Dataset"):
        as_data(((x, y), [1, 2, 3]), "m:f")
    with pytest.raises(DataError, match="train has 10 inputs but 4 targets"):
        as_data(((x, y[:4]), (x, y)), "m:f")
    merged = merge_validation(as_data(((x, y), (x[:4], y[:4])), "m:f"))
    assert len(merged.train[0]) == 14 and merged.val is None
    assert len(merge_validation(as_data((TensorDataset(x, y), TensorDataset(x, y)), "m:f")).train) == 20


def test_a_loaders_tensors_become_splits_and_its_datasets_a_stream():
    x, y = torch.randn(40, 3), torch.randint(0, 3, (40,))
    splits = for_builtin(Data((x, y), (x[:8], y[:8])), regression=False)
    assert isinstance(splits, Splits) and splits.num_classes == 3 and len(splits.test_y) == 0
    streamed = for_builtin(Data(TensorDataset(x, y), TensorDataset(x, y), num_classes=3), regression=False)
    assert isinstance(streamed, Streamed) and streamed.outputs == 3 and streamed.input_shape == (3,)
    with pytest.raises(DataError, match="number of classes"):
        for_builtin(Data(TensorDataset(x, y)), regression=False)
    with pytest.raises(DataError, match="integer class indices"):
        for_builtin(Data((x, x[:, 0])), regression=False)


# Regression -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("outputs", [1, 3])
def test_the_builtin_mlp_learns_a_regression_with_its_metrics(tmp_path, outputs):
    x, y = regression_arrays(outputs=outputs)
    np.savez(tmp_path / "r.npz", X=x, y=y)
    source = REGISTRY.validate({"dataset": "npz", "path": str(tmp_path / "r.npz")}).with_task("regression")
    splits = source.load()
    assert splits.regression and splits.num_classes == outputs and splits.train_y.dtype == torch.float32
    history = [m for m, _ in run(splits, MLP, 8)]
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "val_mae", "val_r2", "lr", *COST_METRICS}
    assert history[-1]["val_loss"] < history[0]["val_loss"] and history[-1]["val_r2"] > 0.6


def test_regression_scores_match_their_definitions():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(50, 2)).astype(np.float32)
    prediction = target + rng.normal(scale=0.3, size=target.shape).astype(np.float32)
    model = torch.nn.Identity()
    scores = loop.evaluate_batches(
        model, [(torch.from_numpy(prediction[:20]), torch.from_numpy(target[:20])),
                (torch.from_numpy(prediction[20:]), torch.from_numpy(target[20:]))], regression=True,
    )  # fmt: skip
    err = prediction - target
    r2 = np.mean(1 - (err**2).sum(0) / ((target - target.mean(0)) ** 2).sum(0))
    assert scores["loss"] == pytest.approx((err**2).mean(), rel=1e-5)
    assert scores["mae"] == pytest.approx(np.abs(err).mean(), rel=1e-5)
    assert scores["r2"] == pytest.approx(r2, rel=1e-4)


def test_classification_refuses_float_targets_and_says_how(tmp_path):
    x, y = regression_arrays()
    np.savez(tmp_path / "r.npz", X=x, y=y)
    with pytest.raises(DataError, match="set task: regression"):
        load_data({"dataset": "npz", "path": str(tmp_path / "r.npz")})


# Memory-mapped arrays, streamed ------------------------------------------------------------------------
def write_npy(folder, n=240, shape=(1, 6, 6), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = (rng.integers(0, 50, size=(n, *shape)) + y.reshape(-1, *[1] * len(shape)) * 60).astype(np.uint8)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y.astype(np.int64))
    return x, y


def test_a_batch_of_mapped_rows_comes_in_the_samplers_order(tmp_path):
    x, y = write_npy(tmp_path)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    data = ArrayDataset(mapped, np.load(tmp_path / "y.npy", mmap_mode="r"), np.arange(100, 200))
    xb, yb = data.__getitems__([5, 0, 99, 5])
    assert (
        torch.equal(xb, torch.from_numpy(x[[105, 100, 199, 105]])) and yb.tolist() == y[[105, 100, 199, 105]].tolist()
    )
    first = list(EpochSampler(50, seed=3))
    sampler = EpochSampler(50, seed=3)
    sampler.set_epoch(2)
    assert sorted(first) == list(range(50)) and list(sampler) != first  # each epoch its own order
    sampler.set_epoch(0)
    assert list(sampler) == first  # and only (seed, epoch) decides it


def test_streamed_npy_trains_and_resumes_exactly(tmp_path):
    write_npy(tmp_path)
    source = REGISTRY.validate({"dataset": "npy", "x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npy")})
    feed = source.load()
    assert isinstance(feed, Streamed) and feed.outputs == 3 and feed.input_shape == (1, 6, 6)
    assert len(feed.train) + len(feed.val) + len(feed.test) == 240
    config = {**CNN, "crop_padding": 1, "hflip": True, "dropout": 0.2}
    whole = run(feed, config, 4, trainable="cnn")
    assert whole[-1][0]["val_accuracy"] > 0.6  # learnt from uint8 rows standardised on the fly
    restored = run(source.load(), config, 4, resume=whole[1][1], trainable="cnn")
    assert untimed([m for m, _ in restored]) == untimed([m for m, _ in whole[2:]])  # the same batches, the same numbers


def test_mapped_rows_travel_to_loader_processes_as_their_files(tmp_path):
    import pickle

    write_npy(tmp_path, n=3000)
    source = REGISTRY.validate({"dataset": "npy", "x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npy")})
    train = source.load().train
    blob = pickle.dumps(train)
    assert len(blob) < 30_000 < train.x.nbytes + train.y.nbytes  # the files, not the arrays' contents
    again = pickle.loads(blob)
    assert isinstance(again.x, np.memmap) and torch.equal(again.__getitems__([3, 1])[0], train.__getitems__([3, 1])[0])


def test_streamed_data_is_read_by_loader_workers(tmp_path):
    write_npy(tmp_path)
    source = REGISTRY.validate({"dataset": "npy", "x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npy")})
    in_process = run(source.load(), MLP, 2)
    with_workers = run(__import__("dataclasses").replace(source.load(), workers=1), MLP, 2)
    assert untimed([m for m, _ in with_workers]) == untimed([m for m, _ in in_process])


# Image folders ---------------------------------------------------------------------------------------
def write_images(root, classes=("cat", "dog"), per_class=12, size=(10, 14)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, size=(*size, 3)) + k * 150
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")


def test_an_image_folder_is_decoded_lazily_resized_and_trained_on(tmp_path):
    write_images(tmp_path / "imgs")
    source = REGISTRY.validate(
        {"dataset": "image_folder", "root": str(tmp_path / "imgs"), "size": 8, "val_fraction": 0.25}
    )
    assert source.problems() == []
    feed = source.load()
    assert feed.input_shape == (3, 8, 8) and feed.outputs == 2
    image, label = feed.train[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 8, 8) and label in (0, 1)
    history = [m for m, _ in run(feed, {**CNN, "batch_size": 4}, 3, trainable="cnn")]
    assert history[-1]["val_accuracy"] == 1.0  # the two classes differ by brightness


def test_image_folder_problems_name_the_path(tmp_path):
    def problems(root):
        return [p.message for p in REGISTRY.validate({"dataset": "image_folder", "root": str(root)}).problems()]

    assert "not a folder" in problems(tmp_path / "missing")[0]
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    assert "no images" in problems(tmp_path / "empty")[0] and str(tmp_path / "empty") in problems(tmp_path / "empty")[0]
    write_images(tmp_path / "one", classes=("cat",), per_class=2)
    assert "1 class folder (cat)" in problems(tmp_path / "one")[0]
    write_images(tmp_path / "locked", per_class=2)
    os.chmod(tmp_path / "locked", 0)
    try:
        if os.geteuid() != 0:  # root reads everything
            assert "cannot read" in problems(tmp_path / "locked")[0]
    finally:
        os.chmod(tmp_path / "locked", 0o755)


# One copy per node -------------------------------------------------------------------------------------
def test_a_node_shared_source_is_written_once_and_mapped(tmp_path, monkeypatch):
    monkeypatch.setenv(nodecache.ENV, str(tmp_path / "cache"))
    calls = []
    source = REGISTRY.validate({"dataset": "synthetic", "samples": 200, "shape": [4], "classes": 2})

    def load():
        calls.append(1)
        return source.load()

    first = nodecache.shared_splits(source.cache_key(), load)
    second = nodecache.shared_splits(source.cache_key(), load)
    assert calls == [1]  # loaded once; the second process-to-be maps what the first wrote
    assert torch.equal(first.train_x, source.load().train_x) and first.num_classes == 2
    assert torch.equal(second.val_y, first.val_y)


def test_processes_of_a_node_share_the_mapped_copy(tmp_path):
    """Four processes map a 64 MB data set: their proportional share of it adds up to one copy."""
    script = f"""
import os, sys, time
os.environ["{nodecache.ENV}"] = {str(tmp_path / "cache")!r}
from hpsearch.sources import REGISTRY
from hpsearch.trainables.nodecache import shared_splits
source = REGISTRY.validate({{"dataset": "synthetic", "samples": 16000, "shape": [1024], "classes": 2}})
splits = shared_splits(source.cache_key(), source.load)
total = float(splits.train_x.sum()) + float(splits.val_x.sum())  # touch every page
print("ready", flush=True)
sys.stdin.readline()
"""
    first = subprocess.run(
        [sys.executable, "-c", script.replace("sys.stdin.readline()", "")], capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        pss = []
        for p in procs:
            with open(f"/proc/{p.pid}/smaps") as f:
                text = f.read()
            pss.append(_mapped_pss(text, str(tmp_path / "cache")))
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=30)
    one_copy = 12800 * 1024 * 4 + 3200 * 1024 * 4  # train + val floats
    assert sum(pss) <= 1.1 * one_copy, (sum(pss), one_copy)
    assert sum(pss) >= 0.5 * one_copy  # they did map it (not read it into memory of their own)


def _mapped_pss(smaps: str, folder: str) -> int:
    total, inside = 0, False
    for line in smaps.splitlines():
        if line[:1].isdigit() or line[:1] in "abcdef" and "-" in line.split()[0]:
            inside = folder in line
        elif inside and line.startswith("Pss:"):
            total += int(line.split()[1]) * 1024
    return total


def test_the_node_cache_can_be_turned_off(tmp_path, monkeypatch):
    from hpsearch.trainables import tune_adapter

    source = REGISTRY.validate({"dataset": "synthetic", "samples": 50, "shape": [4], "classes": 2})
    monkeypatch.setenv(nodecache.ENV, str(tmp_path / "cache"))
    tune_adapter._load(source)
    assert len(list((tmp_path / "cache").glob("*/splits.json"))) == 1
    monkeypatch.setenv(nodecache.ENV, "off")  # each trial process loads its own copy
    assert not nodecache.enabled()
    monkeypatch.setattr(nodecache, "shared_splits", lambda *a: pytest.fail("the node cache was used"))
    assert tune_adapter._load(source).num_classes == 2


def test_a_streamed_trial_builds_its_loaders_once(tmp_path, monkeypatch):
    """One loader for training and one for validation per trial, not one per epoch: with loader
    processes, each new loader would start new processes every epoch."""
    write_npy(tmp_path)
    source = REGISTRY.validate({"dataset": "npy", "x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npy")})
    built = []
    real = Streamed.loader
    monkeypatch.setattr(Streamed, "loader", lambda self, split, *a: built.append(split) or real(self, split, *a))
    feed = source.load()
    run(feed, MLP, 4)
    assert built == [feed.train, feed.val]
