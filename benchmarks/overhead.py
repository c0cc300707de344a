"""Orchestration overhead: one workload (benchmarks/workload.py) searched five ways.

    python -m benchmarks.overhead --trials 60 [--repeats 3]          # tiny digits trials
    python -m benchmarks.overhead --workload realistic --repeats 3   # 16 trials of a few seconds
    python -m benchmarks.overhead --scale 500          # per-trial overhead, first vs last 100 trials

Variants, each in a fresh Python process started by this one, in rotating order, same seeds:
  a  this service: the `hpsearch run` command (its CLI, in the child process), MLflow on, SQLite store
  b  plain Ray Tune + OptunaSearch + ASHAScheduler + MLflowLoggerCallback, Tune defaults
  c  the same as b with reuse_actors=True
  d  in-process Optuna: TPESampler + HyperbandPruner, one process, one trial at a time, no MLflow
  e  the same as d with ``study.optimize(n_jobs=concurrency)``: trials in threads, no MLflow
"wall" is the search alone (imports and ray.init excluded; ray.init reported apart); "command" is
the whole child process, start to exit, as a user times a command; "1st epoch" is the time from the
process start to the first trial's first epoch. The last line gives a's median wall over c's, d's
and e's, and a's median command over e's.
"""

from __future__ import annotations

import argparse
import functools
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
    "e": "in-process Optuna, n_jobs threads",
}
T0_ENV = "BENCH_T0"  # the wall-clock time the parent started the child process


# Variants (each runs in its own process) ---------------------------------------------------------
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
    init_ray, outcome = raysetup.init_ray, cli._outcome

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

    raysetup.init_ray, cli._outcome = timed_init, capture  # type: ignore[assignment]
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

    def objective(trial: optuna.Trial) -> float:
        nonlocal compute, epochs
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


