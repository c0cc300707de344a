"""PyTorch side of hpsearch: data as tensors, models, optimizers, schedules, the training loop, the Tune adapter.

Importing this package does not import torch; import the submodules for that.
Built-in trainables are named in :data:`BUILTIN`; a user's own trainable is ``"pkg.module:function"``
and follows the :class:`Trainable` contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hpsearch.trainables.data import Splits


class Report(Protocol):
    """How a trainable reports an epoch: ``report(metrics)``, or ``report(metrics, state)`` with a
    checkpoint (``state``: what the trainable's ``resume`` argument takes to continue from there)."""

    def __call__(self, metrics: dict[str, float], state: dict[str, Any] | None = None, /) -> None: ...


class Trainable(Protocol):
    """What a trainable is: ``fn(config, data, epochs, report, seed=0)``, trained in a Ray worker.

    Args:
        config: the trial's config, flat and keyed as the space produces it (``optimizer.lr``).
        data: the data set, split (:class:`~hpsearch.trainables.data.Splits`, tensors on the trial's device).
        epochs: the most epochs to train (ASHA may stop the trial earlier).
        report: call once per epoch with the metrics (they must include the spec's ``search.metric``;
            ``epoch`` is counted when missing).
        seed: the search's seed.

    Returns:
        Anything; ``hpsearch retrain`` needs the trained ``torch.nn.Module`` to test it.

    Raises:
        hpsearch.protocol.TrialDiverged: the loss became NaN/inf (the trial ends ``diverged``).
        Exception: anything else ends the trial ``failed`` (or is retried, ``search.max_failures``).

    A trainable that also takes ``resume`` (and ``checkpoint_every``) is checkpointed and continues from
    its last checkpoint when a trial is restored, as the built-ins do.
    """

    def __call__(self, config: dict[str, Any], data: Splits, epochs: int, report: Report, seed: int = 0) -> Any: ...


class DataSource(Protocol):
    """What a trial is handed to get its data (the spec's ``data`` section: :mod:`hpsearch.sources`)."""

    def load(self, merge_val: bool = False) -> Splits: ...
    def cache_key(self) -> str: ...


BUILTIN = {
    "mlp": "hpsearch.trainables.loop:train_mlp",
    "cnn": "hpsearch.trainables.loop:train_cnn",
    "resnet_transfer": "hpsearch.trainables.loop:train_resnet_transfer",
}

__all__ = ["BUILTIN", "DataSource", "Report", "Trainable"]
