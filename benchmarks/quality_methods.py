"""The methods ``benchmarks.quality`` compares, and its workloads: the same space, trainable, seeds and
concurrency for each. Trainables are named ``benchmarks.quality_methods:fit_*`` (Ray's workers import them
by that name)."""

from __future__ import annotations

import functools
import json
import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METHODS = {
    "a": "hpsearch",
    "b": "Ray Tune OptunaSearch + ASHA",
    "c": "Optuna TPE + Hyperband",
    "d": "random + ASHA",
    # ablations of a (not in the default run): what each of its changes buys
    "e": "hpsearch, no first configs",
    "f": "hpsearch, no constant liar",
}
ABLATIONS = {"e": {"enqueue": []}, "f": {"sampler_constant_liar": False}}
TIMELINE_ENV = "BENCH_QUALITY_TIMELINE"  # the folder trials write their epochs to
METRIC, MODE, CONCURRENCY, GRACE, FACTOR = "val_accuracy", "max", 2, 1, 3
FRACTIONS = (0.25, 0.5, 1.0)

CNN_SPACE: dict[str, Any] = {
    "blocks": {"int": [1, 2]},
    "channels": {"choice": [8, 16, 32]},
    "activation": {"choice": ["relu", "elu", "selu", "gelu"]},
    "batch_norm": {"choice": ["none", "before", "after"]},
    "dropout": {"float": [0.0, 0.5]},
    "batch_size": {"choice": [32, 64, 128]},
    "optimizer": {
        "choice": {
            "sgd": {"lr": {"float": [1.0e-3, 3.0e-1], "log": True}, "momentum": {"float": [0.0, 0.95]}},
            "adam": {"lr": {"float": [1.0e-4, 3.0e-2], "log": True}},
        }
    },
    "grad_clip": {"choice": {"none": {}, "norm": {"threshold": {"float": [0.1, 10.0], "log": True}}}},
}


@dataclass(frozen=True)
class Workload:
    name: str
    trainable: str  # built-in trainable the benchmark's wrapper trains
    data: dict[str, Any]
    space: Any  # a preset name or an inline space
    max_epochs: int
    trials: int
    about: str


WORKLOADS = {
    "digits": Workload(
        "digits", "mlp", {"dataset": "digits"}, "seed_practices_mlp", 9, 40,
        "MLP on scikit-learn's digits, the whole seed_practices_mlp space (9 activations, 6 optimizers, "
        "6 schedules, clipping; high SGD learning rates diverge)",
    ),
    "tabular": Workload(
        "tabular", "mlp", {"dataset": "synthetic", "samples": 3000, "features": 12, "classes": 8}, "mlp_basic", 9, 40,
        "MLP on a noisy synthetic tabular task (12 features, 8 classes; ~0.85 is near its ceiling), mlp_basic space",
    ),
    "images": Workload(
        "images", "cnn", {"dataset": "synthetic", "samples": 2000, "shape": [1, 6, 6], "classes": 16}, CNN_SPACE, 9, 30,
        "a small CNN on synthetic 1x6x6 images (16 classes: slow to learn, the optimizer and its rate decide)",
    ),
}  # fmt: skip


# The trainable every method runs: the built-in, and a line per epoch in the timeline -----------------
def _trial_writer(config: dict[str, Any]) -> Any:
    folder = os.environ.get(TIMELINE_ENV)
    if not folder:
        return lambda metrics: None
    run = (Path(folder) / "current").read_text().strip()
    trial = uuid.uuid4().hex[:12]
    path = Path(folder) / f"{os.getpid()}.jsonl"

    def write(metrics: dict[str, float]) -> None:
        line = {"run": run, "trial": trial, "t": time.time(), "epoch": int(metrics["epoch"])}
        line["value"] = float(metrics.get(METRIC, math.nan))
        if line["epoch"] == 1:
            line["config"] = config
        with open(path, "a") as f:
            f.write(json.dumps(line, default=str) + "\n")

    return write


