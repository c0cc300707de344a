"""The database behind a live `mlflow server` killed (kill -9 of PostgreSQL, every backend) for 30 s in
the middle of a search, then back: the server answers `/health` all along but no write, so hpsearch checks
the store through a read, journals what it cannot write, and replays it when the database is back.

Counted from MLflow: every run, param, metric point (each exactly once), status and the report; no failed
write; exit 0."""

import time

import pytest
from mlflow import MlflowClient

from tests.fault_tests.mlflow_server import MlflowServer
from tests.fault_tests.specs import fault_spec
from tests.fault_tests.test_mlflow_outage import check_complete, wait_for_finished_trial
from tests.helpers import start_hpsearch
from tests.integration_tests.servers import Postgres

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]

TRIALS, EPOCHS = 40, 3  # ~60 s of epochs (sleeps), two at a time: the 30 s outage lands in the middle
DOWN_S = 30


def test_the_stores_database_killed_and_back_loses_nothing(tmp_path):
    database = Postgres(user="hp", database="mlflow")
    database.create()
    server = MlflowServer(tmp_path, backend_uri=database.uri)
    try:
        server.start()
        client = MlflowClient(server.uri)
        space = {"units": {"choice": [32, 64]}, "epoch_s": 1.0}
        spec = fault_spec(tmp_path, "fault-database", "slow_mlp", space, trials=TRIALS, epochs=EPOCHS)
        run = start_hpsearch("run", spec, "--tracking-uri", server.uri, "--storage", tmp_path / "runs", cwd=tmp_path)
        wait_for_finished_trial(client, "fault-database", run)
        killed = database.kill()
        down_at = time.time()
        time.sleep(DOWN_S)  # trials start, report and end meanwhile; MLflow's /health still says OK
        assert run.poll() is None, "the search ended while the database was down: the outage covered nothing"
        back_in = database.start()
        down_s = time.time() - down_at
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err + out
        assert "does not answer" in err and "answers again" in err, err
        assert "write failed" not in err + out and "Traceback" not in err, err
        assert "pending" not in out
        points = check_complete(client, "fault-database", trials=TRIALS, epochs=EPOCHS)
        assert points == TRIALS * EPOCHS * 3
        exp = client.get_experiment_by_name("fault-database")
        for r in client.search_runs([exp.experiment_id], "tags.`hpsearch.role` = 'trial'", max_results=100):
            assert r.data.params.get("units") in ("32", "64"), r.data.params  # every trial's params
        assert not list((tmp_path / "runs").glob("*/mlflow-journal.jsonl"))  # all replayed
        replayed = next(line for line in err.splitlines() if "answers again" in line)
        print(f"\n{killed} PostgreSQL processes killed; down {down_s:.0f} s (restart {back_in:.1f} s); {replayed}")
    finally:
        server.stop()
        database.stop()
