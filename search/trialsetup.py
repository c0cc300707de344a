"""What each trial of a search runs with: the Tune trainable and its resources, and for multi-worker
trials (``resources.workers``) how many run at once and the callback that frees a stopped group."""

from __future__ import annotations

from typing import Any

from hpsearch.spec import JobSpec


def trainable_for(spec: JobSpec) -> Any:
    """The Tune trainable of a spec: ``run_trial`` with the spec's settings, and its resources."""
    from ray import tune

    from hpsearch.trainables.tune_adapter import run_trial

    res = spec.resources
    pbt_interval = spec.search.scheduler.checkpoint_interval()  # PBT continues trials from these epochs' checkpoints
    # A group's workers hold its CPUs and GPUs (Ray Train reserves them); the trial's process only waits.
    # Tune needs a reservation that is not empty: one byte of memory, so the group fits where its workers do.
    own: dict[str, float] = {"cpu": 0, "gpu": 0, "memory": 1} if res.workers > 1 else {"cpu": res.cpu, "gpu": res.gpu}
    return tune.with_resources(
        tune.with_parameters(
            run_trial,
            trainable_name=spec.trainable,
            data=spec.data,
            epochs=spec.epochs,
            seed=spec.search.sampler.seed,
            threads=max(1, int(spec.resources.cpu)),
            checkpoint_every=pbt_interval or spec.search.checkpoint_every,
            checkpoint_min_interval_s=0.0 if pbt_interval else spec.search.checkpoint_min_interval_s,
            milestones=spec.search.scheduler.milestones(),
            report_interval_s=spec.search.report_interval_s,
            gpu_share=spec.resources.gpu,
            metric=spec.search.metric,
            also_metrics=tuple(
                dict.fromkeys([*spec.search.objective_metrics[1:], *(c.metric for c in spec.search.parsed_constraints)])
            ),
            # a trial's own core reads too: the others load batches of streamed data
            loader_workers=max(0, int(spec.resources.cpu) - 1),
            workers=res.workers,
            cpu=res.cpu,
        ),
        own,
    )


def scheduler_for(spec: JobSpec, ledger: Any) -> Any:
    """The search's Tune scheduler; PBT's tells ``ledger`` of each exploit (a segment of the trial)."""
    from hpsearch.trainables import BUILTIN

    scheduler = spec.search.scheduler.build_for(spec.search_space, spec.trainable in BUILTIN, spec.search.sampler.seed)
    if hasattr(scheduler, "recorder"):
        scheduler.recorder = ledger.trial_exploited
    return scheduler


def first_population(spec: JobSpec) -> Any:
    """The trials of a population-based search (PBT): the spec's first configs (filled in at random where
    partial), then configs drawn at random (seeded by the sampler's seed), ``num_trials`` in all."""
    from hpsearch import spaces
    from hpsearch.population import Population

    search = spec.search
    return Population(
        spaces.sample(spec.search_space, search.num_trials, search.sampler.seed, first=spec.first_configs)
    )


def group_callbacks(spec: JobSpec) -> list[Any]:
    """For multi-worker trials: the callback that frees a group's workers when its trial ends."""
    if spec.resources.workers == 1:
        return []
    from hpsearch.trainables.group import group_release_callback

    return [group_release_callback()]


def concurrent_trials(spec: JobSpec, cluster: dict[str, float] | None) -> int:
    """How many trials may run at once: the spec's ``max_concurrent``; for multi-worker trials, no more
    groups than the cluster's CPUs and GPUs hold (Tune counts only the trials' own tiny reservations:
    more would start Train runs that wait for workers). ``cluster``: Ray's total resources."""
    res, limit = spec.resources, spec.search.max_concurrent
    if res.workers == 1 or cluster is None:
        return limit
    fits = [int(cluster.get("CPU", 0) // (res.cpu * res.workers))]
    if res.gpu:
        fits.append(int(cluster.get("GPU", 0) // (res.gpu * res.workers)))
    return max(1, min(limit, *fits))


__all__ = ["concurrent_trials", "group_callbacks", "trainable_for"]
