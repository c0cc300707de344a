"""Model builders."""

from __future__ import annotations

from torch import nn

from trainables.config import MLPConfig

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}


def build_mlp(in_features: int, num_classes: int, cfg: MLPConfig) -> nn.Sequential:
    """``hidden_layers`` blocks of Linear [-> BN] -> activation [-> BN] [-> Dropout], then a Linear head.

    Batch norm goes before or after the activation as ``cfg.batch_norm`` says; dropout is
    never applied to the output layer.
    """
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(cfg.hidden_layers):
        # With BN right after it, the Linear bias is redundant (BN re-centres).
        layers.append(nn.Linear(width, cfg.units, bias=cfg.batch_norm != "before"))
        if cfg.batch_norm == "before":
            layers.append(nn.BatchNorm1d(cfg.units))
        layers.append(_ACTIVATIONS[cfg.activation]())
        if cfg.batch_norm == "after":
            layers.append(nn.BatchNorm1d(cfg.units))
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        width = cfg.units
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
