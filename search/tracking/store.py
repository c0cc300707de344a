"""Where MLflow data goes: the rules for tracking URIs (which schemes, SQLite paths, where artifacts
live), creating a new SQLite store quickly, and checking that a server answers before a search starts."""

from __future__ import annotations

import os
from pathlib import Path

from hpsearch.errors import Problem, TrackingError
from hpsearch.redact import redact

TRACKING_SCHEMES = (
    "sqlite:///",
    "http://",
    "https://",
    "file:",
    "postgresql://",
    "postgresql+",
    "mysql://",
    "mysql+",
    "databricks",
)
SQLITE = "sqlite:///"


def check_tracking_uri(uri: str, field: str = "--tracking-uri") -> list[Problem]:
    if not uri.startswith(TRACKING_SCHEMES):
        return [Problem(field, f"must start with one of {', '.join(TRACKING_SCHEMES)}, got {redact(uri)!r}")]
    return []


def check_existing_store(uri: str, field: str = "--tracking-uri") -> list[Problem]:
    """For commands that read results: the URI is valid and a SQLite store is there (MLflow would
    otherwise create a new, empty one silently)."""
    if problems := check_tracking_uri(uri, field):
        return problems
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        return [Problem(field, f"no MLflow store at {path} (run a search first, or pass {field})")]
    return []


def quiet_mlflow() -> None:
    """MLflow's client prints "View run ... at: ..." and "View experiment at: ..." (and asks the server
    for the run once more) for every run it ends on a server: two lines per trial between the
    progress lines. Off, unless the user set MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    return Path(uri[len(SQLITE) :]) if uri.startswith(SQLITE) else None


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def absolute(uri: str) -> str:
    """The URI with a relative SQLite path made absolute (a job runs in another working directory)."""
    path = sqlite_path(uri)
    return f"{SQLITE}{path.resolve()}" if path is not None and not path.is_absolute() else uri


def default_tracking_uri(cwd: Path | None = None) -> str:
    return f"sqlite:///{(cwd or Path.cwd()).resolve() / 'mlruns.db'}"


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """For a SQLite store, artifacts live next to the database (``mlartifacts/<experiment>``), wherever
    the search runs from (a submitted job's working directory is temporary); servers decide their own."""
    db = sqlite_path(tracking_uri)
    if db is None:
        return None
    return (db.parent / "mlartifacts" / experiment).resolve().as_uri()


def new_sqlite_store(tracking_uri: str, cache: Path | None = None) -> bool:
    """Create the SQLite file of a ``sqlite:///`` store that does not exist yet from a copy of an
    empty store MLflow itself migrated (kept per MLflow version in ``~/.cache/hpsearch``), instead of
    MLflow running its ~60 schema migrations for each new file (~1.4 s of CPU against ~0.1 s to copy,
    taken from the trials' start-up). The copy has no Default experiment: MLflow adds it on opening,
    with this store's artifact location. Returns whether it created the file."""
    target = sqlite_path(tracking_uri)
    if target is None or target.exists() or not target.parent.is_dir():
        return False
    import shutil
    import sqlite3
    import tempfile

    import mlflow

    cache = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hpsearch"
    template = cache / f"mlflow-{mlflow.__version__}-empty.db"
    if not template.is_file():
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        try:
            cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache, suffix=".db")
        except OSError:  # no writable cache (a read-only home): MLflow creates the store as usual
            return False
        os.close(fd)
        os.unlink(tmp)
        # MLflow's store constructor has no annotations
        store = SqlAlchemyStore(f"sqlite:///{tmp}", str(cache / "unused-artifacts"))  # type: ignore[no-untyped-call]
        store.engine.dispose()
        with sqlite3.connect(tmp) as db:
            db.execute("DELETE FROM experiments")
        os.replace(tmp, template)  # atomic: a concurrent search sees the whole template or none
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    shutil.copyfile(template, tmp)
    try:
        os.link(tmp, target)  # never over a store another process created meanwhile
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True


def search_uri(given: str | None, spec_uri: str | None) -> str:
    """The store a search writes to: ``--tracking-uri``, else the spec's ``tracking.uri``, else the
    default; credentials in an ``http://`` URI moved to MLflow's variables (:func:`connectable`)."""
    from hpsearch.redact import connectable

    return connectable(given or spec_uri or default_tracking_uri())


def store_status(tracking_uri: str, timeout_s: float = 3.0) -> int:
    """The HTTP status an MLflow server answers a read of its store with (one experiment searched, no
    retries), with MLflow's own credentials and TLS settings. Its ``/health`` answers "OK" without touching
    the database behind it; this does not. Raises OSError when the server itself does not answer."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(  # type: ignore[no-untyped-call]
            get_default_host_creds(tracking_uri),  # type: ignore[no-untyped-call]
            "/api/2.0/mlflow/experiments/search",
            "POST",
            max_retries=0,
            timeout=timeout_s,
            raise_on_status=False,
            json={"max_results": 1},
        )
    except Exception as exc:  # MLflow wraps connection errors in its own exception
        raise OSError(str(exc)) from exc
    return int(response.status_code)


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, before anything starts, when an MLflow server does not answer, or answers but
    cannot read its store (MLflow's own client retries for minutes)."""
    if not is_server(tracking_uri):
        return
    _check_health(tracking_uri, timeout_s)
    try:
        status = store_status(tracking_uri, timeout_s)
    except OSError as exc:
        raise TrackingError(
            f"MLflow server {redact(tracking_uri)} did not answer a read of its store ({redact(str(exc))[:200]})"
        ) from exc
    if status >= 500:
        raise TrackingError(
            f"MLflow server {redact(tracking_uri)} answers, but not from its store ({status} on a read: "
            "its database is down or unreachable); try again when it is back"
        )


def _check_health(tracking_uri: str, timeout_s: float) -> None:
    import urllib.error
    import urllib.request

    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):  # a server with auth: it answers, credentials are MLflow's business
            return
        raise TrackingError(f"MLflow server {redact(tracking_uri)} answered {exc.code} on {redact(url)}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow server {redact(tracking_uri)} is not reachable ({redact(str(reason))}); start it or pass another --tracking-uri"
        ) from exc
