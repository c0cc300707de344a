"""Search quality at equal budget: the same space, trials and concurrency searched four ways.

    python -m benchmarks.quality                          # 3 workloads x 4 methods x 5 seeds, + warm start
    python -m benchmarks.quality --workloads digits --seeds 1 --methods ac --trials 8   # a quick look

Methods (the same space, compiled by hpsearch into one define-by-run function; the same trainable and
seeds; ASHA/Hyperband with grace 1, factor 3; two trials at a time):
  a  hpsearch: ``run_search`` (SpaceSearch: PRUNED/diverged verdicts, constant liar, the preset's first configs)
  b  plain Ray Tune: ``OptunaSearch`` (TPE) + ``ASHAScheduler``
  c  in-process Optuna: TPE + ``HyperbandPruner``, ``study.optimize(n_jobs=2)``
  d  random search + ASHA: Ray Tune, ``OptunaSearch`` with Optuna's ``RandomSampler``

Every epoch of every trial is written to a timeline (wall-clock time, trial, epoch, validation metric).
The epoch budget of a workload and seed is the fewest epochs any method spent on its trials (all get
the same number of trials); each method's best-so-far is read at 25 %, 50 % and 100 % of it. The winner
(the best trial within the budget) is then trained again on train + validation and tested once, with
the code ``hpsearch retrain`` uses (``review.retrain.fit_and_test``).

Warm start: a second search of the digits workload (another seed), warm-started from the first search's
experiment or not; how many epochs each needs to reach the first search's best.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.quality_methods import (
    ABLATIONS,
    CONCURRENCY,
    FRACTIONS,
    METHODS,
    METRIC,
    TIMELINE_ENV,
    WORKLOADS,
    Workload,
    run_hpsearch,
    run_optuna,
    run_tune,
    spec_for,
)


# Reading the timelines ----------------------------------------------------------------------------
@dataclass
class Curve:
    """One search's epochs in the order they ended: the best-so-far after each."""

    epochs: list[float] = field(default_factory=list)  # validation metric of each epoch, in time order
    trial_of: list[str] = field(default_factory=list)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def best_within(self, budget: int) -> tuple[float | None, str | None]:
        best, who = None, None
        for value, trial in zip(self.epochs[:budget], self.trial_of[:budget], strict=True):
            if math.isfinite(value) and (best is None or value > best):
                best, who = value, trial
        return best, who

    def epochs_to_reach(self, target: float) -> int | None:
        for i, value in enumerate(self.epochs):
            if math.isfinite(value) and value >= target:
                return i + 1
        return None


def read_curve(folder: Path, run: str) -> Curve:
    lines = []
    for path in folder.glob("*.jsonl"):
        for text in path.read_text().splitlines():
            line = json.loads(text)
            if line["run"] == run:
                lines.append(line)
    lines.sort(key=lambda line: line["t"])
    curve = Curve()
    for line in lines:
        curve.epochs.append(line["value"])
        curve.trial_of.append(line["trial"])
        if "config" in line:
            curve.configs[line["trial"]] = line["config"]
    return curve


def retest(load: Workload, config: dict[str, Any], seed: int) -> float:
    """The winner trained on train + validation, tested once (``hpsearch retrain``'s own code)."""
    from hpsearch.review.retrain import fit_and_test
    from hpsearch.sources import load_data
    from hpsearch.trainables.tune_adapter import resolve_trainable

    data = load_data(load.data, merge_val=True)
    fn = resolve_trainable(load.trainable)
    _, scores, _ = fit_and_test(fn, load.trainable, config, data, load.max_epochs, seed, lambda *a: None)
    return scores["test_accuracy"]


