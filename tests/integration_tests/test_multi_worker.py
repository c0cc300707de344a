"""Multi-worker trials (``resources.workers``), end to end with real Ray Train (DDP on the CPU, gloo),
Ray Tune, Optuna and MLflow: one trial trained by two processes gives the metrics one process gives for
the same global batch; ASHA stops whole groups and their workers are freed; a worker killed with
``kill -9`` restarts its group from the last checkpoint with nothing recorded twice."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from hpsearch.run import run_search
from hpsearch.spec import parse_spec
from tests.integration_tests.own_training import write_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OWN = "tests.integration_tests.own_training"

FIXED_MLP = {  # no dropout, no BatchNorm: with those, each rank would draw and normalise on its own half
    "hidden_layers": 1,
    "units": 32,
    "activation": "relu",
    "batch_norm": "none",
    "dropout": 0.0,
    "batch_size": 64,
    "optimizer": {"choice": {"sgd": {"lr": 0.05, "momentum": 0.9}}},
}


def digits_spec(name, workers, space=None, trials=1, max_epochs=3, **scheduler):
    return parse_spec(
        {
            "name": name,
            "trainable": "mlp",
            "data": {"dataset": "digits", "val_fraction": 0.2, "test_fraction": 0.2, "seed": 0},
            "space": space or FIXED_MLP,
            "search": {
                "num_trials": trials,
                "max_concurrent": 2,
                "sampler": {"seed": 3, "n_startup_trials": 2},
                "scheduler": {"max_epochs": max_epochs, **scheduler},
            },
            "resources": {"cpu": 1, "workers": workers},
        }
    )


def trial_runs(client, name):
    exp = client.get_experiment_by_name(name)
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags["hpsearch.role"] == "trial"]


def history(client, run, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]


def test_two_workers_train_a_global_batch_as_one_worker_does(ray_session, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    for name, workers in (("one-worker", 1), ("two-workers", 2)):
        result = run_search(digits_spec(name, workers), tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
        assert result.status == "FINISHED" and result.counts["completed"] == 1, (name, result.counts)
    client = MlflowClient(uri)
    (one,) = trial_runs(client, "one-worker")
    (two,) = trial_runs(client, "two-workers")  # one MLflow run for the trial, whatever its workers
    assert two.data.tags["hpsearch.runtime.workers"] == "2" and two.data.tags["hpsearch.runtime.backend"] == "gloo"
    assert "hpsearch.runtime.workers" not in one.data.tags
    for key in ("train_loss", "val_loss", "val_accuracy"):
        a, b = history(client, one, key), history(client, two, key)
        assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 3], key  # every epoch once
        for (_, x), (_, y) in zip(a, b, strict=True):
            assert y == pytest.approx(x, rel=1e-5, abs=1e-6), (key, a, b)  # measured: 2.4e-7 at most


def test_asha_stops_whole_groups_and_their_workers_are_freed(ray_session, tmp_path):
    import ray
    from ray.util.placement_group import placement_group_table

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    space = {**FIXED_MLP, "optimizer": {"choice": {"sgd": {"lr": {"float": [1e-3, 0.3], "log": True}}}}}
    spec = digits_spec("groups-asha", 2, space=space, trials=4, max_epochs=4, grace_period=1, reduction_factor=2)
    result = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    assert result.status == "FINISHED" and sum(result.counts.values()) == 4, result.counts
    assert result.counts["stopped_early"] > 0, result.counts
    assert result.searcher_states.get("PRUNED", 0) == result.counts["stopped_early"]  # Optuna told as for one worker
    # Every group's placement group is gone, so its CPUs are free again (Tune ends a stopped trial's process
    # before its Train controller can remove it: the search removes it).
    left = [pg for pg in placement_group_table().values() if pg["state"] != "REMOVED"]
    assert left == [], left
    deadline = time.time() + 20
    while ray.available_resources().get("CPU", 0) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2
    client = MlflowClient(uri)
    for run in trial_runs(client, "groups-asha"):
        reached = int(run.data.tags["hpsearch.epochs"])
        assert [s for s, _ in history(client, run, "val_loss")] == list(range(1, reached + 1))


def own_group_spec(name, root, epochs, **search):
    return parse_spec(
        {
            "name": name,
            "trainable": f"{OWN}:csv_data_parallel",
            "task": "regression",
            "space": {"root": str(root), "lr": 0.05, "hidden": 16, "epoch_s": 1.0},
            "search": {
                "metric": "val_mse",
                "mode": "min",
                "num_trials": 1,
                "report_interval_s": 0,
                "checkpoint_min_interval_s": 0,
                "scheduler": {"max_epochs": epochs},
                **search,
            },
            "resources": {"cpu": 1, "workers": 2},
        }
    )


def kill_rank_when(root: Path, rank: int, epoch: int, killed: list, timeout_s: float = 120) -> None:
    """kill -9 the process of ``rank`` once it has checkpointed ``epoch`` (it says so beside the data)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for marker in root.glob(f"rank-{rank}-of-*"):
            pid, reached = map(int, marker.read_text().split())
            if reached >= epoch:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.1)


