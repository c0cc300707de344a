"""The variants ``benchmarks.overhead`` times, each run in a process of its own: (a) the ``hpsearch run``
command, (b, c) plain Ray Tune + OptunaSearch + ASHA + MLflowLoggerCallback, (d, e) in-process Optuna."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

from benchmarks import workload as w

# ``1``: variants d and e flush denormal floats in the threads that train, as hpsearch's trials do
# (README, "How it runs"): the same arithmetic on both sides of a comparison.
FLUSH_ENV = "BENCH_FLUSH_DENORMAL"


def run_a(
    trials: int,
    seed: int,
    folder: Path,
    workload: w.Workload,
    max_epochs: int | None = None,
    train_samples: int | None = None,
) -> dict:
    """`hpsearch run SPEC` as a user runs it: the CLI's main, in this process, nothing of hpsearch's run
    path imported before it (the command overlaps those imports with Ray's start); timed from inside."""
    import yaml

    from hpsearch import cli, raysetup
    from hpsearch.cli import searches

    data = w.spec_data(trials, seed, workload)
    if max_epochs:
        data["search"]["scheduler"]["max_epochs"] = max_epochs
    if train_samples:
        data["data"]["train_samples"] = train_samples
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    uri = f"sqlite:///{folder / 'mlruns.db'}"
    timing: dict[str, float] = {"ray_init_s": 0.0}
    captured: dict[str, Any] = {}
    init_ray, outcome = raysetup.init_ray, searches.outcome

    def timed_init(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return init_ray(*args, **kwargs)
        finally:
            timing["ray_ready"] = time.perf_counter()
            timing["ray_init_s"] += timing["ray_ready"] - t0

    def capture(result: Any) -> int:
        timing["written"] = time.perf_counter()
        timing["summary_at"] = time.time()
        captured["result"] = result
        return outcome(result)

    raysetup.init_ray, searches.outcome = timed_init, capture  # type: ignore[assignment]
    code = cli.main(["run", str(spec), "--tracking-uri", uri, "--storage", str(folder / "runs"), "--quiet"])
    assert code == 0, f"hpsearch run exited with {code}"
    result = captured["result"]
    records = result.records
    out = {
        # From Ray ready (the command's setup before it overlapped with Ray's start) to the results written.
        "wall_s": timing["written"] - timing["ray_ready"],
        "ray_init_s": timing["ray_init_s"],
        "search_wall_s": result.wall_time_s,
        "compute_s": sum(r.metrics.get("compute_s", 0.0) for r in records),
        "epochs": sum(r.epochs for r in records),
        "trials": len(records),
        "best": result.best.metrics[w.METRIC] if result.best else None,
        "points_reported": sum(r.epochs for r in records),
        "points_in_mlflow": _mlflow_points(uri, "bench-overhead"),
        "states": result.counts,
        "summary_at": timing["summary_at"],  # wall-clock: when the summary was printed
        "tracking_errors": len(result.tracking_errors),
        "windows": [
            (r.started, r.ended, r.metrics.get("compute_s", 0.0)) for r in sorted(records, key=lambda r: r.index)
        ],
    }
    return out


def _tune_trainable(config: dict, workload: str) -> None:
    import torch
    from ray import tune

    torch.set_num_threads(1)
    load = w.WORKLOADS[workload]
    w.fit({**load.fixed, **config}, w.load(workload), load.max_epochs, lambda metrics, state=None: tune.report(metrics))


def _define_by_run(trial: Any, workload: str) -> None:
    w.suggest(trial, w.WORKLOADS[workload])


def run_tune(trials: int, seed: int, folder: Path, workload: w.Workload, reuse_actors: bool) -> dict:
    import optuna
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=w.CONCURRENCY, include_dashboard=False, log_to_driver=False)
    ray_init = time.perf_counter() - t0
    uri = f"sqlite:///{folder / 'mlruns.db'}"

    searcher = OptunaSearch(
        space=functools.partial(_define_by_run, workload=workload.name),  # picklable: Tune saves the searcher
        metric=w.METRIC,
        mode=w.MODE,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=10),
    )
    tuner = tune.Tuner(
        tune.with_parameters(_tune_trainable, workload=workload.name),
        tune_config=tune.TuneConfig(
            metric=w.METRIC,
            mode=w.MODE,
            search_alg=searcher,
            scheduler=ASHAScheduler(
                time_attr="training_iteration",
                max_t=workload.max_epochs,
                grace_period=w.GRACE,
                reduction_factor=w.REDUCTION,
            ),
            num_samples=trials,
            max_concurrent_trials=w.CONCURRENCY,
            reuse_actors=reuse_actors,
        ),
        run_config=tune.RunConfig(
            name="bench",
            storage_path=str(folder / "runs"),
            callbacks=[MLflowLoggerCallback(tracking_uri=uri, experiment_name="bench-overhead", save_artifact=False)],
            verbose=0,
        ),
    )
    t0 = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - t0
    results = [r for r in grid]
    metrics = [r.metrics or {} for r in results]
    finished = [m[w.METRIC] for m, r in zip(metrics, results, strict=True) if r.error is None and w.METRIC in m]
    return {
        "wall_s": wall,
        "ray_init_s": ray_init,
        "compute_s": sum(m.get("compute_s", 0.0) for m in metrics),
        "epochs": sum(int(m.get("training_iteration", 0)) for m in metrics),
        "trials": len(results),
        "best": max(finished) if finished else None,
        "points_reported": sum(int(m.get("training_iteration", 0)) for m in metrics),
        "points_in_mlflow": _mlflow_points(uri, "bench-overhead"),
        "errors": sum(r.error is not None for r in results),
    }


