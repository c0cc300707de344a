"""``hpsearch ui``: a real ``mlflow server`` on the project's tracking store, artifacts served.

The server runs in its own process group; Ctrl-C (or SIGTERM) stops the whole group and waits
for it, so no gunicorn/uvicorn worker is left behind.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from hpsearch.errors import HpsearchError, Problem, UsageError
from hpsearch.redact import redact
from hpsearch.tracking.store import check_existing_store, is_server, sqlite_path

LOOPBACK = ("127.0.0.1", "localhost", "::1")
START_TIMEOUT_S = 120.0  # the first start on a SQLite store runs MLflow's migrations (~20 s here)


@dataclass
class UiPlan:
    command: list[str]
    env: dict[str, str]
    url: str
    notes: list[str]
    log: Path


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plan(
    tracking_uri: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    allow_remote: bool = False,
    auth: bool = False,
    workers: int = 2,
) -> UiPlan:
    """Check the arguments and work out the server's command line (nothing is started)."""
    problems = check_existing_store(tracking_uri)
    if is_server(tracking_uri):
        problems.append(
            Problem("--tracking-uri", f"{redact(tracking_uri)!r} is already a server; open it in a browser")
        )
    if not 1 <= port <= 65535:
        problems.append(Problem("--port", f"must be 1..65535, got {port}"))
    if workers < 1:
        problems.append(Problem("--workers", f"must be >= 1, got {workers}"))
    if not is_loopback(host) and not allow_remote:
        problems.append(
            Problem(
                "--host",
                f"{host!r} would serve every experiment to the network; pass --allow-remote to mean it "
                "(and consider --auth)",
            )
        )
    if problems:
        raise UsageError(problems)

    db = sqlite_path(tracking_uri)
    store_dir = db.resolve().parent if db is not None else None
    artifacts = (store_dir or Path.cwd()) / "mlartifacts"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    # The store's URI goes in the environment, not on the command line (`ps` shows that to every user).
    env = {
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_BACKEND_STORE_URI": tracking_uri,
        "MLFLOW_REGISTRY_STORE_URI": tracking_uri,
    }
    notes: list[str] = []
    if not is_loopback(host):
        # MLflow's DNS-rebinding guard admits only localhost and private addresses by default.
        command += ["--allowed-hosts", "*"]
        notes.append(
            f"WARNING: serving on {host}:{port}: anyone who can reach this machine can read"
            + (" (with a password)" if auth else " and write every experiment (no --auth)")
        )
    if auth:
        command += ["--app-name", "basic-auth"]
        env.update(_auth_env(store_dir or Path.home() / ".hpsearch", notes))
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    log = (store_dir or Path.home() / ".hpsearch") / "mlflow-server.log"
    return UiPlan(command, env, f"http://{shown}:{port}", notes, log)


def _auth_env(folder: Path, notes: list[str]) -> dict[str, str]:
    """MLflow's basic-auth app with its user database next to the store. The admin's password comes from
    MLFLOW_AUTH_ADMIN_PASSWORD; the first time, without it, one is generated and printed once. The
    Flask secret key comes from MLFLOW_FLASK_SERVER_SECRET_KEY, else from a generated owner-only file."""
    folder.mkdir(parents=True, exist_ok=True)
    ini, users = folder / "basic_auth.ini", folder / "basic_auth.db"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{users}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(ini)}
    if not os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        # The auth app signs its CSRF tokens with this; kept (owner-only) so restarts keep sessions valid.
        key_file = folder / "flask_secret_key"
        if not key_file.exists():
            key_file.touch(mode=0o600)
            key_file.write_text(secrets.token_urlsafe(32))
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = key_file.read_text().strip()
    if not users.exists() and not os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD"):
        password = secrets.token_urlsafe(12)
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = password
        notes.append(f"basic auth on: user 'admin', password {password} (shown once; users in {users})")
    else:
        notes.append(f"basic auth on: users in {users}")
    return env


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise HpsearchError(f"mlflow server exited with code {proc.returncode} before it answered on {url}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):  # basic auth: it is up
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise HpsearchError(f"mlflow server did not answer on {url} within {timeout_s:.0f} s")


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """Stop the server's whole process group (gunicorn/uvicorn workers included), by its pid."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def runs_url(base: str, experiment_id: str, metric: str | None = None, mode: str = "max") -> str:
    """The experiment's runs table; sorted by the search metric (best first) it lists the trials flat,
    as a leaderboard, instead of folded under their search's parent run."""
    url = f"{base}/#/experiments/{experiment_id}/runs"
    if metric:
        url += f"?orderByKey=metrics.%60{quote(metric)}%60&orderByAsc={'false' if mode == 'max' else 'true'}"
    return url


def experiment_links(tracking_uri: str, url: str) -> list[str]:
    from mlflow import MlflowClient

    from hpsearch.tracking import reader

    try:
        client = MlflowClient(tracking_uri)
        links = []
        for e in client.search_experiments():
            search = reader.latest_search(client, e.experiment_id)
            if search is None:
                continue
            params = search.data.params
            link = runs_url(url, e.experiment_id, params.get("search.metric"), params.get("search.mode", "max"))
            links.append(f"  {e.name}: {link}")
        return links
    except Exception:  # the links are a convenience; the server says what is wrong with the store
        return []


def serve(p: UiPlan, tracking_uri: str, out: Callable[[str], None] = print) -> int:
    """Start the server, print where it is, and keep it until Ctrl-C / SIGTERM."""
    p.log.parent.mkdir(parents=True, exist_ok=True)
    with open(p.log, "ab") as log:  # MLflow logs every request: to a file, not over the links printed here
        proc = subprocess.Popen(
            p.command, env={**os.environ, **p.env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    # Ctrl-C and SIGTERM both end it (SIGINT explicitly: a shell's background job starts with it ignored).
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        try:
            wait_healthy(p.url, proc)
        except HpsearchError as exc:
            tail = p.log.read_text(errors="replace").strip().splitlines()[-15:]
            raise HpsearchError(f"{exc}; its log ({p.log}) ends:\n" + "\n".join(tail)) from exc
        out(f"MLflow UI: {p.url}  (store {redact(tracking_uri)}; server log {p.log}; Ctrl-C to stop)")
        for line in p.notes:
            out(line)
        for line in experiment_links(tracking_uri, p.url):
            out(line)
        sys.stdout.flush()
        proc.wait()
        raise HpsearchError(f"mlflow server exited with code {proc.returncode}")
    except KeyboardInterrupt:
        out("stopping the MLflow server")
        return 0
    finally:
        stop(proc)
        signal.signal(signal.SIGTERM, previous)
