"""A worker node lost mid-search (`kill -9` of all its processes): the trial that ran there is
restarted from its last checkpoint on another node and continues in the same MLflow run (every epoch
once, no gap), tagged with its restart; nothing is counted against the config. With no node restarts
left (`max_node_restarts: 0`) the same loss ends that trial `failed`, saying so, and the search goes on."""

import os
import time

import pytest
from mlflow import MlflowClient

from tests.fault_tests.cluster import kill_node, local_cluster, trial_processes, worker_nodes
from tests.fault_tests.specs import fault_spec
from tests.helpers import start_hpsearch
from tests.integration_tests.own_training import write_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]

EPOCHS = 6


def _epochs_done(root, processes):
    """The epochs the own trainable's processes have checkpointed (it writes them beside its data)."""
    files = [os.path.join(root, f"epoch-of-{p.pid}") for p in processes]
    return [int(open(f).read() or 0) for f in files if os.path.exists(f)]


@pytest.mark.parametrize(
    "own, restarts", [(False, 3), (True, 3), (False, 0)], ids=["builtin-mlp", "own-csv-trainable", "no-restarts-left"]
)
def test_a_trial_whose_node_is_lost_continues_in_its_run_on_another_node(tmp_path, own, restarts):
    if own:  # a team's own trainable on its own files: restored from its own checkpoint the same way
        space = {"root": str(write_csv(tmp_path / "csv")), "lr": 0.01, "hidden": {"choice": [8, 16]}, "epoch_s": 1.5}
    else:
        space = {"units": {"choice": [32, 64]}, "epoch_s": 1.5}
    spec = fault_spec(
        tmp_path, "fault-node-loss", "slow_mlp", space, trials=3, epochs=EPOCHS, own=own, max_concurrent=3,
        checkpoint_min_interval_s=0, max_node_restarts=restarts,
    )  # fmt: skip
    metric = "val_mse" if own else "val_accuracy"
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
        while own and max(_epochs_done(space["root"], trial_processes(victim)), default=0) < 2:
            assert time.time() < deadline and run.poll() is None, "the trial on the worker node made no progress"
            time.sleep(0.2)
        lost_at = time.time()
        assert kill_node(victim) >= 3
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err + out

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("fault-node-loss")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags["hpsearch.role"] == "trial"]
    assert len(trials) == 3  # one run per trial: the restart continued its run
    if restarts == 0:  # the limit, really exhausted: the lost trial fails, saying why; the others complete
        failed = [r for r in trials if r.info.status == "FAILED"]
        assert len(failed) == 1, [r.data.tags for r in trials]
        error = failed[0].data.tags["hpsearch.error"]
        assert "gave up after its node was lost 1 times (search.max_node_restarts: 0)" in error, error
        assert failed[0].data.tags["hpsearch.trial_state"] == "failed"
        done = [r for r in trials if r is not failed[0]]
        assert all(r.info.status == "FINISHED" and r.data.tags["hpsearch.trial_state"] == "completed" for r in done)
        for r in trials:  # every epoch the search got is there once (the lost one's: up to its loss)
            steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, metric))
            assert steps == list(range(1, int(r.data.tags["hpsearch.epochs"]) + 1)), (r.data.tags, steps)
        return
    assert all(r.info.status == "FINISHED" and r.data.tags["hpsearch.trial_state"] == "completed" for r in trials)
    restarted = [r for r in trials if r.data.tags.get("hpsearch.restarts")]
    assert len(restarted) == 1, [r.data.tags for r in trials]
    (moved,) = restarted
    assert moved.data.tags["hpsearch.restarts"] == "1"
    assert "node was lost" in moved.data.tags["hpsearch.restart_cause"]
    for r in trials:  # every epoch exactly once, in every run (the restarted one redid some: kept once)
        steps = [m.step for m in client.get_metric_history(r.info.run_id, metric)]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (r.data.tags["hpsearch.trial"], steps)
    assert "restarted from its last checkpoint" in out
    if own:  # it continued from its checkpoint, not from epoch 0
        assert max(m.value for m in client.get_metric_history(moved.info.run_id, "resumed_from")) > 0
    stamps = sorted(m.timestamp / 1000 for m in client.get_metric_history(moved.info.run_id, metric))
    back = next(t for t in stamps if t > lost_at)
    print(f"\nnode lost: the trial's next epoch came {back - lost_at:.1f} s later (epochs take 1.5 s)")
