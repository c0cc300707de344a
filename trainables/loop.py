"""The training loop: a pure function of (config, data) that reports through a callback.

It knows nothing about Ray or MLflow; ``trainables.tune_adapter`` connects it to Ray Tune.
Built-in trainables: ``train_mlp``, ``train_cnn``, ``train_resnet_transfer``; all share
:func:`train_model`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from hpsearch.protocol import TrialDiverged
from hpsearch.trainables import TrialContext
from hpsearch.trainables.augment import augment
from hpsearch.trainables.config import TrainConfig
from hpsearch.trainables.costs import model_costs
from hpsearch.trainables.data import Splits
from hpsearch.trainables.device import effective_amp, eval_batch_size
from hpsearch.trainables.evaluation import all_sum, evaluate, evaluate_batches  # noqa: F401  (evaluate: re-exported)
from hpsearch.trainables.feeds import Streamed, TrainBatches, tensor_batches
from hpsearch.trainables.models import BUILDERS, TransferResNet
from hpsearch.trainables.optim import apply_max_norm, build_optimizer, clip_gradients, hot_values, penalty, retune
from hpsearch.trainables.schedules import LRSchedule

Report = Callable[..., None]  # report(metrics) or report(metrics, state): state is a checkpoint to keep
_CHECK_EVERY = 25  # steps between divergence checks within an epoch (each one syncs with the device)


def train_model(
    trainable: str,
    config: dict[str, Any],
    data: Splits | Streamed,
    epochs: int,
    report: Report,
    seed: int = 0,
    resume: dict[str, Any] | None = None,
    checkpoint_every: int = 0,
    device: torch.device | str | None = None,
    context: TrialContext | None = None,
) -> nn.Module:
    """Train a built-in model (``mlp``, ``cnn``, ``resnet_transfer``) the way ``config`` says.

    After each epoch it calls ``report`` with ``epoch, train_loss, val_loss, val_accuracy, lr`` for a
    classification (integer targets), ``epoch, train_loss, val_loss, val_mae, val_r2, lr`` for a
    regression (float targets: mean squared error); without a validation split, as in the final retrain
    on train + validation: ``epoch, train_loss, lr``, and a plateau schedule watches the training loss.
    Every epoch also reports what the model costs: ``params``, ``latency_ms``, ``peak_memory_mb``
    (:mod:`hpsearch.trainables.costs`).

    Args:
        trainable: which built-in model: ``mlp``, ``cnn`` or ``resnet_transfer``.
        config: the flat config (keys and defaults: :mod:`hpsearch.trainables.config`).
        data: the split data set: whole tensors (:class:`Splits`, on the device to train on or in host
            memory) or datasets read batch by batch (:class:`~hpsearch.trainables.feeds.Streamed`).
        epochs: how many epochs.
        report: ``report(metrics)`` per epoch, ``report(metrics, state)`` for a checkpoint epoch.
        seed: seeds the initialisation, the batch order and dropout.
        resume: a ``state`` reported earlier: training continues after its epoch, with exactly the
            metrics an uninterrupted run would have had.
        checkpoint_every: k > 0: every k-th epoch (and the last) is reported with its ``state``
            (model, optimizer, schedule, gradient scaler, epoch, RNG streams).
        device: where to train; default where ``data`` is (the CPU for streamed data). Data kept on the
            host for a GPU (a data set too big for its share of the GPU) is copied over batch by batch.
        context: the trial's context; with ``world_size`` > 1 this process is one rank of a data-parallel
            group (``resources.workers``): it trains on every ``world_size``-th sample of each batch
            (the global batch is ``batch_size``), gradients are averaged across the ranks, the reported
            losses and scores are over the whole batch and validation split, and every rank must run it.

    Returns:
        The trained model.

    Raises:
        TrialDiverged: as soon as the training (or validation) loss is NaN or infinite.
        ConfigError: ``config`` has an unknown key or a value the model cannot use.
    """
    cfg = TrainConfig.from_dict(trainable, config)
    streamed = isinstance(data, Streamed)
    home = torch.device("cpu") if isinstance(data, Streamed) else data.train_x.device  # where batches are cut
    device = torch.device(device) if device is not None else home  # where the model trains
    regression, input_shape, outputs = data.regression, data.input_shape, data.outputs
    rank, world = (context.rank, context.world_size) if context is not None else (0, 1)
    torch.manual_seed(seed)
    # The batch order and augmentation draw from a CPU generator wherever the data is: its state (in the
    # checkpoint) restores on any device, and every rank of a group draws the same numbers.
    generator = torch.Generator().manual_seed(seed)
    model = BUILDERS[trainable](input_shape, outputs, cfg).to(device)
    fused = device.type == "cuda"  # fused optimizers: faster, and fp16 steps without a host sync
    transfer = model if isinstance(model, TransferResNet) else None
    if transfer is not None and cfg["freeze_epochs"] > 0:
        transfer.freeze_backbone()
        optimizer = build_optimizer(transfer.head.parameters(), cfg, fused=fused)
    elif transfer is not None:
        optimizer = _transfer_optimizer(transfer, cfg, fused)
    else:
        optimizer = build_optimizer(model.parameters(), cfg, fused=fused)

    bs = cfg["batch_size"]
    crop, flip = cfg.get("crop_padding", 0), cfg.get("hflip", False)
    if isinstance(data, Streamed):
        batches = TrainBatches(data, bs, seed, device, crop, flip, rank, world)
        steps_per_epoch = batches.steps()
        sample_bytes = data.sample_bytes or 4
        n = last_start = 0
    else:
        n = len(data.train_y)
        # BatchNorm cannot normalise a batch of one sample (on any rank); drop such a tail batch.
        last_start = n - n % bs if 0 < n % bs < 2 * world else n
        steps_per_epoch = math.ceil(last_start / bs)
        sample_bytes = data.train_x[0].numel() * data.train_x.element_size()
    schedule = LRSchedule(optimizer, cfg, steps_per_epoch, epochs)
    # Mixed precision: autocast the forward pass and the loss; fp16 also scales the loss so small
    # gradients do not underflow. Parameters, optimizer state and evaluation stay float32. bf16 on a
    # GPU without native bf16 runs as fp16 (hpsearch.trainables.device).
    amp = effective_amp(cfg["amp"], device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    first_epoch = 1
    if resume is not None:
        first_epoch = resume["epoch"] + 1
        if transfer is not None and cfg["freeze_epochs"] > 0 and resume["epoch"] > cfg["freeze_epochs"]:
            _unfreeze(transfer, optimizer, schedule, cfg)  # the optimizer's groups must match the saved ones
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["schedule"])
        # A checkpoint of another config (PBT's exploit: another trial's weights, this trial's new values)
        retune(optimizer, schedule, resume.get("hot"), cfg)
        if scaler.is_enabled() and "scaler" in resume:
            scaler.load_state_dict(resume["scaler"])
        set_rng_state(resume["rng"], generator, device)
    l1, l2, max_norm = cfg["l1"], cfg["l2"], cfg["max_norm"]
    clip, threshold = cfg["grad_clip"], cfg.get("grad_clip.threshold", 0.0)
    channels_last = cfg.get("channels_last", False) and len(input_shape) == 3
    if channels_last:  # batch by batch below: a copy of the whole data set would not fit its GPU share
        model = model.to(memory_format=torch.channels_last)
    train_x = val_x = val_y = None
    if not isinstance(data, Streamed):
        train_x, val_x, val_y = data.train_x, data.val_x, data.val_y
        if world > 1:  # each rank scores its share of the validation split; the sums are added up
            val_x, val_y = val_x[rank::world], val_y[rank::world]
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
        if amp != "none"
        else contextlib.nullcontext()  # nothing entered per step when mixed precision is off
    )
    if cfg["compile"]:
        # A reused actor runs trial after trial in one process: without a reset, compiled graphs of
        # earlier trials pile up until Dynamo's cache limit silently falls back to eager.
        torch.compiler.reset()
    eager: nn.Module = model  # what trains: the model, or its DDP wrapper in a group (it averages gradients)
    forward: Callable[..., torch.Tensor] = model

    def wrap() -> None:
        """(Re)wrap for the group and compile; again after unfreezing (DDP syncs the parameters that
        required gradients when it was made). ``model`` keeps the plain state_dict keys."""
        nonlocal eager, forward
        eager = context.wrap_model(model) if context is not None and world > 1 else model
        forward = torch.compile(eager) if cfg["compile"] else eager

    wrap()
    reduce = all_sum if world > 1 else None
    full_batch = len(range(rank, bs, world))  # this rank's part of a whole batch
    n_all = data.train_size() if isinstance(data, Streamed) else n  # samples in an epoch, all ranks together
    eval_batch = eval_batch_size(sample_bytes, bs)
    copy_batches = home != device
    loss_fn = _regression_loss if regression else F.cross_entropy

    def resident_epoch() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert not isinstance(data, Streamed) and train_x is not None
        order = torch.randperm(n, generator=generator).to(home)  # indexes the data where it is
        for start in range(0, last_start, bs):
            idx = order[start : start + bs]
            x = augment(train_x[idx], crop, flip, generator) if (crop or flip) else train_x[idx]
            y = data.train_y[idx]
            if world > 1:  # augmented as a whole batch, so every rank draws the same numbers
                x, y = x[rank::world], y[rank::world]
            if copy_batches:  # data kept on the host: copy the batch over
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            yield x, y

    has_val = data.has_val()
    # A streamed validation split keeps one loader (and its loader processes) for the whole trial.
    val_loader = None
    if isinstance(data, Streamed) and has_val:
        # A group's ranks score shares of the split (a DataLoader, whole on every rank: the means are the same)
        val = data.val if world == 1 or isinstance(data.val, DataLoader) else context.shard(data.val)  # type: ignore[union-attr]
        val_loader = data.loader(val, eval_batch, device, None)

    def val_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(data, Streamed):
            return data.read(val_loader, device)
        assert val_x is not None and val_y is not None
        return tensor_batches(val_x, val_y, eval_batch, device)

    costs: dict[str, float] = {}  # what the model costs (params, latency, memory)
    measure = True  # measure them after this epoch: the first, and again after an unfreeze
    sample: torch.Tensor | None = None  # this epoch's first batch, to measure with
    hot = hot_values(cfg)  # the optimizer settings each checkpoint records (what a restore compares with)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # a reused actor's earlier trials are not this one's peak
    for epoch in range(first_epoch, epochs + 1):
        if transfer is not None and cfg["freeze_epochs"] > 0 and epoch == cfg["freeze_epochs"] + 1:
            _unfreeze(transfer, optimizer, schedule, cfg)
            if world > 1:
                wrap()
            measure = True  # the unfrozen layers' gradients and optimizer state cost memory too
        model.train()
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for step, (x, y) in enumerate(batches.epoch(epoch) if streamed else resident_epoch(), 1):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if measure and step == 1:
                sample = x
            with autocast:
                # The compiled model sees whole batches only: one shape, one graph. The short tail batch
                # runs eagerly (same parameters, same result) instead of compiling a second graph.
                loss = loss_fn((forward if len(y) == full_batch else eager)(x), y)
            reg = penalty(model, l1, l2)
            optimizer.zero_grad(set_to_none=True)
            # DDP averages the ranks' gradients: weighting each rank's mean by its share of the batch makes
            # that the whole batch's mean also when the batch does not split evenly (the tail batch).
            weighted = loss * (len(y) * world / min(bs, n_all - (step - 1) * bs)) if world > 1 else loss
            scaler.scale(weighted if reg is None else weighted + reg).backward()
            if clip != "none":  # no per-step parameter walk when there is nothing to clip
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                clip_gradients([p for p in model.parameters() if p.grad is not None], clip, threshold)
            scaler.step(optimizer)
            scaler.update()
            if max_norm > 0:
                apply_max_norm(model, max_norm)
            schedule.step_batch()
            # Accumulate on the device; look at the value only every few steps (each look is a sync).
            loss_sum += loss.detach() * len(y)
            seen += len(y)
            if step % _CHECK_EVERY == 0 and not torch.isfinite(reduce(loss_sum.clone()) if reduce else loss_sum):
                raise TrialDiverged(f"loss became non-finite in epoch {epoch}, step {step}")  # on every rank
        total = loss_sum / max(seen, 1)
        if reduce is not None:  # the whole batch's mean loss, on every rank
            summed = reduce(torch.stack([loss_sum.float(), torch.tensor(float(seen), device=device)]))
            total = summed[0] / summed[1].clamp_min(1)
        train_loss = total.item()
        if not math.isfinite(train_loss):
            raise TrialDiverged(f"loss became non-finite in epoch {epoch} (train_loss={train_loss})")
        metrics: dict[str, float] = {"epoch": epoch, "train_loss": train_loss}
        monitored = train_loss  # what the plateau schedule watches: validation loss when there is a validation split
        if has_val:
            scores = evaluate_batches(model, val_batches(), regression, cfg["mc_dropout"], device, reduce)
            if not math.isfinite(scores["loss"]):
                raise TrialDiverged(f"validation loss became non-finite in epoch {epoch} (val_loss={scores['loss']})")
            metrics.update({f"val_{k}": v for k, v in scores.items()})
            monitored = scores["loss"]
        if measure and sample is not None:
            peak = costs.get("peak_memory_mb", 0.0)
            costs = model_costs(model, sample, optimizer)
            costs["peak_memory_mb"] = max(peak, costs["peak_memory_mb"])
            measure, sample = False, None  # the batch is not kept for the rest of the trial
        elif device.type == "cuda" and costs:  # the allocator's peak may still grow
            costs["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        metrics.update(costs)
        metrics["lr"] = optimizer.param_groups[0]["lr"]  # before the plateau step: the rate this epoch trained with
        schedule.step_epoch(monitored)
        if checkpoint_every and (epoch % checkpoint_every == 0 or epoch == epochs):
            report(metrics, _state(epoch, model, optimizer, schedule, scaler, generator, device, hot))
        else:
            report(metrics)
    return model


def _regression_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(prediction.reshape(target.shape).float(), target)


def _state(
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    scaler: torch.amp.GradScaler,
    generator: torch.Generator,
    device: torch.device,
    hot: dict[str, Any],
) -> dict[str, Any]:
    state = {
        "epoch": epoch,
        "hot": hot,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "rng": rng_state(generator, device),
    }
    if scaler.is_enabled():
        state["scaler"] = scaler.state_dict()
    return state


def rng_state(generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """Every random stream a trial draws from, as CPU byte tensors (what ``set_rng_state`` takes back):
    the CPU's, the batch-order generator's and, on a GPU, that GPU's (dropout and init draw there)."""
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], generator: torch.Generator, device: torch.device) -> None:
    """Restore :func:`rng_state`'s streams, whichever device the checkpoint was written on: the states
    are moved to the CPU first (a checkpoint loaded with a CUDA ``map_location`` holds them on the GPU,
    which ``set_rng_state`` refuses). A GPU stream is restored on a GPU only. A batch-order state of
    another device's generator (checkpoints of hpsearch before it drew batch orders on the CPU) seeds the
    generator from its bytes: the trial continues, with another order than it would have had."""
    torch.set_rng_state(state["torch"].cpu())
    saved = state["generator"].cpu()
    try:
        generator.set_state(saved)
    except RuntimeError:  # written by a generator on another device (a CUDA one: 16 bytes, seed and offset)
        generator.manual_seed(int.from_bytes(bytes(saved.tolist()), "little") % 2**63)
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _transfer_optimizer(model: TransferResNet, cfg: TrainConfig, fused: bool = False) -> torch.optim.Optimizer:
    model.freeze_backbone()
    groups: list[dict[str, Any]] = [{"params": list(model.head.parameters())}]
    top = model.unfreeze_top(cfg["unfreeze_blocks"])
    if top:
        groups.append({"params": top, "lr": cfg["optimizer.lr"] * cfg["finetune_lr_mult"]})
    return build_optimizer(groups, cfg, fused=fused)


