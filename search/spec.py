"""The job spec: loaded from YAML and validated once, at the edge, with every problem at once."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, SerializeAsAny, ValidationError, field_validator, model_validator

from hpsearch import samplers, schedulers, sources, spaces, yamlfile
from hpsearch.errors import Problem, SpecError
from hpsearch.registry import Registry, Strict
from hpsearch.searchspec import BUILTIN_METRICS, SearchSpec, fit_problems, metric_problems, objective_problems
from hpsearch.sources import DataSource
from hpsearch.spec_checks import check_first_configs, check_space_for, check_trainable, data_parallel_trainable
from hpsearch.tracking.store import check_tracking_uri
from hpsearch.trainables import BUILTIN

_NAME = r"^[A-Za-z0-9._-]+$"


class ResourcesSpec(Strict):
    """Per trial, and with ``workers`` > 1 per worker of the trial's data-parallel group.

    Args:
        cpu: CPUs of each worker.
        gpu: GPUs of each worker. Fractional below 1 for a one-worker trial (0.25: four trials share a
            GPU, each capped at a quarter of its memory); a built-in trainable trains on one GPU per
            worker, so at most 1 (more GPUs: more ``workers``); a user's trainable may take a whole
            number above 1 (it gets them all: ``CUDA_VISIBLE_DEVICES``).
        workers: processes that train one trial together (Ray Train, DDP): each reads its own shard of
            every batch; 1 (default) trains in the trial's own process.
    """

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    workers: int = Field(1, ge=1, le=1024)

    def problems(self) -> list[Problem]:
        if self.workers > 1 and self.gpu != int(self.gpu):
            return [
                Problem(
                    "gpu",
                    f"a worker of a {self.workers}-worker trial needs whole GPUs (a share cannot be split across "
                    f"a data-parallel group): give 0, 1, ..., got {self.gpu:g}",
                )
            ]
        if self.gpu > 1 and self.gpu != int(self.gpu):
            return [Problem("gpu", f"above 1, a trial takes whole GPUs: give 2, 3, ..., got {self.gpu:g}")]
        return []


class TrackingSpec(Strict):
    uri: str | None = None  # default: sqlite:///mlruns.db in the working directory


class JobSpec(Strict):
    name: str = Field(pattern=_NAME, max_length=200)
    # Modules imported before the rest of the spec is read: they register samplers, schedulers and data
    # sources of their own (hpsearch.samplers.register, ...).
    plugins: list[str] = Field(default_factory=list)
    trainable: str = "mlp"
    # classification: class indices, cross-entropy; regression: real-valued targets, mean squared error
    task: Literal["classification", "regression"] = "classification"
    data: SerializeAsAny[DataSource] | None = None  # none: the user's own trainable reads its own data
    space: Any
    search: SearchSpec
    resources: ResourcesSpec = ResourcesSpec()
    tracking: TrackingSpec = TrackingSpec()

    _space: spaces.Space = PrivateAttr()
    _source_text: str = PrivateAttr(default="")

    @field_validator("data", mode="before")
    @classmethod
    def _data(cls, value: Any) -> Any:
        return None if value is None else sources.REGISTRY.validate(value)

    @model_validator(mode="after")
    def _task_to_data(self) -> JobSpec:
        if self.data is not None:
            self.data._task = self.task  # the source loads its targets for the task
        return self

    @property
    def search_space(self) -> spaces.Space:
        """The resolved search space (preset, file or inline)."""
        return self._space

    @property
    def source_text(self) -> str:
        return self._source_text

    @property
    def epochs(self) -> int:
        return self.search.scheduler.max_epochs

    @property
    def first_configs(self) -> list[dict[str, Any]]:
        """The configs the search runs first: ``search.enqueue``, else the preset's own."""
        if self.search.enqueue is not None:
            return self.search.enqueue
        return spaces.preset_first_configs(self.space) if isinstance(self.space, str) else []


