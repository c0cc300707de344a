"""Search jobs on a Ray cluster through Ray's Jobs API: submit, status, logs, stop, list.

The job's driver is ``python -m hpsearch run`` on the cluster; the spec travels in the job's
runtime environment. Ray clusters started by Ray 2.60 use token authentication: with a token
available (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``) and
``RAY_AUTH_MODE`` unset, hpsearch sets ``RAY_AUTH_MODE=token`` for you.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hpsearch import __version__
from hpsearch.errors import HpsearchError, SpecError, UsageError
from hpsearch.protocol import PROGRESS_PREFIX, RECORDS_ENV, Progress
from hpsearch.redact import PASSWORD_ENV, PASSWORD_FILE_ENV, has_password, password_from_env, redact, strip_password
from hpsearch.spec import JobSpec
from hpsearch.tracking.tags import JOB_MARK, JOB_NAME, JOB_RESUMES, JOB_RUN_DIR, JOB_TRACKING_URI

SPEC_ENV = "HPSEARCH_SPEC_YAML"
JOB_ENV = {  # the environment of every search job's driver (a new search's or a resumed one's)
    # `hpsearch stop` ends the search like Ctrl-C: results so far are written, runs closed.
    "RAY_JOB_STOP_SIGNAL": "SIGINT",
    "RAY_JOB_STOP_WAIT_TIME_S": "60",
    "PYTHONUNBUFFERED": "1",
    RECORDS_ENV: "1",  # the driver prints Progress records: `hpsearch status` reads them
}
AUTH_HINT = (
    "set RAY_AUTH_MODE=token and give the cluster's token in ~/.ray/auth_token, RAY_AUTH_TOKEN or "
    "RAY_AUTH_TOKEN_PATH (on the head node: `ray get-auth-token`)"
)


def auth_message(exc: Exception, address: str) -> str:
    """One line: what the cluster said, and what to set."""
    said = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    where = f"the Ray cluster at {address}" if address else "the Ray cluster"
    return f"{where} refused the request ({said.rstrip('.')}); {AUTH_HINT}"


def token_available() -> bool:
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path or "~/.ray/auth_token").expanduser().is_file()


def prepare_auth() -> None:
    """Before Ray is imported: use token auth when a token is at hand and the user chose no mode."""
    if "RAY_AUTH_MODE" not in os.environ and token_available():
        os.environ["RAY_AUTH_MODE"] = "token"


def resolve_address(address: str | None) -> str:
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise UsageError([("--address", "required (or set RAY_ADDRESS), e.g. http://127.0.0.1:8265")])
    if not address.startswith(("http://", "https://")):
        raise UsageError([("--address", f"the Jobs API address is http(s)://HEAD:8265, got {address!r}")])
    return address


def client(address: str | None) -> Any:
    """A connected ``JobSubmissionClient``; connection and authentication problems become one line."""
    prepare_auth()
    address = resolve_address(address)
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except AuthenticationError as exc:
        raise HpsearchError(auth_message(exc, address)) from exc
    except (ConnectionError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HpsearchError(f"cannot reach the Ray Jobs API at {address}: {first}") from exc


def _call(fn: Any, *args: Any) -> Any:
    from ray.exceptions import AuthenticationError

    try:
        return fn(*args)
    except AuthenticationError as exc:
        raise HpsearchError(auth_message(exc, "")) from exc
    except RuntimeError as exc:  # the Jobs API answers unknown ids and server errors this way
        raise HpsearchError(str(exc).strip().splitlines()[-1]) from exc


# What the Jobs API answers (HTTP 500) while the head node's job agent has not registered yet: for a
# few seconds after `ray start --head` (or `hpsearch cluster up`). Ray says only this text.
NO_AGENT_YET = "No available agent to submit job"


def submit_when_ready(submit_job: Any, wait_s: float = 60.0, sleep: Any = time.sleep) -> Any:
    """``submit_job()``, tried again while the cluster's job agent is still starting (at most ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return _call(submit_job)
        except HpsearchError as exc:
            if NO_AGENT_YET not in str(exc) or time.monotonic() >= deadline:
                raise
        sleep(1.0)


