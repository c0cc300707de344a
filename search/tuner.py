"""Assemble and run a search: Ray Tune + OptunaSearch (define-by-run, TPE) + ASHA + MLflow tracking."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import spaces
from search.errors import HpsearchError
from search.ledger import Ledger, TrialRecord
from search.progress import ProgressPrinter
from search.spec import JobSpec
from search.tracking import MlflowTracker, check_reachable, default_tracking_uri, flatten
from trainables import BUILTIN

# Tune settings chosen for many short trials on few cores (README, "How it runs"). Snapshots of
# the experiment state every few minutes, not at Tune's automatic cadence; trials stay in the
# driver's working directory (relative data paths keep working). Both overridable.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "300")
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
# Ray's console reporter: silent (verbose=0) only with the classic output engine; we print our own.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


@dataclass
class SearchResult:
    spec_name: str
    status: str  # FINISHED | KILLED (interrupted) | FAILED (the driver failed)
    metric: str
    mode: str
    tracking_uri: str
    experiment_id: str | None
    parent_run_id: str | None
    run_dir: Path
    wall_time_s: float
    counts: dict[str, int]
    best: TrialRecord | None
    records: list[TrialRecord] = field(default_factory=list)
    tracking_errors: list[str] = field(default_factory=list)
    metric_points: int = 0
    searcher_states: dict[str, int] = field(default_factory=dict)  # Optuna's view: COMPLETE / FAIL / ...


def optuna_search(spec: JobSpec) -> Any:
    """OptunaSearch with TPE (seeded) driven by the space's define-by-run function."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    sampler_spec = spec.search.sampler
    sampler = optuna.samplers.TPESampler(
        seed=sampler_spec.seed,
        n_startup_trials=sampler_spec.n_startup_trials,
        multivariate=sampler_spec.multivariate,
        group=sampler_spec.multivariate,  # conditional spaces need group sampling for multivariate TPE
    )
    return _space_search_class()(
        space=spaces.define_by_run(spec.search_space), metric=spec.search.metric, mode=spec.search.mode, sampler=sampler
    )


@lru_cache(maxsize=1)
def _space_search_class() -> type:
    from ray.tune.search.optuna import OptunaSearch

    global SpaceSearch

    class SpaceSearch(OptunaSearch):
        """OptunaSearch whose trial config is exactly what the compiled space returns.

        Ray's OptunaSearch merges Optuna's raw parameter names (``optimizer[sgd].lr``) into the
        config; ours are resolved by the space (``optimizer.lr``).
        """

        def _suggest_from_define_by_run_func(self, func, ot_trial):  # type: ignore[override]
            return func(ot_trial)

        def trial_states(self) -> dict[str, int]:
            """How many Optuna trials ended in each state (COMPLETE, FAIL, ...)."""
            states: dict[str, int] = {}
            for t in self._ot_study.trials:
                states[t.state.name] = states.get(t.state.name, 0) + 1
            return states

    SpaceSearch.__qualname__ = "SpaceSearch"  # picklable by reference: search.tuner.SpaceSearch
    return SpaceSearch


def asha_scheduler(spec: JobSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    s = spec.search.scheduler
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=s.max_epochs,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
    )


def spec_params(spec: JobSpec) -> dict[str, Any]:
    """The spec, minus the space, flattened: the parent run's params."""
    data = spec.model_dump(exclude={"space"})
    data["space"] = spec.space if isinstance(spec.space, str) else "inline"
    return flatten(data)


def trial_describer(trainable: str) -> Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, str]]] | None:
    """For built-in trainables a trial's run records the config as trained: every default filled in,
    implications applied (SELU's self-normalising set-up), and a tag naming what was overridden."""
    if trainable not in BUILTIN:
        return None
    from trainables.config import ConfigError, overrides, resolve

    def describe(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        try:
            changed = overrides(trainable, config)
            params = resolve(trainable, config)
        except ConfigError:  # the trial fails with the same message; record the config as sampled
            return config, {}
        tags = {"hpsearch.overrides": ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items())} if changed else {}
        return params, tags

    return describe


def init_ray(address: str | None, num_cpus: int | None = None, log_to_driver: bool = False) -> None:
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = dict(log_to_driver=log_to_driver, logging_level=logging.WARNING)
    if address:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            auth = os.environ.get("RAY_AUTH_MODE")
            hint = (
                "if the cluster uses token authentication (Ray 2.60's default), set RAY_AUTH_MODE=token and "
                "provide the token in ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
                if auth != "token"
                else "check the address and that the token matches the cluster's"
            )
            raise HpsearchError(f"cannot join the Ray cluster at {address}: {exc}; {hint}") from exc
    else:
        # A local cluster of our own: Ray turns token auth on for it and says so; not news for the user.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)


