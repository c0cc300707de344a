"""A worker node lost mid-search (`kill -9` of all its processes): the trial that ran there is
restarted from its last checkpoint on another node and continues in the same MLflow run (every epoch
once, no gap), tagged with its restart; nothing is counted against the config."""

import time

import pytest
from mlflow import MlflowClient

from tests.fault_tests.cluster import kill_node, local_cluster, trial_processes, worker_nodes
from tests.fault_tests.specs import fault_spec
from tests.helpers import start_hpsearch

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]

EPOCHS = 6


def test_a_trial_whose_node_is_lost_continues_in_its_run_on_another_node(tmp_path):
    spec = fault_spec(
        tmp_path, "fault-node-loss", "slow_mlp", {"units": {"choice": [32, 64]}, "epoch_s": 1.5}, trials=3,
        epochs=EPOCHS, max_concurrent=3, checkpoint_min_interval_s=0,
    )  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    with local_cluster(tmp_path / "home", workers=2) as (env, address, _, state):
        run = start_hpsearch(
            "run", spec, "--address", address, "--tracking-uri", uri, "--storage", tmp_path / "runs",
            cwd=tmp_path, env=env,
        )  # fmt: skip
        victim = worker_nodes(state)[0]
        deadline = time.time() + 120
        while not trial_processes(victim):  # the first worker node has a trial
            assert time.time() < deadline and run.poll() is None, "no trial started on the worker node"
            time.sleep(0.2)
        time.sleep(3 * 1.5 + 1)  # a few epochs in (and checkpointed)
        lost_at = time.time()
        assert kill_node(victim) >= 3
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err + out

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("fault-node-loss")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags["hpsearch.role"] == "trial"]
    assert len(trials) == 3  # one run per trial: the restart continued its run
    assert all(r.info.status == "FINISHED" and r.data.tags["hpsearch.trial_state"] == "completed" for r in trials)
    restarted = [r for r in trials if r.data.tags.get("hpsearch.restarts")]
    assert len(restarted) == 1, [r.data.tags for r in trials]
    (moved,) = restarted
    assert moved.data.tags["hpsearch.restarts"] == "1"
    assert "node was lost" in moved.data.tags["hpsearch.restart_cause"]
    for r in trials:  # every epoch exactly once, in every run (the restarted one redid some: kept once)
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "val_accuracy")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (r.data.tags["hpsearch.trial"], steps)
    assert "restarted from its last checkpoint" in out
    stamps = sorted(m.timestamp / 1000 for m in client.get_metric_history(moved.info.run_id, "val_accuracy"))
    back = next(t for t in stamps if t > lost_at)
    print(f"\nnode lost: the trial's next epoch came {back - lost_at:.1f} s later (epochs take 1.5 s)")