def run_optuna(trials: int, seed: int, folder: Path, workload: w.Workload, n_jobs: int = 1) -> dict:
    """In-process Optuna; ``n_jobs`` > 1: ``study.optimize`` runs that many trials at once in threads."""
    import threading

    import optuna
    import torch

    from hpsearch.trainables.loop import TrialDiverged

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = w.load(workload.name)
    compute = 0.0
    epochs = 0
    lock = threading.Lock()

    flush = os.environ.get(FLUSH_ENV, "") == "1"

    def objective(trial: optuna.Trial) -> float:
        nonlocal compute, epochs
        if flush:  # per thread, as hpsearch's trials do (the SSE flags are per thread)
            torch.set_flush_denormal(True)
        config = w.suggest(trial, workload)
        last: dict[str, float] = {}

        def report(metrics: dict[str, float], state: Any = None) -> None:
            nonlocal epochs
            with lock:
                epochs += 1
            last.update(metrics)
            step = int(metrics["epoch"])
            trial.report(metrics[w.METRIC], step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        started = time.perf_counter()
        try:
            w.fit(config, data, workload.max_epochs, report)
        except TrialDiverged:
            return float("nan")
        finally:
            with lock:
                compute += time.perf_counter() - started
        return last[w.METRIC]

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=10),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=w.GRACE, max_resource=workload.max_epochs, reduction_factor=w.REDUCTION
        ),
    )
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials, n_jobs=n_jobs)
    wall = time.perf_counter() - t0
    values = [t.value for t in study.trials if t.value is not None and t.value == t.value]
    pruned = [
        t.intermediate_values[max(t.intermediate_values)]
        for t in study.trials
        if t.state.name == "PRUNED" and t.intermediate_values
    ]
    return {
        "wall_s": wall,
        "ray_init_s": 0.0,
        "compute_s": compute,
        "epochs": epochs,
        "trials": len(study.trials),
        "best": max(values + pruned) if values or pruned else None,
        "points_reported": epochs,
        "points_in_mlflow": None,
    }


def _mlflow_points(uri: str, experiment: str) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return 0
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    return sum(len(client.get_metric_history(r.info.run_id, w.METRIC)) for r in runs)
