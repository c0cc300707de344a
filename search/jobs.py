"""Search jobs on a Ray cluster through Ray's Jobs API: submit, status, logs, stop, list.

The job's driver is ``python -m search run`` on the cluster; the spec travels in the job's
runtime environment. Ray clusters started by Ray 2.60 use token authentication: with a token
available (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``) and
``RAY_AUTH_MODE`` unset, hpsearch sets ``RAY_AUTH_MODE=token`` for you.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.errors import HpsearchError, SpecError, UsageError
from search.spec import JobSpec

SPEC_ENV = "HPSEARCH_SPEC_YAML"
_PROGRESS = re.compile(r"^\[\s*(\d+)/(\d+)\].*?best (\S+)", re.MULTILINE)
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
        raise UsageError(["--address: required (or set RAY_ADDRESS), e.g. http://127.0.0.1:8265"])
    if not address.startswith(("http://", "https://")):
        raise UsageError([f"--address: the Jobs API address is http(s)://HEAD:8265, got {address!r}"])
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


def submit(spec: JobSpec, address: str | None, tracking_uri: str, storage: str, cwd: Path) -> str:
    """Submit the (validated) spec as a Ray job; return the job id."""
    from trainables import BUILTIN

    jobs = client(address)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    job_id = f"hpsearch-{spec.name}-{stamp}-{secrets.token_hex(2)}"
    runtime_env: dict[str, Any] = {}
    if spec.trainable not in BUILTIN:
        # The user's own trainable travels with the job: its top-level package (or module file) from
        # the working directory, as a Ray py_module. (Not as the job's working_dir: Ray 2.60 removed a
        # first job's working_dir under the running driver, which then lost its current directory.)
        runtime_env["py_modules"] = [user_module_path(spec.trainable, cwd)]
    env = {
        SPEC_ENV: spec.source_text,
        # `hpsearch stop` ends the search like Ctrl-C: results so far are written, runs closed.
        "RAY_JOB_STOP_SIGNAL": "SIGINT",
        "RAY_JOB_STOP_WAIT_TIME_S": "60",
        "PYTHONUNBUFFERED": "1",
    }
    entrypoint = (
        f"python -m search run env:{SPEC_ENV} --address auto --tracking-uri {shlex.quote(tracking_uri)} "
        f"--storage {shlex.quote(storage)} --run-name {job_id}"
    )
    run_dir = f"{storage.rstrip('/')}/{job_id}"
    _call(
        lambda: jobs.submit_job(
            entrypoint=entrypoint,
            submission_id=job_id,
            runtime_env={**runtime_env, "env_vars": env},
            metadata={
                "hpsearch": "1",
                "hpsearch.name": spec.name,
                "hpsearch.tracking_uri": tracking_uri,
                "hpsearch.run_dir": run_dir,
            },
        )
    )
    return job_id


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
    raise SpecError([f"trainable: cannot find the module {top!r} to send with the job (looked in {cwd})"])


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
    """``("12/30", "0.9721")`` from the last progress line of a search's log, or ``("-", "-")``."""
    found = _PROGRESS.findall(logs)
    if not found:
        return "-", "-"
    done, total, best = found[-1]
    return f"{done}/{total}", best.rstrip(")") if best != "-" else "-"


def view(jobs: Any, info: Any) -> JobView:
    job_id = info.submission_id or info.job_id
    logs = _call(jobs.get_job_logs, job_id) if info.status != "PENDING" else ""
    done, best = progress_of(logs)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.start_time / 1000)) if info.start_time else "-"
    meta = info.metadata or {}
    return JobView(
        job_id,
        meta.get("hpsearch.name", "-"),
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
    infos = [i for i in _call(jobs.list_jobs) if (i.metadata or {}).get("hpsearch") == "1"]
    return [view(jobs, i) for i in sorted(infos, key=lambda i: i.start_time or 0)]


def logs(address: str | None, job_id: str, follow: bool) -> None:
    jobs = client(address)
    if not follow:
        print(_call(jobs.get_job_logs, job_id), end="")
        return
    import asyncio

    async def tail() -> None:
        async for chunk in jobs.tail_job_logs(job_id):
            print(chunk, end="", flush=True)

    _call(lambda: asyncio.run(tail()))


def stop(address: str | None, job_id: str, wait_s: float = 90.0) -> str:
    """Ask the job to stop and wait for a terminal state; return it."""
    jobs = client(address)
    _call(jobs.stop_job, job_id)
    deadline = time.time() + wait_s
    while time.time() < deadline:
        state = str(_call(jobs.get_job_status, job_id))
        if state.split(".")[-1] in ("STOPPED", "SUCCEEDED", "FAILED"):
            return state.split(".")[-1]
        time.sleep(0.5)
    return str(_call(jobs.get_job_status, job_id)).split(".")[-1]


def resume(address: str | None, job_id: str) -> str:
    """Submit a job that resumes the search of an earlier job (its run directory is in its metadata)."""
    jobs = client(address)
    info = _call(jobs.get_job_info, job_id)
    meta = info.metadata or {}
    if "hpsearch.run_dir" not in meta:
        raise UsageError([f"JOB: {job_id!r} is not an hpsearch job (no run directory in its metadata)"])
    new_id = f"{job_id}-resume-{secrets.token_hex(2)}"
    _call(
        lambda: jobs.submit_job(
            entrypoint=f"python -m search resume {shlex.quote(meta['hpsearch.run_dir'])} --address auto",
            submission_id=new_id,
            runtime_env={
                **(
                    {"working_dir": info.runtime_env["working_dir"]}
                    if (info.runtime_env or {}).get("working_dir")
                    else {}
                ),
                "env_vars": {
                    "RAY_JOB_STOP_SIGNAL": "SIGINT",
                    "RAY_JOB_STOP_WAIT_TIME_S": "60",
                    "PYTHONUNBUFFERED": "1",
                },
            },
            metadata={**meta, "hpsearch.resumes": job_id},
        )
    )
    return new_id
