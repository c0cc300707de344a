"""The report's comparisons at equal epochs. A trial's last value is an epoch-1 value when the scheduler
stopped it at its first rung and an epoch-9 value when it ran on: comparing choices by it favours whatever
the sampler happened to let run. At a rung, every trial that reached it is valued at that same epoch:
:func:`rung_marginals` compares each value of each parameter there (with how many trials and how sure),
and :func:`answer_questions` answers the lecture's questions with this evidence."""

from __future__ import annotations

import math
import statistics
from typing import Any

from hpsearch.review.trials import Settings, TrialRow, grouped


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
    for key, groups in grouped(rows, settings):
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
    groups = {key: grouped for key, grouped in grouped(rows, settings) if key in by_rung}
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
