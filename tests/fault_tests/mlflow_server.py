"""A real `mlflow server` (SQLite backend, served artifacts) on 127.0.0.1 that a test can kill -9 (its
whole process group: uvicorn's workers would otherwise go on serving the port) and start again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.integration_tests.servers import free_port


class MlflowServer:
    def __init__(self, folder: Path, admin_password: str | None = None, backend_uri: str | None = None):
        """``admin_password``: MLflow's basic-auth app, its admin user ``admin`` with that password (given to
        the server in its environment, never on its command line). ``backend_uri``: the store (SQLite else)."""
        self.folder, self.port = folder, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.uri = f"http://127.0.0.1:{self.port}"
        self.admin_password = admin_password
        self.backend_uri = backend_uri or f"sqlite:///{self.folder / 'mlflow.db'}"

    def start(self, timeout_s: float = 180) -> float:
        """Start it and wait until it answers; returns the seconds that took."""
        started = time.time()
        log = (self.folder / "mlflow-server.log").open("ab")
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_uri,
            "--serve-artifacts", "--artifacts-destination", str(self.folder / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        env = dict(os.environ)
        if self.admin_password is not None:
            config = self.folder / "basic_auth.ini"
            config.write_text(
                "[mlflow]\ndefault_permission = READ\n"
                f"database_uri = sqlite:///{self.folder / 'basic_auth.db'}\nadmin_username = admin\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            )
            env.update(MLFLOW_AUTH_CONFIG_PATH=str(config), MLFLOW_AUTH_ADMIN_PASSWORD=self.admin_password)
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "flask-key-for-tests"
            command += ["--app-name", "basic-auth"]
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        while True:
            assert self.proc.poll() is None, (self.folder / "mlflow-server.log").read_text()[-3000:]
            assert time.time() - started < timeout_s, "mlflow server did not answer"
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    r.read()
                return time.time() - started
            except OSError:
                time.sleep(0.3)

    def kill(self) -> None:
        """kill -9 of the server's whole process group (its own pid's group), and wait for it."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        deadline = time.time() + 30
        while time.time() < deadline:  # the port is free again: nothing of it still serves
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=1)
            except OSError:
                return
            time.sleep(0.2)
        raise AssertionError("the killed mlflow server still answers")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