def load_spec(path: str | Path) -> JobSpec:
    """Read and validate a job spec file; raise :class:`SpecError` with every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError([("", f"cannot read spec file: {exc.strerror or exc}")], source=str(path)) from exc
    try:
        data = yamlfile.load(text)
    except yaml.YAMLError as exc:
        raise SpecError([yamlfile.problem(exc)], source=str(path)) from exc
    spec = parse_spec(data, base_dir=path.parent, source=str(path))
    spec._source_text = text
    return spec


def load_spec_text(text: str, source: str, base_dir: Path | None = None) -> JobSpec:
    """Validate a spec given as YAML text (a submitted job receives its spec this way)."""
    try:
        data = yamlfile.load(text)
    except yaml.YAMLError as exc:
        raise SpecError([yamlfile.problem(exc)], source=source) from exc
    spec = parse_spec(data, base_dir=base_dir, source=source)
    spec._source_text = text
    return spec


def parse_spec(data: Any, base_dir: Path | None = None, source: str | None = None) -> JobSpec:
    if not isinstance(data, dict):
        raise SpecError(
            [("", f"the spec must be a mapping of keys (name, data, space, search, ...), got {data!r}")], source
        )
    problems: list[Problem] = _import_plugins(data.get("plugins"))
    data = _normalise_data(data, base_dir, problems)
    spec: JobSpec | None = None
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        problems.extend(_format_pydantic(exc))

    space = None
    if "space" in data:
        try:
            space = spaces.load_space(data["space"], base_dir)
        except spaces.SpaceError as exc:
            problems.extend(exc.problems)

    trainable = data.get("trainable", "mlp")
    if isinstance(trainable, str):
        problems.extend(check_trainable(trainable))
        if trainable in BUILTIN and space is not None:
            problems.extend(check_space_for(trainable, space))
    search: dict[str, Any] = data["search"] if isinstance(data.get("search"), dict) else {}
    task = data.get("task", "classification")
    problems.extend(objective_problems(search))
    if trainable in BUILTIN and task in BUILTIN_METRICS:
        if data.get("data") is None:
            problems.append(Problem("data", f"required: the built-in {trainable} trainable trains on a data source"))
        problems.extend(metric_problems(search, trainable, task))
    problems.extend(_resources_problems(data.get("resources"), trainable))
    uri = (data.get("tracking") or {}).get("uri") if isinstance(data.get("tracking"), dict) else None
    if isinstance(uri, str):
        problems.extend(check_tracking_uri(uri, "tracking.uri"))

    problems.extend(_section_problems(data, spec))
    if spec is not None:
        if space is not None:
            problems.extend(check_first_configs(spec, space))
            problems.extend(fit_problems(spec.search, space, spec.trainable))
    if problems:
        raise SpecError(problems, source)
    assert spec is not None and space is not None  # no problems means both parsed
    spec._space = space
    return spec


def _resources_problems(raw: Any, trainable: Any) -> list[Problem]:
    """GPUs and workers against each other and against the trainable (data-parallel or not)."""
    if not isinstance(raw, dict):
        return []
    try:
        res = ResourcesSpec.model_validate(raw)
    except ValidationError:
        return []  # reported with the whole spec's errors
    problems = [Problem(f"resources.{p.path}", p.message) for p in res.problems()]
    if problems or not isinstance(trainable, str):
        return problems
    if trainable in BUILTIN and res.gpu > 1:
        problems.append(
            Problem(
                "resources.gpu",
                f"the built-in {trainable} trainable trains on one GPU per worker: give at most 1 (a fraction "
                f"shares one, 0.25 = four trials per GPU) and resources.workers: {int(res.gpu) * res.workers} "
                f"for {int(res.gpu) * res.workers} GPUs, got {res.gpu:g}",
            )
        )
    if res.workers > 1 and trainable not in BUILTIN and not data_parallel_trainable(trainable):
        problems.append(
            Problem(
                "resources.workers",
                f"{trainable} does not say it runs data-parallel, so {res.workers} workers would each train the "
                "whole trial: mark it with @hpsearch.trainables.data_parallel (it then shards its batches and "
                "wraps its model with its `context`), or give workers: 1",
            )
        )
    return problems


def _section_problems(data: dict[str, Any], spec: JobSpec | None) -> list[Problem]:
    """What the registered sections (data source, sampler, scheduler) find wrong across their fields
    (files that must exist, fields that must agree). When the spec as a whole did not validate, each
    section is validated on its own, so that these come with the spec's other errors."""
    search: dict[str, Any] = data["search"] if isinstance(data.get("search"), dict) else {}
    sections: list[tuple[str, Any, Registry[Any], str | None]] = [
        ("data", spec.data if spec else data.get("data"), sources.REGISTRY, None),
        ("search.sampler", spec.search.sampler if spec else search.get("sampler"), samplers.REGISTRY, samplers.DEFAULT),
        (
            "search.scheduler",
            spec.search.scheduler if spec else search.get("scheduler"),
            schedulers.REGISTRY,
            schedulers.DEFAULT,
        ),
    ]
    problems: list[Problem] = []
    task = data.get("task", "classification")
    for where, raw, registry, default in sections:
        if raw is None and where == "data":
            continue  # no data section: the trainable reads its own (or the spec says data is required)
        try:
            section = registry.validate(raw, default=default)  # a parsed section is returned as it is
        except ValidationError:
            continue  # reported with the whole spec's errors
        if not isinstance(section, Strict):
            continue  # absent, or not a mapping: reported with the whole spec's errors
        found = section.problems()
        if isinstance(section, DataSource) and not found and task in BUILTIN_METRICS:
            found = section.task_problems(task)
        problems.extend(Problem(f"{where}.{p.path}" if p.path else where, p.message) for p in found)
    return problems


