"""Secrets stay secret: a canary password in a PostgreSQL tracking URI (the store really requires it)
and the cluster's Ray token are looked for everywhere a user or a job listing could see them: terminal
output of every command, every file under the run directories, the MLflow artifacts and the cluster's
logs, every MLflow param and tag, Ray's job info and Ray's session logs. The search itself works: the
local driver uses the URI's password, the cluster takes it from its own environment."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow import MlflowClient

from tests.fault_tests.cluster import local_cluster
from tests.helpers import QUICKSTART, hpsearch, write_spec
from tests.integration_tests.servers import running_postgres, wait_job

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]

CANARY = "Canary-7f3a-pw"


def files_containing(root: Path, secret: str, skip: tuple[Path, ...] = ()) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not any(path.is_relative_to(s) for s in skip):
            try:
                if secret.encode() in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
    return found


def session_dir(state: Path) -> Path:
    """The Ray session folder of the cluster `cluster up` recorded (from its GCS server's command line)."""
    for record in json.loads(state.read_text())["processes"]:
        try:
            proc = psutil.Process(record["pid"])
            if proc.name() == "gcs_server":
                arg = next(a for a in proc.cmdline() if a.startswith("--log_dir="))
                return Path(arg.split("=", 1)[1]).parent
        except (psutil.NoSuchProcess, StopIteration):
            continue
    raise AssertionError("the cluster's GCS server is not running")


def job_info_of(job: str, dashboard: str, token: str) -> str:
    """What Ray's Jobs API shows anyone with the cluster's token: the job's entrypoint, metadata, environment.
    (A process of its own: Ray reads its authentication mode once per process.)"""
    code = (
        "import json, sys; from ray.job_submission import JobSubmissionClient; "
        "i = JobSubmissionClient(sys.argv[1]).get_job_info(sys.argv[2]); "
        "print(json.dumps({'entrypoint': i.entrypoint, 'metadata': i.metadata, 'runtime_env': i.runtime_env}))"
    )
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    out = subprocess.run([sys.executable, "-c", code, dashboard, job], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_canary_password_and_the_ray_token_appear_nowhere(tmp_path):
    with running_postgres(user="hp", database="mlflow", password=CANARY) as uri:
        secret_uri = uri.replace("hp@", f"hp:{CANARY}@")
        data = yaml.safe_load(QUICKSTART.read_text())
        data["name"] = "secrets"
        data["tracking"] = {"uri": secret_uri}  # in the spec: its text is logged and shipped with jobs
        data["search"].update(num_trials=3, max_concurrent=2)
        data["search"]["scheduler"]["max_epochs"] = 2
        spec = write_spec(tmp_path / "spec.yaml", data)
        outputs = []

        def cli(*args, env=None, ok=True):
            out = hpsearch(*args, cwd=tmp_path, env=env, timeout=600)
            outputs.append(f"{out.stdout}\n{out.stderr}")  # what the user sees (not the command they typed)
            assert (out.returncode == 0) == ok, out.stderr + out.stdout
            return out

        # locally: the URI's password is used, and masked wherever the URI is shown
        run = cli("run", spec, "--storage", tmp_path / "runs", "--quiet")
        assert "postgresql://hp:***@127.0.0.1" in run.stdout
        cli("report", "secrets", "--tracking-uri", secret_uri)
        # a wrong password: refused by PostgreSQL, and the message does not echo it either
        cli("report", "secrets", "--tracking-uri", secret_uri.replace(CANARY, "Wrong-pw-1234"), ok=False)
        assert "Wrong-pw-1234" not in outputs[-1]

        # on a cluster that has the password in its environment (as deploy/ mounts it from a secret)
        home = tmp_path / "home"
        with local_cluster(home, workers=1, env={"HPSEARCH_TRACKING_PASSWORD": CANARY}) as (env, _, dashboard, state):
            token = (home / ".ray" / "auth_token").read_text().strip()
            sub = cli("submit", spec, "--address", dashboard, "--storage", tmp_path / "jobs", env=env)
            job = sub.stdout.strip().splitlines()[-1]
            wait_job(job, lambda s: "SUCCEEDED" in s or "FAILED" in s, dashboard, env=env, timeout=400)
            status = cli("status", job, "--address", dashboard, env=env)
            assert "SUCCEEDED" in status.stdout, status.stdout
            cli("logs", job, "--address", dashboard, env=env)
            cli("list", "--address", dashboard, env=env)
            job_info = job_info_of(job, dashboard, token)
            assert "--tracking-uri postgresql://hp@127.0.0.1" in json.loads(job_info)["entrypoint"]
            ray_logs = session_dir(state)
            time.sleep(2)  # the job's last log lines reach the session folder
            in_ray_logs = files_containing(ray_logs, CANARY) + files_containing(ray_logs, token)

        client = MlflowClient(secret_uri)
        exp = client.get_experiment_by_name("secrets")
        runs = client.search_runs([exp.experiment_id], max_results=100)
        assert len([r for r in runs if r.data.tags["hpsearch.role"] == "trial"]) == 6  # 3 local + 3 on the cluster
        recorded = json.dumps([{"params": r.data.params, "tags": r.data.tags} for r in runs])
        assert "postgresql://hp:***@127.0.0.1" in recorded  # the spec's URI, masked
        artifacts = [
            client.download_artifacts(r.info.run_id, "", str(tmp_path / "downloaded" / r.info.run_id)) for r in runs
        ]

    terminal = "\n".join(outputs)
    for secret in (CANARY, token):
        assert secret not in terminal, terminal
        assert secret not in recorded
        assert secret not in job_info, job_info
        # (the user's own spec file has it, and the token is in the cluster's token file: nowhere else)
        assert not files_containing(tmp_path, secret, skip=(home / ".ray", tmp_path / "spec.yaml")), secret
    assert artifacts and not in_ray_logs, in_ray_logs


S3_CANARY = "S3canary-9d1e-secret"
MLFLOW_CANARY = "MlflowCanary-41c2-pw"


def test_s3_and_mlflow_server_credentials_appear_nowhere(tmp_path, monkeypatch):
    """A search whose state is on S3 (a real S3 protocol server, moto's, that takes any key) with a
    canary secret key, tracked on an `mlflow server` with basic authentication whose canary password is
    in the spec's tracking URI: both credentials work, and neither appears in the terminal, the run
    directory (on S3 and locally), MLflow's params, tags and artifacts."""
    import boto3
    from mlflow import MlflowClient

    from tests.fault_tests.mlflow_server import MlflowServer
    from tests.integration_tests.servers import moto_s3

    server = MlflowServer(tmp_path / "mlflow", admin_password=MLFLOW_CANARY)
    (tmp_path / "mlflow").mkdir()
    with moto_s3(buckets=("runs",), secret_key=S3_CANARY) as aws:
        try:
            server.start()
            secret_uri = server.uri.replace("http://", f"http://admin:{MLFLOW_CANARY}@")
            data = yaml.safe_load(QUICKSTART.read_text())
            data["name"] = "secrets-s3"
            data["tracking"] = {"uri": secret_uri}
            data["search"].update(num_trials=2, max_concurrent=2)
            data["search"]["scheduler"]["max_epochs"] = 2
            spec = write_spec(tmp_path / "spec.yaml", data)
            outputs = []
            for args in (
                ("run", spec, "--storage", "s3://runs/searches"),
                ("report", "secrets-s3", "--tracking-uri", secret_uri),
            ):
                out = hpsearch(*args, cwd=tmp_path, env=aws, timeout=600)
                outputs.append(f"{out.stdout}\n{out.stderr}")
                assert out.returncode == 0, out.stderr + out.stdout
            assert f"http://127.0.0.1:{server.port}" in outputs[0], outputs[0]  # the login went to MLflow's variables

            with monkeypatch.context() as login:
                login.setenv("MLFLOW_TRACKING_USERNAME", "admin")
                login.setenv("MLFLOW_TRACKING_PASSWORD", MLFLOW_CANARY)
                client = MlflowClient(server.uri)
                exp = client.get_experiment_by_name("secrets-s3")
                runs = client.search_runs([exp.experiment_id], max_results=100)
                assert len([r for r in runs if r.data.tags["hpsearch.role"] == "trial"]) == 2
                recorded = json.dumps([{"params": r.data.params, "tags": r.data.tags} for r in runs])
                for r in runs:
                    client.download_artifacts(r.info.run_id, "", str(tmp_path / "downloaded" / r.info.run_id))
            bucket = boto3.client(
                "s3", endpoint_url=aws["AWS_ENDPOINT_URL"], aws_access_key_id="x", aws_secret_access_key="y"
            )
            keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="runs").get("Contents", [])]
            assert any(k.endswith("hpsearch.json") for k in keys), keys
            on_s3 = tmp_path / "on-s3"
            on_s3.mkdir()
            for i, key in enumerate(keys):  # flat: a folder's marker object may share its name with the folder
                bucket.download_file("runs", key, str(on_s3 / f"object-{i}"))
        finally:
            server.stop()

    terminal = "\n".join(outputs)
    for secret in (S3_CANARY, MLFLOW_CANARY):
        assert secret not in terminal, terminal
        assert secret not in recorded
        skip = (tmp_path / "spec.yaml", tmp_path / "mlflow")  # the user's spec; the server's own config and DB
        assert not files_containing(tmp_path, secret, skip=skip), (secret, files_containing(tmp_path, secret, skip))
