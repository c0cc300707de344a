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
from benchmarks.overhead_variants import run_a, run_optuna, run_tune

VARIANTS = {
    "a": "hpsearch run (MLflow on)",
    "b": "Ray Tune defaults + MLflowLoggerCallback",
    "c": "Ray Tune reuse_actors + MLflowLoggerCallback",
    "d": "in-process Optuna (TPE + Hyperband)",
    "e": "in-process Optuna, n_jobs threads",
}


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