# What a search job's driver needs, checked by a job of its own before the search is submitted: the
# cluster's `python` (the one the job will run) imports hpsearch, its version, and whether the cluster
# has the tracking store's password (which is never sent with a job).
CHECK_MARK = "hpsearch-check"
CHECK_SCRIPT = (
    "import os, hpsearch; e = os.environ.get; "
    f"print({CHECK_MARK!r}, hpsearch.__version__, "
    f"int(bool(e({PASSWORD_ENV!r}) or e({PASSWORD_FILE_ENV!r}))), "
    "int(bool(e('MLFLOW_TRACKING_PASSWORD') or e('MLFLOW_TRACKING_TOKEN'))))"
)
CHECK_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass(frozen=True)
class ClusterPython:
    version: str
    has_password: bool  # HPSEARCH_TRACKING_PASSWORD[_FILE]
    has_mlflow_credentials: bool  # MLFLOW_TRACKING_PASSWORD / _TOKEN


def parse_check(logs: str) -> ClusterPython | None:
    for line in logs.splitlines():
        words = line.split()
        if len(words) == 4 and words[0] == CHECK_MARK:
            return ClusterPython(words[1], words[2] == "1", words[3] == "1")
    return None


def cluster_python(jobs: Any, wait_s: float = 120.0, sleep: Any = time.sleep) -> ClusterPython:
    """Run :data:`CHECK_SCRIPT` as a job on the cluster (then delete it) and read what it printed.

    Raises:
        HpsearchError: the cluster's Python cannot import hpsearch (the message says what to do).
    """
    job_id = f"{CHECK_MARK}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    submit_when_ready(
        lambda: jobs.submit_job(
            entrypoint=f"python -c {shlex.quote(CHECK_SCRIPT)}", submission_id=job_id, metadata={CHECK_MARK: "1"}
        )
    )
    deadline = time.monotonic() + wait_s
    while (state := str(_call(jobs.get_job_status, job_id)).rsplit(".", 1)[-1]) not in CHECK_STATES:
        if time.monotonic() >= deadline:
            _call(jobs.stop_job, job_id)
            raise HpsearchError(f"the cluster did not run a 1-line check job ({job_id}) in {wait_s:.0f} s")
        sleep(0.25)
    text = _call(jobs.get_job_logs, job_id)
    try:
        jobs.delete_job(job_id)
    except Exception:  # noqa: S110 - a check job left in the list is harmless
        pass
    found = parse_check(text)
    if found is None:
        said = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), state)
        raise HpsearchError(
            f"the cluster's Python cannot run hpsearch ({said}): install hpsearch {__version__} on every node "
            "(`pip install hpsearch`) in the Python that started Ray, or start Ray from the environment "
            "that has hpsearch; nothing was submitted"
        )
    return found


def check_cluster_python(found: ClusterPython, tracking_uri: str) -> list[str]:
    """The cluster can run this search: the same hpsearch, and the tracking store's password if it has
    one. Returns warnings (MLflow credentials here that the cluster lacks: the server may not need them).

    Raises:
        HpsearchError: what is missing, in one line (nothing is submitted).
    """
    if found.version != __version__:
        raise HpsearchError(
            f"the cluster runs hpsearch {found.version}, this is hpsearch {__version__}: install hpsearch "
            f"{__version__} on the cluster (or submit with hpsearch {found.version}); nothing was submitted"
        )
    parts = urlsplit(tracking_uri)
    server = parts.scheme in ("http", "https")
    local_has = has_password(tracking_uri) or (parts.username is not None and password_from_env() is not None)
    cluster_has = found.has_password or (server and found.has_mlflow_credentials)
    if local_has and not cluster_has:
        raise HpsearchError(
            f"the tracking store {redact(tracking_uri)} needs a password, which hpsearch never sends with a job "
            f"(job listings show what it carries): set {PASSWORD_ENV} (or {PASSWORD_FILE_ENV}, a file"
            + (", or MLflow's MLFLOW_TRACKING_USERNAME/PASSWORD" if server else "")
            + ") in the environment Ray runs in on the cluster's head node; nothing was submitted"
        )
    if server and os.environ.get("MLFLOW_TRACKING_PASSWORD") and not cluster_has:
        return [
            "the cluster has no MLFLOW_TRACKING_USERNAME/PASSWORD (set here): if the MLflow server needs them, "
            f"set them (or {PASSWORD_ENV}) where Ray runs on the head node"
        ]
    return []


