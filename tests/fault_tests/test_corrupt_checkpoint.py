"""A search's driver killed (kill -9) while its trials checkpoint, and their newest checkpoints damaged as
a dying machine leaves them (cut in half): `hpsearch resume` restores each trial from the newest
checkpoint it can read, says so on the trial's run, and every epoch is in MLflow exactly once."""

import json
import subprocess

import pytest
from mlflow import MlflowClient

from tests.fault_tests.specs import fault_spec
from tests.helpers import hpsearch, kill_driver_when, start_hpsearch

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]
ENV = {"TUNE_GLOBAL_CHECKPOINT_S": "1"}  # Tune's experiment snapshot every second
EPOCHS = 8


def checkpoints(run_dir):
    return {t: sorted(t.glob("checkpoint_*")) for t in run_dir.iterdir() if t.is_dir() and t.name.startswith("run_")}


def test_a_damaged_newest_checkpoint_gives_way_to_the_previous_one(tmp_path):
    spec = fault_spec(
        tmp_path, "fault-checkpoint", "slow_mlp", {"units": {"choice": [32]}, "epoch_s": 1.0}, trials=2, epochs=EPOCHS,
        checkpoint_min_interval_s=0,  # a checkpoint every epoch
    )  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    args = ("--tracking-uri", uri, "--storage", tmp_path / "runs")
    driver = start_hpsearch("run", spec, *args, cwd=tmp_path, stderr=subprocess.DEVNULL, env=ENV)

    def checkpointed() -> bool:  # both trials four checkpoints in
        found = [checkpoints(r) for r in (tmp_path / "runs").glob("fault-checkpoint-*")]
        return bool(found) and len(found[0]) == 2 and all(len(c) >= 4 for c in found[0].values())

    # then a snapshot of Tune's taken since (every second here)
    kill_driver_when(driver, checkpointed, timeout_s=300, settle_s=1.5, stuck="the trials did not checkpoint")
    (run_dir,) = (tmp_path / "runs").glob("fault-checkpoint-*")
    damaged = 0
    for kept in checkpoints(run_dir).values():
        assert len(kept) < EPOCHS, "a trial finished before the kill"
        for folder in kept[1:]:  # all but the oldest: whichever one Tune's snapshot names is unreadable
            state = folder / "state.pt"
            state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
            damaged += 1

    resumed = hpsearch("resume", run_dir, cwd=tmp_path, timeout=600, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("fault-checkpoint")
    runs = client.search_runs([exp.experiment_id], "tags.`hpsearch.role` = 'trial'", max_results=100)
    assert len(runs) == 2 and damaged >= 6
    for r in runs:
        assert r.info.status == "FINISHED" and r.data.tags["hpsearch.trial_state"] == "completed", r.data.tags
        note = r.data.tags.get("hpsearch.runtime.checkpoint", "")
        assert "resumed from checkpoint_000000 (epoch 1)" in note and "checkpoint_000001: " in note, note
        for key in ("val_accuracy", "train_loss"):
            steps = [m.step for m in client.get_metric_history(r.info.run_id, key)]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (key, steps)  # each epoch once
    print(json.dumps({r.data.tags["hpsearch.trial"]: r.data.tags["hpsearch.runtime.checkpoint"] for r in runs}))