def _import_plugins(names: Any) -> list[Problem]:
    """Import the spec's ``plugins`` (they register what the rest of the spec may name)."""
    if not isinstance(names, list):
        return []  # absent, or not a list: the model says so
    problems = []
    for i, name in enumerate(names):
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", name):
            problems.append(Problem(f"plugins[{i}]", f"must be a module name (pkg.module), got {name!r}"))
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # an ImportError, or the plugin's own error while it registers
            problems.append(Problem(f"plugins[{i}]", f"cannot import module {name!r}: {type(exc).__name__}: {exc}"))
    return problems


def _normalise_data(data: dict[str, Any], base_dir: Path | None, problems: list[Problem]) -> dict[str, Any]:
    """A source's shorthand (``{npz: path}`` -> ``{dataset: npz, path: path}``); a source's relative paths
    are relative to the spec file."""
    d = data.get("data")
    if not isinstance(d, dict):
        return data
    d = dict(d)
    for name in sources.REGISTRY.names():
        field = sources.REGISTRY.get(name).shorthand
        if field == name and d.get("dataset") == name:
            continue  # the long form of a source whose field is named as the source ({dataset: loader, loader: ..})
        if field is not None and name in d:
            if "dataset" in d or (field in d and field != name):
                problems.append(
                    Problem(
                        "data", f"give either {{{name}: {field}}} or {{dataset: {name}, {field}: {field}}}, not both"
                    )
                )
            d["dataset"], d[field] = name, d.pop(name)
    model = sources.REGISTRY.get(d["dataset"]) if d.get("dataset") in sources.REGISTRY.names() else None
    for key in model.path_fields if model is not None else ():
        if isinstance(d.get(key), str):
            p = Path(d[key]).expanduser()
            d[key] = str(p if p.is_absolute() or base_dir is None else (base_dir / p).resolve())
    return {**data, "data": d}


def parse_search_section(text: str) -> SearchSpec:
    """The ``search`` section of a spec's YAML text on its own (the report reads it back from a search's
    logged spec, where the rest of the spec, its data files above all, may not hold).

    Raises:
        SpecError: the text has no valid search section (or names a plugin that is not there).
    """
    try:
        data = yamlfile.load(text)
    except yaml.YAMLError as exc:
        raise SpecError([yamlfile.problem(exc)]) from exc
    if not isinstance(data, dict) or not isinstance(data.get("search"), dict):
        raise SpecError([("search", "required")])
    problems = _import_plugins(data.get("plugins"))
    try:
        search = SearchSpec.model_validate(data["search"])
    except ValidationError as exc:
        raise SpecError(problems + [Problem(f"search.{p.path}", p.message) for p in _format_pydantic(exc)]) from exc
    return search


_MESSAGES = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "extra_forbidden": "unknown key",
    "missing": "required",
    "string_pattern_mismatch": "must match {pattern}",
    "string_too_long": "must have at most {max_length} characters",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "model_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
}


def _format_pydantic(exc: ValidationError) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        ctx = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in (err.get("ctx") or {}).items()}
        kind = err["type"]
        if kind == "literal_error":
            msg = f"must be one of {ctx.get('expected')}"
        elif kind in _MESSAGES:
            msg = _MESSAGES[kind].format(**ctx)
        else:
            msg = err["msg"][:1].lower() + err["msg"][1:]
        out.append(Problem(loc, msg if kind in ("missing", "missing_choice") else f"{msg}, got {err['input']!r}"))
    return out
