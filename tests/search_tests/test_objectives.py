"""Several objectives and constraints: what Optuna is told, what is refused at validation, and the Pareto
front the report gives (real Optuna; the front from report rows)."""

from __future__ import annotations

import copy
import pickle
from typing import Literal

import pytest
from optuna.trial import TrialState

from hpsearch import faults, schedulers
from hpsearch.objectives import INFEASIBLE, Constraint, dominates, hypervolume, pareto_front
from hpsearch.review.front import front_rows
from hpsearch.review.trials import Settings, TrialRow
from hpsearch.searcher import optuna_search
from hpsearch.spec import parse_spec
from tests.helpers import spec_problems

TWO = [{"metric": "val_accuracy", "mode": "max"}, {"metric": "params", "mode": "min"}]


def mo_data(quickstart_data, **search):
    data = copy.deepcopy(quickstart_data)
    del data["search"]["metric"], data["search"]["mode"]
    data["search"].update(objectives=TWO, **search)
    return data


def test_constraints_parse_and_give_optuna_values_that_are_negative_when_they_hold():
    c = Constraint.parse("latency_ms <= 2")
    assert (c.metric, c.op, c.bound, str(c)) == ("latency_ms", "<=", 2.0, "latency_ms <= 2")
    assert c.value({"latency_ms": 1.5}) == -0.5 and c.holds({"latency_ms": 2.0}) and not c.holds({"latency_ms": 2.1})
    assert Constraint.parse("val_accuracy>=0.9").value({"val_accuracy": 0.95}) == pytest.approx(-0.05)
    assert Constraint.parse("peak_memory_mb <= 1e3").bound == 1000.0
    assert c.value({}) == INFEASIBLE and c.value({"latency_ms": float("nan")}) == INFEASIBLE
    for bad in ("latency_ms < 2", "2 >= latency_ms", "latency_ms <= two", ""):
        with pytest.raises(ValueError, match="METRIC <= NUMBER"):
            Constraint.parse(bad)


def test_the_front_and_its_hypervolume():
    modes = ["max", "min"]
    assert dominates([0.9, 10], [0.8, 10], modes) and not dominates([0.9, 10], [0.9, 10], modes)
    points = {"a": [0.9, 100], "b": [0.8, 10], "c": [0.7, 50], "d": [0.9, 100]}
    assert pareto_front(points, modes) == ["a", "b", "d"]  # ties both stay; c is beaten by b
    # the union of two boxes up to (0, 1000): 0.9*900 + 0.8*990 - 0.8*900
    assert hypervolume([[0.9, 100], [0.8, 10]], modes, [0.0, 1000]) == pytest.approx(882.0)
    assert hypervolume([[0.9, 2000]], modes, [0.0, 1000]) == 0.0  # worse than the reference: adds nothing


def test_optuna_is_told_every_objective_of_a_completed_trial_and_the_constraints(quickstart_data):
    spec = parse_spec(mo_data(quickstart_data, constraints=["latency_ms <= 2"]))
    assert spec.search.metric == "val_accuracy" and spec.search.directions == ["max", "min"]
    searcher = optuna_search(spec)
    epochs = spec.epochs
    for tid in ("done", "stopped", "diverged", "slow"):
        searcher.suggest(tid)
    searcher.on_trial_result("done", {"epoch": epochs, "val_accuracy": 0.9, "params": 5000.0, "latency_ms": 0.5})
    searcher.on_trial_complete("done", {"epoch": epochs, "val_accuracy": 0.9, "params": 5000.0, "latency_ms": 0.5})
    searcher.on_trial_complete("stopped", {"epoch": 1, "val_accuracy": 0.3, "params": 100.0, "latency_ms": 0.1})
    faults._by_trial_id["diverged"] = faults.Failure(faults.DIVERGED, "")
    searcher.on_trial_complete("diverged", None, error=True)
    searcher.on_trial_complete("slow", {"epoch": epochs, "val_accuracy": 0.95, "params": 9e4, "latency_ms": 3.0})
    study = pickle.loads(pickle.dumps(searcher))._ot_study  # the searcher survives Tune's snapshot
    by_state = {t.number: t for t in study.trials}
    done, stopped, diverged, slow = (by_state[i] for i in range(4))
    assert done.state == TrialState.COMPLETE and done.values == [0.9, 5000.0]
    assert stopped.state == TrialState.PRUNED and stopped.values is None  # Optuna keeps no intermediates here
    assert diverged.state == TrialState.PRUNED
    assert slow.state == TrialState.COMPLETE and slow.values == [0.95, 9e4]
    constraint = {t.number: t.system_attrs.get("constraints:latency_ms <= 2") for t in study.trials}
    assert constraint == {0: -1.5, 1: -1.9, 2: INFEASIBLE, 3: 1.0}
    assert [t.number for t in study.best_trials] == [0]  # the faster of the two breaks the constraint


