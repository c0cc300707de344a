"""The one place where trainables meet Ray Tune: run a trainable inside a Tune trial.

torch is imported inside the trial, not at module import: the Tune driver, which only
references ``run_trial``, does not pay for importing it.

Epochs reach Tune in batches (:class:`hpsearch.protocol.EpochBatch`, the protocol both sides share).
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hpsearch.protocol import EpochBatch, MetricNotReported
from hpsearch.trainables import BUILTIN, TrialContext, exits, lazy_dynamo
from hpsearch.trainables import device as device_plan

if TYPE_CHECKING:
    from hpsearch.trainables import DataSource


def resolve_trainable(name: str) -> Callable[..., None]:
    """``mlp`` or ``pkg.module:function`` -> the training function."""
    target = BUILTIN.get(name, name)
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


_LOADED: dict[str, Any] = {}  # by DataSource.cache_key(): with actor reuse one worker runs many trials
_PLACED: dict[tuple[str, Any, bool, int], tuple[Any, bool]] = {}
_WORKER_CACHE: dict[str, Any] = {}  # TrialContext.cache: lives as long as the worker process


def forget_data() -> None:
    """Drop the splits this worker process keeps (tests; a worker keeps one data set at a time anyway)."""
    _LOADED.clear()
    _PLACED.clear()


def _load(source: DataSource) -> Any:
    if getattr(source, "node_shared", False):
        from hpsearch.trainables import nodecache

        if nodecache.enabled():
            return nodecache.shared_splits(source.cache_key(), source.load)
    return source.load()


def _data_for(
    source: DataSource, plan: device_plan.DevicePlan, builtin: bool = True, workers: int = 0
) -> tuple[Any, bool]:
    """The search's data where the plan's trials train, and whether it is on its device: loaded once per
    worker process and data source (a node's trial processes map one copy of a node-shared source), placed
    once per plan (a reused actor's next trial must not find the GPU fuller by the copy it placed itself).
    The test split (never used by a search) stays on the host. Streamed data stays where it is read
    from; a loader's data goes to a user's trainable as the loader returned it."""
    from hpsearch.trainables.data import Splits
    from hpsearch.trainables.feeds import Streamed, streamed_from

    key = source.cache_key()
    if (key, plan, builtin, workers) not in _PLACED:
        if key not in _LOADED:
            _LOADED.clear()  # one data set at a time in a worker's memory
            _PLACED.clear()
            _LOADED[key] = _load(source)
        data = _LOADED[key]
        if builtin and not isinstance(data, (Splits, Streamed)):
            from hpsearch.trainables.userdata import for_builtin

            data = for_builtin(data, bool(getattr(source, "regression", False)), workers)
        if len(_PLACED) >= 2:
            _PLACED.clear()
        if isinstance(data, Splits):
            on_device = device_plan.data_fits(data.search_bytes, plan)
            if on_device or plan.device == "cpu":
                placed: tuple[Any, bool] = data.to(plan.torch_device if on_device else "cpu", test=False), on_device
            else:  # too big for the GPU share: streamed from host memory, pinned, copied while the GPU computes
                placed = streamed_from(data), False
        elif isinstance(data, Streamed):
            placed = dataclasses.replace(data, workers=workers), False
        else:
            placed = data, False
        _PLACED[(key, plan, builtin, workers)] = placed
    return _PLACED[(key, plan, builtin, workers)]


def load_checkpoint(path: str) -> dict[str, Any]:
    """A trial checkpoint, every tensor on the CPU whatever device wrote it: ``load_state_dict`` moves
    weights and optimizer state to the model's device, and RNG states must be CPU tensors.

    Loaded as data (``weights_only=True``: tensors, numbers, strings, lists, tuples, dicts): whoever can
    write the search's storage cannot run code in the trials that resume from it.
    """
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"a checkpoint holds a dict of the trial's state, this one a {type(state).__name__}")
    return state


class CheckpointUnreadable(Exception):
    """None of a trial's checkpoints can be read back."""


RESULT_FILE = "result.json"  # beside a checkpoint's state.pt: the metrics of the epoch it was taken at


def restore_checkpoint(checkpoint: Any) -> tuple[dict[str, Any], str | None, dict[str, Any] | None]:
    """The state of the trial's newest readable checkpoint, from Tune's ``checkpoint`` back through the
    older ones the trial kept beside it (a search keeps them all), a note when it was not the newest
    (which one could not be read, why, and which one the trial resumes from), and the metrics of the
    epoch it was taken at (:data:`RESULT_FILE`; None in a checkpoint written without them).

    Raises:
        CheckpointUnreadable: no checkpoint of the trial can be read (each one's cause in the message).
    """
    import json
    import os

    problems: list[str] = []
    # the older ones are listed only when the newest cannot be read (a listing is a request on s3://)
    for candidate in itertools.chain([checkpoint], _older_checkpoints(checkpoint)):
        name = os.path.basename(str(candidate.path).rstrip("/"))
        try:
            with candidate.as_directory() as folder:
                state = load_checkpoint(os.path.join(folder, "state.pt"))
                saved = os.path.join(folder, RESULT_FILE)
                result = json.loads(open(saved).read()) if os.path.exists(saved) else None
        except Exception as exc:  # truncated, damaged, not data: the previous one may still be good
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            problems.append(f"{name}: {type(exc).__name__}: {why[:120]}")
            continue
        if not problems:
            return state, None, result
        note = f"resumed from {name} (epoch {state.get('epoch', '?')}): newer unreadable: {'; '.join(problems)}"
        return state, note, result
    raise CheckpointUnreadable("no checkpoint of the trial can be read: " + "; ".join(problems))


def _older_checkpoints(checkpoint: Any) -> Iterator[Any]:
    """The trial's checkpoints older than ``checkpoint`` (Tune's ``checkpoint_NNNNNN`` folders beside it),
    the newest first; listed when first asked for."""
    import re

    import pyarrow.fs
    from ray import tune

    path = str(checkpoint.path).rstrip("/")
    parent, _, name = path.rpartition("/")
    pattern = re.compile(r"checkpoint_(\d+)$")
    if pattern.match(name) is None:
        return
    try:
        infos = checkpoint.filesystem.get_file_info(pyarrow.fs.FileSelector(parent))
    except OSError:
        return
    older = [
        info.path
        for info in infos
        if info.type == pyarrow.fs.FileType.Directory
        and pattern.match(info.base_name) is not None
        and info.base_name < name
    ]
    for older_path in sorted(older, reverse=True):
        yield tune.Checkpoint(older_path, filesystem=checkpoint.filesystem)


@dataclasses.dataclass(frozen=True)
class TrialSettings:
    """What every trial of a search trains with (``run_trial``'s keyword arguments but ``workers``)."""

    trainable_name: str
    data: Any  # DataSource | None
    epochs: int
    seed: int
    threads: int
    checkpoint_every: int = 1
    checkpoint_min_interval_s: float = 0.0
    milestones: tuple[float, ...] = ()
    report_interval_s: float = 0.0
    gpu_share: float = 0.0
    metric: str | None = None
    also_metrics: tuple[str, ...] = ()  # the other objectives' and the constraints' metrics: required too
    loader_workers: int = 0


@dataclasses.dataclass
class Session:
    """Where a trainable's reports go: a Tune trial's own process, or one rank of its group (Ray Train)."""

    trial_id: str
    get_checkpoint: Callable[[], Any]  # the checkpoint to continue from, or None
    send: Callable[[dict[str, Any], str | None], None]  # (result, folder with the checkpoint or None)
    gpu_ids: list[str]
    device_index: int = 0
    rank: int = 0
    world_size: int = 1

    @classmethod
    def tune(cls) -> Session:
        from ray import tune

        def send(result: dict[str, Any], folder: str | None) -> None:
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder) if folder else None)

        return cls(tune.get_context().get_trial_id(), tune.get_checkpoint, send, device_plan.assigned_gpus())


