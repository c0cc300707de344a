"""The GPU code paths of the training loop, pinned on the CPU: checkpoints that restore on any device,
fp16's scaler state and syncs, compiled graphs in a reused process, memory of a shared GPU."""

import copy
import dataclasses
import os

import pytest
import torch
from torch import nn

from hpsearch.sources import load_data
from hpsearch.trainables import loop
from hpsearch.trainables.config import TrainConfig
from hpsearch.trainables.optim import build_optimizer
from hpsearch.trainables.tune_adapter import load_checkpoint
from tests.helpers import untimed


@pytest.fixture(scope="module")
def images():
    return load_data({"dataset": "synthetic", "samples": 600, "shape": [3, 8, 8], "classes": 4, "seed": 0})


CNN = {"blocks": 1, "channels": 8, "amp": "fp16", "batch_size": 32}


def train(data, config, epochs, resume=None, **kw):
    """(metrics, checkpoint) per epoch; checkpoints copied when reported, as the Tune adapter saves them."""
    out = []
    keep = lambda m, s=None: out.append((m, copy.deepcopy(s)))  # noqa: E731
    loop.train_model("cnn", config, data, epochs, keep, 0, resume, 1, **kw)
    return out


def test_a_checkpoint_loads_to_the_cpu_whatever_device_wrote_it(images, tmp_path, monkeypatch):
    state = train(images, CNN, 1)[0][1]
    torch.save(state, tmp_path / "state.pt")
    seen = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: seen.append(kw.get("map_location")) or real(*a, **kw))
    loaded = load_checkpoint(str(tmp_path / "state.pt"))
    assert seen == ["cpu"]  # never the trial's CUDA device: set_rng_state takes CPU byte tensors only
    for stream in loaded["rng"].values():
        assert stream.device.type == "cpu" and stream.dtype == torch.uint8
    torch.set_rng_state(loaded["rng"]["torch"])  # what a restored trial does first


def test_fp16_resume_gives_the_metrics_of_an_uninterrupted_run(images):
    """The gradient scaler's state is in the checkpoint: without it a resumed fp16 trial starts again
    from the initial scale and growth count, and its loss scale (and so its skipped steps) drift."""
    whole = train(images, CNN, 4)
    state = whole[1][1]
    assert state["scaler"]["_growth_tracker"] == 2 * len(range(0, len(images.train_y), 32))  # two epochs of steps
    resumed = train(images, CNN, 4, resume=state)
    assert untimed([m for m, _ in resumed]) == untimed([m for m, _ in whole[2:]])
    assert resumed[-1][1]["scaler"] == whole[-1][1]["scaler"]  # the scaler went on where it was


def test_the_rng_streams_of_a_gpu_trial_are_saved_and_restored_on_a_gpu_only(monkeypatch):
    cuda = torch.device("cuda")
    saved, restored = torch.get_rng_state(), []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device=None: saved.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device=None: restored.append((state, device)))
    generator = torch.Generator().manual_seed(1)
    state = loop.rng_state(generator, cuda)
    assert set(state) == {"torch", "generator", "cuda"}
    loop.set_rng_state(state, generator, cuda)
    assert len(restored) == 1 and restored[0][0].device.type == "cpu" and restored[0][1] == cuda
    loop.set_rng_state(state, generator, torch.device("cpu"))  # written on a GPU node, restored on a CPU one
    assert len(restored) == 1
    assert set(loop.rng_state(generator, torch.device("cpu"))) == {"torch", "generator"}


def count_items(monkeypatch):
    """Counts ``Tensor.item()``: each one is a host-device sync on a GPU."""
    calls = []
    real = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: calls.append(1) or real(self))
    return calls


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_fp16_steps_with_a_fused_optimizer_do_not_sync(monkeypatch, name):
    """GradScaler.step checks for inf/NaN gradients with a host sync per step, unless the optimizer is
    fused (it checks on the device): the loop builds fused optimizers on CUDA."""
    cfg = TrainConfig.from_dict("mlp", {"optimizer": name})
    syncs = {}
    for fused in (False, True):
        torch.manual_seed(0)
        model = nn.Linear(8, 2)
        optimizer = build_optimizer(model.parameters(), cfg, fused=fused)
        scaler = torch.amp.GradScaler("cpu")
        calls = count_items(monkeypatch)
        for _ in range(5):
            with torch.autocast("cpu", dtype=torch.float16):
                loss = model(torch.randn(4, 8)).float().pow(2).mean()
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # as for gradient clipping
            scaler.step(optimizer)
            scaler.update()
        syncs[fused] = len(calls)
        monkeypatch.undo()
    assert syncs[False] >= 5 and syncs[True] == 0, syncs


