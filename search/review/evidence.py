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
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

FINISHED = ("completed", "stopped_early")
TOP_K = 5


@dataclass
class TrialRow:
    name: str  # t017
    run_name: str
    run_id: str
    state: str
    epochs: int
    value: float | None  # last reported metric (None when it never reported one)
    config: dict[str, Any]  # searched keys -> values (as trained)
    history: list[tuple[int, float]] = field(default_factory=list)  # (epoch, metric)

    @property
    def index(self) -> int:
        digits = self.name.lstrip("t")
        return int(digits) if digits.isdigit() else 0


@dataclass
class Settings:
    """What the report needs to know of the search: its metric, its epochs and where its scheduler
    decided (``rungs``: :meth:`hpsearch.schedulers.SchedulerSpec.rungs`), and its space's parameters."""

    metric: str
    mode: str
    max_epochs: int
    rungs: list[int]  # the epochs trials are compared at (the last is max_epochs); [] when unknown
    kinds: dict[str, dict[str, Any]]  # searched key -> {"kind": choice|int|float, ...range or options}


@dataclass
class SearchReport:
    experiment: str
    experiment_id: str
    search_run_id: str
    search_run_name: str
    status: str
    metric: str
    mode: str
    counts: dict[str, int]
    top: list[dict[str, Any]]
    history: list[dict[str, Any]]
    importance: dict[str, Any]
    marginals: dict[str, list[dict[str, Any]]]
    curves: dict[str, list[list[float]]]
    rungs: list[dict[str, Any]]
    by_rung: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # marginals at equal epochs
    questions: list[dict[str, Any]] = field(default_factory=list)  # the lecture's questions, answered

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
        **about,
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


def _groups(key: str, kind: dict[str, Any] | None, values: list[Any]) -> tuple[list[str], Any]:
    """The labels of a parameter's groups, and a function value -> label."""
    if kind is None or kind["kind"] == "choice":
        options = list(kind["options"]) if kind else []
        seen = [v for v in dict.fromkeys(values) if v not in options]
        labels = [_text(o) for o in options + seen]
        return labels, _text
    lo, hi, log = kind["low"], kind["high"], kind["log"]
    if kind["kind"] == "int" and hi - lo < 12:
        return [str(v) for v in range(lo, hi + 1)], lambda v: str(v)
    n = 4
    scale = (lambda x: math.log(x)) if log and lo > 0 else (lambda x: x)
    a, b = scale(lo), scale(hi)
    edges = [a + (b - a) * i / n for i in range(n + 1)]
    real = [math.exp(e) if log and lo > 0 else e for e in edges]
    labels = [f"[{_num(real[i])}, {_num(real[i + 1])}{']' if i == n - 1 else ')'}" for i in range(n)]

    def label(v: Any) -> str:
        x = scale(max(min(float(v), hi), lo)) if not (log and lo > 0 and float(v) <= 0) else a
        i = min(int((x - a) / (b - a) * n) if b > a else 0, n - 1)
        return labels[i]

    return labels, label


def _grouped(rows: list[TrialRow], settings: Settings) -> Any:
    """Per searched parameter the trials that ended having it, grouped by value (numeric ranges in 4 bins):
    ``(key, {label: [rows]})``, every label of the parameter present (empty groups too), in order."""
    keys = list(settings.kinds) or sorted({k for r in rows for k in r.config})
    for key in keys:
        having = [r for r in rows if key in r.config and r.state != "running"]
        if not having:
            continue
        labels, label_of = _groups(key, settings.kinds.get(key), [r.config[key] for r in having])
        groups: dict[str, list[TrialRow]] = {lab: [] for lab in labels}
        for r in having:
            groups.setdefault(label_of(r.config[key]), []).append(r)
        yield key, groups


def marginals(rows: list[TrialRow], settings: Settings, sign: float) -> dict[str, list[dict[str, Any]]]:
    """Per parameter and value (numeric ranges in 4 bins): trials, finished, failed (diverged or
    failed), median and best of the finished trials' metric."""
    out: dict[str, list[dict[str, Any]]] = {}
    for key, groups in _grouped(rows, settings):
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


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return _num(v)
    return str(v)


def _num(x: float) -> str:
    return f"{x:.3g}"


# At equal epochs ---------------------------------------------------------------------------------
# A trial's last value is an epoch-1 value when ASHA stopped it at its first rung and an epoch-9 value when
# it ran on: comparing choices by it favours whatever TPE happened to let run. At a rung, every trial that
# reached it is valued at that same epoch.
def value_at(row: TrialRow, epoch: int) -> float | None:
    for step, value in row.history:
        if step == epoch:
            return value if math.isfinite(value) else None
    return None


def _values_at(groups: dict[str, list[TrialRow]], rung: int) -> dict[str, list[float]]:
    """Each group's values at epoch ``rung``, of the trials that reached it."""
    return {lab: [v for r in members for v in [value_at(r, rung)] if v is not None] for lab, members in groups.items()}


