"""Trainables that end their own process (os._exit, os.abort, SIGKILL as the OOM killer sends it, a
segmentation fault in native code):
each such trial ends `failed` with a readable cause, is not retried as a lost node, and the search goes
on; no run stays RUNNING and every epoch that reached the search is in MLflow once."""

import pytest
from mlflow import MlflowClient

from tests.fault_tests.specs import fault_spec
from tests.helpers import hpsearch

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]

CAUSES = {
    "exit": "the trainable ended its process with os._exit(3)",
    "abort": "died of a fatal signal: Fatal Python error: Aborted",
    "sigkill": "killed without an exit code or a Python error: SIGKILL",
    "segfault": "died of a fatal signal: Fatal Python error: Segmentation fault",
}


def test_a_trainable_that_kills_its_process_fails_with_its_cause_and_the_search_goes_on(tmp_path):
    spec = fault_spec(
        tmp_path, "fault-process-deaths", "ends_itself", {"outcome": {"choice": ["ok", *CAUSES]}},
        trials=10, epochs=2, sampler={"seed": 0, "n_startup_trials": 10},
        enqueue=[{"outcome": outcome} for outcome in ("ok", *CAUSES)],  # each way to end, for sure; then sampled
    )  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    run = hpsearch("run", spec, "--tracking-uri", uri, "--storage", tmp_path / "runs", cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr + run.stdout  # the search went on to its end

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("fault-process-deaths")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags["hpsearch.role"] == "trial"]
    assert len(trials) == 10 and not [r for r in trials if r.info.status == "RUNNING"]
    outcomes = {r.data.params["outcome"] for r in trials}
    assert outcomes == {"ok", *CAUSES}, outcomes
    for r in trials:
        outcome, tags = r.data.params["outcome"], r.data.tags
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "val_accuracy")]
        assert steps == list(range(1, int(tags["hpsearch.epochs"]) + 1))  # each epoch reported, once
        if outcome == "ok":
            assert tags["hpsearch.trial_state"] == "completed" and steps == [1, 2]
            continue
        assert r.info.status == "FAILED" and tags["hpsearch.trial_state"] == "failed", tags
        assert steps == [1]  # the epoch before it ended itself
        assert tags["hpsearch.error"].startswith("ProcessDied: ") and CAUSES[outcome] in tags["hpsearch.error"]
        assert "hpsearch.restarts" not in tags  # its own doing: not retried as a lost node
    (parent,) = [r for r in runs if r.data.tags["hpsearch.role"] == "search"]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_failed"] == sum(r.data.params["outcome"] != "ok" for r in trials)


def test_a_trial_killed_by_rays_memory_monitor_fails_as_out_of_memory_and_the_search_goes_on(tmp_path):
    """Ray's memory monitor, set to kill at 4 GiB above what this machine uses now, kills the trial
    that allocates 8 GiB. (Ray Tune 2.60 alone ends the whole search on this: hpsearch hands the error on.)"""
    from ray._private.utils import get_system_memory, get_used_memory

    threshold = (get_used_memory() + 4 * 2**30) / get_system_memory()
    spec = fault_spec(
        tmp_path, "fault-oom", "eats_memory", {"gib": {"choice": [8]}}, trials=2, epochs=2, max_concurrent=1
    )
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    env = {"RAY_memory_usage_threshold": f"{threshold:.4f}"}
    run = hpsearch(
        "run", spec, "--tracking-uri", uri, "--storage", tmp_path / "runs", cwd=tmp_path, env=env, timeout=600
    )
    assert "Caught unexpected exception" not in run.stderr, run.stderr[-3000:]
    assert "search interrupted" not in run.stderr  # both trials ran: the first one's death did not end it

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("fault-oom")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags["hpsearch.role"] == "trial"]
    assert len(trials) == 2 and not [r for r in trials if r.info.status == "RUNNING"]
    for r in trials:
        assert r.data.tags["hpsearch.trial_state"] == "failed"
        error = r.data.tags["hpsearch.error"]
        assert error.startswith("ProcessDied: the trial's process was killed for using too much memory"), error
        assert "Memory on the node" in error
        assert [m.step for m in client.get_metric_history(r.info.run_id, "val_accuracy")] == [1]
    (parent,) = [r for r in runs if r.data.tags["hpsearch.role"] == "search"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_failed"] == 2
