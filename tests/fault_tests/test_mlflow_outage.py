"""The MLflow server killed (kill -9 of its process group) in the middle of a search:

* back while the search runs: the writes made meanwhile wait in the run directory's journal and are
  replayed, in order, when it answers; nothing is lost or written twice;
* gone until after the search: the search ends without waiting on it, says what is pending and how to
  sync it; `hpsearch sync RUN_DIR` writes it all once the server is back, and syncing again (even the
  same journal a second time) writes nothing twice.

Counted from MLflow: one run per trial, none RUNNING, every epoch a trial reported exactly once."""

import shutil
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.fault_tests.mlflow_server import MlflowServer
from tests.fault_tests.specs import fault_spec
from tests.helpers import hpsearch, start_hpsearch

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]


def spec_file(tmp_path: Path, name: str, trials: int, epochs: int, epoch_s: float, hold: Path | None = None) -> Path:
    space = {"units": {"choice": [32, 64]}, "epoch_s": epoch_s, **({"hold": str(hold)} if hold else {})}
    return fault_spec(tmp_path, name, "slow_mlp", space, trials=trials, epochs=epochs)


def wait_for_finished_trial(client: MlflowClient, name: str, run, timeout_s: float = 180) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert run.poll() is None, run.communicate()
        exp = client.get_experiment_by_name(name)
        if exp and [
            r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("hpsearch.trial_state") == "completed"
        ]:
            return
        time.sleep(0.5)
    raise AssertionError("no trial finished")


def check_complete(client: MlflowClient, name: str, trials: int, epochs: int) -> int:
    """Everything the search reported is in MLflow once; returns the number of metric points."""
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    children = [r for r in runs if r.data.tags["hpsearch.role"] == "trial"]
    (parent,) = [r for r in runs if r.data.tags["hpsearch.role"] == "search"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_completed"] == trials
    assert "report/report.json" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert len(children) == trials and all(r.info.status == "FINISHED" for r in children)
    assert sorted(r.data.tags["hpsearch.trial"] for r in children) == [f"t{i:03d}" for i in range(1, trials + 1)]
    points = 0
    for r in children:
        assert r.data.tags["hpsearch.epochs"] == str(epochs)
        for key in ("val_accuracy", "val_loss", "train_loss"):
            steps = [m.step for m in client.get_metric_history(r.info.run_id, key)]
            assert sorted(steps) == list(range(1, epochs + 1)), (r.data.tags["hpsearch.trial"], key, steps)
            points += len(steps)
    return points


# The search after the server is killed: its last trials (~2.5 s of epochs each, two at a time) and its end.
# A search that waited for MLflow's retries on each write (hpsearch sets them to a few seconds) takes minutes.
GONE_BOUND_S = 30  # measured: 4.2 s


def check_journal_order(text: str) -> None:
    """The journal holds each trial's writes in the order they were made: its run created first, its
    epochs in order (each metric's steps as the trial reported them, never sorted), its end last."""
    import json

    kinds: dict[str, list[str]] = {}
    steps: dict[tuple[str, str], list[int]] = {}
    for line in text.splitlines():
        op = json.loads(line)
        kinds.setdefault(op["ref"], []).append(op["kind"])
        for key, _value, _timestamp, step in op["data"].get("points", []):
            steps.setdefault((op["ref"], key), []).append(step)
    for ref, made in kinds.items():
        if ref != "parent":
            assert "create_trial" not in made or made.index("create_trial") == 0, (ref, made)
            assert "end_trial" not in made or made.index("end_trial") == len(made) - 1, (ref, made)
    assert steps, "no metric point journaled"
    for (ref, key), reported in steps.items():
        assert reported == sorted(set(reported)), (ref, key, reported)


def test_the_server_killed_and_back_during_the_search_loses_nothing(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    client = MlflowClient(server.uri)
    hold = tmp_path / "hold"  # while it exists, no trial ends: the search is still running when the server is back
    spec = spec_file(tmp_path, "fault-mlflow-back", trials=8, epochs=3, epoch_s=1.0, hold=hold)
    try:
        run = start_hpsearch("run", spec, "--tracking-uri", server.uri, "--storage", tmp_path / "runs", cwd=tmp_path)
        wait_for_finished_trial(client, "fault-mlflow-back", run)
        hold.touch()
        server.kill()
        time.sleep(10)  # longer than MLflow's client retries as hpsearch sets them; trials report meanwhile
        back_in = server.start()
        time.sleep(6)  # the tracking thread checks an absent store every 5 s
        hold.unlink()
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err + out
        assert "does not answer" in err and "answers again" in err, err
        assert "pending" not in out
        assert check_complete(client, "fault-mlflow-back", trials=8, epochs=3) == 8 * 3 * 3
        assert not list((tmp_path / "runs").glob("*/mlflow-journal.jsonl"))  # all replayed
        print(f"\nserver down ~10 s, restarted in {back_in:.1f} s")
    finally:
        server.stop()


def test_the_server_gone_until_after_the_search_is_synced_later_once(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    client = MlflowClient(server.uri)
    spec = spec_file(tmp_path, "fault-mlflow-gone", trials=6, epochs=3, epoch_s=0.5)
    try:
        run = start_hpsearch("run", spec, "--tracking-uri", server.uri, "--storage", tmp_path / "runs", cwd=tmp_path)
        wait_for_finished_trial(client, "fault-mlflow-gone", run)
        server.kill()
        killed = time.time()
        out, err = run.communicate(timeout=600)
        ended = time.time()
        assert run.returncode == 0, err + out
        assert "MLflow write(s) pending" in out and "hpsearch sync" in out, out
        (journal,) = (tmp_path / "runs").glob("*/mlflow-journal.jsonl")
        run_dir = journal.parent
        saved = journal.read_text()
        check_journal_order(saved)
        assert ended - killed < GONE_BOUND_S, f"the search waited on a gone MLflow: {ended - killed:.1f} s"

        # the server is still away: sync says so and keeps everything
        early = hpsearch("sync", run_dir, cwd=tmp_path)
        assert early.returncode == 1 and "not reachable" in early.stderr and journal.read_text() == saved

        server.start()
        # the machine died twice mid-append: a damaged line inside, half a line at the end
        lines = saved.splitlines()
        journal.write_text("\n".join([*lines[:2], '{"kind":"metr', *lines[2:], lines[-1][:40]]))
        synced = hpsearch("sync", run_dir, cwd=tmp_path)
        assert synced.returncode == 0, synced.stderr
        assert f"{len(lines)} MLflow writes synced" in synced.stdout
        assert "2 journal line(s)" in synced.stderr and "set aside" in synced.stderr, synced.stderr
        assert len((run_dir / "mlflow-journal.rejected.jsonl").read_text().splitlines()) == 2
        assert not journal.exists()
        points = check_complete(client, "fault-mlflow-gone", trials=6, epochs=3)
        assert points == 6 * 3 * 3

        again = hpsearch("sync", run_dir, cwd=tmp_path)
        assert again.returncode == 0 and "nothing to sync" in again.stdout
        journal.write_text(saved)  # the same journal replayed a second time (a sync cut short, run again)
        twice = hpsearch("sync", run_dir, cwd=tmp_path)
        assert twice.returncode == 0, twice.stderr
        assert check_complete(client, "fault-mlflow-gone", trials=6, epochs=3) == points  # nothing twice
        shutil.rmtree(tmp_path / "runs")
        print(f"\nsearch ended {ended - killed:.1f} s after the server was killed")
    finally:
        server.stop()