def beats(a: list[float], b: list[float], sign: float) -> tuple[float, float | None]:
    """How often a trial of ``a`` beats one of ``b`` (ties count half: the AUC), and the two-sided
    Mann-Whitney U p-value of that (None when either side has fewer than 2 trials)."""
    if not a or not b:
        return math.nan, None
    wins = sum((sign * x > sign * y) + 0.5 * (x == y) for x in a for y in b)
    share = wins / (len(a) * len(b))
    if len(a) < 2 or len(b) < 2 or len(set(a) | set(b)) < 2:
        return share, None
    from scipy.stats import mannwhitneyu

    return share, float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def certainty(p: float | None, n: int) -> str:
    """A word for how sure a comparison is: its p-value and the trials it rests on."""
    if p is None or n < 3:
        return "too few trials"
    if p < 0.01:
        return "sure"
    if p < 0.05:
        return "likely"
    if p < 0.2:
        return "a hint"
    return "unclear"


def rung_marginals(rows: list[TrialRow], settings: Settings, sign: float) -> dict[str, list[dict[str, Any]]]:
    """Per parameter and rung: each value's trials that reached the rung, their median at that epoch, and
    how often one of them beats a trial of another value there (with the p-value and a word for it)."""
    rungs = settings.rungs or sorted({s for r in rows for s, _ in r.history})[:1]
    out: dict[str, list[dict[str, Any]]] = {}
    for key, groups in _grouped(rows, settings):
        table = []
        for rung in rungs:
            at = _values_at(groups, rung)
            if sum(len(v) for v in at.values()) == 0:
                continue
            for lab, values in at.items():
                if not values:
                    continue
                rest = [v for other, vs in at.items() if other != lab for v in vs]
                share, p = beats(values, rest, sign)
                table.append(
                    {
                        "rung": rung,
                        "value": lab,
                        "trials": len(values),
                        "median": statistics.median(values),
                        "best": max(values, key=lambda v: sign * v),
                        "beats_others": None if math.isnan(share) else round(share, 3),
                        "p_value": None if p is None else round(p, 4),
                        "certainty": certainty(p, len(values)),
                    }
                )
        out[key] = table
    return out


QUESTIONS: list[tuple[str, str, list[str] | None]] = [
    (
        "activation",
        "Which activation? (the lecture: SELU > ELU > leaky ReLU > ReLU > tanh > sigmoid)",
        ["selu", "elu", "leaky_relu", "relu", "tanh", "sigmoid"],
    ),
    ("batch_norm", "Batch norm before or after the activation (or none)?", None),
    ("grad_clip", "Clip gradients by value or by norm (or not at all)?", None),
    ("optimizer", "Which optimizer?", None),
    ("schedule", "Which learning-rate schedule?", None),
    ("init", "Which weight initialisation?", None),
]


def _deepest_rung(table: list[dict[str, Any]], least: int = 3) -> int | None:
    """The deepest rung where at least two values each have ``least`` trials (else the first rung)."""
    rungs = sorted({row["rung"] for row in table})
    good = [r for r in rungs if sum(row["trials"] >= least for row in table if row["rung"] == r) >= 2]
    return good[-1] if good else (rungs[0] if rungs else None)


def answer_questions(
    rows: list[TrialRow], settings: Settings, sign: float, by_rung: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The lecture's questions this search can speak to: each answered by ranking the values at the deepest
    rung where two or more values have at least 3 trials, with how sure each step of the ranking is."""
    groups = {key: grouped for key, grouped in _grouped(rows, settings) if key in by_rung}
    out = []
    for key, question, expected in QUESTIONS:
        table = by_rung.get(key)
        if not table:
            continue
        rung = _deepest_rung(table)
        if rung is None:
            continue
        ranking = sorted((row for row in table if row["rung"] == rung), key=lambda row: -sign * row["median"])
        if len(ranking) < 2:
            continue
        values = _values_at(groups[key], rung)
        steps = []
        for a, b in zip(ranking, ranking[1:], strict=False):
            share, p = beats(values[a["value"]], values[b["value"]], sign)
            steps.append(
                {
                    "better": a["value"],
                    "worse": b["value"],
                    "beats": round(share, 3),
                    "p_value": None if p is None else round(p, 4),
                    "certainty": certainty(p, min(a["trials"], b["trials"])),
                }
            )
        answer: dict[str, Any] = {
            "param": key,
            "question": question,
            "rung": rung,
            "trials": sum(row["trials"] for row in ranking),
            "ranking": [{k: row[k] for k in ("value", "trials", "median")} for row in ranking],
            "steps": steps,
        }
        if expected:
            seen = [row["value"] for row in ranking if row["value"] in expected]
            pairs = [(x, y) for i, x in enumerate(seen) for y in seen[i + 1 :]]
            agree = sum(expected.index(x) < expected.index(y) for x, y in pairs)
            answer["expected"] = [v for v in expected if v in seen]
            answer["agreement"] = (
                f"{agree} of {len(pairs)} pairs in the lecture's order" if pairs else "nothing to compare"
            )
        text = " > ".join(f"{row['value']} {row['median']:.4f} (n={row['trials']})" for row in ranking)
        sure = ", ".join(f"{s['better']} over {s['worse']}: {s['certainty']}" for s in steps)
        answer["answer"] = f"at epoch {rung}: {text}; {sure}"
        out.append(answer)
    return out
