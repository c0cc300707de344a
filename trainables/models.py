"""Model builders: MLP, CNN (plain or residual stages), resnet18 for transfer learning.

Every builder takes ``(input_shape, num_classes, cfg)`` with ``input_shape = (C, H, W)`` or
``(features,)`` and a resolved :class:`~trainables.config.TrainConfig`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hpsearch.trainables.config import ConfigError, TrainConfig


def activation(cfg: TrainConfig) -> nn.Module:
    name = cfg["activation"]
    if name == "leaky_relu":
        return nn.LeakyReLU(cfg["activation.alpha"])
    if name == "prelu":
        return nn.PReLU(init=cfg["activation.alpha"])  # one learned slope per layer
    if name == "rrelu":
        return nn.RReLU(cfg["activation.lower"], cfg["activation.upper"])  # random in training, mean at test
    if name == "elu":
        return nn.ELU(cfg["activation.alpha"])
    return {"relu": nn.ReLU, "selu": nn.SELU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[name]()


def self_normalizing(cfg: TrainConfig) -> bool:
    return cfg.get("activation") == "selu" and bool(cfg.get("self_normalizing"))


def dropout(rate: float, cfg: TrainConfig) -> nn.Module:
    # AlphaDropout keeps SELU's mean and variance; plain (inverted) dropout would break them.
    return nn.AlphaDropout(rate) if self_normalizing(cfg) else nn.Dropout(rate)


def init_weights(model: nn.Module, cfg: TrainConfig) -> None:
    """Initialise every Linear/Conv weight by ``cfg['init']`` (biases to zero); ``default`` keeps PyTorch's."""
    scheme = cfg.get("init", "default")
    if scheme == "default":
        return
    act = cfg.get("activation", "relu")
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        w = module.weight
        if scheme == "lecun_normal":  # N(0, 1/fan_in)
            nn.init.kaiming_normal_(w, nonlinearity="linear")
        elif scheme in ("kaiming_normal", "kaiming_uniform"):
            leaky = act in ("leaky_relu", "prelu")
            kwargs = {"a": cfg["activation.alpha"], "nonlinearity": "leaky_relu"} if leaky else {"nonlinearity": "relu"}
            (nn.init.kaiming_normal_ if scheme == "kaiming_normal" else nn.init.kaiming_uniform_)(w, **kwargs)
        elif scheme == "xavier_normal":
            nn.init.xavier_normal_(w)
        elif scheme == "xavier_uniform":
            nn.init.xavier_uniform_(w)
        else:  # pragma: no cover - the config schema admits no other value
            raise ConfigError(f"init: unknown scheme {scheme!r}")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _norm_act(channels: int, cfg: TrainConfig, dims: int) -> list[nn.Module]:
    bn = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    place = cfg["batch_norm"]
    return [
        *([bn(channels)] if place == "before" else []),
        activation(cfg),
        *([bn(channels)] if place == "after" else []),
    ]


def build_mlp(input_shape: tuple[int, ...], num_classes: int, cfg: TrainConfig) -> nn.Sequential:
    """Flatten, then ``hidden_layers`` x [Linear, (BN), act, (BN), (Dropout)], then a Linear head.

    Dropout goes after the last ``dropout_layers`` hidden layers (0 = all), never after the output.
    """
    n = cfg["hidden_layers"]
    k = cfg["dropout_layers"] or n
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for i in range(n):
        # With BN right after it, the Linear bias is redundant (BN re-centres).
        layers.append(nn.Linear(width, cfg["units"], bias=cfg["batch_norm"] != "before"))
        layers.extend(_norm_act(cfg["units"], cfg, dims=1))
        if cfg["dropout"] > 0 and i >= n - k:
            layers.append(dropout(cfg["dropout"], cfg))
        width = cfg["units"]
    layers.append(nn.Linear(width, num_classes))
    model = nn.Sequential(*layers)
    init_weights(model, cfg)
    return model


