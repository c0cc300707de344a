"""Issue 24's fixes and the pieces of multi-worker trials that run without a cluster: how a group's failure
reaches the search, how ranks share batches, restores across devices, channels_last without a copy of the
data set, fused Adagrad on CUDA. No GPU here: CUDA is faked where the code asks it, the decisions are real."""

import copy

import pytest
import torch
from torch import nn

from hpsearch import faults
from hpsearch.protocol import GroupWorkerLost, TrialDiverged
from hpsearch.sources import load_data
from hpsearch.trainables import TrialContext, loop
from hpsearch.trainables.config import TrainConfig
from hpsearch.trainables.feeds import RankBatches
from hpsearch.trainables.group import failure_of
from hpsearch.trainables.optim import build_optimizer
from tests.helpers import untimed


@pytest.fixture(scope="module")
def images():
    return load_data({"dataset": "synthetic", "samples": 300, "shape": [3, 8, 8], "classes": 4, "seed": 0})


CNN = {"blocks": 1, "channels": 8, "batch_size": 32}


def train(data, config, epochs, resume=None, **kw):
    out = []
    keep = lambda m, s=None: out.append((m, copy.deepcopy(s)))  # noqa: E731
    loop.train_model("cnn", config, data, epochs, keep, 0, resume, 1, **kw)
    return out


# How a group's failure reaches the search ---------------------------------------------------------------
def group_error(**failures):
    from ray.train.v2.api.exceptions import WorkerGroupError

    return WorkerGroupError("training failed", {int(rank[1:]): exc for rank, exc in failures.items()})


def raised(exc):
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback

    return UserExceptionWithTraceback(exc, "Traceback ...")


def died():
    from ray.exceptions import ActorDiedError
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

    return WorkerHealthCheckFailedError("worker 1 is dead", ActorDiedError())


def test_a_dead_worker_is_a_lost_worker_and_counts_as_a_lost_node():
    from ray.exceptions import RayTaskError

    lost = failure_of(group_error(r1=died(), r0=raised(RuntimeError("gloo: connection closed by peer"))))
    assert isinstance(lost, GroupWorkerLost) and "rank 1" in str(lost)
    told = faults.classify(RayTaskError("run_trial", "Traceback ...", lost), "t1")
    assert told.kind == faults.NODE_LOST and not told.blames_config and "rank 1" in told.text


def test_a_worker_that_raised_ends_the_trial_as_that_error_would():
    diverged = failure_of(group_error(r0=raised(ValueError("other")), r1=raised(TrialDiverged("nan in epoch 3"))))
    assert isinstance(diverged, TrialDiverged)  # a divergence on any rank: the config's fault
    bug = ValueError("a bug")
    assert failure_of(group_error(r0=raised(bug), r1=raised(KeyError("k")))) is bug  # the first rank's error
    controller = RuntimeError("the controller failed")
    assert failure_of(controller) is controller


# How ranks share batches --------------------------------------------------------------------------------
@pytest.mark.parametrize("n, bs, world", [(103, 16, 3), (64, 16, 2), (100, 32, 4), (65, 32, 2)])
def test_the_ranks_of_a_group_read_disjoint_parts_of_the_same_batches(n, bs, world):
    ranks = [RankBatches(n, seed=5, batch_size=bs, rank=r, world=world) for r in range(world)]
    for sampler in ranks:
        sampler.set_epoch(2)
    parts = [list(sampler) for sampler in ranks]
    assert len({len(p) for p in parts}) == 1 and len(parts[0]) == len(ranks[0])  # every rank steps together
    order = list(ranks[0].order)
    for step, pieces in enumerate(zip(*parts, strict=True)):
        batch = order[step * bs : (step + 1) * bs]
        assert sorted(i for piece in pieces for i in piece) == sorted(batch)  # together: the global batch
        assert min(len(piece) for piece in pieces) >= 2  # BatchNorm needs two samples on every rank
    seen = sum(len(piece) for p in parts for piece in p)
    assert seen == n - (n % bs if n % bs < 2 * world else 0)


def test_a_trial_context_shards_and_wraps_only_for_a_group():
    model = nn.Linear(2, 1)
    alone = TrialContext("t", "/tmp")
    assert alone.wrap_model(model) is model and alone.shard([1, 2, 3]) == [1, 2, 3]
    second = TrialContext("t", "/tmp", rank=1, world_size=3)
    assert second.shard(list(range(10))) == [1, 4, 7]
    assert second.shard(torch.arange(10)).tolist() == [1, 4, 7]
    dataset = torch.utils.data.TensorDataset(torch.arange(10.0))
    assert [float(x) for (x,) in second.shard(dataset)] == [1.0, 4.0, 7.0]