DRIVER_RESTARTS = 3  # a job's driver killed or crashed: its search continues in a new one, this many times


def submit(spec: JobSpec, address: str | None, tracking_uri: str, storage: str, cwd: Path) -> str:
    """Submit the (validated) spec as a Ray job, once the cluster is known to be able to run it;
    return the job id."""

    jobs = client(address)
    for warning in check_cluster_python(cluster_python(jobs), tracking_uri):
        print(f"hpsearch: warning: {warning}", file=sys.stderr)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    job_id = f"hpsearch-{spec.name}-{stamp}-{secrets.token_hex(2)}"
    runtime_env: dict[str, Any] = {}
    modules = own_code_modules(spec, cwd)
    if modules:
        runtime_env["py_modules"] = modules
    # Nothing secret goes with the job (its entrypoint, metadata and environment are shown to anyone who
    # can list jobs): the store's password, if any, is on the cluster (HPSEARCH_TRACKING_PASSWORD[_FILE]).
    tracking_uri = strip_password(tracking_uri)
    env = {SPEC_ENV: redact(spec.source_text), **JOB_ENV}
    entrypoint = (
        f"python -m hpsearch run env:{SPEC_ENV} --address auto --tracking-uri {shlex.quote(tracking_uri)} "
        f"--storage {shlex.quote(storage)} --run-name {job_id} --continue --driver-restarts {DRIVER_RESTARTS}"
    )
    run_dir = f"{storage.rstrip('/')}/{job_id}"
    submit_when_ready(
        lambda: jobs.submit_job(
            entrypoint=entrypoint,
            submission_id=job_id,
            runtime_env={**runtime_env, "env_vars": env},
            metadata={
                JOB_MARK: "1",
                JOB_NAME: spec.name,
                JOB_TRACKING_URI: tracking_uri,
                JOB_RUN_DIR: run_dir,
            },
        )
    )
    return job_id


def own_code_modules(spec: JobSpec, cwd: Path) -> list[str]:
    """The user's own code a job takes with it (trainable, data loader, plugins): each top-level package
    (or module file), from the working directory, as a Ray py_module. (Not as the job's working_dir: Ray
    2.60 removed a first job's working_dir under the running driver, which then lost its directory.)"""
    from hpsearch.trainables import BUILTIN

    own = [spec.trainable] if spec.trainable not in BUILTIN else []
    loader = getattr(spec.data, "loader", None)
    own += ([loader] if isinstance(loader, str) else []) + [f"{name}:_" for name in spec.plugins]
    return sorted({user_module_path(target, cwd) for target in own})


def user_module_path(trainable: str, cwd: Path) -> str:
    """Where ``pkg.module:function``'s top-level package (a folder) or module (a .py file) lives."""
    top = trainable.split(":", 1)[0].split(".", 1)[0]
    for candidate in (cwd / top, cwd / f"{top}.py"):
        if candidate.exists():
            return str(candidate)
    import importlib.util

    found = importlib.util.find_spec(top)
    origin = found.origin if found else None
    if origin:
        path = Path(origin)
        return str(path.parent if path.name == "__init__.py" else path)
    raise SpecError([("trainable", f"cannot find the module {top!r} to send with the job (looked in {cwd})")])


@dataclass
class JobView:
    job_id: str
    name: str
    status: str
    start_time: str
    trials_done: str
    best: str
    message: str