class ResidualBlock(nn.Module):
    """conv3x3/2 -> norm/act -> conv3x3 (+ BN) added to a 1x1/2 projection shortcut, then act (+ BN after)."""

    def __init__(self, c_in: int, c_out: int, cfg: TrainConfig):
        super().__init__()
        place = cfg["batch_norm"]
        bias = place == "none"
        self.main = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=bias),
            *_norm_act(c_out, cfg, dims=2),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias),
            *([nn.BatchNorm2d(c_out)] if place == "before" else []),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=2, bias=bias),
            *([nn.BatchNorm2d(c_out)] if place == "before" else []),
        )
        self.out = nn.Sequential(activation(cfg), *([nn.BatchNorm2d(c_out)] if place == "after" else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.main(x) + self.shortcut(x))


def build_cnn(input_shape: tuple[int, ...], num_classes: int, cfg: TrainConfig) -> nn.Sequential:
    """``blocks`` stages (plain: [conv3x3, norm/act] x2 + max-pool; residual: :class:`ResidualBlock`),
    each halving the resolution and doubling the channels; global average pool, dropout, Linear head."""
    if len(input_shape) != 3:
        raise ConfigError(f"the cnn trainable needs image data (C, H, W), got samples of shape {tuple(input_shape)}")
    c_in = input_shape[0]
    layers: list[nn.Module] = []
    for stage in range(cfg["blocks"]):
        c_out = cfg["channels"] * 2**stage
        if cfg["block_type"] == "residual":
            layers.append(ResidualBlock(c_in, c_out, cfg))
        else:
            bias = cfg["batch_norm"] != "before"
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias), *_norm_act(c_out, cfg, dims=2)]
            layers += [nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias), *_norm_act(c_out, cfg, dims=2)]
            layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil: small inputs shrink to 1x1, never to 0
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if cfg["dropout"] > 0:
        layers.append(dropout(cfg["dropout"], cfg))
    layers.append(nn.Linear(c_in, num_classes))
    model = nn.Sequential(*layers)
    init_weights(model, cfg)
    return model


class TransferResNet(nn.Module):
    """torchvision resnet18 as a backbone with a new head; blocks freeze and unfreeze from the top."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, cfg: TrainConfig):
        super().__init__()
        from torchvision.models import resnet18

        if len(input_shape) != 3:
            raise ConfigError(f"resnet_transfer needs image data (C, H, W), got samples of shape {tuple(input_shape)}")
        backbone = resnet18(weights=None)
        if cfg["weights"]:
            try:
                state = torch.load(cfg["weights"], map_location="cpu", weights_only=True)
            except FileNotFoundError as exc:
                raise ConfigError(f"weights: file not found: {cfg['weights']!r}") from exc
            backbone.load_state_dict(state)
        backbone.fc = nn.Identity()
        self.channels = input_shape[0]
        self.backbone = backbone
        self.head = nn.Sequential(
            *([nn.Dropout(cfg["dropout"])] if cfg["dropout"] > 0 else []), nn.Linear(512, num_classes)
        )

    @property
    def blocks(self) -> list[nn.Module]:
        """resnet18's four residual stages, bottom to top."""
        b = self.backbone
        return [b.layer1, b.layer2, b.layer3, b.layer4]

    def freeze_backbone(self) -> None:
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def unfreeze_top(self, k: int) -> list[nn.Parameter]:
        """Make the top ``k`` blocks trainable again; return their parameters."""
        params = [p for block in self.blocks[len(self.blocks) - k :] for p in block.parameters()] if k else []
        for p in params:
            p.requires_grad_(True)
        return params

    def train(self, mode: bool = True) -> TransferResNet:
        super().train(mode)
        if mode:
            # Frozen BatchNorm layers keep their running statistics (a frozen layer does not change).
            for module in self.backbone.modules():
                if isinstance(module, nn.BatchNorm2d) and not any(p.requires_grad for p in module.parameters()):
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == 1:
            x = x.expand(-1, 3, -1, -1)  # grey images through an RGB backbone
        return self.head(self.backbone(x))


def build_resnet_transfer(input_shape: tuple[int, ...], num_classes: int, cfg: TrainConfig) -> TransferResNet:
    return TransferResNet(input_shape, num_classes, cfg)


BUILDERS = {"mlp": build_mlp, "cnn": build_cnn, "resnet_transfer": build_resnet_transfer}
