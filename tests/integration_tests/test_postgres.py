"""A PostgreSQL tracking store end to end: a search logs to it, `hpsearch report` reads it and
`hpsearch ui` serves it. A real PostgreSQL server (Debian's package) on 127.0.0.1, started and
stopped by the test by its own pid."""

import json

import pytest
import yaml
from mlflow import MlflowClient

from tests.helpers import QUICKSTART, hpsearch, write_spec
from tests.integration_tests.servers import running_postgres, running_ui

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def postgres():
    with running_postgres() as uri:
        yield uri


def test_search_report_and_ui_on_a_postgresql_store(postgres, tmp_path):
    data = yaml.safe_load(QUICKSTART.read_text())
    data["name"] = "pg-digits"
    data["search"].update(num_trials=4, max_concurrent=2)
    data["search"]["scheduler"]["max_epochs"] = 2
    spec = write_spec(tmp_path / "spec.yaml", data)
    run = hpsearch("run", spec, "--tracking-uri", postgres, "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr

    report = hpsearch("report", "pg-digits", "--tracking-uri", postgres, "--format", "json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    out = json.loads(report.stdout)
    assert sum(out["counts"].values()) == 4 and out["status"] == "FINISHED" and out["top"]

    with running_ui("--tracking-uri", postgres, cwd=tmp_path, experiment="pg-digits") as (port, _):
        server = MlflowClient(f"http://127.0.0.1:{port}")  # through the server's REST API
        exp = server.get_experiment_by_name("pg-digits")
        runs = server.search_runs([exp.experiment_id])
        assert sorted(r.data.tags["hpsearch.role"] for r in runs) == ["search"] + ["trial"] * 4
        parent = next(r for r in runs if r.data.tags["hpsearch.role"] == "search")
        assert "report/report.json" in {a.path for a in server.list_artifacts(parent.info.run_id, "report")}
