"""Orchestration overhead: one workload (benchmarks/workload.py) searched four ways.

    python -m benchmarks.overhead --trials 60 [--repeats 3]
    python -m benchmarks.overhead --scale 500          # per-trial overhead, first vs last 100 trials

Variants, each in a fresh Python process started by this one, in rotating order, same seeds:
  a  this service: hpsearch's run path (run_search), MLflow logging on, SQLite store
  b  plain Ray Tune + OptunaSearch + ASHAScheduler + MLflowLoggerCallback, Tune defaults
  c  the same as b with reuse_actors=True
  d  in-process Optuna: TPESampler + HyperbandPruner, one process, no MLflow
Wall time is the search alone (after imports and ray.init, which are reported apart). The last
line is ``ratio_vs_tuned_raytune=X ratio_vs_optuna=Y`` (a's median wall over c's and over d's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import workload as w

VARIANTS = {
    "a": "hpsearch run (MLflow on)",
    "b": "Ray Tune defaults + MLflowLoggerCallback",
    "c": "Ray Tune reuse_actors + MLflowLoggerCallback",
    "d": "in-process Optuna (TPE + Hyperband)",
}


# Variants (each runs in its own process) ---------------------------------------------------------
def run_a(
    trials: int, seed: int, folder: Path, max_epochs: int = w.MAX_EPOCHS, train_samples: int | None = None
) -> dict:
    import yaml

    from hpsearch.raysetup import init_ray
    from hpsearch.run import run_search
    from hpsearch.spec import load_spec_text

    data = w.spec_data(trials, seed)
    data["search"]["scheduler"]["max_epochs"] = max_epochs
    if train_samples:
        data["data"]["train_samples"] = train_samples
    spec = load_spec_text(yaml.safe_dump(data), source="benchmark", base_dir=Path.cwd())
    t0 = time.perf_counter()
    init_ray(None, num_cpus=w.CONCURRENCY)
    ray_init = time.perf_counter() - t0
    uri = f"sqlite:///{folder / 'mlruns.db'}"
    t0 = time.perf_counter()
    result = run_search(spec, tracking_uri=uri, storage=folder / "runs", quiet=True)
    wall = time.perf_counter() - t0
    records = result.records
    out = {
        "wall_s": wall,
        "ray_init_s": ray_init,
        "search_wall_s": result.wall_time_s,
        "compute_s": sum(r.metrics.get("compute_s", 0.0) for r in records),
        "epochs": sum(r.epochs for r in records),
        "trials": len(records),
        "best": result.best.metrics[w.METRIC] if result.best else None,
        "points_reported": sum(r.epochs for r in records),
        "points_in_mlflow": _mlflow_points(uri, "bench-overhead"),
        "states": result.counts,
        "tracking_errors": len(result.tracking_errors),
        "windows": [
            (r.started, r.ended, r.metrics.get("compute_s", 0.0)) for r in sorted(records, key=lambda r: r.index)
        ],
    }
    return out


def _tune_trainable(config: dict) -> None:
    import torch
    from ray import tune

    torch.set_num_threads(1)
    w.fit(config, w.digits(), w.MAX_EPOCHS, lambda metrics, state=None: tune.report(metrics))


def _define_by_run(trial: Any) -> None:
    w.suggest(trial)


def run_tune(trials: int, seed: int, folder: Path, reuse_actors: bool) -> dict:
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
        space=_define_by_run,
        metric=w.METRIC,
        mode=w.MODE,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=10),
    )
    tuner = tune.Tuner(
        _tune_trainable,
        tune_config=tune.TuneConfig(
            metric=w.METRIC,
            mode=w.MODE,
            search_alg=searcher,
            scheduler=ASHAScheduler(
                time_attr="training_iteration", max_t=w.MAX_EPOCHS, grace_period=w.GRACE, reduction_factor=w.REDUCTION
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


def run_optuna(trials: int, seed: int, folder: Path) -> dict:
    import optuna
    import torch

    from hpsearch.trainables.loop import TrialDiverged

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = w.digits()
    compute = 0.0
    epochs = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal compute, epochs
        config = w.suggest(trial)
        last: dict[str, float] = {}

        def report(metrics: dict[str, float], state: Any = None) -> None:
            nonlocal epochs
            epochs += 1
            last.update(metrics)
            step = int(metrics["epoch"])
            trial.report(metrics[w.METRIC], step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        started = time.perf_counter()
        try:
            w.fit(config, data, w.MAX_EPOCHS, report)
        except TrialDiverged:
            return float("nan")
        finally:
            compute += time.perf_counter() - started
        return last[w.METRIC]

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=10),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=w.GRACE, max_resource=w.MAX_EPOCHS, reduction_factor=w.REDUCTION
        ),
    )
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials)
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


def child(variant: str, trials: int, seed: int, out: Path, **kw: Any) -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{variant}-"))
    os.chdir(folder)
    if variant == "a":
        result = run_a(trials, seed, folder, **kw)
    elif variant in "bc":
        result = run_tune(trials, seed, folder, reuse_actors=variant == "c")
    else:
        result = run_optuna(trials, seed, folder)
    result["variant"] = variant
    result["concurrency"] = 1 if variant == "d" else w.CONCURRENCY
    result["utilisation"] = result["compute_s"] / (result["wall_s"] * result["concurrency"])
    result["driver_max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(result, default=str))


# Driver --------------------------------------------------------------------------------------------
def spawn(variant: str, trials: int, seed: int, extra: list[str] | None = None, timeout: float = 3600) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.overhead",
        "--child",
        variant,
        "--trials",
        str(trials),
        "--seed",
        str(seed),
        "--out",
        str(out),
        *(extra or []),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
        ),
    }
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.stat().st_size:
        raise RuntimeError(f"variant {variant} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(out.read_text())
    out.unlink()
    return result


def compare(trials: int, repeats: int, seed: int, variants: str) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(repeats):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]  # rotate: no variant always first
        for v in order:
            result = spawn(v, trials, seed)
            runs[v].append(result)
            print(
                f"  repeat {r + 1} {v}: wall {result['wall_s']:.1f} s, compute {result['compute_s']:.1f} s, "
                f"utilisation {result['utilisation']:.2f}, best {result['best']}",
                flush=True,
            )
    return runs


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def print_table(runs: dict[str, list[dict]], trials: int) -> None:
    print(f"\n{trials} trials, medians of {max(len(v) for v in runs.values())} run(s); wall = the search alone")
    head = f"{'variant':46} {'wall s':>7} {'compute s':>9} {'util':>5} {'epochs':>6} {'best':>7} {'points mlflow/reported':>23} {'ray init s':>10}"
    print(head)
    for v, rs in runs.items():
        if not rs:
            continue
        mlflow = median(rs, "points_in_mlflow")
        points = f"{'-' if mlflow is None else int(mlflow)}/{int(median(rs, 'points_reported'))}"
        best = median(rs, "best")
        print(
            f"{v}  {VARIANTS[v]:43} {median(rs, 'wall_s'):7.1f} {median(rs, 'compute_s'):9.1f} "
            f"{median(rs, 'utilisation'):5.2f} {int(median(rs, 'epochs')):6d} {'-' if best is None else f'{best:.4f}':>7} "
            f"{points:>23} {median(rs, 'ray_init_s'):10.1f}"
        )


def scale(trials: int, seed: int, window: int = 100) -> None:
    """Tiny trials (2 epochs on 200 samples): is the per-trial overhead flat as the search grows?"""
    result = spawn("a", trials, seed, ["--max-epochs", "2", "--train-samples", "200"])
    rows = result["windows"]

    def overhead(part: list) -> float:
        wall = max(e for _, e, _ in part) - min(s for s, _, _ in part)
        return (wall * w.CONCURRENCY - sum(c for _, _, c in part)) / len(part)

    first, last = overhead(rows[:window]), overhead(rows[-window:])
    print(
        f"{trials} tiny trials: wall {result['wall_s']:.1f} s, compute {result['compute_s']:.1f} s, utilisation {result['utilisation']:.2f}"
    )
    print(f"per-trial overhead: first {window} {first:.3f} s, last {window} {last:.3f} s, ratio {last / first:.2f}")
    print(
        f"driver max RSS {result['driver_max_rss_mb']:.0f} MB, MLflow points {result['points_in_mlflow']}/{result['points_reported']}"
    )
    print(f"scale_overhead_ratio={last / first:.3f} driver_max_rss_mb={result['driver_max_rss_mb']:.0f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default="abcd")
    p.add_argument(
        "--scale", type=int, metavar="N", help="instead: N tiny trials of this service, overhead first vs last 100"
    )
    p.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--max-epochs", type=int, default=w.MAX_EPOCHS, help=argparse.SUPPRESS)
    p.add_argument("--train-samples", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kw = {"max_epochs": args.max_epochs, "train_samples": args.train_samples} if args.child == "a" else {}
        child(args.child, args.trials, args.seed, args.out, **kw)
        return 0
    if args.scale:
        scale(args.scale, args.seed, window=min(100, args.scale // 2))
        return 0
    runs = compare(args.trials, args.repeats, args.seed, args.variants)
    print_table(runs, args.trials)
    a = median(runs.get("a", []), "wall_s")
    c, d = median(runs.get("c", []), "wall_s"), median(runs.get("d", []), "wall_s")
    x = f"{a / c:.3f}" if a and c else "nan"
    y = f"{a / d:.3f}" if a and d else "nan"
    print(
        f"ratio_vs_tuned_raytune={x} ratio_vs_optuna={y} utilisation_a={median(runs.get('a', []), 'utilisation') or float('nan'):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