def _unfreeze(model: TransferResNet, optimizer: torch.optim.Optimizer, schedule: LRSchedule, cfg: TrainConfig) -> None:
    """After the frozen epochs: the top blocks join training at ``finetune_lr_mult`` times the head's base rate."""
    params = model.unfreeze_top(cfg["unfreeze_blocks"])
    if not params:
        return
    optimizer.add_param_group({"params": params, "lr": optimizer.param_groups[0]["base_lr"] * cfg["finetune_lr_mult"]})
    schedule.add_group(optimizer.param_groups[-1])


def train_mlp(
    config: dict[str, Any], data: Splits | Streamed, epochs: int, report: Report, seed: int = 0, **kw: Any
) -> nn.Module:
    return train_model("mlp", config, data, epochs, report, seed, **kw)


def train_cnn(
    config: dict[str, Any], data: Splits | Streamed, epochs: int, report: Report, seed: int = 0, **kw: Any
) -> nn.Module:
    return train_model("cnn", config, data, epochs, report, seed, **kw)


def train_resnet_transfer(
    config: dict[str, Any], data: Splits | Streamed, epochs: int, report: Report, seed: int = 0, **kw: Any
) -> nn.Module:
    return train_model("resnet_transfer", config, data, epochs, report, seed, **kw)
