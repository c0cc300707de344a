"""The device a trial trains on, and what depends on the device's reported capability.

Small on purpose: every GPU decision hpsearch makes is here, taken from what Ray assigned and what
the device reports, and written down (:meth:`DevicePlan.tags`) so the trial's MLflow run shows it.

- **Which device.** The GPUs Ray assigned to the trial, never what the process happens to see: a
  trial with ``resources.gpu: 0`` trains on the CPU even on a GPU host (Ray 2.60 no longer hides the
  GPUs from zero-GPU tasks), and a trial that reserved a GPU that CUDA cannot use is an error, not a
  silent CPU run.
- **Precision.** bf16 autocast needs compute capability >= 8.0 (Ampere) to be native; below, it is
  emulated and slower than fp16, so ``amp: bf16`` runs as fp16 there. TF32 matmuls and cuDNN's
  autotuner are on for CUDA (TF32 only exists from 8.0; the autotuner suits fixed batch shapes).
- **Memory.** A trial with a GPU share below 1 (``resources.gpu: 0.25``) is capped at that share of
  the GPU's memory left after every sharer's CUDA context (:data:`CONTEXT_BYTES` each, outside the
  cap), so the caps and contexts together fit and an out-of-memory error lands on the trial that
  overran, not on a neighbour.
  A data set that does not fit in (half of) that share stays in host memory; batches are copied over.
- **CPU arithmetic.** Denormal floats (below 1.2e-38) are flushed to zero in the thread that trains
  (:func:`flush_denormals`): a network whose loss nears zero otherwise computes on denormal gradients,
  which the CPU handles in microcode, and its epochs cost 2.5-3x (BENCHMARKS.md, issue 26).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

BF16_MIN_CAPABILITY = (8, 0)  # Ampere: native bf16 and TF32
DATA_SHARE = 0.5  # the data set may take this much of a trial's GPU memory; the rest is for training
# What a process's CUDA context (driver state, kernels of torch and cuDNN) takes outside the allocator's cap:
# 300-600 MiB on current drivers; a share's cap leaves this much per sharer.
CONTEXT_BYTES = 768 * 2**20


class DeviceError(RuntimeError):
    """A trial cannot use the device Ray assigned to it."""


@dataclass(frozen=True)
class DevicePlan:
    """How a trial uses its device, decided once when it starts."""

    device: str  # cpu | cuda (cuda:0 is the first GPU Ray assigned: Ray sets CUDA_VISIBLE_DEVICES)
    gpu_ids: tuple[str, ...] = ()
    index: int = 0  # the CUDA device this process trains on (a worker of a group: its local rank's)
    gpu_name: str | None = None
    capability: tuple[int, int] | None = None
    memory_fraction: float | None = None  # the cap on this process's share of the GPU's memory
    tf32: bool = False
    cudnn_benchmark: bool = False
    notes: tuple[str, ...] = ()

    @property
    def torch_device(self) -> str:
        """What ``torch.device`` takes: ``cpu``, ``cuda`` or ``cuda:K`` (a group's worker on the K-th GPU)."""
        return f"cuda:{self.index}" if self.device == "cuda" and self.index else self.device

    def amp(self, requested: str) -> str:
        """The autocast precision a trial asking for ``requested`` runs with on this device."""
        return amp_for(requested, self.capability)

    def tags(self) -> dict[str, str]:
        """What the trial's MLflow run records about its device."""
        out = {"device": self.device}
        if self.device == "cuda":
            out.update(
                gpu_ids=",".join(self.gpu_ids),
                gpu=self.gpu_name or "?",
                capability=".".join(map(str, self.capability or ())),
                tf32=str(self.tf32).lower(),
                cudnn_benchmark=str(self.cudnn_benchmark).lower(),
            )
            if self.memory_fraction is not None:
                out["memory_fraction"] = f"{self.memory_fraction:g}"
        if self.notes:
            out["notes"] = "; ".join(self.notes)
        return out


def amp_for(requested: str, capability: tuple[int, int] | None) -> str:
    """The autocast precision for ``requested`` on a GPU of ``capability`` (None: the CPU): bf16
    becomes fp16 on GPUs without native bf16."""
    if requested == "bf16" and capability is not None and capability < BF16_MIN_CAPABILITY:
        return "fp16"
    return requested


def effective_amp(requested: str, device: torch.device) -> str:
    """:func:`amp_for` the device a model trains on."""
    import torch

    return amp_for(requested, torch.cuda.get_device_capability(device) if device.type == "cuda" else None)


def assigned_gpus() -> list[str]:
    """The GPU ids Ray assigned to this task or actor (empty outside Ray)."""
    import ray

    if not ray.is_initialized():
        return []
    return [str(i) for i in ray.get_gpu_ids()]


def plan_device(gpu_ids: Sequence[str], gpu_share: float, index: int = 0) -> DevicePlan:
    """Decide how the current process trains, given the GPU ids Ray assigned and the trial's GPU share;
    ``index``: the CUDA device it trains on (a worker of a group sees the node's GPUs of its group).

    Raises:
        DeviceError: GPUs were assigned but CUDA cannot use them.
    """
    import torch

    if not gpu_ids:
        # Zero GPUs assigned: the CPU, and CUDA hidden from this process so nothing initialises it
        # behind Ray's back (a library probing torch.cuda would otherwise take GPU 0).
        if not torch.cuda.is_initialized():
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return DevicePlan("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"Ray assigned GPU(s) {', '.join(gpu_ids)} to this trial, but CUDA is not usable in its process "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}; "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}): install a CUDA build of torch "
            "that matches the node's driver, or ask for resources.gpu: 0"
        )
    capability = torch.cuda.get_device_capability(index)
    notes: tuple[str, ...] = ()
    fraction = None
    if 0 < gpu_share < 1:
        total = torch.cuda.get_device_properties(index).total_memory
        fraction = share_cap(gpu_share, total)
    tf32 = capability >= BF16_MIN_CAPABILITY
    if not tf32:
        notes = (f"compute capability {capability[0]}.{capability[1]} < 8.0: no TF32, bf16 runs as fp16",)
    return DevicePlan(
        "cuda",
        tuple(gpu_ids),
        index,
        torch.cuda.get_device_name(index),
        capability,
        fraction,
        tf32=tf32,
        cudnn_benchmark=True,
        notes=notes,
    )


