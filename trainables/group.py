"""A trial trained by several workers together (``resources.workers`` > 1): one Ray Train ``TorchTrainer``
run per Tune trial, as Ray's guide for hyperparameter tuning with Ray Train shows (Ray 2.60, Train V2).

- **Who does what.** The Tune trial's own process only starts the run and waits. Each of the ``workers``
  Train workers runs :func:`hpsearch.trainables.tune_adapter.train_here` as one rank of a
  ``torch.distributed`` group (NCCL on GPUs, gloo on CPUs): it trains on its part of every batch and its
  gradients are averaged across the ranks (DDP). Every rank reports every epoch; rank 0's metrics reach
  Tune (and so ASHA, Optuna and MLflow), and rank 0 alone writes the checkpoint.
- **Stopping.** When ASHA stops the trial, Tune ends its process; the Train controller and workers it
  started go with it (Ray ends an actor whose owner died). Group trials do not reuse actors for that.
- **Failures.** The Train run itself never retries. A worker that raised ends the trial the way the same
  error would end a one-worker trial (diverged, failed); a worker that died or whose node was lost
  surfaces as :class:`~hpsearch.protocol.GroupWorkerLost`, which the search counts as a lost node
  (``search.max_node_restarts``): Tune starts the trial again, and the new run (same name, same storage,
  under the trial's folder) continues from the group's last checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpsearch.protocol import EXIT_NOTE_NAMESPACE, GroupWorkerLost, TrialDiverged, group_key

if TYPE_CHECKING:
    from hpsearch.trainables.tune_adapter import TrialSettings

RUN_NAME = "group"  # the Train run's folder under the trial's: where the group's checkpoints are


def run_group(config: dict[str, Any], trial: TrialSettings, workers: int, cpu: float) -> None:
    """Run the trial as a group of ``workers`` Ray Train workers and wait for it (in the Tune trial)."""
    from ray import tune
    from ray.train._internal.session import get_storage

    # Train V2 by name: Ray 2.60's default, and what the group needs whatever RAY_TRAIN_V2_ENABLED says
    from ray.train.v2.api.config import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.v2.api.exceptions import TrainingFailedError
    from ray.train.v2.torch.torch_trainer import TorchTrainer

    storage = get_storage()
    resources: dict[str, float] = {"CPU": cpu}
    if trial.gpu_share:
        resources["GPU"] = trial.gpu_share
    trainer = TorchTrainer(
        _rank_main,
        train_loop_config={"config": config, "trial": trial, "trial_id": tune.get_context().get_trial_id()},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=trial.gpu_share > 0, resources_per_worker=resources),
        run_config=RunConfig(
            name=RUN_NAME,
            storage_path=storage.trial_fs_path,
            storage_filesystem=storage.storage_filesystem,
            callbacks=[_rank_zero_to_tune()],
            # every failure goes back to Tune, which knows the search's limits (see the module's docstring)
            failure_config=FailureConfig(max_failures=0, max_preemption_failures=0),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    try:
        trainer.fit()
    except TrainingFailedError as exc:
        raise failure_of(exc) from None


def failure_of(exc: BaseException) -> BaseException:
    """What a failed group run means for the trial: a worker's own error (the first rank's, with a
    divergence first: it says the config is at fault), or :class:`GroupWorkerLost` when a worker died."""
    failures: dict[int, BaseException] = dict(getattr(exc, "worker_failures", None) or {})
    if not failures:
        return exc  # the controller failed: the trial fails with that
    raised: list[tuple[int, BaseException]] = []
    lost: list[str] = []
    for rank, failure in sorted(failures.items()):
        error = _unwrap(failure)
        if error is None:
            lost.append(f"rank {rank}: {_first_line(failure)}")
        else:
            raised.append((rank, error))
    for _, error in raised:
        if isinstance(error, TrialDiverged):
            return error
    if lost:
        return GroupWorkerLost(f"a worker of the trial's group was lost ({'; '.join(lost)})"[:600])
    return raised[0][1]


def _unwrap(failure: BaseException) -> BaseException | None:
    """The exception a worker raised, or ``None`` when the worker died (its process, or its node)."""
    from ray.exceptions import RayActorError, RayTaskError

    health = getattr(failure, "health_check_failure", None)  # WorkerHealthCheckFailedError
    if health is not None or isinstance(failure, RayActorError):
        return None
    base = getattr(failure, "_base_exc", None)  # UserExceptionWithTraceback
    if base is not None:
        failure = base
    if isinstance(failure, RayTaskError):
        cause = failure.as_instanceof_cause()
        return None if isinstance(cause, RayActorError) else cause
    return failure


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _rank_zero_to_tune() -> Any:
    """Ray's ``TuneReportCallback`` without the checkpoint's path among the metrics (the group's
    checkpoints stay in the Train run's folder; the trial's MLflow run records numbers only)."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class RankZeroToTune(TuneReportCallback):
        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            self._training_actor_item_queue.put(metrics[0].copy())

    return RankZeroToTune()


