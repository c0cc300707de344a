"""A PostgreSQL tracking store end to end: a search logs to it, `hpsearch report` reads it and
`hpsearch ui` serves it. A real PostgreSQL server (Debian's package) on 127.0.0.1, started and
stopped by the test by its own pid."""

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import QUICKSTART, apt_install, hpsearch, write_spec
from tests.integration_tests.servers import free_port, running_ui

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        apt_install("postgresql")
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL is not installed and could not be installed with apt-get"
    return os.path.dirname(found[-1])


@pytest.fixture(scope="module")
def postgres():
    bindir = _bindir()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    folder = tempfile.mkdtemp(prefix="hpsearch-pg-")
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    data = os.path.join(folder, "data")
    subprocess.run(
        [*as_postgres, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"], check=True, capture_output=True
    )
    port = free_port()
    server = subprocess.Popen(
        [*as_postgres, f"{bindir}/postgres", "-D", data, "-p", str(port), "-h", "127.0.0.1", "-k", folder],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while subprocess.run(
            [f"{bindir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        ).returncode:
            assert time.time() < deadline and server.poll() is None, "PostgreSQL did not start"
            time.sleep(0.3)
        subprocess.run(
            [f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"], check=True
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        pid_file = os.path.join(data, "postmaster.pid")
        if os.path.exists(pid_file):  # the postmaster's own pid (runuser forks it)
            with open(pid_file) as f:
                os.kill(int(f.readline()), signal.SIGINT)  # fast shutdown
        server.wait(60)
        shutil.rmtree(folder, ignore_errors=True)


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
