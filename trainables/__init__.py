"""PyTorch side of hpsearch: data as tensors, models, optimizers, schedules, the training loop, the Tune adapter.

Importing this package does not import torch; import the submodules for that.
Built-in trainables are named in :data:`BUILTIN`; a user's own trainable is ``"pkg.module:function"``
and follows the :class:`Trainable` contract (README, "Bring your own training").
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


class Report(Protocol):
    """How a trainable reports an epoch: ``report(metrics)``, or ``report(metrics, state)`` with a
    checkpoint (``state``: what the trainable's ``resume`` argument takes to continue from there: tensors,
    numbers, strings, lists and dicts of them; ``torch.save`` writes it)."""

    def __call__(self, metrics: dict[str, float], state: dict[str, Any] | None = None, /) -> None: ...


@dataclass
class TrialContext:
    """What a trial knows about where it runs, handed to a trainable that takes ``context``.

    Attributes:
        trial_id: the trial's id (Tune's; the MLflow run carries it as tag ``hpsearch.trial_id``).
        scratch_dir: a folder of this trial's own on the node's local disk, removed when the trial ends.
        cache: a dict that lives as long as the worker process: a reused worker runs trial after trial,
            so what one trial keeps here (data read from disk, a tokenizer) the next one finds.
        device: where to train: ``"cuda"`` (the GPU Ray assigned; ``CUDA_VISIBLE_DEVICES`` holds only
            it), ``"cuda:K"`` (a worker of a multi-worker trial: its own GPU among the node's) or ``"cpu"``.
        final: ``True`` in ``hpsearch retrain``: train on train + validation together (the validation
            metrics are then not needed) and keep the test split for the evaluation.
        rank: this worker's rank in a multi-worker trial (``resources.workers``), 0 otherwise. Rank 0's
            reports are the trial's; every rank must call ``report`` the same number of times.
        world_size: the trial's workers (1 unless ``resources.workers`` > 1).
    """

    trial_id: str
    scratch_dir: str
    cache: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    final: bool = False
    rank: int = 0
    world_size: int = 1

    def wrap_model(self, model: Any) -> Any:
        """``model`` (on :attr:`device`) wrapped for data-parallel training (``DistributedDataParallel``:
        gradients are averaged across the workers in ``backward``), or ``model`` itself for one worker.
        Save and load the state of the model you passed in, not of the wrapper."""
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        on_gpu = self.device.startswith("cuda")
        index = int(self.device.partition(":")[2] or 0)
        return DistributedDataParallel(model, device_ids=[index] if on_gpu else None)

    def shard(self, items: Any) -> Any:
        """This worker's share of ``items`` (a sequence, a tensor, or a ``torch.utils.data.Dataset``):
        every ``world_size``-th item from :attr:`rank` on, so the workers' shards are disjoint and
        together the whole. ``items`` itself for one worker."""
        if self.world_size == 1:
            return items
        if (
            hasattr(items, "__getitem__")
            and not hasattr(items, "shape")
            and not isinstance(items, (list, tuple, range))
        ):
            from torch.utils.data import Subset

            return Subset(items, range(self.rank, len(items), self.world_size))
        return items[self.rank :: self.world_size]


DATA_PARALLEL_ATTR = "hpsearch_data_parallel"


def data_parallel(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a trainable as able to train one trial in several workers (``resources.workers`` > 1): it
    takes ``context``, trains ``context.wrap_model(model)`` on ``context.shard(...)`` of its data, and
    calls ``report`` on every rank (rank 0's metrics and checkpoint are the trial's).

    Raises:
        TypeError: ``fn`` does not take ``context`` (without it a rank cannot know its share).
    """
    parameters = inspect.signature(fn).parameters
    if "context" not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        raise TypeError(
            f"{getattr(fn, '__qualname__', fn)} cannot run data-parallel: it takes no `context` "
            "(its rank and world_size, wrap_model and shard)"
        )
    setattr(fn, DATA_PARALLEL_ATTR, True)
    return fn


@dataclass(frozen=True)
class Data:
    """A data set as a ``data: {loader: ...}`` function returns it and a trainable receives it.

    Each split is a ``torch.utils.data.Dataset`` (of ``(x, y)`` samples), a ``DataLoader``, or a pair of
    tensors ``(x, y)``. ``test`` is optional (``hpsearch retrain`` needs it to test); ``num_classes`` is
    needed by the built-in trainables when a split is not a pair of tensors (a classification task; for
    a regression the targets' shape says it).
    """

    train: Any
    val: Any = None
    test: Any = None
    num_classes: int | None = None


class Trained(NamedTuple):
    """What a trainable may return so that ``hpsearch retrain`` can test it: the trained model and
    ``evaluate(model) -> {"test_<metric>": value, ...}`` on the test split (a plain ``(model, evaluate)``
    tuple does too). A built-in returns its ``torch.nn.Module``, which retrain tests itself."""

    model: Any
    evaluate: Callable[[Any], dict[str, float]]


class Trainable(Protocol):
    """What a trainable is: ``fn(config, data, epochs, report, seed=0, *, resume=None, device=None,
    context=None)``, trained in a Ray worker. The keyword arguments are optional: a trainable gets those
    of ``resume``, ``device``, ``context`` and ``checkpoint_every`` its signature names.

    Args:
        config: the trial's config, flat and keyed as the space produces it (``optimizer.lr``).
        data: the spec's data: a built-in source's splits (:class:`~hpsearch.trainables.data.Splits`,
            tensors on the trial's device), what a ``loader`` returned (:class:`Data`, read once per worker
            process), or ``None`` when the spec has no ``data`` (the trainable reads its own).
        epochs: the most epochs to train (ASHA may stop the trial earlier).
        report: call once per epoch with the metrics (they must include the spec's ``search.metric``;
            ``epoch`` is counted when missing); ``report(metrics, state)`` also checkpoints ``state``.
        seed: the search's seed.
        resume: the ``state`` last reported with a checkpoint when the trial is restored (a lost node,
            ``hpsearch resume``): continue after its epoch. ``None`` on a fresh start.
        device: the device Ray assigned (``"cuda"`` or ``"cpu"``).
        context: the :class:`TrialContext`.

    Returns:
        Anything; ``hpsearch retrain`` tests a returned ``torch.nn.Module`` of a built-in data set, or a
        :class:`Trained` (model, evaluate).

    Raises:
        hpsearch.protocol.TrialDiverged: the loss became NaN/inf (the trial ends ``diverged``).
        Exception: anything else ends the trial ``failed`` (or is retried, ``search.max_failures``).
    """

    def __call__(self, config: dict[str, Any], data: Any, epochs: int, report: Report, seed: int = 0) -> Any: ...


class Loader(Protocol):
    """A ``data: {loader: "pkg.module:function", args: {...}}`` function: ``fn(**args)`` returns a
    :class:`Data`, a tuple ``(train, val)`` or ``(train, val, test)``, or a dict with those keys."""

    def __call__(self, **args: Any) -> Any: ...


class DataSource(Protocol):
    """What a trial is handed to get its data (the spec's ``data`` section: :mod:`hpsearch.sources`)."""

    def load(self, merge_val: bool = False) -> Any: ...
    def cache_key(self) -> str: ...


BUILTIN = {
    "mlp": "hpsearch.trainables.loop:train_mlp",
    "cnn": "hpsearch.trainables.loop:train_cnn",
    "resnet_transfer": "hpsearch.trainables.loop:train_resnet_transfer",
}

TRAINABLE_SIGNATURE = "fn(config, data, epochs, report, seed=0, *, resume=None, device=None, context=None)"
LOADER_SIGNATURE = "fn(**args) -> Data | (train, val[, test])"


def signature_problem(fn: Any, kind: str, args: dict[str, Any] | None = None) -> str | None:
    """Why ``fn`` cannot be called as a trainable (``kind="trainable"``) or a loader with ``args``
    (``kind="loader"``); ``None`` when it can. Read from its signature, nothing is called."""
    expected = TRAINABLE_SIGNATURE if kind == "trainable" else LOADER_SIGNATURE
    if not callable(fn) or isinstance(fn, type):
        return f"expected a function {expected}, found {type(fn).__name__} {fn!r}"[:300]
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return (
            f"expected a function {expected}, found {getattr(fn, '__qualname__', fn)!r} whose signature cannot be read"
        )
    try:
        if kind == "trainable":
            signature.bind(None, None, 1, None, seed=0)
        else:
            signature.bind(**(args or {}))
    except TypeError as exc:
        name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"
        return f"expected a function {expected}, found {name}{signature} ({exc})"
    return None


__all__ = [
    "BUILTIN",
    "DATA_PARALLEL_ATTR",
    "LOADER_SIGNATURE",
    "TRAINABLE_SIGNATURE",
    "Data",
    "DataSource",
    "Loader",
    "Report",
    "Trainable",
    "Trained",
    "TrialContext",
    "data_parallel",
    "signature_problem",
]