def _leave_placement_group(trial_id: str) -> None:
    """Say which placement group holds the group's workers (:func:`hpsearch.protocol.group_key`)."""
    from ray.experimental.internal_kv import _internal_kv_put
    from ray.util import get_current_placement_group

    group = get_current_placement_group()
    if group is not None:
        _internal_kv_put(group_key(trial_id), group.id.hex().encode(), overwrite=True, namespace=EXIT_NOTE_NAMESPACE)


def release_group(trial_id: str) -> bool:
    """Remove the placement group the trial's group left word of, if it is still there; whether it was.

    Called in the search's driver when a trial ends. Tune ends a stopped trial's process at once, and its
    Train controller with it, before the controller removes the workers' placement group; Ray Train's own
    cleaner needs the dashboard's state API, which a local search's Ray runs without. Until removed, the
    group's CPUs and GPUs would stay reserved and the next group would wait for them forever.
    """
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get, _internal_kv_initialized
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    if not _internal_kv_initialized():
        return False
    key = group_key(trial_id)
    found = _internal_kv_get(key, namespace=EXIT_NOTE_NAMESPACE)
    if found is None:
        return False
    _internal_kv_del(key, namespace=EXIT_NOTE_NAMESPACE)
    from ray._raylet import PlacementGroupID

    group = PlacementGroup(PlacementGroupID(bytes.fromhex(found.decode())))
    try:
        if placement_group_table(group).get("state") == "REMOVED":
            return False
        remove_placement_group(group)
    except Exception:  # removed meanwhile (the controller ended normally)
        return False
    return True


def _rank_main(loop_config: dict[str, Any]) -> None:
    """One rank of the group, in a Ray Train worker."""
    import ray.train
    import ray.train.torch

    from hpsearch.trainables import device as device_plan
    from hpsearch.trainables.tune_adapter import Session, train_here

    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = ray.train.torch.get_device()
    if rank == 0:
        _leave_placement_group(loop_config["trial_id"])

    def send(result: dict[str, Any], folder: str | None) -> None:
        ray.train.report(result, checkpoint=ray.train.Checkpoint.from_directory(folder) if folder else None)

    session = Session(
        trial_id=loop_config["trial_id"],
        get_checkpoint=ray.train.get_checkpoint,
        send=send,
        gpu_ids=device_plan.assigned_gpus(),
        device_index=(device.index or 0) if device.type == "cuda" else 0,
        rank=rank,
        world_size=context.get_world_size(),
    )
    train_here(loop_config["config"], loop_config["trial"], session)


def group_release_callback() -> Any:
    """A Tune callback for the search's driver: :func:`release_group` of every trial that ends or is retried."""
    from ray.tune import Callback

    class GroupRelease(Callback):
        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            release_group(trial.trial_id)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            release_group(trial.trial_id)

        def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            release_group(trial.trial_id)

    return GroupRelease()


__all__ = ["RUN_NAME", "failure_of", "group_release_callback", "release_group", "run_group"]
