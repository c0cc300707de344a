"""The samplers, schedulers and several objectives in real searches: real Ray Tune, Optuna and MLflow
(SQLite), asserted through MlflowClient."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import pytest
from mlflow import MlflowClient

from hpsearch.objectives import dominates
from hpsearch.run import run_search
from hpsearch.spec import parse_spec
from tests.helpers import hpsearch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL = {
    "hidden_layers": {"int": [1, 2]},
    "units": {"choice": [8, 32, 128]},
    "activation": {"choice": ["relu", "tanh"]},
    "optimizer": {"choice": {"adam": {"lr": {"float": [1e-3, 3e-2], "log": True}}}},
}


def spec(name, space, max_epochs, num_trials, **search):
    return parse_spec(
        {
            "name": name,
            "trainable": search.pop("trainable", "mlp"),
            "data": {"dataset": "digits"},
            "space": space,
            "search": {
                "num_trials": num_trials,
                "max_concurrent": 2,
                "scheduler": {"max_epochs": max_epochs},
                **search,
            },
        }
    )


def trial_runs(client, parent_run_id):
    return client.search_runs(
        [client.get_run(parent_run_id).info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`hpsearch.role` = 'trial'",
        max_results=1000,
    )


def test_several_objectives_give_a_tagged_front_and_retrain_takes_it(ray_session, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    objectives = [{"metric": "val_accuracy", "mode": "max"}, {"metric": "params", "mode": "min"}]
    s = spec("it-front", SMALL, 3, 10, objectives=objectives, constraints=["latency_ms <= 50"],
             sampler={"type": "nsga2", "population_size": 4, "seed": 1, "fallback": "random"}, scheduler={"type": "fifo", "max_epochs": 3})  # fmt: skip
    result = run_search(s, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    assert result.counts["completed"] == 10
    assert result.searcher_states == {"COMPLETE": 10}
    client = MlflowClient(uri)
    runs = trial_runs(client, result.parent_run_id)
    points = {r.info.run_id: [r.data.metrics["val_accuracy"], r.data.metrics["params"]] for r in runs}
    on = {r.info.run_id for r in runs if r.data.tags.get("hpsearch.pareto") == "true"}
    expected = {k for k, p in points.items() if not any(dominates(q, p, ["max", "min"]) for q in points.values())}
    assert on == expected and on  # exactly the non-dominated runs (every trial meets 50 ms here)
    assert all(r.data.metrics["latency_ms"] > 0 and r.data.metrics["peak_memory_mb"] > 0 for r in runs)
    files = {a.path for a in client.list_artifacts(result.parent_run_id, "report")}
    assert {"report/pareto_front.csv", "report/pareto_front.png"} <= files
    text = open(client.download_artifacts(result.parent_run_id, "report/pareto_front.csv", str(tmp_path))).read()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["run_id"] for r in rows} == on
    assert [float(r["val_accuracy"]) for r in rows] == sorted((float(r["val_accuracy"]) for r in rows), reverse=True)
    shown = hpsearch("report", "it-front", "--tracking-uri", uri, cwd=tmp_path)
    assert shown.returncode == 0 and "Pareto front" in shown.stdout
    retrained = hpsearch("retrain", "it-front", "--front", "--seeds", "1", "--epochs", "1", "--tracking-uri", uri,
                         "--format", "json", cwd=tmp_path, timeout=600)  # fmt: skip
    assert retrained.returncode == 0, retrained.stderr
    done = json.loads(retrained.stdout)
    assert {c["source_run_id"] for c in done["configs"]} == on


def test_pbt_records_each_exploit_as_a_segment_and_never_changes_a_param(ray_session, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    space = {"units": 64, "optimizer": {"choice": {"sgd": {"lr": {"float": [1e-3, 0.3], "log": True},
                                                          "momentum": {"float": [0.0, 0.95]}}}}}  # fmt: skip
    s = spec("it-pbt", space, 6, 4, sampler={"type": "random", "seed": 2},
             scheduler={"type": "pbt", "max_epochs": 6, "perturbation_interval": 2, "quantile_fraction": 0.5})  # fmt: skip
    result = run_search(s, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    assert result.counts["completed"] == 4
    client = MlflowClient(uri)
    runs = trial_runs(client, result.parent_run_id)
    exp = runs[0].info.experiment_id
    segments = client.search_runs([exp], "tags.`hpsearch.role` = 'segment'", max_results=100)
    # synchronous PBT at epochs 2 and 4: the bottom half (2 of 4) takes a top trial's checkpoint each time
    assert len(segments) == 4
    names = {r.data.tags["hpsearch.trial"] for r in runs}
    for run in runs:
        started = json.loads(run.data.tags["hpsearch.config"])
        assert float(run.data.params["optimizer.lr"]) == pytest.approx(started["optimizer.lr"])  # its first config
        mine = sorted((r for r in segments if r.data.tags["mlflow.parentRunId"] == run.info.run_id),
                      key=lambda r: int(r.data.tags["hpsearch.pbt.segment"]))  # fmt: skip
        assert run.data.tags.get("hpsearch.pbt.segments", "1") == str(len(mine) + 1 if mine else 1)
        lrs = {int(m.step): m.value for m in client.get_metric_history(run.info.run_id, "lr")}
        assert sorted(lrs) == [1, 2, 3, 4, 5, 6]  # every epoch once
        for seg in mine:
            assert seg.data.tags["hpsearch.pbt.donor"] in names - {run.data.tags["hpsearch.trial"]}
            start = int(seg.data.tags["hpsearch.pbt.from_epoch"]) + 1
            assert start in (3, 5)
            # the epoch after the exploit trains with the segment's rate (a constant schedule)
            assert lrs[start] == pytest.approx(float(seg.data.params["optimizer.lr"]))
    files = {a.path for a in client.list_artifacts(result.parent_run_id, "report")}
    assert {"report/pbt_schedule.csv", "report/pbt_lineage.csv", "report/pbt_schedule.png"} <= files
    lineage = open(client.download_artifacts(result.parent_run_id, "report/pbt_lineage.csv", str(tmp_path))).read()
    assert len(lineage.strip().splitlines()) == 1 + len(segments)


@pytest.mark.parametrize(
    ("scheduler", "sampler"),
    [
        ({"type": "hyperband", "max_epochs": 9, "brackets": 2}, {"type": "tpe", "n_startup_trials": 3}),
        (
            {"type": "median", "max_epochs": 6, "grace_period": 2, "min_samples_required": 2},
            {"type": "gp", "n_startup_trials": 3, "fallback": "random"},
        ),
        ({"type": "fifo", "max_epochs": 3}, {"type": "grid"}),
    ],
)
def test_each_scheduler_stops_trials_and_optuna_learns_them_as_pruned(ray_session, tmp_path, scheduler, sampler):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    space = (
        SMALL
        if sampler["type"] != "grid"
        else {"units": {"choice": [8, 32]}, "activation": {"choice": ["relu", "tanh"]}}
    )
    n = 10 if sampler["type"] != "grid" else 4
    s = spec(f"it-{scheduler['type']}", space, scheduler["max_epochs"], n, sampler=sampler, scheduler=scheduler)
    result = run_search(s, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    stopped, completed = result.counts["stopped_early"], result.counts["completed"]
    assert stopped + completed == n
    assert result.searcher_states == {k: v for k, v in {"COMPLETE": completed, "PRUNED": stopped}.items() if v}
    if scheduler["type"] == "fifo":
        assert stopped == 0
        configs = {json.dumps(r.config, sort_keys=True) for r in result.records}
        assert len(configs) == 4  # the grid: every point once
    elif scheduler["type"] == "hyperband":
        assert stopped > 0


def test_a_search_of_a_replay_workload_logs_the_recorded_curves(ray_session, tmp_path, monkeypatch):
    """The replay trainable in a real search (benchmarks.replay): what MLflow holds is what was recorded."""
    from benchmarks.replay import load_table
    from benchmarks.replay_spaces import WORKLOADS

    monkeypatch.setenv("HPSEARCH_REPLAY_TIME_SCALE", "0.05")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    s = parse_spec(
        {
            "name": "it-replay",
            "trainable": "benchmarks.replay:replay_images_cnn",
            "space": json.loads(json.dumps(WORKLOADS["images_cnn"].space)),
            "search": {"num_trials": 6, "max_concurrent": 2, "scheduler": {"max_epochs": 9}},
        }
    )
    result = run_search(s, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    assert sum(result.counts.values()) == 6 and result.counts["stopped_early"] > 0
    table, client = load_table("images_cnn"), MlflowClient(uri)
    for run in trial_runs(client, result.parent_run_id):
        curve = table.curve(json.loads(run.data.tags["hpsearch.config"]))
        got = sorted((int(m.step), m.value) for m in client.get_metric_history(run.info.run_id, "val_accuracy"))
        assert got == [(e, curve["epochs"][e - 1][1]) for e in range(1, len(got) + 1)]


def test_a_pbt_search_whose_driver_was_killed_resumes_and_keeps_exploiting(tmp_path):
    """kill -9 of the driver (and its Ray) after the first exploit; ``hpsearch resume`` re-syncs Ray's PBT
    with the restored trials (a fresh scheduler waited for an epoch they had passed: 10 minutes stuck)."""
    import sqlite3

    from benchmarks.replay_spaces import CNN_SPACE
    from tests.helpers import kill_driver_when, start_hpsearch, write_spec

    data = {
        "name": "it-pbt-resume",
        "trainable": "benchmarks.replay:replay_images_cnn",
        "space": json.loads(json.dumps(CNN_SPACE)),
        "search": {
            "num_trials": 4,
            "max_concurrent": 2,
            "sampler": {"type": "random", "seed": 3},
            "scheduler": {
                "type": "pbt",
                "max_epochs": 9,
                "perturbation_interval": 2,
                "quantile_fraction": 0.5,
                "mutate": ["optimizer.lr", "dropout"],
            },  # fmt: skip
        },
    }
    spec = write_spec(tmp_path / "spec.yaml", data)
    env = {"HPSEARCH_REPLAY_TIME_SCALE": "4", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    db = tmp_path / "mlruns.db"

    def segments() -> int:
        if not db.exists():
            return 0
        with sqlite3.connect(db) as con:  # read-only look at MLflow's own table
            row = con.execute("select count(*) from tags where key = 'hpsearch.role' and value = 'segment'").fetchone()
        return int(row[0])

    driver = start_hpsearch("run", spec, cwd=tmp_path, stderr=subprocess.DEVNULL, env=env)
    kill_driver_when(driver, lambda: segments() >= 1, timeout_s=240, settle_s=1.0, stuck="no exploit before the kill")
    (run_dir,) = (tmp_path / "hpsearch_results").iterdir()
    resumed = start_hpsearch("resume", run_dir, cwd=tmp_path, env=env)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert "[4/4]" in out
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("it-pbt-resume")
    runs = client.search_runs([exp.experiment_id], "tags.`hpsearch.role` = 'trial'", max_results=100)
    assert len(runs) == 4 and all(r.data.tags["hpsearch.trial_state"] == "completed" for r in runs)
    for run in runs:
        steps = [int(m.step) for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert sorted(steps) == list(range(1, 10)), (run.info.run_name, steps)  # every epoch once
    after = client.search_runs([exp.experiment_id], "tags.`hpsearch.role` = 'segment'", max_results=100)
    exploits = sorted(int(r.data.tags["hpsearch.pbt.from_epoch"]) for r in after)
    assert set(exploits) <= {2, 4, 6, 8} and max(exploits) >= 6  # it went on exploiting after the resume
    numbers = [(r.data.tags["mlflow.parentRunId"], r.data.tags["hpsearch.pbt.segment"]) for r in after]
    assert len(numbers) == len(set(numbers))  # no segment recorded twice
