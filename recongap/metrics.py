"""Image quality metrics, per image.

PSNR uses each ground-truth image's own value range (max - min) as the data
range; SSIM comes from torchmetrics with the same data range. torchmetrics
has no SSIM of 1-D signals, so theirs is written here with the same window
and constants (checked against torchmetrics on images constant along rows).
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure


def data_range(truth: torch.Tensor) -> torch.Tensor:
    """max - min of each image in a (B, 1, H, W) or (B, 1, N) batch."""
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
    if truth.dim() == 3:
        return ssim_1d(estimate, truth, ranges)
    return torch.stack(
        [
            structural_similarity_index_measure(estimate[i : i + 1], truth[i : i + 1], data_range=float(ranges[i]))
            for i in range(truth.shape[0])
        ]
    )


def ssim_1d(estimate: torch.Tensor, truth: torch.Tensor, ranges: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM of (B, 1, N) signals as torchmetrics computes it for images:
    reflection padding, Gaussian local statistics (variances clamped at 0),
    C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L each truth's data range, the
    index averaged over all N points."""
    pad = (window - 1) // 2
    if truth.shape[-1] <= pad:
        raise ValueError(f"ssim of 1-D signals needs more than {pad} points, got {truth.shape[-1]}")
    t = torch.arange(window, dtype=estimate.dtype, device=estimate.device) - (window - 1) / 2
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).reshape(1, 1, window)
    x, y = (nn.functional.pad(v, (pad, pad), mode="reflect") for v in (estimate, truth))
    mx, my, xx, yy, xy = (nn.functional.conv1d(v, kernel) for v in (x, y, x * x, y * y, x * y))
    vx, vy, cxy = (xx - mx**2).clamp_min(0), (yy - my**2).clamp_min(0), xy - mx * my
    c1, c2 = ((0.01 * ranges) ** 2)[:, None, None], ((0.03 * ranges) ** 2)[:, None, None]
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return index.flatten(1).mean(1)
