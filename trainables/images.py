"""Image files read when a batch needs them: decoded with Pillow, resized, as uint8 tensors (C, H, W)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


class ImageFiles(Dataset[tuple[torch.Tensor, int]]):
    """``(path, class index)`` pairs as ``(image, class)``: the image decoded, converted to ``mode`` (RGB or
    L) and resized to ``size`` (height, width) when it is read."""

    def __init__(self, samples: Sequence[tuple[str, int]], size: tuple[int, int], mode: str = "RGB"):
        self.samples, self.size, self.mode = list(samples), size, mode

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as opened:
            image = opened.convert(self.mode)
        if image.size != (self.size[1], self.size[0]):
            image = image.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
        array = array[:, :, None] if array.ndim == 2 else array
        return torch.from_numpy(array.transpose(2, 0, 1).copy()), label


def image_stats(files: ImageFiles, seed: int, samples: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (as 0-255 values, shaped (1, C, 1, 1)) of up to ``samples``
    seeded-random images of ``files``."""
    picks = np.random.default_rng(seed).permutation(len(files))[:samples]
    images = torch.stack([files[int(i)][0] for i in picks]).double()
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return mean.float().reshape(1, -1, 1, 1), std.float().reshape(1, -1, 1, 1)