def _train(kind: str, config: dict[str, Any], data: Any, epochs: int, report: Any, seed: int = 0, **kw: Any) -> Any:
    from hpsearch.trainables.loop import train_cnn, train_mlp

    config = {k: v for k, v in config.items() if "[" not in k}  # Ray's OptunaSearch adds Optuna's own names
    write = _trial_writer(config)

    def timed(metrics: dict[str, float], state: Any = None) -> None:
        write(metrics)
        report(metrics) if state is None else report(metrics, state)

    fn = train_mlp if kind == "mlp" else train_cnn
    return fn(config, data, epochs, timed, seed=seed, **kw)


def fit_mlp(config: dict[str, Any], data: Any, epochs: int, report: Any, seed: int = 0, **kw: Any) -> Any:
    return _train("mlp", config, data, epochs, report, seed, **kw)


def fit_cnn(config: dict[str, Any], data: Any, epochs: int, report: Any, seed: int = 0, **kw: Any) -> Any:
    return _train("cnn", config, data, epochs, report, seed, **kw)


@functools.lru_cache(maxsize=4)
def _cached_data(name: str) -> Any:
    from hpsearch.sources import load_data

    return load_data(WORKLOADS[name].data)


def _space(load: Workload) -> Any:
    from hpsearch import spaces

    return spaces.load_space(load.space)


# The four methods --------------------------------------------------------------------------------
def spec_for(load: Workload, seed: int, trials: int, name: str, **search: Any) -> Any:
    from hpsearch.spec import parse_spec

    liar = search.pop("sampler_constant_liar", True)
    return parse_spec(
        {
            "name": name,
            "trainable": f"benchmarks.quality_methods:fit_{load.trainable}",
            "data": load.data,
            "space": load.space,
            "search": {
                "num_trials": trials,
                "max_concurrent": CONCURRENCY,
                "sampler": {"seed": seed, "constant_liar": liar},
                "scheduler": {"max_epochs": load.max_epochs, "grace_period": GRACE, "reduction_factor": FACTOR},
                **search,
            },
        }
    )


def run_hpsearch(load: Workload, seed: int, trials: int, folder: Path, name: str, **search: Any) -> None:
    from hpsearch.run import run_search

    spec = spec_for(load, seed, trials, name, **search)
    run_search(spec, tracking_uri=f"sqlite:///{folder / 'mlruns.db'}", storage=folder / "runs", quiet=True)


def _tune_trainable(config: dict[str, Any], workload: str, seed: int) -> None:
    import torch
    from ray import tune

    torch.set_num_threads(1)
    load = WORKLOADS[workload]
    _train(load.trainable, config, _cached_data(workload), load.max_epochs, lambda m, s=None: tune.report(m), seed)


def run_tune(load: Workload, seed: int, trials: int, folder: Path, random: bool) -> None:
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from hpsearch import spaces

    sampler = optuna.samplers.RandomSampler(seed=seed) if random else optuna.samplers.TPESampler(seed=seed)
    tuner = tune.Tuner(
        tune.with_parameters(_tune_trainable, workload=load.name, seed=seed),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            search_alg=OptunaSearch(
                space=spaces.define_by_run(_space(load)), metric=METRIC, mode=MODE, sampler=sampler
            ),
            scheduler=ASHAScheduler(max_t=load.max_epochs, grace_period=GRACE, reduction_factor=FACTOR),
            num_samples=trials,
            max_concurrent_trials=CONCURRENCY,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name="quality", storage_path=str(folder / "runs"), verbose=0),
    )
    tuner.fit()


def run_optuna(load: Workload, seed: int, trials: int) -> None:
    import optuna
    import torch

    from hpsearch import spaces
    from hpsearch.protocol import TrialDiverged

    torch.set_num_threads(1)
    data = _cached_data(load.name)
    fn = spaces.define_by_run(_space(load))

    def objective(trial: optuna.Trial) -> float:
        config = fn(trial)
        last: dict[str, float] = {}

        def report(metrics: dict[str, float], state: Any = None) -> None:
            last.update(metrics)
            trial.report(metrics[METRIC], int(metrics["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            _train(load.trainable, config, data, load.max_epochs, report, seed)
        except TrialDiverged:
            return math.nan  # Optuna records it as FAIL
        return last[METRIC]

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=GRACE, max_resource=load.max_epochs, reduction_factor=FACTOR
        ),
    )
    study.optimize(objective, n_trials=trials, n_jobs=CONCURRENCY)
