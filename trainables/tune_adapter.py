"""The one place where trainables meet Ray Tune: run a trainable inside a Tune trial.

torch is imported inside the trial, not at module import: the Tune driver, which only
references ``run_trial``, does not pay for importing it.

Epochs reach Tune in batches (:class:`hpsearch.protocol.EpochBatch`, the protocol both sides share).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from hpsearch.protocol import EpochBatch
from hpsearch.trainables import BUILTIN, exits
from hpsearch.trainables import device as device_plan

if TYPE_CHECKING:
    from hpsearch.trainables import DataSource
    from hpsearch.trainables.data import Splits


def resolve_trainable(name: str) -> Callable[..., None]:
    """``mlp`` or ``pkg.module:function`` -> the training function."""
    target = BUILTIN.get(name, name)
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


_LOADED: dict[str, Splits] = {}  # by DataSource.cache_key(): with actor reuse one worker runs many trials
_PLACED: dict[tuple[str, device_plan.DevicePlan], tuple[Splits, bool]] = {}


def forget_data() -> None:
    """Drop the splits this worker process keeps (tests; a worker keeps one data set at a time anyway)."""
    _LOADED.clear()
    _PLACED.clear()


def _data_for(source: DataSource, plan: device_plan.DevicePlan) -> tuple[Splits, bool]:
    """The search's splits where the plan's trials train, and whether they are on its device: loaded once
    per worker process and data source, placed once per plan (a reused actor's next trial must not find
    the GPU fuller by the copy it placed itself). The test split (never used by a search) stays on the host."""
    key = source.cache_key()
    if (key, plan) not in _PLACED:
        if key not in _LOADED:
            _LOADED.clear()  # one data set at a time in a worker's memory
            _PLACED.clear()
            _LOADED[key] = source.load()
        splits = _LOADED[key]
        on_device = device_plan.data_fits(splits.search_bytes, plan)
        if len(_PLACED) >= 2:
            _PLACED.clear()
        _PLACED[(key, plan)] = splits.to(plan.device if on_device else "cpu", test=False), on_device
    return _PLACED[(key, plan)]


def load_checkpoint(path: str) -> dict[str, Any]:
    """A trial checkpoint, every tensor on the CPU whatever device wrote it: ``load_state_dict`` moves
    weights and optimizer state to the model's device, and RNG states must be CPU tensors."""
    import torch

    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return state


def run_trial(
    config: dict[str, Any],
    *,
    trainable_name: str,
    data: DataSource,
    epochs: int,
    seed: int,
    threads: int,
    checkpoint_every: int = 1,
    checkpoint_min_interval_s: float = 0.0,
    milestones: Iterable[float] = (),
    report_interval_s: float = 0.0,
    gpu_share: float = 0.0,
) -> None:
    """Tune function trainable: ``tune.with_parameters(run_trial, trainable_name=..., data=..., ...)``;
    ``data`` is the spec's data source (it loads the splits here, in the worker).

    Every result carries ``epoch`` (the trainable's own, or counted: one ``report`` call per epoch)
    and the node and device the trial ran on; epochs are sent in batches (:class:`EpochBatch`, at
    ASHA's ``milestones``, the last epoch, checkpoints and every ``report_interval_s``). Trainables
    that accept ``resume`` (the built-ins do) checkpoint every ``checkpoint_every`` epochs, but not
    within ``checkpoint_min_interval_s`` of their previous checkpoint (their last epoch always), and
    continue from Tune's last checkpoint when a trial is restored (after a failure, or ``hpsearch resume``).

    The trial trains on the GPU Ray assigned to it, or on the CPU when it asked for none
    (:mod:`hpsearch.trainables.device`: ``gpu_share`` is the spec's ``resources.gpu``); its first
    result carries what was decided (``runtime``), which the trial's MLflow run records.
    """
    import inspect
    import os
    import tempfile

    import ray
    import torch
    from ray import tune

    exits.watch(tune.get_context().get_trial_id())  # an os._exit or fatal signal says how the process ended
    torch.set_num_threads(threads)
    plan = device_plan.plan_device(device_plan.assigned_gpus(), gpu_share)
    device_plan.apply(plan)
    splits, on_device = _data_for(data, plan)
    fn = resolve_trainable(trainable_name)
    builtin = trainable_name in BUILTIN
    parameters = inspect.signature(fn).parameters
    runtime = plan.tags()
    if plan.device == "cuda":
        runtime["data"] = "gpu" if on_device else "host (too big for the GPU share: batches copied over)"
    if builtin:
        requested = str(config.get("amp", "none"))
        runtime["amp"] = (amp := plan.amp(requested)) + (f" (asked {requested})" if amp != requested else "")
    where: dict[str, Any] = {"node_id": ray.get_runtime_context().get_node_id(), "device": plan.device}
    first: dict[str, Any] = {"runtime": runtime}  # sent once, with the trial's first result

    kwargs: dict[str, Any] = {}
    if builtin or "device" in parameters:
        kwargs["device"] = plan.device
    done = 0  # epochs trained before this run of the trial (a restored trial: its checkpoint's)
    if builtin or "resume" in parameters:
        kwargs["checkpoint_every"] = checkpoint_every
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                kwargs["resume"] = load_checkpoint(os.path.join(folder, "state.pt"))
            done = int(kwargs["resume"].get("epoch", 0))
    batch = EpochBatch(epochs, milestones, report_interval_s, sent_epoch=done)
    last_checkpoint = time.monotonic()

    def send(state: dict[str, Any] | None = None) -> None:
        result = {**batch.take(), **where, **first}
        first.clear()
        if state is None:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, os.path.join(folder, "state.pt"))
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))

    def report(metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
        nonlocal done, last_checkpoint
        done += 1
        epoch = int(metrics.get("epoch", done))
        due = batch.add({**metrics, "epoch": epoch})
        if state is not None and epoch != epochs:  # a trial's last epoch is always checkpointed
            if time.monotonic() - last_checkpoint < checkpoint_min_interval_s:
                state = None  # too soon after the last one: writing it would cost more than it saves
        if state is not None:  # a checkpoint goes with the result of its own epoch
            send(state)
            last_checkpoint = time.monotonic()
        elif due:
            send()

    try:
        fn(config, splits, epochs, report, seed=seed, **kwargs)
    except Exception:
        if batch.pending:  # the epochs before the failure still reach MLflow
            send()
        raise
    finally:
        device_plan.release(plan)  # a reused actor's next trial (or a neighbour) gets the cached memory
    if batch.pending:  # a trainable that ended before ``epochs``
        send()
