"""New SQLite stores are copies of an empty store MLflow migrated once (real MLflow, real SQLite)."""

import sqlite3
from pathlib import Path

from mlflow import MlflowClient

from hpsearch.tracking.store import new_sqlite_store


def schema(path):
    with sqlite3.connect(path) as db:
        tables = sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    return tables, version


def test_a_new_store_is_the_migrated_template_and_mlflow_adds_its_own_default_experiment(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    reference = tmp_path / "reference.db"  # what MLflow makes of a new file by itself
    MlflowClient(f"sqlite:///{reference}").search_experiments()

    stores = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)
        uri = f"sqlite:///{folder / 'mlruns.db'}"
        assert new_sqlite_store(uri, cache=cache)
        (template,) = cache.glob("mlflow-*-empty.db")
        if name == "a":
            made = template.stat().st_mtime_ns
        assert template.stat().st_mtime_ns == made  # made once, then copied
        assert schema(folder / "mlruns.db") == schema(reference)
        client = MlflowClient(uri)
        default = client.get_experiment("0")
        assert default.name == "Default" and default.artifact_location == str(folder / "mlruns" / "0")
        assert client.create_experiment("x") == "1"
        stores.append(client)
    assert [c.get_experiment_by_name("x").experiment_id for c in stores] == ["1", "1"]


def test_existing_stores_and_other_uris_are_left_to_mlflow(tmp_path):
    cache = tmp_path / "cache"
    existing = tmp_path / "mlruns.db"
    MlflowClient(f"sqlite:///{existing}").create_experiment("kept")
    before = existing.read_bytes()
    assert not new_sqlite_store(f"sqlite:///{existing}", cache=cache)
    assert existing.read_bytes() == before
    assert not new_sqlite_store("http://127.0.0.1:5000", cache=cache)
    assert not new_sqlite_store(f"sqlite:///{tmp_path / 'missing' / 'mlruns.db'}", cache=cache)
    assert not cache.exists()


def test_without_a_writable_cache_mlflow_creates_the_store_itself(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert not new_sqlite_store(uri, cache=blocked / "hpsearch")
    assert MlflowClient(uri).get_experiment("0").name == "Default"


def test_a_trial_ends_with_its_points_and_tags_written_also_past_mlflows_request_limit(tmp_path):
    from hpsearch.tracking.records import TrialRecord
    from hpsearch.tracking.tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracker = MlflowTracker(uri, "limits")
    tracker.start("search", params={}, tags={}, artifacts={})
    short, long = TrialRecord(1, "a", {"lr": 0.1}), TrialRecord(2, "b", {"lr": 0.2})
    for rec, epochs in ((short, 3), (long, 600)):  # 600 epochs x 2 metrics: more than 1000 points in one end
        tracker.trial_started(rec)
        for step in range(1, epochs + 1):
            tracker.trial_result(rec, step, {"val_loss": 1.0 / step, "val_accuracy": step / epochs})
        rec.state, rec.epochs = "completed", epochs
        tracker.trial_ended(rec)
    assert tracker.finish("FINISHED", {}, {}, {}, {}) == []
    client = MlflowClient(uri)
    runs = {r.data.tags.get("hpsearch.trial"): r for r in client.search_runs([tracker.experiment_id])}
    for name, epochs in (("t001", 3), ("t002", 600)):
        run = runs[name]
        assert run.info.status == "FINISHED" and run.data.tags["hpsearch.trial_state"] == "completed"
        assert run.data.tags["hpsearch.epochs"] == str(epochs)
        for key in ("val_loss", "val_accuracy"):
            assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == list(range(1, epochs + 1))


def test_uri_rules_live_in_one_place(tmp_path, monkeypatch):
    from hpsearch.tracking.store import absolute, is_server, sqlite_path

    monkeypatch.chdir(tmp_path)
    assert absolute("sqlite:///runs/mlruns.db") == f"sqlite:///{tmp_path / 'runs' / 'mlruns.db'}"
    assert absolute("sqlite:////abs/mlruns.db") == "sqlite:////abs/mlruns.db"
    assert absolute("http://mlflow:5000") == "http://mlflow:5000"
    assert sqlite_path("sqlite:////abs/x.db") == Path("/abs/x.db") and sqlite_path("postgresql://h/db") is None
    assert is_server("https://h") and is_server("http://h") and not is_server("sqlite:///x.db")