# Running it all ------------------------------------------------------------------------------------
def run_all(workloads: list[str], methods: str, seeds: int, trials: int | None, warm: bool, out: Path) -> dict:
    import ray
    import torch

    torch.set_num_threads(1)
    timeline = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    os.environ[TIMELINE_ENV] = str(timeline)  # before Ray starts: its workers inherit it
    from hpsearch import raysetup

    raysetup.configure_tune()
    ray.init(address="local", num_cpus=CONCURRENCY, include_dashboard=False, log_to_driver=False)
    results: dict[str, Any] = {"workloads": {}, "warm_start": []}
    try:
        for name in workloads:
            load = WORKLOADS[name]
            n = trials or load.trials
            per_seed = []
            for seed in range(seeds):
                curves: dict[str, Curve] = {}
                for method in methods:
                    run = f"{name}-{method}-{seed}"
                    (timeline / "current").write_text(run)
                    folder = Path(tempfile.mkdtemp(prefix=f"bench-quality-{run}-"))
                    started = time.perf_counter()
                    if method in ABLATIONS:
                        run_hpsearch(load, seed, n, folder, f"q-{name}-{seed}-{method}", **ABLATIONS[method])
                    elif method == "a":
                        run_hpsearch(load, seed, n, folder, f"q-{name}-{seed}")
                        if name == "digits" and warm:
                            results["warm_start"].append(_warm_start(load, seed, n, folder, timeline, run))
                    elif method in "bd":
                        run_tune(load, seed, n, folder, random=method == "d")
                    else:
                        run_optuna(load, seed, n)
                    curves[method] = read_curve(timeline, run)
                    print(
                        f"{name} seed {seed} {method}: {len(curves[method].epochs)} epochs, "
                        f"best {curves[method].best_within(10**9)[0]}, {time.perf_counter() - started:.0f} s",
                        flush=True,
                    )
                budget = min(len(c.epochs) for c in curves.values())
                row: dict[str, Any] = {"seed": seed, "budget": budget, "methods": {}}
                for method, curve in curves.items():
                    at = {f"{int(f * 100)}%": curve.best_within(max(1, int(budget * f)))[0] for f in FRACTIONS}
                    best, who = curve.best_within(budget)
                    test = retest(load, curve.configs[who], seed) if who in curve.configs else None
                    row["methods"][method] = {
                        "epochs_spent": len(curve.epochs),
                        "best_at": at,
                        "test": test,
                        "curve": _best_so_far(curve.epochs[:budget]),
                    }
                per_seed.append(row)
            results["workloads"][name] = {"about": load.about, "trials": n, "seeds": per_seed}
            (out / "quality.json").write_text(json.dumps(results, indent=1))
    finally:
        ray.shutdown()
    return results


def _best_so_far(values: list[float]) -> list[float | None]:
    best: float | None = None
    out = []
    for v in values:
        if math.isfinite(v) and (best is None or v > best):
            best = v
        out.append(best)
    return out


def _warm_start(load: Workload, seed: int, trials: int, first_folder: Path, timeline: Path, first_run: str) -> dict:
    """A second search of the same experiment's space, seeded from the first search or not."""
    first = read_curve(timeline, first_run)
    target = first.best_within(10**9)[0]
    row: dict[str, Any] = {"seed": seed, "first_best": target, "first_epochs_to_best": first.epochs_to_reach(target)}
    row["first_epochs"] = len(first.epochs)
    for label, search in (("warm", {"warm_start": f"q-{load.name}-{seed}"}), ("cold", {})):
        run = f"{first_run}-second-{label}"
        (timeline / "current").write_text(run)
        spec = spec_for(load, seed + 100, trials, f"q-{load.name}-{seed}-second-{label}", **search)
        from hpsearch.run import run_search

        run_search(
            spec, tracking_uri=f"sqlite:///{first_folder / 'mlruns.db'}", storage=first_folder / "runs", quiet=True
        )
        curve = read_curve(timeline, run)
        row[f"{label}_epochs_to_reach"] = curve.epochs_to_reach(target) if target is not None else None
        row[f"{label}_best"] = curve.best_within(10**9)[0]
        row[f"{label}_epochs"] = len(curve.epochs)
        print(f"warm start seed {seed} {label}: {row[f'{label}_epochs_to_reach']} epochs to {target}", flush=True)
    return row


# Reporting -----------------------------------------------------------------------------------------
def median_iqr(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0] if values else math.nan), 0.0
    q = statistics.quantiles(values, n=4)
    return statistics.median(values), q[2] - q[0]