# Restores across devices (issue 24 a) -------------------------------------------------------------------
CUDA_GENERATOR_STATE = torch.tensor(
    list((1234).to_bytes(8, "little")) + list((64).to_bytes(8, "little")), dtype=torch.uint8
)  # fmt: skip  (a CUDA generator's: seed and offset)


def test_a_checkpoint_of_a_cuda_batch_order_restores_where_the_data_is_on_the_cpu(images):
    whole = train(images, CNN, 3)
    state = copy.deepcopy(whole[0][1])
    state["rng"]["generator"] = CUDA_GENERATOR_STATE  # as a trial whose data was on a GPU wrote it
    resumed = train(images, CNN, 3, resume=copy.deepcopy(state))  # before: "Expected a CPUGeneratorImplState ..."
    assert [m["epoch"] for m, _ in resumed] == [2, 3]
    again = train(images, CNN, 3, resume=copy.deepcopy(state))
    assert untimed([m for m, _ in again]) == untimed(
        [m for m, _ in resumed]
    )  # the order it continues with follows from the state


def test_a_checkpoint_written_on_the_cpu_restores_where_the_trial_trains_on_a_gpu(images, monkeypatch):
    """The reverse: the batch order's generator is a CPU one on every device, so a CPU-written state goes
    into it as it is; only the GPU's own stream is set on the GPU (faked: recorded)."""
    state = train(images, CNN, 1)[0][1]
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device=None: restored.append(device))
    generator = torch.Generator().manual_seed(0)
    loop.set_rng_state({**state["rng"], "cuda": state["rng"]["torch"]}, generator, torch.device("cuda"))
    assert torch.equal(generator.get_state(), state["rng"]["generator"]) and restored == [torch.device("cuda")]


# channels_last batch by batch (issue 24 c) --------------------------------------------------------------
def test_channels_last_converts_batches_not_the_whole_data_set(images, monkeypatch):
    converted = []
    real = torch.Tensor.contiguous

    def contiguous(self, memory_format=torch.contiguous_format):
        if memory_format == torch.channels_last:
            converted.append(len(self))
        return real(self, memory_format=memory_format)

    monkeypatch.setattr(torch.Tensor, "contiguous", contiguous)
    train(images, {**CNN, "channels_last": True}, 1)
    assert converted and max(converted) <= 32, converted  # batches of 32, never the 180 samples of train
    assert len(images.train_y) > 32


# Fused optimizers on CUDA (issue 24 f) ------------------------------------------------------------------
class Built(Exception):
    pass


@pytest.mark.parametrize("name", ["adagrad", "adam", "sgd"])
def test_the_loop_builds_a_fused_optimizer_when_it_trains_on_cuda(images, monkeypatch, name):
    """Stops at the optimizer: the model is built on the CPU and `.to("cuda")` is skipped, so the loop
    believes it trains on CUDA up to there."""
    asked = []

    class OnCuda(nn.Linear):
        def to(self, *args, **kwargs):
            return self

    monkeypatch.setitem(loop.BUILDERS, "cnn", lambda shape, outputs, cfg: OnCuda(4, 2))
    monkeypatch.setattr(
        loop, "build_optimizer", lambda *a, fused=False: asked.append(fused) or (_ for _ in ()).throw(Built())
    )
    with pytest.raises(Built):
        loop.train_model("cnn", {**CNN, "optimizer": name}, images, 1, lambda m, s=None: None, device="cuda")
    assert asked == [True]
    optimizer = build_optimizer(
        nn.Linear(2, 2).parameters(), TrainConfig.from_dict("cnn", {"optimizer": name}), fused=True
    )
    assert optimizer.defaults.get("fused") is True


def test_only_a_trainable_that_takes_its_context_can_be_marked_data_parallel():
    from hpsearch.trainables import data_parallel

    with pytest.raises(TypeError, match="takes no `context`"):
        data_parallel(lambda config, data, epochs, report, seed=0: None)
    marked = data_parallel(lambda config, data, epochs, report, seed=0, context=None: None)
    assert marked.hpsearch_data_parallel is True


def test_a_workers_data_goes_to_its_own_gpu(monkeypatch):
    """A group's rank on the node's second GPU (cuda:1) gets its data there, not on cuda:0."""
    from hpsearch.sources.synthetic import SyntheticSource
    from hpsearch.trainables import device as dev
    from hpsearch.trainables import tune_adapter

    moved = []
    monkeypatch.setattr(dev, "data_fits", lambda n, plan: True)
    monkeypatch.setattr(
        "hpsearch.trainables.data.Splits.to", lambda self, device, test=True: moved.append(device) or self
    )
    tune_adapter.forget_data()
    try:
        tune_adapter._data_for(SyntheticSource(samples=50, classes=2), dev.DevicePlan("cuda", ("3",), index=1))
    finally:
        tune_adapter.forget_data()
    assert moved == ["cuda:1"]