def run_search(
    spec: JobSpec,
    tracking_uri: str | None = None,
    storage: str | Path | None = None,
    address: str | None = None,
    quiet: bool = False,
    ray_logs: bool = False,
) -> SearchResult:
    """Run the whole search and return its summary; the spec must already be validated.

    Trial errors are summarised by hpsearch (and kept in MLflow and the Tune folder); Ray's own
    per-error tracebacks on the console are shown only with ``ray_logs``.
    """
    from ray import tune

    from trainables.tune_adapter import run_trial

    started = time.time()
    uri = tracking_uri or spec.tracking.uri or default_tracking_uri()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_name = f"{spec.name}-{stamp}"
    storage_path = Path(storage or "hpsearch_results").expanduser().resolve()

    check_reachable(uri)
    searcher = optuna_search(spec)
    tracker = MlflowTracker(uri, spec.name, describe=trial_describer(spec.trainable))
    tracker.start(
        run_name=f"search {stamp}",
        params=spec_params(spec),
        tags={"hpsearch.run_dir": str(storage_path / run_name)},
        artifacts={
            "spec.yaml": spec.source_text or json.dumps(spec.model_dump(), indent=2),
            "space.json": json.dumps(spec.search_space.to_data(), indent=2),
        },
    )
    ledger = Ledger(spec.epochs, spec.search.metric, spec.search.mode, listeners=[tracker])
    if not quiet:
        ledger.listeners.append(ProgressPrinter(ledger, spec.search.num_trials, spec.epochs))

    if not ray_logs:
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    status = "FAILED"
    try:
        init_ray(address, log_to_driver=ray_logs)
        tracker.wait_ready()
        trainable = tune.with_resources(
            tune.with_parameters(
                run_trial,
                trainable_name=spec.trainable,
                data=spec.data.model_dump(),
                epochs=spec.epochs,
                seed=spec.search.sampler.seed,
                threads=max(1, int(spec.resources.cpu)),
            ),
            {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=spec.search.metric,
                mode=spec.search.mode,
                search_alg=searcher,
                scheduler=asha_scheduler(spec),
                num_samples=spec.search.num_trials,
                max_concurrent_trials=spec.search.max_concurrent,
                # Reusing trial actors avoids a new Python worker (and torch import) per trial:
                # measured 64 s -> 8 s for 20 short digits trials on 2 cores.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=run_name,
                storage_path=str(storage_path),
                callbacks=[ledger],
                failure_config=tune.FailureConfig(max_failures=0),
                verbose=0,
            ),
        )
        tuner.fit()
        finished = sum(1 for r in ledger.records.values() if r.state != "running")
        status = "FINISHED" if finished == spec.search.num_trials else "KILLED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        wall = time.time() - started
        result = _finish(spec, tracker, ledger, status, wall, uri, storage_path / run_name)
        result.searcher_states = searcher.trial_states()
    return result


def _finish(
    spec: JobSpec, tracker: MlflowTracker, ledger: Ledger, status: str, wall: float, uri: str, run_dir: Path
) -> SearchResult:
    metric = spec.search.metric
    ledger.interrupt_running()
    counts = ledger.counts()
    best = ledger.best()
    metrics = {f"trials_{state}": float(n) for state, n in counts.items() if state != "running"}
    metrics["wall_time_s"] = wall
    params: dict[str, Any] = {}
    tags = {"hpsearch.status": status}
    trials = [
        {
            "trial": r.name,
            "trial_id": r.trial_id,
            "state": r.state,
            "epochs": r.epochs,
            **r.metrics,
            "config": r.config,
            **({"error": r.error} if r.error else {}),
        }
        for r in ledger.records.values()
    ]
    artifacts = {"trials.json": json.dumps(trials, indent=2, default=str)}
    if best is not None:
        metrics[f"best_{metric}"] = best.metrics[metric]
        params.update({f"best.{k}": v for k, v in best.config.items()})
        tags["hpsearch.best_trial"] = best.name
        artifacts["best_config.json"] = json.dumps(
            {"trial": best.name, "metric": metric, "value": best.metrics[metric], "config": best.config}, indent=2
        )
    errors = tracker.finish(status, metrics, params, tags, artifacts)
    return SearchResult(
        spec_name=spec.name,
        status=status,
        metric=metric,
        mode=spec.search.mode,
        tracking_uri=uri,
        experiment_id=tracker.experiment_id,
        parent_run_id=tracker.parent_run_id,
        run_dir=run_dir,
        wall_time_s=wall,
        counts=counts,
        best=best,
        records=list(ledger.records.values()),
        tracking_errors=errors,
        metric_points=tracker.points_reported,
    )


__all__ = ["HpsearchError", "SearchResult", "asha_scheduler", "optuna_search", "run_search"]