def summarise(results: dict) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """Per workload, method and column (25%, 50%, 100%, test): median and interquartile range over seeds."""
    table: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for name, w in results["workloads"].items():
        methods = sorted({m for row in w["seeds"] for m in row["methods"]})
        table[name] = {}
        for m in methods:
            cols: dict[str, tuple[float, float]] = {}
            for col in (*(f"{int(f * 100)}%" for f in FRACTIONS), "test"):
                vals = [
                    (row["methods"][m]["best_at"][col] if col != "test" else row["methods"][m]["test"])
                    for row in w["seeds"]
                    if m in row["methods"]
                ]
                cols[col] = median_iqr([v for v in vals if v is not None])
            table[name][m] = cols
    return table


def print_table(results: dict) -> list[str]:
    lines = []
    for name, methods in summarise(results).items():
        w = results["workloads"][name]
        budgets = [row["budget"] for row in w["seeds"]]
        lines.append(f"{name}: {w['about']}; {w['trials']} trials, {len(w['seeds'])} seeds, budget {budgets} epochs")
        lines.append(f"  {'method':<32} {'best@25%':>16} {'best@50%':>16} {'best@100%':>16} {'test (retrain)':>16}")
        for m, cols in methods.items():
            cells = " ".join(f"{cols[c][0]:>9.4f} ±{cols[c][1]:<5.3f}" for c in ("25%", "50%", "100%", "test"))
            lines.append(f"  {m} {METHODS[m]:<30} {cells}")
    for row in results["warm_start"]:
        lines.append(
            f"warm start, digits seed {row['seed']}: first search best {row['first_best']:.4f} after "
            f"{row['first_epochs_to_best']} of {row['first_epochs']} epochs; second search reaches it after "
            f"{row['warm_epochs_to_reach']} epochs warm, {row['cold_epochs_to_reach']} cold"
        )
    return lines


def verdict(results: dict) -> str:
    """The last line: per workload, whether a's median at 50 % and 100 % is >= every peer's."""
    parts = []
    for name, methods in summarise(results).items():
        if "a" not in methods:
            continue
        ok = all(
            methods["a"][c][0] >= cols[c][0] - 1e-12 for m, cols in methods.items() if m != "a" for c in ("50%", "100%")
        )
        parts.append(f"{name}={'ahead' if ok else 'behind'}")
    return "quality " + " ".join(parts)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["workloads"])
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=True):
        w = results["workloads"][name]
        methods = sorted({m for row in w["seeds"] for m in row["methods"]})
        for m in methods:
            curves = [row["methods"][m]["curve"] for row in w["seeds"] if m in row["methods"]]
            length = min(len(c) for c in curves)
            med = []
            for i in range(length):
                vals = [c[i] for c in curves if c[i] is not None]
                med.append(statistics.median(vals) if vals else math.nan)
            ax.plot(range(1, length + 1), med, label=f"{m} {METHODS[m]}")
        ax.set(title=name, xlabel="epochs spent", ylabel=f"best {METRIC} so far (median of seeds)")
        finite = [v for line in ax.get_lines() for v in line.get_ydata() if v == v]
        if finite:
            ax.set_ylim(max(min(finite), max(finite) - 0.25), max(finite) + 0.01)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated: {', '.join(WORKLOADS)}")
    parser.add_argument(
        "--methods", default="abcd", help="of abcd, and the ablations e (no first configs), f (no liar)"
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, help="trials per search (default: the workload's)")
    parser.add_argument("--no-warm-start", action="store_true", help="skip the warm-start comparison")
    parser.add_argument("--out", type=Path, default=Path("."), help="where quality.json and quality.png go")
    args = parser.parse_args(argv)
    names = [n for n in args.workloads.split(",") if n]
    unknown = [n for n in names if n not in WORKLOADS] + [m for m in args.methods if m not in METHODS]
    if unknown or args.seeds < 1:
        parser.error(f"unknown workload/method or bad --seeds: {unknown or args.seeds}")
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_all(names, args.methods, args.seeds, args.trials, not args.no_warm_start, args.out)
    (args.out / "quality.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "quality.png")
    for line in print_table(results):
        print(line)
    print(verdict(results))
    return 0


if __name__ == "__main__":  # run as benchmarks.quality, not __main__: Ray's workers import the trainable by name
    from benchmarks import quality

    raise SystemExit(quality.main())