def run_trial(config: dict[str, Any], *, workers: int = 1, cpu: float = 1.0, **settings: Any) -> None:
    """Tune function trainable: ``tune.with_parameters(run_trial, trainable_name=..., data=..., ...)``;
    ``data`` is the spec's data source (it loads the splits here, in the worker), ``None`` when the
    trainable reads its own; ``metric`` the search's metric (a first report without it ends the trial
    with :class:`MetricNotReported`); ``loader_workers`` the data-loader processes of streamed data.

    Every result carries ``epoch`` (the trainable's own, or counted: one ``report`` call per epoch)
    and the node and device the trial ran on; epochs are sent in batches (:class:`EpochBatch`, at
    ASHA's ``milestones``, the last epoch, checkpoints and every ``report_interval_s``). Trainables
    that accept ``resume`` (the built-ins do) checkpoint every ``checkpoint_every`` epochs, but not
    within ``checkpoint_min_interval_s`` of their previous checkpoint (their last epoch always), and
    continue from Tune's last checkpoint when a trial is restored (after a failure, or ``hpsearch resume``).

    The trial trains on the GPU Ray assigned to it, or on the CPU when it asked for none
    (:mod:`hpsearch.trainables.device`: ``gpu_share`` is the spec's ``resources.gpu``); its first
    result carries what was decided (``runtime``), which the trial's MLflow run records.

    With ``workers`` > 1 the trial is a data-parallel group of that many Ray Train workers of ``cpu``
    CPUs and ``gpu_share`` GPUs each (:mod:`hpsearch.trainables.group`); this process only waits for it.
    """
    from ray import tune

    trial = TrialSettings(**{**settings, "milestones": tuple(settings.get("milestones", ()))})
    if workers > 1:
        from hpsearch.trainables import group

        group.run_group(config, trial, workers, cpu)
        return
    exits.watch(tune.get_context().get_trial_id())  # an os._exit or fatal signal says how the process ended
    train_here(config, trial, Session.tune())


