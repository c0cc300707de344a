"""Which search is better, with the statistics to say so: every method searches each replay workload
(``benchmarks.replay``) with many seeds at the same epoch budget, and each pair is compared seed by seed.

    python -m benchmarks.replay_quality --out build/replay          # 2 workloads, every method, 40 seeds
    python -m benchmarks.replay_quality --seeds 5 --methods a b d   # a quick look

One objective: a method's best validation accuracy after 25, 50 and 100 % of the budget (epochs spent,
all trials together; trials in flight end their epochs at the recorded times, two at a time). hpsearch's
default (a) is compared with every other method by a Wilcoxon signed-rank test over the seeds (paired:
the same seed, the same budget; ties split), two-sided.

Several objectives (``--objectives``): val_accuracy (max) and params (min) on digits_mlp; a method's
hypervolume of the completed trials' (accuracy, params) at 25, 50 and 100 % of the budget, params as a
share of the table's largest model x 1.1, reference point (0, 1): a hypervolume in [0, 1]; the same tests.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.quality import median_iqr
from benchmarks.quality_methods import CONCURRENCY, FACTOR, FRACTIONS, GRACE  # benchmarks.quality's protocol
from benchmarks.replay import OptunaPruned, Table, Timeline, TuneMethod, load_table, simulate
from benchmarks.replay_spaces import WORKLOADS

BUDGET = {"digits_mlp": 180, "images_cnn": 150}  # epochs: ~20 and ~17 full trainings of 9 epochs

METHODS: dict[str, str] = {
    "a": "hpsearch (default: TPE, ASHA)",
    "b": "Ray Tune OptunaSearch + ASHA",
    "c": "Optuna TPE + Hyperband",
    "d": "random + ASHA",
    "gp": "hpsearch, GP sampler",
    "hyperband": "hpsearch, Hyperband (3 brackets)",
    "median": "hpsearch, median stopping",
    "fifo": "hpsearch, no early stopping",
    "noliar": "hpsearch, no constant liar",
}
MO_METHODS = {"a": "hpsearch (MOTPE)", "nsga2": "hpsearch, NSGA-II", "random": "hpsearch, random"}


def _spec(table: Table, seed: int, sampler: dict[str, Any], scheduler: dict[str, Any], **search: Any) -> Any:
    from hpsearch.spec import parse_spec

    return parse_spec(
        {
            "name": f"replay-{table.name}",
            "trainable": f"benchmarks.replay:replay_{table.name}",
            "space": copy.deepcopy(WORKLOADS[table.name].space),
            "search": {
                "num_trials": len(table.configs),
                "max_concurrent": CONCURRENCY,
                "sampler": {"seed": seed, **sampler},
                "scheduler": {"max_epochs": table.max_epochs, **scheduler},
                **search,
            },
        }
    )


def hpsearch_method(
    table: Table,
    seed: int,
    sampler: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None,
    **search: Any,
) -> TuneMethod:
    """hpsearch's own searcher (``SpaceSearch``) and scheduler, exactly as ``hpsearch run`` builds them."""
    from hpsearch.searcher import optuna_search
    from hpsearch.trialsetup import scheduler_for

    spec = _spec(table, seed, sampler or {}, scheduler or {"grace_period": GRACE, "reduction_factor": FACTOR}, **search)
    return TuneMethod(optuna_search(spec), scheduler_for(spec, None), spec.search.metric, spec.search.mode)


def tune_method(table: Table, seed: int, random: bool) -> TuneMethod:
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from hpsearch import spaces

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.RandomSampler(seed=seed) if random else optuna.samplers.TPESampler(seed=seed)
    searcher = OptunaSearch(space=spaces.define_by_run(table.space), metric="val_accuracy", mode="max", sampler=sampler)
    return TuneMethod(searcher, ASHAScheduler(max_t=table.max_epochs, grace_period=GRACE, reduction_factor=FACTOR))


