"""A search's run directory: Tune's state and hpsearch's own metadata (``hpsearch.json``), in a local
folder or a storage URI (``s3://bucket/prefix/RUN``). ``hpsearch resume`` starts from it."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hpsearch.errors import HpsearchError, SpecError

META_FILE = "hpsearch.json"
DEFAULT_STORAGE = "hpsearch_results"  # where run directories go without --storage (in the working directory)


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def normalise(location: str | Path) -> str:
    """A storage URI without its trailing slash, or an absolute local path."""
    return str(location).rstrip("/") if is_uri(location) else str(Path(location).expanduser().resolve())


@dataclass(frozen=True)
class RunMeta:
    """What a run directory records for ``hpsearch resume``: the spec's text and where its runs are."""

    spec: str
    tracking_uri: str
    experiment_id: str | None
    parent_run_id: str | None
    status: str | None = None  # how its last run ended (FINISHED, KILLED, FAILED); None: it did not end (yet)


def write_meta(run_dir: str, meta: RunMeta) -> None:
    write_text(f"{run_dir.rstrip('/')}/{META_FILE}", json.dumps(asdict(meta), indent=2))


def read_meta(run_dir: str) -> RunMeta:
    """The metadata of the search in ``run_dir``.

    Raises:
        HpsearchError: the storage cannot be read (credentials, endpoint, bucket).
        SpecError: ``run_dir`` is not a search's run directory.
    """
    path = f"{run_dir}/{META_FILE}"
    try:
        text = read_text(path)
    except OSError as exc:
        raise HpsearchError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
    if text is None:
        raise SpecError([("RUN_DIR", f"{run_dir!r} is not a search's run directory (no {META_FILE})")])
    data = json.loads(text)
    return RunMeta(
        data["spec"], data["tracking_uri"], data.get("experiment_id"), data.get("parent_run_id"), data.get("status")
    )


def has_meta(run_dir: str) -> bool:
    """Whether a search has written its metadata in ``run_dir`` (readable or not)."""
    return read_text(f"{run_dir.rstrip('/')}/{META_FILE}") is not None


def find_meta(run_dir: str) -> RunMeta | None:
    """The metadata of the search in ``run_dir``, or None when there is none (yet)."""
    try:
        return read_meta(run_dir)
    except SpecError:
        return None


def mark_ended(run_dir: str, status: str) -> None:
    """Record in the run directory's metadata how the search ended (nothing when it has none yet)."""
    meta = find_meta(run_dir)
    if meta is not None:
        write_meta(run_dir, replace(meta, status=status))


def write_text(location: str, text: str) -> None:
    """Write a small file to a local path or a storage URI (s3://, gs://, ...: where Tune keeps its state)."""
    if not is_uri(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        Path(location).write_text(text)
        return
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(text.encode())


def read_text(location: str) -> str | None:
    """The text of a small file at a local path or a storage URI; None if there is none."""
    if not is_uri(location):
        return Path(location).read_text() if Path(location).is_file() else None
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(location)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return bytes(f.read()).decode()


def prune_checkpoints(run_dir: str) -> None:
    """A finished search keeps only each trial's last checkpoint (the trained model)."""
    if is_uri(run_dir) or not Path(run_dir).is_dir():
        return
    for trial_dir in Path(run_dir).iterdir():
        checkpoints = sorted(trial_dir.glob("checkpoint_*"), key=lambda p: int(p.name.rsplit("_", 1)[-1]))
        for old in checkpoints[:-1]:
            shutil.rmtree(old, ignore_errors=True)
