"""The compose stack's own command lines, run on this machine without Docker.

No Docker engine runs here, so the containers cannot. What they would run can: each service's command
and environment are read from docker/compose.yaml (interpolated with docker/.env.example) and started as
real processes on 127.0.0.1, with only the service names and ports translated (postgres:5432, minio:9000,
mlflow:5000, ray-head:6379 -> 127.0.0.1:free ports; 0.0.0.0 -> 127.0.0.1) and each Ray node pinned to
127.0.0.1. MinIO's stand-in is moto's S3 server; PostgreSQL and MLflow and Ray are the real ones. Then a
search is submitted the way docker/README.md says, stopped part-way and resumed from its state in S3,
and the test checks where everything landed: runs in PostgreSQL (through MLflow), artifacts in the
`mlflow` bucket, Tune's state in the `hpsearch` one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import yaml

from hpsearch.cluster import agent_port_args
from hpsearch.review.ui import stop
from tests.helpers import QUICKSTART, hpsearch, write_spec
from tests.integration_tests.servers import free_port, running_postgres, wait_job

from .checks import DOCKER, env_file, load_compose

pytestmark = [pytest.mark.slow, pytest.mark.integration]
BIN = Path(sys.executable).parent
TRIALS = 20  # long enough that a stop after 2 lands mid-search (the resume has work) on a loaded machine


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None):
    """A server process in its own session, stopped (with everything it started) by its pid."""
    # As in the image (ENV PATH=/opt/venv/bin:$PATH): `python` of a Ray job is the environment's own.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    try:
        yield proc
    finally:
        stop(proc, timeout_s=60)  # `hpsearch ui`'s own: SIGTERM to the session's group, then SIGKILL


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert proc.poll() is None, f"{proc.args[:3]} exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def translate(value: str, ports: dict[str, int]) -> str:
    # Port flags are whole arguments: matched as substrings, "--port=5000" would also rewrite an
    # already translated "--port=50001" (a free port that happens to start with 5000).
    flags = {
        "--port=6379": f"--port={ports['gcs']}",
        "--dashboard-port=8265": f"--dashboard-port={ports['dashboard']}",
        "--port=5000": f"--port={ports['mlflow']}",
    }
    if value in flags:
        return flags[value]
    for old, new in [
        ("postgres:5432", f"127.0.0.1:{ports['postgres']}"),
        ("http://minio:9000", f"http://127.0.0.1:{ports['minio']}"),
        ("http://mlflow:5000", f"http://127.0.0.1:{ports['mlflow']}"),
        ("ray-head:6379", f"127.0.0.1:{ports['gcs']}"),
        ("=0.0.0.0", "=127.0.0.1"),
    ]:
        value = value.replace(old, new)
    return value


def test_translate_rewrites_whole_port_flags_only():
    ports = {"gcs": 50001, "dashboard": 50002, "mlflow": 58483, "postgres": 1, "minio": 2}
    assert translate("--port=6379", ports) == "--port=50001"
    assert translate("--port=5000", ports) == "--port=58483"
    assert translate("--address=ray-head:6379", ports) == "--address=127.0.0.1:50001"
    assert translate("http://mlflow:5000/x", ports) == "http://127.0.0.1:58483/x"


def service(compose: dict, name: str, ports: dict[str, int]) -> tuple[list[str], dict[str, str]]:
    s = compose["services"][name]
    return [translate(a, ports) for a in s["command"]], {
        k: translate(str(v), ports) for k, v in s["environment"].items()
    }


def test_a_search_submitted_to_the_stack_lands_in_postgresql_and_the_buckets(tmp_path, monkeypatch):
    import boto3
    from mlflow import MlflowClient

    env = env_file(DOCKER / ".env.example")
    compose = load_compose(env)
    ports = {name: free_port() for name in ("minio", "mlflow", "gcs", "dashboard")}
    with ExitStack() as stack:
        # postgres: a real server with the user and database of .env.example
        uri = stack.enter_context(running_postgres(user=env["POSTGRES_USER"], database=env["POSTGRES_DB"]))
        ports["postgres"] = int(uri.rsplit(":", 1)[1].split("/")[0])

        # minio + minio-init: an S3 server, the two buckets
        log = tmp_path / "s3.log"
        s3_server = stack.enter_context(
            process([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(ports["minio"])], {}, log)
        )
        wait_for(f"http://127.0.0.1:{ports['minio']}/", s3_server, log)
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{ports['minio']}",
            aws_access_key_id=env["S3_ACCESS_KEY"],
            aws_secret_access_key=env["S3_SECRET_KEY"],
            region_name="us-east-1",
        )
        for bucket in ("mlflow", "hpsearch"):
            s3.create_bucket(Bucket=bucket)

        # mlflow: the service's arguments and environment
        args, mlflow_env = service(compose, "mlflow", ports)
        log = tmp_path / "mlflow.log"
        auth_dir = tmp_path / "mlflow-auth"  # the service's working_dir (a volume): its users database
        auth_dir.mkdir()
        mlflow = stack.enter_context(
            process([sys.executable, "-m", "mlflow", "server", *args], mlflow_env, log, cwd=auth_dir)
        )
        wait_for(f"http://127.0.0.1:{ports['mlflow']}/health", mlflow, log, timeout_s=180)

        # ray-head and ray-worker-cpu: their `ray start` command lines
        head_args, ray_env = service(compose, "ray-head", ports)
        log = tmp_path / "ray-head.log"
        head = stack.enter_context(
            process([str(BIN / "ray"), *head_args[1:], "--node-ip-address=127.0.0.1", *agent_port_args()], ray_env, log)
        )
        wait_for(f"http://127.0.0.1:{ports['dashboard']}/api/gcs_healthz", head, log)
        worker_args, worker_env = service(compose, "ray-worker-cpu", ports)
        log = tmp_path / "ray-worker.log"
        stack.enter_context(
            process(
                [str(BIN / "ray"), *worker_args[1:], "--node-ip-address=127.0.0.1", "--num-cpus=2", *agent_port_args()],
                worker_env,
                log,
            )
        )

        # The search, submitted as docker/README.md says (token from the env file, cluster-side URIs);
        # stopped part-way and resumed from its state in S3, as on a real stack after a failure.
        data = yaml.safe_load(QUICKSTART.read_text())
        data["name"] = "stack-digits"
        data["search"].update(num_trials=TRIALS, max_concurrent=2)
        data["search"]["scheduler"]["max_epochs"] = 3
        spec = write_spec(tmp_path / "spec.yaml", data)
        client_env = {"RAY_AUTH_TOKEN": env["RAY_AUTH_TOKEN"]}
        address = f"http://127.0.0.1:{ports['dashboard']}"
        tracking = translate("http://mlflow:5000", ports)

        deadline = time.time() + 60  # the worker node joins a few seconds after the head answers
        while time.time() < deadline:
            nodes = subprocess.run(
                [str(BIN / "ray"), "list", "nodes", f"--address={address}", "--format=yaml"],
                env={**os.environ, "RAY_AUTH_MODE": "token", **client_env},
                capture_output=True,
                text=True,
            )
            if nodes.stdout.count("state: ALIVE") >= 2:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"the worker node did not join:\n{log.read_text()[-3000:]}")
        submit = hpsearch(
            "submit",
            spec,
            "--address",
            address,
            "--tracking-uri",
            tracking,
            "--storage",
            "s3://hpsearch/searches",
            cwd=tmp_path,
            env=client_env,
        )
        assert submit.returncode == 0, submit.stdout + submit.stderr
        job_id = submit.stdout.strip().splitlines()[-1]
        wait_job(job_id, lambda s: int((re.search(r"trials done (\d+)/", s) or [0, "0"])[1]) >= 2, address, client_env)
        stop = hpsearch("stop", job_id, "--address", address, cwd=tmp_path, env=client_env)
        assert stop.returncode == 0 and stop.stdout.strip().endswith("STOPPED"), stop.stdout + stop.stderr
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="hpsearch", Prefix=f"searches/{job_id}/")["Contents"]]
        assert f"searches/{job_id}/hpsearch.json" in keys  # what `hpsearch resume` reads, in S3

        resumed = hpsearch("resume", job_id, "--address", address, cwd=tmp_path, env=client_env)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        final = wait_job(
            resumed.stdout.strip().splitlines()[-1],
            lambda s: any(k in s for k in ("SUCCEEDED", "FAILED", "STOPPED")),
            address,
            client_env,
            timeout=300,
        )
        assert "SUCCEEDED" in final and f"trials done {TRIALS}/{TRIALS}" in final, final
        logs = hpsearch(
            "logs", resumed.stdout.strip().splitlines()[-1], "--address", address, cwd=tmp_path, env=client_env
        )
        # a trial line per trial it finished; or, when the stop came as the last trials ended, that it had none left
        nothing_left = f"resumed: {TRIALS} of {TRIALS} trials already done, 0 to continue" in logs.stdout
        assert f"[{TRIALS}/{TRIALS}]" in logs.stdout or nothing_left, logs.stdout[-2000:]
        assert "View run" not in logs.stdout  # MLflow's two lines per trial that ends on a server: off
        assert "hpsearch-progress" not in logs.stdout  # the records `status` reads are not shown

        # Runs: in PostgreSQL, read back through the MLflow server (its login is on: the admin's, as on
        # the head); one run per trial, none twice.
        assert (auth_dir / "basic_auth.db").is_file()
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", env["MLFLOW_ADMIN_PASSWORD"])
        anonymous = urllib.request.Request(f"{tracking}/api/2.0/mlflow/experiments/search?max_results=1")
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(anonymous, timeout=10)
        server = MlflowClient(tracking)
        experiment = server.get_experiment_by_name("stack-digits")
        runs = server.search_runs([experiment.experiment_id], max_results=1000)
        assert sorted(r.data.tags["hpsearch.role"] for r in runs) == ["search"] + ["trial"] * TRIALS
        assert (
            len({r.data.tags["hpsearch.trial_id"] for r in runs if r.data.tags["hpsearch.role"] == "trial"}) == TRIALS
        )
        parent = next(r for r in runs if r.data.tags["hpsearch.role"] == "search")
        assert parent.info.status == "FINISHED"
        # Artifacts: the report went through the server's proxy into the `mlflow` bucket.
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow", Prefix="artifacts/").get("Contents", [])]
        assert any(k.endswith(f"{parent.info.run_id}/artifacts/report/report.json") for k in keys), keys[:20]
        # Ray Tune's search state: in the `hpsearch` bucket, under the job's run directory.
        tune = s3.list_objects_v2(Bucket="hpsearch", Prefix=f"searches/{job_id}/").get("Contents", [])
        assert any(o["Key"].endswith(".json") and "experiment_state" in o["Key"] for o in tune), [
            o["Key"] for o in tune
        ][:20]