def test_a_killed_worker_restarts_its_group_from_the_last_checkpoint(ray_session, tmp_path):
    root = write_csv(tmp_path / "csv")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = own_group_spec("group-killed-worker", root, epochs=6, max_node_restarts=1)
    killed: list[int] = []
    killer = threading.Thread(target=kill_rank_when, args=(root, 1, 2, killed))
    killer.start()
    result = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    killer.join()
    assert killed, "rank 1 never got to epoch 2"
    assert result.status == "FINISHED" and result.counts["completed"] == 1, (result.counts, result.records)
    client = MlflowClient(uri)
    (run,) = trial_runs(client, "group-killed-worker")
    assert [s for s, _ in history(client, run, "val_mse")] == [1, 2, 3, 4, 5, 6]  # nothing twice, nothing lost
    resumed = [v for _, v in history(client, run, "resumed_from")]
    # the group went on from a checkpoint (epoch 1 or 2: where the kill fell), not from the start
    assert resumed[0] == 0.0 and resumed[-1] >= 1.0 and resumed == sorted(resumed), resumed
    assert {v for _, v in history(client, run, "world_size")} == {2.0}
    assert "hpsearch.error" not in run.data.tags


def test_a_group_search_whose_driver_was_killed_resumes_from_the_groups_checkpoint(tmp_path):
    """``hpsearch resume`` after a SIGKILL of the driver (and its local Ray, workers and all): the trial's
    new group continues from the checkpoint its rank 0 wrote, each epoch is in MLflow once."""
    import json
    import subprocess

    from tests.helpers import hpsearch, kill_driver_when, start_hpsearch, write_spec

    root = write_csv(tmp_path / "csv")
    spec = own_group_spec("group-resume", root, epochs=5).model_dump(exclude={"space"})
    spec["space"] = {"root": str(root), "lr": 0.05, "hidden": 16, "epoch_s": 1.0}
    env = {"TUNE_GLOBAL_CHECKPOINT_S": "1"}
    driver = start_hpsearch(
        "run", write_spec(tmp_path / "spec.yaml", spec), cwd=tmp_path, stderr=subprocess.DEVNULL, env=env
    )
    marker = lambda: max((int(p.read_text().split()[1]) for p in root.glob("rank-0-of-*")), default=0)  # noqa: E731
    kill_driver_when(driver, lambda: marker() >= 2, timeout_s=180, settle_s=1.2, stuck="the group got nowhere")
    (run_dir,) = (tmp_path / "hpsearch_results").iterdir()
    resumed = hpsearch("resume", run_dir, cwd=tmp_path, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    client = MlflowClient(json.loads((run_dir / "hpsearch.json").read_text())["tracking_uri"])
    (run,) = trial_runs(client, "group-resume")
    assert run.info.status == "FINISHED"
    assert [s for s, _ in history(client, run, "val_mse")] == [1, 2, 3, 4, 5]
    resumed_from = [v for _, v in history(client, run, "resumed_from")]
    assert resumed_from[0] == 0.0 and resumed_from[-1] >= 1.0, resumed_from  # not from the start