def progress_of(logs: str) -> tuple[str, str]:
    """``("12/30", "0.9721")`` from the last :class:`Progress` record of a search's log, or ``("-", "-")``."""
    found = Progress.last_in(logs)
    if found is None:
        return "-", "-"
    return f"{found.done}/{found.total}", "-" if found.best is None else f"{found.best:.4f}"


def without_records(text: str) -> str:
    """A job's log as a user reads it: the machine-readable progress records left out."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(PROGRESS_PREFIX))


def view(jobs: Any, info: Any) -> JobView:
    job_id = info.submission_id or info.job_id
    logs = _call(jobs.get_job_logs, job_id) if info.status != "PENDING" else ""
    done, best = progress_of(logs)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.start_time / 1000)) if info.start_time else "-"
    meta = info.metadata or {}
    return JobView(
        job_id,
        meta.get(JOB_NAME, "-"),
        str(info.status.value if hasattr(info.status, "value") else info.status),
        started,
        done,
        best,
        (info.message or "").strip(),
    )


def status(address: str | None, job_id: str) -> JobView:
    jobs = client(address)
    return view(jobs, _call(jobs.get_job_info, job_id))


def list_jobs(address: str | None) -> list[JobView]:
    jobs = client(address)
    infos = [i for i in _call(jobs.list_jobs) if (i.metadata or {}).get(JOB_MARK) == "1"]
    return [view(jobs, i) for i in sorted(infos, key=lambda i: i.start_time or 0)]


def logs(address: str | None, job_id: str, follow: bool) -> None:
    jobs = client(address)
    if not follow:
        print(without_records(_call(jobs.get_job_logs, job_id)), end="")
        return
    import asyncio

    async def tail() -> None:
        partial = ""  # a chunk may end mid-line: records are recognised on whole lines
        async for chunk in jobs.tail_job_logs(job_id):
            whole, _, partial = (partial + chunk).rpartition("\n")
            if whole:
                print(without_records(whole + "\n"), end="", flush=True)
        if partial:
            print(without_records(partial), end="", flush=True)

    _call(lambda: asyncio.run(tail()))


def stop(address: str | None, job_id: str, wait_s: float = 90.0) -> str:
    """Ask the job to stop and wait for a terminal state; return it."""
    jobs = client(address)
    _call(jobs.stop_job, job_id)
    return wait(jobs, job_id, wait_s)


TERMINAL = ("STOPPED", "SUCCEEDED", "FAILED")


def wait(jobs: Any, job_id: str, wait_s: float | None = None) -> str:
    """The job's state once it is terminal (:data:`TERMINAL`), or after ``wait_s`` (None: as long as it takes)."""
    deadline = None if wait_s is None else time.time() + wait_s
    while True:
        state = str(_call(jobs.get_job_status, job_id)).split(".")[-1]
        if state in TERMINAL or (deadline is not None and time.time() >= deadline):
            return state
        time.sleep(0.5)


def resume(address: str | None, job_id: str) -> str:
    """Submit a job that resumes the search of an earlier job (its run directory is in its metadata)."""
    jobs = client(address)
    info = _call(jobs.get_job_info, job_id)
    meta = info.metadata or {}
    if JOB_RUN_DIR not in meta:
        raise UsageError([("JOB", f"{job_id!r} is not an hpsearch job (no run directory in its metadata)")])
    new_id = f"{job_id}-resume-{secrets.token_hex(2)}"
    submit_when_ready(
        lambda: jobs.submit_job(
            entrypoint=f"python -m hpsearch resume {shlex.quote(meta[JOB_RUN_DIR])} --address auto",
            submission_id=new_id,
            # the first job's own code (trainable, loader, plugins), as Ray stored it when that job was submitted
            runtime_env={
                **{k: v for k, v in (info.runtime_env or {}).items() if k in ("working_dir", "py_modules") and v},
                "env_vars": JOB_ENV,
            },
            metadata={**meta, JOB_RESUMES: job_id},
        )
    )
    return new_id
