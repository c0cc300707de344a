"""Image augmentation on batched tensors, on their device (no per-sample Python, no PIL); the random
numbers come from the generator's device (a handful per sample) and go to the batch's."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad each image by ``padding`` and cut a random window of the original size, per sample."""
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dev = x.device
    drawn = generator.device if generator is not None else dev  # a CPU generator serves any device
    top = torch.randint(0, 2 * padding + 1, (n,), device=drawn, generator=generator).to(dev)
    left = torch.randint(0, 2 * padding + 1, (n,), device=drawn, generator=generator).to(dev)
    rows = (top[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # n,1,h,1
    cols = (left[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # n,1,1,w
    batch = torch.arange(n, device=dev)[:, None, None, None]
    chans = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    drawn = generator.device if generator is not None else x.device
    flip = (torch.rand(x.shape[0], device=drawn, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def augment(x: torch.Tensor, crop_padding: int, hflip: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    if x.dim() != 4:
        return x
    x = random_crop(x, crop_padding, generator)
    return random_hflip(x, generator) if hflip else x
