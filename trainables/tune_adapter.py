"""The one place where trainables meet Ray Tune: run a trainable inside a Tune trial.

torch is imported inside the trial, not at module import: the Tune driver, which only
references ``run_trial``, does not pay for importing it.

Epochs reach Tune in batches (:class:`hpsearch.protocol.EpochBatch`, the protocol both sides share).
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from hpsearch.protocol import EpochBatch
from hpsearch.trainables import BUILTIN

if TYPE_CHECKING:
    from hpsearch.trainables.data import Splits


def resolve_trainable(name: str) -> Callable[..., None]:
    """``mlp`` or ``pkg.module:function`` -> the training function."""
    target = BUILTIN.get(name, name)
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@lru_cache(maxsize=4)
def _data_on_device(data_json: str, device: str) -> Splits:
    # With actor reuse one worker process runs many trials: load and place the data once.
    from hpsearch.trainables.data import load_data

    return load_data(json.loads(data_json)).to(device)


def trial_device() -> str:
    # Ray exposes only the GPUs assigned to this trial (CUDA_VISIBLE_DEVICES); none -> CPU.
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_trial(
    config: dict[str, Any],
    *,
    trainable_name: str,
    data: dict[str, Any],
    epochs: int,
    seed: int,
    threads: int,
    checkpoint_every: int = 1,
    checkpoint_min_interval_s: float = 0.0,
    milestones: Iterable[float] = (),
    report_interval_s: float = 0.0,
) -> None:
    """Tune function trainable: ``tune.with_parameters(run_trial, trainable_name=..., data=..., ...)``.

    Every result carries ``epoch`` (the trainable's own, or counted: one ``report`` call per epoch)
    and the node and device the trial ran on; epochs are sent in batches (:class:`EpochBatch`, at
    ASHA's ``milestones``, the last epoch, checkpoints and every ``report_interval_s``). Trainables
    that accept ``resume`` (the built-ins do) checkpoint every ``checkpoint_every`` epochs, but not
    within ``checkpoint_min_interval_s`` of their previous checkpoint (their last epoch always), and
    continue from Tune's last checkpoint when a trial is restored (after a failure, or ``hpsearch resume``).
    """
    import inspect
    import os
    import tempfile

    import ray
    import torch
    from ray import tune

    torch.set_num_threads(threads)
    device = trial_device()
    splits = _data_on_device(json.dumps(data, sort_keys=True), device)
    where = {"node_id": ray.get_runtime_context().get_node_id(), "device": device}

    fn = resolve_trainable(trainable_name)
    kwargs: dict[str, Any] = {}
    done = 0  # epochs trained before this run of the trial (a restored trial: its checkpoint's)
    if "resume" in inspect.signature(fn).parameters or trainable_name in BUILTIN:
        kwargs["checkpoint_every"] = checkpoint_every
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                kwargs["resume"] = torch.load(os.path.join(folder, "state.pt"), map_location=device, weights_only=False)
            done = int(kwargs["resume"].get("epoch", 0))
    batch = EpochBatch(epochs, milestones, report_interval_s, sent_epoch=done)
    last_checkpoint = time.monotonic()

    def send(state: dict[str, Any] | None = None) -> None:
        result = {**batch.take(), **where}
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
    if batch.pending:  # a trainable that ended before ``epochs``
        send()
