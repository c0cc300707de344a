"""Final retrain: the top-k configs of a search, trained again on train + validation with several
seeds each, evaluated once on the held-out test split, logged under the search's parent run.

Runs in this process, one training at a time, on a GPU when the spec asks for one and there is one, with
the search's device plan (TF32, cuDNN autotuning) and its rules for where data lives and how big test
batches are; or, with ``address``, as one Ray task on that cluster with the resources of one of the
search's trials (its workers: one worker's). The search chose configs on the validation split; the test
split is looked at here and nowhere else.
"""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from hpsearch.errors import HpsearchError, UsageError
from hpsearch.review.report import report_for
from hpsearch.review.testing import example_input, fit_and_test, retrain_data
from hpsearch.tracking import reader
from hpsearch.tracking.labels import trial_describer
from hpsearch.tracking.reader import parse_param
from hpsearch.tracking.tags import (
    BEST_MODEL,
    CONFIG,
    DEVICE,
    ERROR,
    NOT_TESTED,
    PARENT,
    RETRAIN_BEST,
    RETRAINED_ON,
    ROLE,
    SEED,
    SOURCE_RUN_ID,
    SOURCE_TRIAL,
)
from hpsearch.tracking.writes import flatten, log_metrics, log_params


@dataclass
class RetrainedConfig:
    trial: str  # the search trial whose config this is (t017)
    run_name: str
    source_run_id: str
    search_value: float | None  # its validation metric in the search
    config: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)  # per seed: seed, run_id, test metrics or error
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)


@dataclass
class RetrainResult:
    experiment: str
    search_run_id: str
    metric: str  # the test metric configs are compared by (test_accuracy, ...)
    mode: str
    epochs: int
    configs: list[RetrainedConfig]
    best: dict[str, Any] | None  # trial, seed, run_id, model_uri, registered version

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_TOP_K = 3


def test_metric(search_metric: str, mode: str) -> tuple[str, str]:
    """The test metric configs are compared by: ``val_<name>`` -> ``test_<name>`` with the search's mode
    (``val_accuracy`` -> ``test_accuracy``, ``val_r2`` -> ``test_r2``); the training loss is not a test
    metric, so the task's loss compares them then (``test_loss``, minimised)."""
    if search_metric == "train_loss":
        return "test_loss", "min"
    return f"test_{search_metric.removeprefix('val_').removeprefix('test_')}", mode


def retrain_device(asked: str, search_gpu: float, cuda_available: bool) -> str:
    """The device retraining runs on.

    Raises:
        UsageError: ``asked`` is not auto/cuda/cpu, or cuda was asked for and is not usable here.
        HpsearchError: ``auto``, the search's trials trained on GPUs, and this process has none.
    """
    if asked not in ("auto", "cuda", "cpu"):
        raise UsageError([("--device", f"must be auto, cuda or cpu, got {asked!r}")])
    if asked == "cuda" and not cuda_available:
        raise UsageError([("--device", "cuda: this process has no usable CUDA device")])
    if asked != "auto":
        return asked
    if search_gpu > 0 and not cuda_available:
        raise HpsearchError(
            f"the search's trials trained on GPUs (resources.gpu={search_gpu:g}) but this process has no usable "
            "CUDA device: run retrain on a machine with a GPU, or pass --device cpu to retrain on the CPU"
        )
    return "cuda" if search_gpu > 0 else "cpu"