def train_here(config: dict[str, Any], trial: TrialSettings, session: Session) -> None:
    """Train one trial (or one rank of it) in this process, reporting through ``session``."""
    import inspect
    import json
    import os
    import shutil
    import tempfile

    import ray
    import torch

    lazy_dynamo.install()  # an eager trial's optimizer does without torch._dynamo (1.4-2 s of CPU)
    device_plan.flush_denormals()  # this thread trains: a converging network's epochs cost 2.5-3x otherwise
    torch.set_num_threads(trial.threads)
    plan = device_plan.plan_device(session.gpu_ids, trial.gpu_share, session.device_index)
    device_plan.apply(plan)
    fn = resolve_trainable(trial.trainable_name)
    builtin = trial.trainable_name in BUILTIN
    data, epochs, metric, also = trial.data, trial.epochs, trial.metric, trial.also_metrics
    splits, on_device = _data_for(data, plan, builtin, trial.loader_workers) if data is not None else (None, False)
    parameters = inspect.signature(fn).parameters
    trial_id = session.trial_id
    group = session.world_size > 1
    runtime = plan.tags()
    if group:
        runtime["workers"] = str(session.world_size)
        runtime["backend"] = "nccl" if plan.device == "cuda" else "gloo"
    if plan.device == "cuda":
        runtime["data"] = "gpu" if on_device else "host (too big for the GPU share: batches copied over)"
    if builtin:
        requested = str(config.get("amp", "none"))
        runtime["amp"] = (amp := plan.amp(requested)) + (f" (asked {requested})" if amp != requested else "")
    where: dict[str, Any] = {"node_id": ray.get_runtime_context().get_node_id(), "device": plan.device}
    first: dict[str, Any] = {"runtime": runtime}  # sent once, with the trial's first result

    kwargs: dict[str, Any] = {}
    if builtin or "device" in parameters:
        kwargs["device"] = plan.torch_device
    scratch = None
    if "context" in parameters or group:
        scratch = tempfile.mkdtemp(prefix=f"hpsearch-{trial_id}-")
        kwargs["context"] = TrialContext(
            trial_id, scratch, _WORKER_CACHE, plan.torch_device, rank=session.rank, world_size=session.world_size
        )
    done = 0  # epochs trained before this run of the trial (a restored trial: its checkpoint's)
    restored: dict[str, Any] | None = None  # the metrics of that checkpoint's epoch
    if builtin or "checkpoint_every" in parameters:
        kwargs["checkpoint_every"] = trial.checkpoint_every
    if builtin or "resume" in parameters:
        checkpoint = session.get_checkpoint()
        if checkpoint is not None:
            kwargs["resume"], fell_back, restored = restore_checkpoint(checkpoint)
            if fell_back is not None:  # said on the trial's run (a runtime tag)
                runtime["checkpoint"] = fell_back
            done = int(kwargs["resume"].get("epoch", 0))
    # A group's ranks must report together: every epoch, and checkpoints on the epochs that say so only.
    interval = 0.0 if group else trial.report_interval_s
    min_interval = 0.0 if group else trial.checkpoint_min_interval_s
    batch = EpochBatch(epochs, trial.milestones, interval, sent_epoch=done)
    if restored is not None:
        # The checkpoint's own epoch goes again with the next result: the search keeps it once, and has it
        # also when the checkpoint was written but its result never reached the search (a group's
        # checkpoints are Ray Train's, apart from what Tune saw: a driver killed in between lost the epoch).
        batch.pending.append(restored)
    last_checkpoint = time.monotonic()

    def send(state: dict[str, Any] | None = None) -> None:
        result = {**batch.take(), **where, **first}
        first.clear()
        if state is None or session.rank != 0:  # rank 0 checkpoints for the group
            session.send(result, None)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, os.path.join(folder, "state.pt"))
            own = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            with open(os.path.join(folder, RESULT_FILE), "w") as f:
                json.dump(own, f)
            session.send(result, folder)

    def report(metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
        nonlocal done, last_checkpoint
        for name in (metric, *also) if metric is not None else ():
            if name not in metrics:
                where = "search.metric" if name == metric else "search.objectives/constraints' metric"
                raise MetricNotReported(
                    f"{where} {name!r} is not among the metrics the trainable reported "
                    f"({', '.join(sorted(metrics)) or 'none'}): report it, or search one of these"
                )
        done += 1
        epoch = int(metrics.get("epoch", done))
        due = batch.add({**metrics, "epoch": epoch})
        if state is not None and epoch != epochs:  # a trial's last epoch is always checkpointed
            if time.monotonic() - last_checkpoint < min_interval:
                state = None  # too soon after the last one: writing it would cost more than it saves
        if state is not None:  # a checkpoint goes with the result of its own epoch
            send(state)
            last_checkpoint = time.monotonic()
        elif due:
            send()

    try:
        fn(config, splits, epochs, report, seed=trial.seed, **kwargs)
    except Exception:
        if batch.pending and not group:  # the epochs before the failure still reach MLflow
            send()
        raise
    finally:
        device_plan.release(plan)  # a reused actor's next trial (or a neighbour) gets the cached memory
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if batch.pending:  # a trainable that ended before ``epochs``
        send()