def optuna_method(table: Table, seed: int) -> OptunaPruned:
    import optuna

    from hpsearch import spaces

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"replay-{table.name}-{seed}",  # HyperbandPruner puts a trial in a bracket by the name's hash
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=GRACE, max_resource=table.max_epochs, reduction_factor=FACTOR
        ),
    )
    return OptunaPruned(study, spaces.define_by_run(table.space))


def method_for(key: str, table: Table, seed: int) -> Any:
    builders: dict[str, Callable[[], Any]] = {
        "a": lambda: hpsearch_method(table, seed),
        "b": lambda: tune_method(table, seed, random=False),
        "c": lambda: optuna_method(table, seed),
        "d": lambda: tune_method(table, seed, random=True),
        "gp": lambda: hpsearch_method(table, seed, {"type": "gp", "fallback": "random"}),
        "hyperband": lambda: hpsearch_method(
            table, seed, None, {"type": "hyperband", "grace_period": GRACE, "reduction_factor": FACTOR}
        ),
        "median": lambda: hpsearch_method(table, seed, None, {"type": "median", "grace_period": GRACE}),
        "fifo": lambda: hpsearch_method(table, seed, None, {"type": "fifo"}),
        "noliar": lambda: hpsearch_method(table, seed, {"constant_liar": False}),
    }
    return builders[key]()


def mo_method_for(key: str, table: Table, seed: int, scheduler: str = "asha") -> Any:
    objectives = [{"metric": "val_accuracy", "mode": "max"}, {"metric": "params", "mode": "min"}]
    sampler = {
        "a": {},
        "nsga2": {"type": "nsga2", "population_size": 10, "fallback": "random"},
        "random": {"type": "random"},
    }[key]
    return hpsearch_method(
        table, seed, sampler, None if scheduler == "asha" else {"type": scheduler}, objectives=objectives
    )


def hypervolume_within(table: Table, timeline: Timeline, epochs: int) -> float:
    from hpsearch.objectives import hypervolume

    scale = 1.1 * max(c.get("params", 0.0) for c in table.configs.values())  # params as a share of it: [0, 1]
    points = [
        [m["val_accuracy"], m["params"] / scale]
        for t, m in timeline.finished.items()
        if timeline.finished_at[t] <= epochs
    ]
    return hypervolume(points, ["max", "min"], [0.0, 1.0])


# Statistics ----------------------------------------------------------------------------------------
def compare(a: list[float], b: list[float]) -> dict[str, Any]:
    """Seed by seed, a against b: wins/ties/losses, the median difference and the Wilcoxon signed-rank
    test's two-sided p-value (zero differences split between the signs; 1.0 when every seed ties)."""
    from scipy.stats import wilcoxon

    diffs = [x - y for x, y in zip(a, b, strict=True)]
    wins, losses = sum(d > 1e-12 for d in diffs), sum(d < -1e-12 for d in diffs)
    p = 1.0 if wins + losses == 0 else float(wilcoxon(a, b, zero_method="zsplit").pvalue)
    return {
        "wins": wins,
        "ties": len(diffs) - wins - losses,
        "losses": losses,
        "median_diff": statistics.median(diffs),
        "p": p,
    }


def verdict(c: dict[str, Any]) -> str:
    if c["p"] >= 0.05:
        return "tie"
    return "ahead" if c["median_diff"] > 0 or (c["median_diff"] == 0 and c["wins"] > c["losses"]) else "behind"


