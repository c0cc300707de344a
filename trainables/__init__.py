"""PyTorch side of hpsearch: data as tensors, models, optimizers, schedules, the training loop, the Tune adapter.

Importing this package does not import torch; import the submodules for that.
Built-in trainables are named in :data:`BUILTIN`; a user's own trainable is "pkg.module:function"
with the signature ``fn(config: dict, data: Splits, epochs: int, report, seed: int) -> None``.
"""

BUILTIN = {
    "mlp": "hpsearch.trainables.loop:train_mlp",
    "cnn": "hpsearch.trainables.loop:train_cnn",
    "resnet_transfer": "hpsearch.trainables.loop:train_resnet_transfer",
}

__all__ = ["BUILTIN"]