def child(variant: str, trials: int, seed: int, out: Path, workload: w.Workload, **kw: Any) -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{variant}-"))
    os.chdir(folder)
    if variant == "a":
        result = run_a(trials, seed, folder, workload, **kw)
    elif variant in "bc":
        result = run_tune(trials, seed, folder, workload, reuse_actors=variant == "c")
    else:
        result = run_optuna(trials, seed, folder, workload, n_jobs=1 if variant == "d" else w.CONCURRENCY)
    result["variant"] = variant
    result["workload"] = workload.name
    result["concurrency"] = 1 if variant == "d" else w.CONCURRENCY
    result["utilisation"] = result["compute_s"] / (result["wall_s"] * result["concurrency"])
    result["driver_max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(result, default=str))
    if variant == "a":  # the command ends as `hpsearch` does (hpsearch.cli.entry)
        from hpsearch import cli

        cli.exit_now(0)


# Driver --------------------------------------------------------------------------------------------
def spawn(
    variant: str, trials: int, seed: int, workload: str = "tiny", extra: list[str] | None = None, timeout: float = 3600
) -> dict:
    """Run one variant in a fresh process; its result, with the whole command's wall and the time
    from the process start to the first epoch of any trial."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as f:
        first = Path(f.name)
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
        "--workload",
        workload,
        *(extra or []),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
        ),
    }
    env[w.FIRST_EPOCH_ENV] = str(first)
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    command = time.time() - t0
    if proc.returncode != 0 or not out.stat().st_size:
        raise RuntimeError(f"variant {variant} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(out.read_text())
    result["command_s"] = command
    # From the process start to the summary the user waits for (a: printed before its report is made; the
    # others: their results come as the process ends), and what the command still took after it.
    result["summary_s"] = result["summary_at"] - t0 if "summary_at" in result else command
    if "summary_at" in result:
        result["after_summary_s"] = t0 + command - result["summary_at"]
    stamps = [float(line) for line in first.read_text().split()]
    result["first_epoch_s"] = min(stamps) - t0 if stamps else None
    out.unlink()
    first.unlink()
    return result


def compare(trials: int, repeats: int, seed: int, variants: str, workload: str = "tiny") -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(repeats):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]  # rotate: no variant always first
        for v in order:
            result = spawn(v, trials, seed, workload)
            runs[v].append(result)
            print(
                f"  repeat {r + 1} {v}: wall {result['wall_s']:.1f} s, to summary {result['summary_s']:.1f} s, "
                f"command {result['command_s']:.1f} s, "
                f"first epoch {_num(result['first_epoch_s'], 1)} s, compute {result['compute_s']:.1f} s, "
                f"epochs {result['epochs']}, utilisation {result['utilisation']:.2f}, best {result['best']}"
                + (f", after the summary {result['after_summary_s']:.2f} s" if "after_summary_s" in result else ""),
                flush=True,
            )
    return runs


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def print_table(runs: dict[str, list[dict]], trials: int, workload: str = "tiny") -> None:
    print(
        f"\n{workload} workload, {trials} trials, medians of {max(len(v) for v in runs.values())} run(s); "
        "wall = the search alone, to summary = from the process start to the results, command = to its exit"
    )
    head = (
        f"{'variant':46} {'wall s':>7} {'to summary s':>12} {'command s':>9} {'1st epoch s':>11} {'compute s':>9} {'util':>5} "
        f"{'epochs':>6} {'best':>7} {'points mlflow/reported':>23} {'ray init s':>10}"
    )
    print(head)
    for v, rs in runs.items():
        if not rs:
            continue
        mlflow = median(rs, "points_in_mlflow")
        points = f"{'-' if mlflow is None else int(mlflow)}/{int(median(rs, 'points_reported'))}"
        print(
            f"{v}  {VARIANTS[v]:43} {median(rs, 'wall_s'):7.1f} {median(rs, 'summary_s'):12.1f} "
            f"{median(rs, 'command_s'):9.1f} "
            f"{_num(median(rs, 'first_epoch_s'), 1):>11} {median(rs, 'compute_s'):9.1f} "
            f"{median(rs, 'utilisation'):5.2f} {int(median(rs, 'epochs')):6d} {_num(median(rs, 'best'), 4):>7} "
            f"{points:>23} {median(rs, 'ray_init_s'):10.1f}"
        )


def scale(trials: int, seed: int, window: int = 100) -> None:
    """Tiny trials (2 epochs on 200 samples): is the per-trial overhead flat as the search grows?"""
    result = spawn("a", trials, seed, "tiny", ["--max-epochs", "2", "--train-samples", "200"])
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
    p.add_argument("--workload", choices=list(w.WORKLOADS), default="tiny")
    p.add_argument("--trials", type=int, help="default: the workload's (tiny 60, realistic 16)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default="abcde")
    p.add_argument(
        "--scale", type=int, metavar="N", help="instead: N tiny trials of this service, overhead first vs last 100"
    )
    p.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--max-epochs", type=int, help=argparse.SUPPRESS)
    p.add_argument("--train-samples", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    workload = w.WORKLOADS[args.workload]
    trials = args.trials or workload.trials
    if args.child:
        kw = {"max_epochs": args.max_epochs, "train_samples": args.train_samples} if args.child == "a" else {}
        child(args.child, trials, args.seed, args.out, workload, **kw)
        return 0
    if args.scale:
        scale(args.scale, args.seed, window=min(100, args.scale // 2))
        return 0
    runs = compare(trials, args.repeats, args.seed, args.variants, workload.name)
    print_table(runs, trials, workload.name)

    def ratio(key: str, other: str) -> str:
        a, b = median(runs.get("a", []), key), median(runs.get(other, []), key)
        return f"{a / b:.3f}" if a and b else "nan"

    print(
        f"ratio_vs_tuned_raytune={ratio('wall_s', 'c')} ratio_vs_optuna={ratio('wall_s', 'd')} "
        f"ratio_vs_optuna_threads={ratio('wall_s', 'e')} summary_ratio_vs_optuna_threads={ratio('summary_s', 'e')} "
        f"command_ratio_vs_optuna_threads={ratio('command_s', 'e')} "
        f"first_epoch_a={_num(median(runs.get('a', []), 'first_epoch_s'), 2)} "
        f"utilisation_a={median(runs.get('a', []), 'utilisation') or float('nan'):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