def test_the_loop_asks_for_fused_optimizers_on_cuda_only(images, monkeypatch):
    asked = []
    real = loop.build_optimizer
    monkeypatch.setattr(loop, "build_optimizer", lambda *a, fused=False: asked.append(fused) or real(*a, fused=fused))
    train(images, {**CNN, "amp": "none"}, 1)
    assert asked == [False]  # on the CPU; device.type == "cuda" turns it on


class CountingBackend:
    """A torch.compile backend that runs eagerly and counts the graphs Dynamo hands it."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


@pytest.mark.slow
def test_compile_makes_one_graph_per_trial_also_in_a_reused_process(images, monkeypatch):
    backend = CountingBackend()
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend=backend))
    config = {"hidden_layers": 1, "units": 16, "compile": True, "batch_size": 64}
    assert len(images.train_y) % 64 not in (0, 1)  # a short tail batch every epoch
    plain = []
    loop.train_model("mlp", {**config, "compile": False}, images, 3, lambda m, s=None: plain.append(m), 0)
    for trial in range(3):  # trials one after another in one process, as in a reused actor
        before = backend.graphs
        metrics: list = []
        loop.train_model("mlp", config, images, 3, lambda m, s=None, out=metrics: out.append(m), 0)
        assert backend.graphs - before == 1, f"trial {trial} compiled {backend.graphs - before} graphs"
        assert [m["val_loss"] for m in metrics] == pytest.approx([m["val_loss"] for m in plain], abs=1e-6)


def test_a_search_keeps_the_test_split_off_the_device(images):
    moved = images.to("meta", test=False)
    assert moved.train_x.device.type == moved.val_y.device.type == "meta"
    assert moved.test_x.device.type == moved.test_y.device.type == "cpu"
    assert images.to("meta").test_x.device.type == "meta"  # retrain evaluates on it
    assert images.search_bytes == sum(
        t.numel() * t.element_size() for t in (images.train_x, images.train_y, images.val_x, images.val_y)
    )


def test_evaluation_uses_batches_that_fit(monkeypatch):
    big = load_data({"dataset": "synthetic", "samples": 120, "shape": [3, 64, 64], "classes": 4, "seed": 0})
    sizes = []
    real = loop.tensor_batches
    monkeypatch.setattr(loop, "tensor_batches", lambda *a, **kw: sizes.append(a[2]) or real(*a, **kw))
    train(big, {**CNN, "amp": "none"}, 1)
    assert sizes == [256]  # 48 KB samples: 256 per batch (16 MB of input), not a fixed 4096


def test_the_batch_order_is_drawn_on_the_cpu_whatever_the_device(images, monkeypatch):
    """The batch order's generator is a CPU one wherever the data and the model are, so its state in a
    checkpoint restores on any device (issue 24 a). The `meta` device stands in for the GPU; the test
    stops at the first draw."""
    drawn = []

    class Drawn(Exception):
        pass

    def randperm(n, device=None, generator=None):
        drawn.append((torch.device(device or "cpu").type, generator.device.type))
        raise Drawn

    monkeypatch.setattr(torch, "randperm", randperm)
    with pytest.raises(Drawn):
        train(images, {**CNN, "amp": "none"}, 1, device="meta")
    assert drawn == [("cpu", "cpu")]


def test_where_the_data_goes_is_decided_once_per_data_set_and_plan(monkeypatch, tmp_path):
    from hpsearch.sources.synthetic import SyntheticSource
    from hpsearch.trainables import device as dev
    from hpsearch.trainables import tune_adapter

    monkeypatch.setenv("HPSEARCH_DATA_CACHE", str(tmp_path))  # nothing cached yet
    asked, loads = [], []
    monkeypatch.setattr(dev, "data_fits", lambda n, plan: asked.append(n) or True)
    load = SyntheticSource.load
    monkeypatch.setattr(SyntheticSource, "load", lambda self, merge_val=False: loads.append(1) or load(self, merge_val))
    tune_adapter.forget_data()
    source = SyntheticSource(samples=50, features=4, classes=2)
    plan = dev.DevicePlan("cpu")
    first, again = tune_adapter._data_for(source, plan), tune_adapter._data_for(source, plan)
    assert first is again and len(asked) == 1  # the next trial in a reused actor gets the same placement
    same = SyntheticSource(samples=50, features=4, classes=2)  # an equal source (unpickled for the next trial)
    assert tune_adapter._data_for(same, plan) is first and len(loads) == 1
    tune_adapter._data_for(source, dev.DevicePlan("meta"))  # another plan: placed again, not loaded again
    assert len(asked) == 2 and len(loads) == 1
    tune_adapter._data_for(SyntheticSource(samples=60, features=4, classes=2), plan)  # another data set: loaded
    assert len(loads) == 2
    tune_adapter.forget_data()


def test_data_too_big_for_the_gpu_share_streams_pinned_from_the_host(monkeypatch):
    from hpsearch.sources.synthetic import SyntheticSource
    from hpsearch.trainables import device as dev
    from hpsearch.trainables import tune_adapter
    from hpsearch.trainables.feeds import Streamed

    monkeypatch.setattr(dev, "data_fits", lambda n, plan: False)
    tune_adapter.forget_data()
    feed, on_device = tune_adapter._data_for(
        SyntheticSource(samples=50, classes=2), dev.DevicePlan("cuda", ("0",)), workers=1
    )
    tune_adapter.forget_data()
    assert isinstance(feed, Streamed) and not on_device and feed.workers == 0  # no copy per loader process
    loader = feed.loader(feed.train, 8, torch.device("cuda"), None)  # built, not iterated: no GPU needed
    assert loader.pin_memory and loader.num_workers == 0
    loader = dataclasses.replace(feed, workers=1).loader(feed.train, 8, torch.device("cuda"), None)
    assert loader.pin_memory and loader.num_workers == 1 and loader.prefetch_factor == 4
    assert loader.multiprocessing_context.get_start_method() == "forkserver"  # not a fork of Ray's threads
    x, y = feed.train.__getitems__([0, 1])
    assert x.shape[0] == 2 and y.dtype == torch.int64


def test_a_reused_process_gives_cached_gpu_memory_back_after_each_trial(monkeypatch):
    from hpsearch.trainables import device as dev

    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    dev.release(dev.DevicePlan("cpu"))
    dev.release(dev.DevicePlan("cuda", ("0",)))
    assert emptied == [1]


def test_downloads_into_one_folder_take_turns(tmp_path):
    """Four trials of a pod starting at once must not write the same archive together."""
    import multiprocessing
    import time

    from hpsearch.trainables.data import download_lock

    log = tmp_path / "log"

    def hold(i):
        with download_lock(str(tmp_path / "data")):
            with open(log, "a") as f:
                f.write(f"start {i}\n")
            time.sleep(0.2)
            with open(log, "a") as f:
                f.write(f"end {i}\n")

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=hold, args=(i,)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(10)
    lines = log.read_text().split()
    events = [lines[i] for i in range(0, len(lines), 2)]
    assert events == ["start", "end"] * 3, log.read_text()  # never two inside at once
    assert os.path.exists(tmp_path / "data" / ".hpsearch-download.lock")


# On a real GPU (skipped without one) ------------------------------------------------------------


@pytest.mark.gpu
def test_on_a_gpu_a_trial_checkpointed_to_disk_resumes_with_the_same_metrics(tmp_path):
    digits = load_data({"dataset": "digits"}).to("cuda", test=False)
    config = {"hidden_layers": 2, "units": 64, "amp": "fp16", "dropout": 0.2}
    whole = []
    loop.train_model("mlp", config, digits, 4, lambda m, s=None: whole.append((m, copy.deepcopy(s))), 0, None, 1)
    torch.save(whole[1][1], tmp_path / "state.pt")  # written on the GPU ...
    state = load_checkpoint(str(tmp_path / "state.pt"))  # ... restored as a retried trial does
    assert "cuda" in state["rng"] and "scaler" in state
    resumed = []
    loop.train_model("mlp", config, digits, 4, lambda m, s=None: resumed.append(m), 0, state, 1)
    assert resumed == [m for m, _ in whole[2:]]


@pytest.mark.gpu
def test_on_a_gpu_fp16_steps_with_the_loops_optimizer_never_sync():
    cfg = TrainConfig.from_dict("mlp", {"optimizer": "adam"})
    model = nn.Linear(64, 10).cuda()
    optimizer = build_optimizer(model.parameters(), cfg, fused=True)
    scaler = torch.amp.GradScaler("cuda")
    x, y = torch.randn(32, 64, device="cuda"), torch.randint(0, 10, (32,), device="cuda")
    torch.cuda.set_sync_debug_mode("error")  # any host-device sync raises
    try:
        for _ in range(5):
            with torch.autocast("cuda", dtype=torch.float16):
                loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            scaler.step(optimizer)
            scaler.update()
    finally:
        torch.cuda.set_sync_debug_mode("default")