def run(
    workloads: list[str], methods: list[str], seeds: int, objectives: bool, scheduler: str = "asha"
) -> dict[str, Any]:
    out: dict[str, Any] = {"seeds": seeds, "fractions": FRACTIONS, "workloads": {}}
    for name in workloads:
        table = load_table(name)
        budget = BUDGET[name]
        cuts = [round(f * budget) for f in FRACTIONS]
        scores: dict[str, list[list[float]]] = {}
        curves: dict[str, list[list[float]]] = {}
        seconds: dict[str, float] = {}
        keys = methods if not objectives else [m for m in methods if m in MO_METHODS]
        for key in keys:
            started = time.perf_counter()
            per_seed = []
            for seed in range(seeds):
                method = mo_method_for(key, table, seed, scheduler) if objectives else method_for(key, table, seed)
                timeline = simulate(table, method, budget, CONCURRENCY)
                if objectives:
                    per_seed.append([hypervolume_within(table, timeline, c) for c in cuts])
                else:
                    per_seed.append([timeline.best_within(c) for c in cuts])
                    best = 0.0
                    curve = []
                    for v in timeline.values:
                        best = max(best, v or 0.0)
                        curve.append(best)
                    curves.setdefault(key, []).append(curve)
            scores[key] = per_seed
            seconds[key] = time.perf_counter() - started
            print(f"{name} {key}: {seconds[key]:.1f} s for {seeds} seeds", flush=True)
        result: dict[str, Any] = {
            "budget": budget,
            "optimum": table.best(),
            "configs": len(table.configs),
            "methods": {},
        }
        for key in keys:
            stats = [median_iqr(list(c)) for c in zip(*scores[key], strict=True)]
            result["methods"][key] = {
                "name": (MO_METHODS if objectives else METHODS)[key],
                "median": [m for m, _ in stats],
                "iqr": [q for _, q in stats],
                "seconds": seconds[key],
                "per_seed": scores[key],
            }
            if key != "a" and "a" in scores:
                result["methods"][key]["a_vs"] = [
                    compare([s[i] for s in scores["a"]], [s[i] for s in scores[key]]) for i in range(len(FRACTIONS))
                ]
        if curves:
            result["curves"] = {
                k: [statistics.median(c[i] for c in v) for i in range(budget)] for k, v in curves.items()
            }
        out["workloads"][name] = result
    return out


def tables(results: dict[str, Any], objectives: bool) -> str:
    what = "hypervolume (accuracy x params)" if objectives else "best val_accuracy"
    lines = [
        f"| workload | method | {what} @25 % | @50 % | @100 % | a vs it @25 % | @50 % | @100 % |",
        "| --- " * 8 + "|",
    ]
    for name, w in results["workloads"].items():
        first = True
        for key, m in w["methods"].items():
            cells = [f"{v:.4f} ±{q:.4f}" for v, q in zip(m["median"], m["iqr"], strict=True)]
            vs = ["-"] * 3
            if "a_vs" in m:
                vs = [f"{c['wins']}/{c['ties']}/{c['losses']}, p={c['p']:.2g} ({verdict(c)})" for c in m["a_vs"]]
            label = (
                f"{name} (budget {w['budget']}, optimum {w['optimum']:.4f})"
                if first and not objectives
                else (name if first else "")
            )
            lines.append(f"| {label} | {key} {m['name']} | " + " | ".join(cells + vs) + " |")
            first = False
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, w in results["workloads"].items() if "curves" in w]
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        w = results["workloads"][name]
        for key, curve in w["curves"].items():
            ax.plot(range(1, len(curve) + 1), curve, label=f"{key} {METHODS[key]}", lw=2 if key == "a" else 1)
        top = w["optimum"]
        ax.axhline(top, color="grey", ls=":", lw=1)
        ax.set(
            xlabel="epochs spent",
            ylabel="best val_accuracy (median of seeds)",
            title=f"{name}: {results['seeds']} seeds",
        )
        ax.set_ylim(top - 0.08, top + 0.005)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=list(BUDGET), choices=list(BUDGET))
    parser.add_argument("--methods", nargs="+", default=None, choices=sorted(set(METHODS) | set(MO_METHODS)))
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--objectives", action="store_true", help="several objectives: hypervolume, digits_mlp")
    parser.add_argument("--scheduler", choices=("asha", "fifo"), default="asha", help="with --objectives")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.objectives:
        args.workloads, args.methods = ["digits_mlp"], [m for m in args.methods or MO_METHODS if m in MO_METHODS]
    else:
        args.methods = args.methods or list(METHODS)
    results = run(args.workloads, args.methods, args.seeds, args.objectives, args.scheduler)
    print(tables(results, args.objectives))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = "replay_objectives" if args.objectives else "replay"
        (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1))
        if not args.objectives:
            plot(results, args.out / f"{stem}.png")


if __name__ == "__main__":
    main()
