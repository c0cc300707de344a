"""The one place where trainables meet Ray Tune: run a trainable inside a Tune trial.

torch is imported inside the trial, not at module import: the Tune driver, which only
references ``run_trial``, does not pay for importing it.

Epochs reach Tune in batches (:class:`EpochBatch`): each Tune result is a round trip to the driver
(the trial waits for it), which costs as much as a short epoch. A result is sent at every epoch
where ASHA decides (its rungs), at the last epoch, with every checkpoint, and otherwise when
``report_interval_s`` has passed since the previous one; it carries the epochs before it in
``earlier_epochs``, so every epoch's metrics still reach MLflow. Epochs longer than the interval
are each sent as they end, as without batching.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from trainables import BUILTIN

if TYPE_CHECKING:
    from trainables.data import Splits


def resolve_trainable(name: str) -> Callable[..., None]:
    """``mlp`` or ``pkg.module:function`` -> the training function."""
    target = BUILTIN.get(name, name)
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@lru_cache(maxsize=4)
def _data_on_device(data_json: str, device: str) -> Splits:
    # With actor reuse one worker process runs many trials: load and place the data once.
    from trainables.data import load_data

    return load_data(json.loads(data_json)).to(device)


EARLIER = "earlier_epochs"  # result key: the metrics of the epochs a result carries besides its own


def asha_milestones(max_t: int, grace_period: int, reduction_factor: float) -> list[float]:
    """The epochs where Ray's ``ASHAScheduler`` (one bracket) decides: ``grace * rf**k`` for as many
    rungs as Ray makes (its formula, ``int(log(max_t / grace) / log(rf) + 1)``), ascending."""
    rungs = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor**k for k in range(rungs)]


class EpochBatch:
    """Collects per-epoch metrics; ``add`` says when they must go to Tune: an ASHA milestone was
    reached (so ASHA decides on exactly the epoch it would without batching), the last epoch, or
    ``interval_s`` since the last send. ``take`` returns one Tune result: the newest epoch's
    metrics with the earlier ones under ``EARLIER``."""

    def __init__(
        self,
        epochs: int,
        milestones: Iterable[float] = (),
        interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sent_epoch: int = 0,
    ):
        self.epochs, self.milestones, self.interval_s, self.clock = epochs, sorted(milestones), interval_s, clock
        self.pending: list[dict[str, Any]] = []
        self.sent_epoch = sent_epoch  # the last epoch Tune has seen (a restored trial: its checkpoint's)
        self.sent_at = clock()

    def add(self, metrics: dict[str, Any]) -> bool:
        self.pending.append(metrics)
        epoch = metrics["epoch"]
        return (
            epoch >= self.epochs
            or any(self.sent_epoch < m <= epoch for m in self.milestones)
            or self.clock() - self.sent_at >= self.interval_s
        )

    def take(self) -> dict[str, Any]:
        *earlier, last = self.pending
        self.pending = []
        self.sent_epoch, self.sent_at = last["epoch"], self.clock()
        return {**last, EARLIER: earlier} if earlier else dict(last)


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
