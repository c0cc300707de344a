"""The evidence a report gives, computed from a search's trial rows alone (no MLflow, no Ray): the top
trials, the optimization history, parameter importance (Optuna's fANOVA), per-choice marginals, the same
at equal epochs (:func:`rung_marginals`: every value compared at each of the scheduler's rungs, on the
trials that reached it, with how many trials and how sure), the lecture's questions answered with this
search's evidence (:func:`answer_questions`) and rung statistics (how many trials reached each rung and
how they did there).

"Finished" trials are those that completed or that the scheduler stopped early; their value is the last
metric they reported. Diverged and failed trials count in the marginals (as failures), not in medians,
importance or the best.
"""

from __future__ import annotations

import json
import statistics
from typing import Any, cast

from hpsearch.review.equal_epochs import answer_questions, rung_marginals
from hpsearch.review.front import front_rows, objective_points
from hpsearch.review.trials import FINISHED, TOP_K, SearchReport, Settings, TrialRow, grouped


def build_report(settings: Settings, rows: list[TrialRow], top_k: int = TOP_K, **about: str) -> SearchReport:
    sign = 1.0 if settings.mode == "max" else -1.0
    finished = [r for r in rows if r.state in FINISHED and r.value is not None]
    ranked = sorted(finished, key=lambda r: -sign * r.value)  # type: ignore[operator]
    counts = {s: 0 for s in ("completed", "stopped_early", "diverged", "failed", "running")}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    top = [
        {
            "rank": i + 1,
            "trial": r.name,
            "run_name": r.run_name,
            "run_id": r.run_id,
            "value": r.value,
            "epochs": r.epochs,
            "state": r.state,
            "config": r.config,
        }
        for i, r in enumerate(ranked[:top_k])
    ]
    return SearchReport(
        metric=settings.metric,
        mode=settings.mode,
        counts=counts,
        top=top,
        history=optimization_history(rows, sign),
        importance=param_importance(finished, settings),
        marginals=marginals(rows, settings, sign),
        curves={r.name: [[s, v] for s, v in r.history] for r in ranked[:top_k]},
        rungs=rung_stats(rows, settings, sign),
        by_rung=(by_rung := rung_marginals(rows, settings, sign)),
        questions=answer_questions(rows, settings, sign, by_rung),
        objectives=settings.objectives,
        constraints=settings.constraints,
        front=front_rows(rows, settings),
        objective_points=objective_points(rows, settings),
        **cast(dict[str, Any], about),
    )


def optimization_history(rows: list[TrialRow], sign: float) -> list[dict[str, Any]]:
    best: float | None = None
    out = []
    for r in sorted(rows, key=lambda r: r.index):
        ok = r.state in FINISHED and r.value is not None
        if ok and (best is None or sign * r.value > sign * best):  # type: ignore[operator]
            best = r.value
        out.append(
            {"trial": r.name, "index": r.index, "state": r.state, "value": r.value if ok else None, "best_so_far": best}
        )
    return out


def param_importance(finished: list[TrialRow], settings: Settings) -> dict[str, Any]:
    """Optuna's fANOVA over the parameters every finished trial has (a conditional branch's own
    parameters only count when every trial took a branch that has them)."""
    method = "fANOVA (optuna.importance.FanovaImportanceEvaluator, seed 0)"
    keys = [k for k in settings.kinds if finished and all(k in r.config for r in finished)]
    varying = [k for k in keys if len({json.dumps(r.config[k], default=str) for r in finished}) > 1]
    if len(finished) < 3 or not varying:
        return {
            "method": method,
            "params": {},
            "note": f"needs >= 3 finished trials and a varying parameter (have {len(finished)} finished)",
        }
    if len({float(r.value) for r in finished}) < 2:  # type: ignore[arg-type]
        # fANOVA raises "zero total variance" here, and the whole report was lost with it
        return {
            "method": method,
            "params": {},
            "note": f"every finished trial has the same {settings.metric} ({float(finished[0].value):g}): "  # type: ignore[arg-type]
            "no parameter made a difference to explain",
        }
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions: dict[str, Any] = {}
    for k in varying:
        kind, seen = settings.kinds[k], [r.config[k] for r in finished]
        if kind["kind"] == "choice":
            options = list(kind["options"]) + [v for v in dict.fromkeys(seen) if v not in kind["options"]]
            distributions[k] = CategoricalDistribution(options)
        elif kind["kind"] == "int" and all(isinstance(v, int) and not isinstance(v, bool) for v in seen):
            distributions[k] = IntDistribution(min(kind["low"], *seen), max(kind["high"], *seen), log=kind["log"])
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
            distributions[k] = FloatDistribution(
                float(min(kind["low"], *seen)), float(max(kind["high"], *seen)), log=kind["log"]
            )
    study = optuna.create_study(direction="maximize" if settings.mode == "max" else "minimize")
    for r in finished:
        study.add_trial(
            optuna.trial.create_trial(
                params={k: r.config[k] for k in distributions},
                distributions=distributions,
                value=float(r.value),  # type: ignore[arg-type]
            )
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    scores = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {"method": method, "params": {k: round(float(v), 4) for k, v in scores.items()}, "trials": len(finished)}


def marginals(rows: list[TrialRow], settings: Settings, sign: float) -> dict[str, list[dict[str, Any]]]:
    """Per parameter and value (numeric ranges in 4 bins): trials, finished, failed (diverged or
    failed), median and best of the finished trials' metric."""
    out: dict[str, list[dict[str, Any]]] = {}
    for key, groups in grouped(rows, settings):
        table = []
        for lab, members in groups.items():
            values = [r.value for r in members if r.state in FINISHED and r.value is not None]
            table.append(
                {
                    "value": lab,
                    "trials": len(members),
                    "finished": len(values),
                    "failed": sum(r.state in ("diverged", "failed") for r in members),
                    "median": statistics.median(values) if values else None,
                    "best": (max(values, key=lambda v: sign * v) if values else None),
                }
            )
        out[key] = table
    return out


def rung_stats(rows: list[TrialRow], settings: Settings, sign: float) -> list[dict[str, Any]]:
    out = []
    ended = [r for r in rows if r.state != "running"]
    for rung in settings.rungs:
        at = [v for r in ended for s, v in r.history if s == rung]
        reached = sum(1 for r in ended if r.epochs >= rung)
        out.append(
            {
                "rung": rung,
                "reached": reached,
                "went_on": sum(1 for r in ended if r.epochs > rung),
                "fraction": round(reached / len(ended), 4) if ended else 0.0,
                "median": statistics.median(at) if at else None,
                "best": max(at, key=lambda v: sign * v) if at else None,
            }
        )
    return out


__all__ = [
    "FINISHED",
    "TOP_K",
    "SearchReport",
    "Settings",
    "TrialRow",
    "answer_questions",
    "build_report",
    "marginals",
    "optimization_history",
    "param_importance",
    "rung_marginals",
    "rung_stats",
]
