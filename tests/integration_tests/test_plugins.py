"""A sampler, a scheduler and a data source registered from outside the package run a real search (real
Ray, Optuna and MLflow), named in the spec and recorded in MLflow like the built-ins."""

import pytest
from mlflow import MlflowClient

from hpsearch.review.report import load_report
from hpsearch.run import run_search
from hpsearch.spec import parse_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_search_with_a_plugin_sampler_scheduler_and_data_source(ray_session, tmp_path, plugins_module):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = parse_spec(
        {
            "name": "plugins",
            "plugins": [plugins_module],
            "data": {"dataset": "blobs", "samples": 400, "classes": 4},
            "space": {
                "units": {"choice": [8, 32]},
                "optimizer": {"choice": {"adam": {"lr": {"float": [1e-3, 1e-1], "log": True}}}},
            },
            "search": {
                "num_trials": 6,
                "sampler": {"type": "plain_random", "seed": 3},
                "scheduler": {"type": "stop_at_half", "max_epochs": 4, "at": 2},
                "report_interval_s": 60,  # results only at the scheduler's milestone and the last epoch
            },
        }
    )
    assert type(spec.search.sampler).__name__ == "PlainRandom" and type(spec.data).__name__ == "Blobs"
    result = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    assert result.status == "FINISHED" and sum(result.counts.values()) == 6

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("plugins")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags["hpsearch.role"] == "search"]
    trials = [r for r in runs if r.data.tags["hpsearch.role"] == "trial"]
    params = parent.data.params
    assert params["search.sampler.type"] == "plain_random" and params["search.scheduler.at"] == "2"
    assert params["data.dataset"] == "blobs" and params["data.classes"] == "4"
    assert len(trials) == 6
    epochs = sorted(int(r.data.tags["hpsearch.epochs"]) for r in trials)
    assert set(epochs) <= {2, 4} and epochs[-1] == 4  # stopped at the plugin's milestone, or ran to the end
    # Optuna learnt what the plugin scheduler did: stopped trials PRUNED, the others COMPLETE
    told = {"COMPLETE": epochs.count(4), "PRUNED": epochs.count(2)}
    assert result.searcher_states == {state: n for state, n in told.items() if n}

    report = load_report(uri, "plugins")  # the report reads the plugin scheduler's rungs from the logged spec
    assert [r["rung"] for r in report.rungs] == [2, 4]
    assert sum(r["reached"] for r in report.rungs[:1]) == 6
