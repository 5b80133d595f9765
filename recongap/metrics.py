"""Image quality metrics, per image.

PSNR uses each ground-truth image's own value range (max - min) as the data
range; SSIM comes from torchmetrics with the same data range.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import structural_similarity_index_measure


def data_range(truth: torch.Tensor) -> torch.Tensor:
    """max - min of each image in a (B, 1, H, W) batch."""
    flat = truth.flatten(1)
    return (flat.max(1).values - flat.min(1).values).clamp_min(1e-12)


def mse(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error, (B,)."""
    return ((estimate - truth) ** 2).flatten(1).mean(1)


def psnr(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB with the truth's range as data range, (B,)."""
    return 10 * torch.log10(data_range(truth) ** 2 / mse(estimate, truth).clamp_min(1e-20))


def ssim(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (torchmetrics, Gaussian window 11, sigma 1.5), (B,)."""
    ranges = data_range(truth)
    return torch.stack(
        [
            structural_similarity_index_measure(estimate[i : i + 1], truth[i : i + 1], data_range=float(ranges[i]))
            for i in range(truth.shape[0])
        ]
    )
