"""What an epoch costs in a trial process, next to the same epoch in a plain Ray task (issue 26).

    python -m benchmarks.epoch_cost [--rounds 3] [--trials 4] [--epochs 8]

One local Ray of 2 CPUs, started as `hpsearch run` starts it. In each round, at the same time:

  trial  a real search (``run_search``: Tune, Optuna, ASHA, MLflow on SQLite), one trial at a time, of the
         realistic workload's fixed 2x256 MLP (benchmarks/workload.py) with Adam, checkpoints as the spec's
         defaults say; its trainable is the built-in loop;
  task   a plain ``@ray.remote`` task running the same ``train_model`` on the same data, reporting to
         nothing, epoch after epoch until the search is over.

Both sample, after each epoch, the CPU time of their whole process (every thread: Ray's, Tune's, the
trial's own), so an epoch's figure in the trial includes all that the orchestration costs it: Tune's
function trainable and its result queue, hpsearch's adapter and the checkpoints it writes. Running the
two side by side on the two cores makes them see the same machine: this machine's speed drifts by 30-40 %
within minutes, which separate runs would measure instead. The first epoch of each trial and of the task
is left out (it includes building the model).

Columns: the median epoch CPU of the trials and of the task over a round, their ratio, and the median of
the paired ratios (each trial epoch over the task epoch that overlapped it most in time); "others": the CPU
per epoch of the process's threads other than the training thread (Ray's, Tune's); "report": the training
thread's CPU in hpsearch's ``report`` per epoch. The last line: the median paired ratio over all rounds
(``epoch_cpu_ratio_trial_vs_task``), its quartiles, the median of the per-round ratios, and what the
orchestration adds to an epoch in the trial process, measured in it rather than by difference (the other
threads' CPU beyond the task's, plus ``report``): a figure the machine's drift does not move.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import workload as w

CONFIG = {"clip_norm": 0.0, "optimizer": "adam", "lr": 1e-3}


def _marks_file(folder: str, kind: str) -> Path:
    return Path(folder) / f"{kind}-{os.getpid()}-{time.monotonic_ns()}.json"


def trial(
    config: dict[str, Any], data: Any, epochs: int, report: Any, seed: int = 0,
    resume: dict[str, Any] | None = None, checkpoint_every: int = 0,
) -> Any:  # fmt: skip
    """The search's trainable: the built-in loop on the fixed MLP, each epoch's process CPU time written
    down right before the epoch is handed to hpsearch (so the handing over is in the next epoch's; the
    last epoch's report does not return, Tune ends the trial there) to the folder ``config["marks"]``."""
    from hpsearch.trainables.loop import train_model

    config = dict(config)
    path, marks = _marks_file(config.pop("marks"), "trial"), []

    handing = [0.0]  # thread CPU spent in hpsearch's report so far

    def marked(metrics: dict[str, float], state: Any = None) -> None:
        marks.append((time.monotonic(), time.process_time(), time.thread_time(), handing[0]))
        path.write_text(json.dumps(marks))  # a trial's last report does not return: kept as they come
        before = time.thread_time()
        report(metrics) if state is None else report(metrics, state)
        handing[0] += time.thread_time() - before

    flat = {**w.REALISTIC_FIXED, **config}
    return train_model("mlp", w.train_config(flat), data, epochs, marked, seed, resume, checkpoint_every)


class _Stopped(Exception):
    """The search is over: the plain task's training ends after the epoch it is in."""


def _mark(path: Path, marks: list[tuple[float, ...]], stop_file: str, metrics: dict[str, float]) -> None:
    marks.append((time.monotonic(), time.process_time(), time.thread_time(), 0.0))
    path.write_text(json.dumps(marks))  # as the trial does, after the mark: in the next epoch's figure
    if os.path.exists(stop_file):
        raise _Stopped


def task(marks_dir: str, stop_file: str) -> int:
    """The plain Ray task: the same loop on the same data, one training epoch after epoch until
    ``stop_file`` exists. One training, not one per trial: a restart's first epoch (building the model)
    is left out, and a trial epoch beside it would have nothing to be paired with. Its marks file
    appears after its first epoch: the round starts its search then."""
    import torch

    from hpsearch.trainables.loop import train_model

    torch.set_num_threads(1)
    data = w.load("realistic")
    path, marks = _marks_file(marks_dir, "task"), []
    try:
        marked = functools.partial(_mark, path, marks, stop_file)
        train_model("mlp", w.train_config({**w.REALISTIC_FIXED, **CONFIG}), data, 1_000_000, marked)
    except _Stopped:
        pass
    return len(marks)


def _await_task(plain: Any, marks: Path, timeout: float = 600) -> None:
    """Until the plain task has trained its first epoch (it is then in step), or raise what it raised."""
    import ray

    deadline = time.monotonic() + timeout
    while not any(marks.glob("task-*.json")):
        done, _ = ray.wait([plain], timeout=0.2)
        if done:
            ray.get(plain)  # raises the task's error
            raise RuntimeError("the plain task ended before its first epoch")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the plain task trained no epoch in {timeout:.0f} s")


# start, end (the machine's monotonic clock); CPU s: the process's, the training thread's, in report()
Epoch = tuple[float, float, float, float, float]


def epochs_of(folder: Path, kind: str) -> list[Epoch]:
    """Every epoch after the first of every trial (or task run) in ``folder``."""
    found: list[Epoch] = []
    for path in folder.glob(f"{kind}-*.json"):
        marks = json.loads(path.read_text())
        found.extend(
            (a[0], b[0], b[1] - a[1], b[2] - a[2], b[3] - a[3]) for a, b in zip(marks, marks[1:], strict=False)
        )
    return found


def paired_ratios(trials: list[Epoch], tasks: list[Epoch]) -> list[float]:
    """Each trial epoch's CPU over that of the task epoch that overlapped it most in time: the two ran
    on the machine in the same state (its speed drifts within seconds)."""
    ratios = []
    for start, end, cpu, *_ in trials:
        overlap, other = max(((min(end, e) - max(start, s), c) for s, e, c, *_ in tasks), default=(0.0, 0.0))
        if overlap > 0.5 * (end - start) and other > 0:
            ratios.append(cpu / other)
    return ratios


def one_round(trials: int, epochs: int, seed: int, folder: Path) -> dict[str, Any]:
    import ray

    from hpsearch.run import run_search
    from hpsearch.spec import parse_spec

    marks = folder / "marks"
    marks.mkdir(parents=True)
    stop_file = folder / "stop"
    spec = parse_spec(
        {
            "name": f"bench-epoch-cost-{seed}",
            "trainable": "benchmarks.epoch_cost:trial",
            "data": dict(w.WORKLOADS["realistic"].data),
            # the task's config; the learning rate within 10 % of it (a space needs a searched parameter)
            "space": {**CONFIG, "lr": {"float": [CONFIG["lr"], 1.1 * CONFIG["lr"]]}, "marks": str(marks)},
            "search": {
                "metric": w.METRIC,
                "mode": w.MODE,
                "num_trials": trials,
                "max_concurrent": 1,
                "sampler": {"seed": seed},
                "scheduler": {"max_epochs": epochs, "grace_period": epochs},  # no trial stopped early
            },
            "resources": {"cpu": 1},
        }
    )
    plain = ray.remote(num_cpus=1)(task).remote(str(marks), str(stop_file))
    _await_task(plain, marks)
    started = time.perf_counter()
    result = run_search(
        spec, tracking_uri=f"sqlite:///{folder / 'mlruns.db'}", storage=folder / "runs", quiet=True, run_name="run"
    )
    stop_file.touch()
    ray.get(plain)
    trial_epochs, task_epochs = epochs_of(marks, "trial"), epochs_of(marks, "task")
    assert result.counts.get("completed") == trials, [r.error for r in result.records]
    return {
        "trial_s": statistics.median(e[2] for e in trial_epochs),
        "task_s": statistics.median(e[2] for e in task_epochs),
        "pairs": paired_ratios(trial_epochs, task_epochs),
        # CPU of the process's other threads (Ray's, Tune's) per epoch, beside the training thread's
        "trial_others_s": statistics.median(e[2] - e[3] for e in trial_epochs),
        "task_others_s": statistics.median(e[2] - e[3] for e in task_epochs),
        "trial_report_s": statistics.median(e[4] for e in trial_epochs),
        "trial_epochs": len(trial_epochs),
        "task_epochs": len(task_epochs),
        "wall_s": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.epoch_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--trials", type=int, default=4, help="trials per round, one at a time")
    p.add_argument("--epochs", type=int, default=8, help="epochs per trial")
    args = p.parse_args(argv)

    from hpsearch import raysetup

    raysetup.configure_tune()
    root = str(Path(__file__).resolve().parent.parent)  # the trial processes import this module
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    raysetup.init_ray(None, num_cpus=2)  # as `hpsearch run` starts its local Ray
    print(f"epoch cost: realistic workload's 2x256 MLP, {args.trials} trials x {args.epochs} epochs per round")
    print(
        f"{'round':>5} {'trial s':>9} {'task s':>9} {'ratio':>7} {'paired':>7} {'others ms (trial/task)':>22} {'report ms':>9} {'epochs (trial/task)':>20} {'wall s':>7}"
    )
    ratios, pairs, extra = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-epoch-cost-") as tmp:
        for r in range(args.rounds):
            row = one_round(args.trials, args.epochs, r, Path(tmp) / f"round{r}")
            ratios.append(row["trial_s"] / row["task_s"])
            pairs.extend(row["pairs"])
            extra.append(row["trial_others_s"] - row["task_others_s"] + row["trial_report_s"])
            print(
                f"{r:>5} {row['trial_s']:>9.4f} {row['task_s']:>9.4f} {ratios[-1]:>7.3f} "
                f"{statistics.median(row['pairs']) if row['pairs'] else float('nan'):>7.3f} "
                f"{row['trial_others_s'] * 1000:>11.1f}/{row['task_others_s'] * 1000:<10.1f} "
                f"{row['trial_report_s'] * 1000:>9.2f} "
                f"{row['trial_epochs']:>9}/{row['task_epochs']:<10} {row['wall_s']:>7.1f}",
                flush=True,
            )
    import ray

    ray.shutdown()
    if len(pairs) < 2:  # each trial epoch overlaps the task's epochs, unless one side stalled
        sys.exit(f"epoch_cost: {len(pairs)} trial epochs overlapped a task epoch; it takes 2 for quartiles")
    q = statistics.quantiles(pairs, n=4)
    print(
        f"epoch_cpu_ratio_trial_vs_task={statistics.median(pairs):.3f} quartiles={q[0]:.3f}-{q[2]:.3f} "
        f"pairs={len(pairs)} rounds={statistics.median(ratios):.3f} "
        f"orchestration_ms_per_epoch={statistics.median(extra) * 1000:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
