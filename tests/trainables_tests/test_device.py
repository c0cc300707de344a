"""The device a trial uses comes from what Ray assigned, and device-dependent settings from what the
device reports. No GPU here: the CUDA queries are faked, the decisions are real."""

import os

import pytest
import torch

from hpsearch.trainables import device as dev
from tests.helpers import untimed


@pytest.fixture
def fake_gpu(monkeypatch):
    """A process that sees a CUDA device of the given capability (nothing real is allocated)."""

    def install(capability=(8, 0), available=True, name="Fake A100"):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * 2**30, 16 * 2**30))
        props = type("Props", (), {"total_memory": 16 * 2**30})()
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)

    return install


def test_zero_gpus_assigned_means_the_cpu_even_where_cuda_works(fake_gpu, monkeypatch):
    fake_gpu()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # Ray 2.60 leaves it set for zero-GPU tasks
    plan = dev.plan_device([], gpu_share=0.0)
    assert plan.device == "cpu"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""  # nothing in this process can take GPU 0 behind Ray's back


def test_an_assigned_gpu_that_cuda_cannot_use_is_an_error_not_a_cpu_run(fake_gpu):
    fake_gpu(available=False)
    with pytest.raises(dev.DeviceError, match=r"Ray assigned GPU\(s\) 3 to this trial, but CUDA is not usable"):
        dev.plan_device(["3"], gpu_share=1.0)


def test_an_assigned_gpu_is_used_with_settings_from_its_capability(fake_gpu):
    fake_gpu(capability=(8, 6), name="Fake RTX 3090")
    plan = dev.plan_device(["1"], gpu_share=0.25)
    assert plan.device == "cuda" and plan.tf32 and plan.cudnn_benchmark
    assert plan.amp("bf16") == "bf16" and plan.amp("fp16") == "fp16"
    assert plan.memory_fraction == 0.2031  # a quarter of what 4 CUDA contexts leave of 16 GiB
    assert plan.tags() == {
        "device": "cuda",
        "gpu_ids": "1",
        "gpu": "Fake RTX 3090",
        "capability": "8.6",
        "tf32": "true",
        "cudnn_benchmark": "true",
        "memory_fraction": "0.2031",
    }


def test_one_bf16_rule_for_the_plan_and_the_loop(fake_gpu):
    assert dev.amp_for("bf16", (7, 5)) == "fp16" and dev.amp_for("bf16", (8, 0)) == "bf16"
    assert dev.amp_for("bf16", None) == "bf16"  # the CPU
    fake_gpu(capability=(7, 5))
    assert dev.effective_amp("bf16", torch.device("cuda")) == dev.plan_device(["0"], 1.0).amp("bf16") == "fp16"
    assert dev.effective_amp("bf16", torch.device("cpu")) == "bf16"


def test_before_ampere_bf16_runs_as_fp16_and_tf32_is_off(fake_gpu):
    fake_gpu(capability=(7, 0), name="Fake V100")
    plan = dev.plan_device(["0"], gpu_share=1.0)
    assert plan.amp("bf16") == "fp16" and plan.amp("none") == "none"
    assert not plan.tf32 and plan.memory_fraction is None
    assert "bf16 runs as fp16" in plan.tags()["notes"]


def test_apply_sets_the_switches_and_caps_the_share(fake_gpu, monkeypatch):
    fake_gpu()
    capped = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d=None: capped.append((f, d)))
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        dev.apply(dev.plan_device(["0"], gpu_share=0.5))
        assert (
            torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32 and torch.backends.cudnn.benchmark
        )
        assert capped == [(dev.share_cap(0.5, 16 * 2**30), 0)]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = before


def test_a_data_set_bigger_than_its_share_of_the_gpu_stays_on_the_host(fake_gpu):
    fake_gpu()  # 8 GiB free of 16
    quarter = dev.plan_device(["0"], gpu_share=0.25)  # may use 0.2031 x 16 GiB: data up to half of that
    limit = int(dev.DATA_SHARE * 0.2031 * 16 * 2**30)
    assert dev.data_fits(limit, quarter) and not dev.data_fits(limit + 1, quarter)
    whole = dev.plan_device(["0"], gpu_share=1.0)  # limited by what is free: data up to 4 GiB
    assert dev.data_fits(4 * 2**30, whole) and not dev.data_fits(5 * 2**30, whole)
    assert dev.data_fits(10**15, dev.DevicePlan("cpu"))


def test_evaluation_batches_shrink_with_the_sample_size():
    assert dev.eval_batch_size(64 * 4, train_batch=64) == 4096  # digits
    assert dev.eval_batch_size(3 * 32 * 32 * 4, train_batch=128) == 1024  # CIFAR-10: 12 MB of input
    assert dev.eval_batch_size(3 * 224 * 224 * 4, train_batch=32) == 32  # not 4096 (~13 GB of activations)
    assert dev.eval_batch_size(3 * 224 * 224 * 4, train_batch=8) == 16