def test_a_completed_trial_that_did_not_report_every_objective_is_a_failure(quickstart_data):
    searcher = optuna_search(parse_spec(mo_data(quickstart_data)))
    searcher.suggest("t")
    searcher.on_trial_complete("t", {"epoch": 10, "val_accuracy": 0.9})
    assert searcher._ot_study.trials[0].state == TrialState.FAIL


def test_objectives_and_constraints_are_checked_at_validation(quickstart_data):
    assert spec_problems(mo_data(quickstart_data, metric="val_loss")) == [
        "search.metric: the first objective is the metric (val_accuracy): give one or the other, got 'val_loss'"
    ]
    data = mo_data(quickstart_data, constraints=["flops <= 3", "latency_ms < 2"])
    data["search"]["objectives"] = [TWO[0], {"metric": "params", "mode": "max"}]
    assert sorted(spec_problems(data)) == [
        "search.constraints[0]: the mlp trainable reports val_accuracy, val_loss, train_loss, params, latency_ms, "
        "peak_memory_mb for task: classification, got 'flops' (in 'flops <= 3')",
        "search.constraints[1]: a constraint is `METRIC <= NUMBER` or `METRIC >= NUMBER` (latency_ms <= 2), got "
        "'latency_ms < 2'",
        "search.objectives[1].mode: params should be minimised, got 'max'",
    ]
    data = mo_data(quickstart_data)
    data["search"]["objectives"] = [TWO[0], TWO[0]]
    assert "search.objectives: each metric may be one objective once" in spec_problems(data)[0]


def test_a_scheduler_that_needs_one_metric_refuses_several_objectives(quickstart_data):
    @schedulers.register
    class OneMetricOnly(schedulers.SchedulerSpec):
        type: Literal["one_metric_only"] = "one_metric_only"
        first_objective = False

        def build(self):
            from ray.tune.schedulers import FIFOScheduler

            return FIFOScheduler()

    try:
        data = mo_data(quickstart_data)
        data["search"]["scheduler"] = {"type": "one_metric_only", "max_epochs": 3}
        assert spec_problems(data) == [
            "search.scheduler.type: one_metric_only needs one metric, and search.objectives has 2; schedulers that "
            "stop by the first objective: asha, hyperband, median, fifo, pbt"
        ]
    finally:
        schedulers.REGISTRY._models.pop("one_metric_only", None)


def _row(name, state, acc, params, latency=0.1):
    return TrialRow(name, f"{name} run", f"id-{name}", state, 10, acc, {"units": 1},
                    metrics={"val_accuracy": acc, "params": params, "latency_ms": latency})  # fmt: skip


def test_the_front_is_the_completed_trials_no_other_beats_that_meet_the_constraints():
    settings = Settings(
        "val_accuracy", "max", 10, [10], {}, [("val_accuracy", "max"), ("params", "min")], ["latency_ms <= 1"]
    )
    rows = [
        _row("t001", "completed", 0.90, 5000),
        _row("t002", "completed", 0.80, 500),
        _row("t003", "completed", 0.85, 6000),  # beaten by t001
        _row("t004", "stopped_early", 0.50, 10),  # not trained to the end: not on the front
        _row("t005", "completed", 0.99, 9000, latency=5.0),  # breaks the constraint
        _row("t006", "completed", 0.95, 8000),
    ]
    front = front_rows(rows, settings)
    assert [t["trial"] for t in front] == ["t006", "t001", "t002"]  # best first objective first
    assert front[0]["val_accuracy"] == 0.95 and front[0]["params"] == 8000 and front[0]["latency_ms"] == 0.1
    assert front_rows(rows, Settings("val_accuracy", "max", 10, [10], {})) == []  # one objective: no front