def share_cap(gpu_share: float, total_bytes: int, context_bytes: int = CONTEXT_BYTES) -> float:
    """The memory fraction a process with ``gpu_share`` of a GPU of ``total_bytes`` may allocate: its share
    of what is left once each of the ``floor(1 / gpu_share)`` processes that can share it has its CUDA
    context (which the allocator's cap does not count), rounded down to 1e-4."""
    sharers = max(1, int(1 / gpu_share + 1e-9))
    usable = max(0, total_bytes - sharers * context_bytes)
    return math.floor(gpu_share * usable / total_bytes * 1e4) / 1e4


FLUSH_DENORMAL_ENV = "HPSEARCH_FLUSH_DENORMAL"


def flush_denormals() -> bool:
    """Flush denormal floats to zero in this thread's CPU arithmetic (``torch.set_flush_denormal``: the
    SSE flags are per thread; threads it starts later, torch's intra-op pool, inherit them), unless
    ``HPSEARCH_FLUSH_DENORMAL`` is ``0``. Values this small change no trained weight that matters; GPUs
    flush them in most kernels anyway. Whether they are flushed now."""
    import torch

    off = os.environ.get(FLUSH_DENORMAL_ENV, "1").strip().lower() in ("0", "off", "false", "no")
    return bool(torch.set_flush_denormal(not off)) and not off


def denormals_flushed() -> bool:
    """Whether this thread's CPU arithmetic flushes denormal floats to zero now."""
    import torch

    return bool((torch.tensor([1e-39]) * 1.0).item() == 0.0)


@contextlib.contextmanager
def denormals_flushed_while() -> Iterator[bool]:
    """:func:`flush_denormals` for a block, then this thread's arithmetic as it was (``hpsearch retrain``
    called from a program leaves the caller's thread as it found it); yields whether they are flushed."""
    import torch

    before = denormals_flushed()
    try:
        yield flush_denormals()
    finally:
        torch.set_flush_denormal(before)


def apply(plan: DevicePlan) -> None:
    """Set the process-wide switches the plan decided (idempotent: a reused actor applies it per trial)."""
    if plan.device != "cuda":
        return
    import torch

    torch.backends.cuda.matmul.allow_tf32 = plan.tf32
    torch.backends.cudnn.allow_tf32 = plan.tf32
    torch.backends.cudnn.benchmark = plan.cudnn_benchmark
    if plan.memory_fraction is not None:
        torch.cuda.set_per_process_memory_fraction(plan.memory_fraction, plan.index)


def data_fits(data_bytes: int, plan: DevicePlan) -> bool:
    """Whether a data set of ``data_bytes`` may live on the plan's GPU (at most :data:`DATA_SHARE` of
    the memory this trial may use); always true on the CPU."""
    if plan.device != "cuda":
        return True
    import torch

    free, total = torch.cuda.mem_get_info(plan.index)
    budget = min(free, total * (plan.memory_fraction or 1.0))
    return data_bytes <= DATA_SHARE * budget


def release(plan: DevicePlan) -> None:
    """After a trial, in a reused actor: give the cached GPU memory back for the next trial or neighbours."""
    if plan.device != "cuda":
        return
    import torch

    torch.cuda.empty_cache()


def eval_batch_size(sample_bytes: int, train_batch: int, budget_bytes: int = 16 * 2**20, cap: int = 4096) -> int:
    """Evaluation batch: as many samples as fit in ``budget_bytes`` of input (activations scale with
    it), a power of two, at least the training batch and at most ``cap``. Digits or CIFAR: 4096;
    224x224 images: the training batch, not 4096 (which would need ~13 GB in the first convolution)."""
    fit = max(1, budget_bytes // max(1, sample_bytes))
    power = 1 << (fit.bit_length() - 1)
    return max(train_batch, min(cap, power))