def _in_a_new_thread(fn):
    """The SSE flags are per thread: each case runs in a thread of its own and leaves the test's alone."""
    import threading

    out = {}
    thread = threading.Thread(target=lambda: out.update(result=fn()))
    thread.start()
    thread.join()
    return out["result"]


def test_the_training_thread_flushes_denormals_and_an_intra_op_thread_it_starts_does_too(monkeypatch):
    monkeypatch.delenv(dev.FLUSH_DENORMAL_ENV, raising=False)
    mine = dev.denormals_flushed()

    def train_thread():
        import threading

        torch.set_flush_denormal(False)  # a new thread inherits its creator's flags: start from IEEE
        before = dev.denormals_flushed()
        on = dev.flush_denormals()
        inner = {}
        child = threading.Thread(target=lambda: inner.update(flushed=dev.denormals_flushed()))
        child.start()
        child.join()
        return before, on, dev.denormals_flushed(), inner["flushed"]

    assert _in_a_new_thread(train_thread) == (False, True, True, True)
    assert dev.denormals_flushed() == mine  # the test's own thread is untouched


def test_retrain_flushes_while_it_trains_and_leaves_the_callers_thread_as_it_was(monkeypatch):
    """``hpsearch retrain`` runs in the caller's thread (a program may call it): flushed while it trains,
    as the search's trials were, and back to IEEE denormals after."""
    from hpsearch.review.testing import fit_and_test
    from hpsearch.trainables.data import Splits

    monkeypatch.delenv(dev.FLUSH_DENORMAL_ENV, raising=False)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    data = Splits(x[:48], y[:48], x[:0], y[:0], x[48:], y[48:], 2)
    seen = []

    def fn(config, data, epochs, report, seed=0):
        seen.append(dev.denormals_flushed())
        return torch.nn.Linear(4, 2)

    def case():
        torch.set_flush_denormal(False)
        fit_and_test(fn, "mine:fn", {}, data, 1, 0, lambda *a: None)
        return dev.denormals_flushed()

    assert _in_a_new_thread(case) is False and seen == [True]


def test_hpsearch_flush_denormal_0_keeps_ieee_denormals(monkeypatch):
    monkeypatch.setenv(dev.FLUSH_DENORMAL_ENV, "0")
    assert _in_a_new_thread(lambda: (dev.flush_denormals(), dev.denormals_flushed())) == (False, False)


def test_flushing_denormals_leaves_an_ordinary_training_as_it_was():
    """Only values below 1.2e-38 change: a training that never goes there reports the same metrics
    (the speed it buys on one that does is in BENCHMARKS.md: timing is not a test)."""
    from hpsearch.trainables.data import Splits
    from hpsearch.trainables.loop import train_model

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 12, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    data = Splits(x[:192], y[:192], x[192:], y[192:], x[192:], y[192:], 2)
    config = {"hidden_layers": 1, "units": 32, "optimizer": "adam", "optimizer.lr": 0.003, "batch_size": 32}

    def metrics(flush: bool) -> list[dict]:
        torch.set_flush_denormal(flush)
        out: list[dict] = []
        train_model("mlp", config, data, 3, lambda m, s=None: out.append(m), seed=1)
        return out

    assert untimed(_in_a_new_thread(lambda: metrics(False))) == untimed(_in_a_new_thread(lambda: metrics(True)))


@pytest.mark.parametrize("share", [0.5, 0.25, 0.2, 0.125, 0.1])
@pytest.mark.parametrize("total_gib", [8, 16, 24, 80])
def test_the_caps_of_every_sharer_and_their_cuda_contexts_fit_in_the_gpu(share, total_gib):
    """Each of the floor(1/share) trials that can share a GPU is capped so that all caps plus a CUDA
    context per process fit in its memory: an out-of-memory error lands on the trial that overran."""
    total = total_gib * 2**30
    cap = dev.share_cap(share, total)
    sharers = int(1 / share + 1e-9)
    assert sharers * (cap * total + dev.CONTEXT_BYTES) <= total
    assert cap >= share * (total - sharers * dev.CONTEXT_BYTES) / total - 1e-4  # and no less than that


def test_a_worker_of_a_group_plans_for_its_own_gpu(fake_gpu, monkeypatch):
    fake_gpu()
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or (8, 0))
    plan = dev.plan_device(["2", "3"], gpu_share=1.0, index=1)
    assert plan.torch_device == "cuda:1" and asked == [1]
    capped = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d=None: capped.append((f, d)))
    dev.apply(dev.plan_device(["2"], gpu_share=0.5, index=1))
    assert capped == [(dev.share_cap(0.5, 16 * 2**30), 1)]
    assert dev.DevicePlan("cuda").torch_device == "cuda" and dev.DevicePlan("cpu").torch_device == "cpu"
