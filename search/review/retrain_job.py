"""``hpsearch retrain --address http://HEAD:8265``: the retrain as a Ray job (its driver then retrains as
one task with a trial's resources on the cluster: :func:`hpsearch.review.retrain.retrain`)."""

from __future__ import annotations

import secrets
import shlex
import time
from typing import Any

from hpsearch.jobs import JOB_ENV, JOB_MARK, JOB_NAME, JOB_TRACKING_URI, _call, submit_when_ready
from hpsearch.redact import strip_password


def submit_retrain(jobs: Any, experiment: str, tracking_uri: str, options: list[str]) -> str:
    """Submit ``hpsearch retrain EXPERIMENT OPTIONS --address auto`` as a Ray job: its driver runs on the
    cluster and retrains as one task with a trial's CPUs and GPUs (:func:`hpsearch.review.retrain.retrain`).
    It takes the own code (trainable, loader, plugins) of the newest job that searched ``experiment``; the
    store's URI goes without its password (the cluster has it). ``jobs``: a connected client
    (:func:`hpsearch.jobs.client`). Returns the job id."""
    searches = [
        i
        for i in _call(jobs.list_jobs)
        if (i.metadata or {}).get(JOB_MARK) == "1" and (i.metadata or {}).get(JOB_NAME) == experiment
    ]
    code: dict[str, Any] = {}
    if searches:
        newest = max(searches, key=lambda i: i.start_time or 0)
        code = {k: v for k, v in (newest.runtime_env or {}).items() if k in ("working_dir", "py_modules") and v}
    job_id = f"hpsearch-retrain-{experiment}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    uri = strip_password(tracking_uri)
    words = ["python", "-m", "hpsearch", "retrain", experiment, "--tracking-uri", uri, *options, "--address", "auto"]
    submit_when_ready(
        lambda: jobs.submit_job(
            entrypoint=" ".join(shlex.quote(w) for w in words),
            submission_id=job_id,
            runtime_env={**code, "env_vars": JOB_ENV},
            metadata={JOB_NAME: experiment, JOB_TRACKING_URI: uri},
        )
    )
    return job_id


__all__ = ["submit_retrain"]