def retrain(
    tracking_uri: str,
    experiment: str,
    top_k: int | None,
    seeds: int,
    search_run_id: str | None = None,
    epochs: int | None = None,
    register: str | None = None,
    progress: Any = print,
    device: str = "auto",
    address: str | None = None,
    front: bool = False,
) -> RetrainResult:
    """Retrain the ``top_k`` configs of a search with ``seeds`` seeds each on train + validation, and
    test each once. ``device``: ``auto`` (a GPU when the search's trials had one; an error, not a
    silent CPU run, when the process that trains has none), ``cuda`` or ``cpu``. ``address``: a Ray
    cluster to retrain on (its GPUs), as one task with the resources of one of the search's trials.
    ``front``: the configs on the search's Pareto front (several objectives), at most ``top_k`` of them
    (default: all), instead of the ``top_k`` (default 3) best by the first objective."""
    if top_k is None:
        top_k = 0 if front else DEFAULT_TOP_K
    elif top_k < 1:
        raise UsageError([("--top-k", f"must be >= 1, got {top_k}")])
    if seeds < 1:
        raise UsageError([("--seeds", f"must be >= 1, got {seeds}")])
    if epochs is not None and epochs < 1:
        raise UsageError([("--epochs", f"must be >= 1, got {epochs}")])
    if device not in ("auto", "cuda", "cpu"):
        raise UsageError([("--device", f"must be auto, cuda or cpu, got {device!r}")])
    if address is not None:
        return _on_cluster(
            address, tracking_uri, experiment, top_k, seeds, search_run_id, epochs, register, device, front
        )
    client = reader.open_store(tracking_uri)
    exp, parent, spec = _search_and_spec(client, experiment, search_run_id)
    report = report_for(client, parent, top_k=max(top_k, 1), experiment=exp)
    if front and not spec.search.multi_objective:
        raise UsageError([("--front", f"{experiment}: the search has one objective ({spec.search.metric}), no front")])
    picked = (report.front[:top_k] if top_k else report.front) if front else report.top
    if not picked:
        what = "no completed trial on its Pareto front" if front else "no finished trial"
        raise HpsearchError(f"{experiment}: the search has {what} to retrain")
    metric, mode = test_metric(spec.search.metric, spec.search.mode)
    epochs = epochs or spec.epochs

    import mlflow
    import torch

    from hpsearch.trainables import device as device_plan
    from hpsearch.trainables import lazy_dynamo
    from hpsearch.trainables.tune_adapter import resolve_trainable

    lazy_dynamo.install()  # as in a trial: no torch._dynamo for an eager model's optimizer
    device = retrain_device(device, spec.resources.gpu, torch.cuda.is_available())
    plan = device_plan.plan_device(["0"], 1.0) if device == "cuda" else device_plan.DevicePlan("cpu")
    device_plan.apply(plan)  # TF32 and cuDNN's autotuner as in the search's trials
    progress(f"retraining on {device}" + (f" ({plan.gpu_name})" if plan.gpu_name else ""))
    data = retrain_data(spec, device, plan)
    fn = resolve_trainable(spec.trainable)
    describe = trial_describer(spec.trainable) or (lambda config: (config, {}))
    sign = 1.0 if mode == "max" else -1.0
    where = f"{socket.gethostname()} pid {os.getpid()}"
    configs: list[RetrainedConfig] = []
    best_models: dict[str, tuple[float, Any]] = {}  # per config: (signed test metric, model) of its best seed
    for top in picked:
        source = client.get_run(top["run_id"])
        config = _sampled_config(source)
        item = RetrainedConfig(top["trial"], top["run_name"], top["run_id"], top["value"], config)
        params, tags = describe(config)
        for seed in range(seeds):
            run = client.create_run(
                exp.experiment_id,
                run_name=f"retrain {top['trial']} seed={seed}",
                tags={
                    PARENT: parent.info.run_id,
                    ROLE: "retrain",
                    SOURCE_TRIAL: top["trial"],
                    SOURCE_RUN_ID: top["run_id"],
                    SEED: str(seed),
                    DEVICE: device,
                    RETRAINED_ON: where,
                    CONFIG: json.dumps(config, default=str),
                    **tags,
                },
            )
            run_id = run.info.run_id
            log_params(client, run_id, {**flatten(params), "seed": seed, "epochs": epochs})
            points: list[Any] = []
            started = time.time()

            def report_epoch(metrics: dict[str, float], state: Any = None, _points: list = points) -> None:
                from mlflow.entities import Metric

                now, step = int(time.time() * 1000), int(metrics.get("epoch", len(_points) + 1))
                _points += [Metric(k, float(v), now, step) for k, v in metrics.items() if k != "epoch"]

            model: Any = None
            try:
                mc = int(params.get("mc_dropout", 0) or 0)
                model, tested, untested = fit_and_test(
                    fn, spec.trainable, config, data, epochs, seed, report_epoch, mc, device, f"{top['trial']}-{seed}"
                )
            except HpsearchError:
                client.set_terminated(run_id, "FAILED")
                raise
            except Exception as exc:  # a diverged or failing seed is recorded; the others go on
                log_metrics(client, run_id, points)
                client.set_tag(run_id, ERROR, f"{type(exc).__name__}: {exc}"[:5000])
                client.set_terminated(run_id, "FAILED")
                item.runs.append({"seed": seed, "run_id": run_id, "error": f"{type(exc).__name__}: {exc}"})
                progress(f"{top['trial']} seed={seed}: FAILED ({type(exc).__name__}: {exc})")
                continue
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            finals = {**tested, "train_time_s": time.time() - started}
            points += [Metric(k, float(v), now, epochs) for k, v in finals.items()]
            log_metrics(client, run_id, points)
            if untested:
                client.set_tag(run_id, NOT_TESTED, untested[:5000])
            client.set_terminated(run_id, "FINISHED")
            item.runs.append({"seed": seed, "run_id": run_id, **finals, **({"untested": untested} if untested else {})})
            shown = ", ".join(f"{k} {v:.4f}" for k, v in tested.items())
            progress(f"{top['trial']} seed={seed}: " + (shown if tested else f"trained, not tested: {untested}"))
            value = finals.get(metric, math.nan)
            if math.isfinite(value) and (
                top["trial"] not in best_models or sign * value > best_models[top["trial"]][0]
            ):
                best_models[top["trial"]] = (sign * value, model)
        done = [r for r in item.runs if "error" not in r]
        for key in sorted({k for r in done for k in r if k.startswith("test_")}):
            values = [r[key] for r in done if key in r]
            if values:
                item.mean[key] = statistics.fmean(values)
                item.std[key] = statistics.stdev(values) if len(values) > 1 else 0.0
        configs.append(item)

    # The best model: of the config with the best mean test metric, its best seed.
    ranked = sorted((c for c in configs if metric in c.mean), key=lambda c: -sign * c.mean[metric])
    chosen: dict[str, Any] | None = None
    if ranked:
        winner = ranked[0]
        seed_run = max((r for r in winner.runs if metric in r), key=lambda r: sign * r[metric])
        model = best_models[winner.trial][1]
        chosen = {
            "trial": winner.trial,
            "seed": seed_run["seed"],
            "run_id": seed_run["run_id"],
            metric: seed_run[metric],
        }
        chosen.update(_log_model(mlflow, tracking_uri, seed_run["run_id"], model, data, register))
        client.set_tag(seed_run["run_id"], BEST_MODEL, "true")
    result = RetrainResult(experiment, parent.info.run_id, metric, mode, epochs, configs, chosen)
    _log_summary(client, parent.info.run_id, result)
    return result


def _search_and_spec(client: Any, experiment: str, search_run_id: str | None) -> tuple[Any, Any, Any]:
    """The experiment, the search's parent run and the spec it logged.

    Raises:
        HpsearchError: the parent run has no spec.
    """
    exp, parent = reader.find_search(client, experiment, search_run_id)
    spec = reader.logged_spec(client, parent.info.run_id, source=f"{experiment}: spec.yaml of run {parent.info.run_id}")
    if spec is None:
        raise HpsearchError(f"{experiment}: the search's parent run {parent.info.run_id} has no spec.yaml artifact")
    return exp, parent, spec


def _on_cluster(
    address: str,
    tracking_uri: str,
    experiment: str,
    top_k: int,
    seeds: int,
    search_run_id: str | None,
    epochs: int | None,
    register: str | None,
    device: str,
    front: bool = False,
) -> RetrainResult:
    """:func:`retrain` as a Ray task on the cluster at ``address`` (its progress lines printed here),
    reserving the CPUs and GPUs of one of the search's trials (one worker's, for a multi-worker search).
    The task gets the store's URI without its password: the cluster has it, as for ``hpsearch submit``."""
    from hpsearch import raysetup
    from hpsearch.redact import strip_password

    _, parent, spec = _search_and_spec(reader.open_store(tracking_uri), experiment, search_run_id)
    raysetup.init_ray(address, log_to_driver=True)
    import ray

    gpus = 0.0 if device == "cpu" else spec.resources.gpu
    task: Any = ray.remote(_retrain_task).options(num_cpus=spec.resources.cpu, num_gpus=gpus, max_retries=0)
    kwargs = dict(
        top_k=top_k or None,
        seeds=seeds,
        search_run_id=parent.info.run_id,
        epochs=epochs,
        register=register,
        front=front,
    )
    try:
        return ray.get(task.remote(strip_password(tracking_uri), experiment, device=device, **kwargs))
    except ray.exceptions.RayTaskError as exc:
        raise exc.as_instanceof_cause() from None


def _retrain_task(tracking_uri: str, experiment: str, **kwargs: Any) -> RetrainResult:
    """In the cluster's worker: retrain there, its progress printed (Ray shows it where retrain was run)."""
    print(f"retraining on the cluster: {socket.gethostname()}, pid {os.getpid()}", flush=True)
    return retrain(tracking_uri, experiment, progress=lambda line: print(line, flush=True), **kwargs)


def _log_model(
    mlflow: Any, tracking_uri: str, run_id: str, model: Any, data: Any, register: str | None
) -> dict[str, Any]:
    import mlflow.pytorch
    import torch

    mlflow.set_tracking_uri(tracking_uri)
    if not isinstance(model, torch.nn.Module):
        return {"model_uri": None}  # a user's model that is not a torch module: not logged as one
    example = example_input(data)
    # Without an example input (a model of the user's own data) the model cannot be traced: pickled.
    fmt = {} if example is not None else {"serialization_format": "pickle"}
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model.cpu(), name="model", input_example=example, registered_model_name=register, **fmt
        )
    out: dict[str, Any] = {"model_uri": info.model_uri}
    if register:
        out["registered_model"] = register
        out["registered_version"] = getattr(info, "registered_model_version", None)
    return out


def _sampled_config(run: Any) -> dict[str, Any]:
    """The config the trial was given (tag ``hpsearch.config``); older runs: their params."""
    text = run.data.tags.get(CONFIG)
    if text and not text.endswith("...[truncated]"):
        return dict(json.loads(text))
    return {k: parse_param(v) for k, v in run.data.params.items()}


def _log_summary(client: Any, parent_run_id: str, result: RetrainResult) -> None:
    from hpsearch.review.report_output import to_csv

    rows = [
        {
            "trial": c.trial,
            "run_name": c.run_name,
            "search_value": c.search_value,
            "seeds": len(c.runs),
            "failed": sum("error" in r for r in c.runs),
            **{f"{k}_mean": v for k, v in c.mean.items()},
            **{f"{k}_std": v for k, v in c.std.items()},
        }
        for c in result.configs
    ]
    client.log_text(parent_run_id, json.dumps(result.to_json(), indent=2, default=str), "retrain/summary.json")
    client.log_text(parent_run_id, to_csv(rows), "retrain/summary.csv")
    if result.best:
        client.set_tag(parent_run_id, RETRAIN_BEST, f"{result.best['trial']} ({result.best['run_id']})")


def print_retrain(result: RetrainResult, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(
        title=f"{result.experiment}: top {len(result.configs)} configs retrained on train+val ({result.epochs} epochs), "
        "evaluated on the test split",
        title_justify="left",
    )
    keys = list(dict.fromkeys(k for c in result.configs for k in c.mean))
    for col in ("trial", "search val", "seeds", *(f"{k} (mean ± std)" for k in keys)):
        table.add_column(col)
    for c in result.configs:
        ok = sum("error" not in r for r in c.runs)
        cell = lambda k, c=c: f"{c.mean[k]:.4f} ± {c.std[k]:.4f}" if k in c.mean else "-"  # noqa: E731
        value = "-" if c.search_value is None else f"{c.search_value:.4f}"
        table.add_row(c.trial, value, f"{ok}/{len(c.runs)}", *(cell(k) for k in keys))
    console.print(table)
    untested = sorted({r["untested"] for c in result.configs for r in c.runs if "untested" in r})
    for why in untested:
        console.print(f"not tested: {why}")
    if not result.best and not untested and any(c.runs for c in result.configs):
        console.print(f"no best model: no retrained config has {result.metric}")
    if result.best:
        b = result.best
        line = f"best: {b['trial']} seed={b['seed']} ({result.metric} {b[result.metric]:.4f}), model {b['model_uri']}"
        if b.get("registered_model"):
            line += f", registered as {b['registered_model']} version {b.get('registered_version')}"
        console.print(line)
