"""One panel of a figure: an image, or for 1-D signals a curve over the truth."""

from __future__ import annotations

import torch


def show(ax, image: torch.Tensor, low: float, high: float, cmap: str = "gray", truth: torch.Tensor | None = None) -> None:
    """Draw a (H, W) image with `cmap` between low and high, or an (N,) signal as
    a curve (over `truth`'s, dashed, where given) on the axis range [low, high]."""
    if image.dim() == 2:
        ax.imshow(image.numpy(), cmap=cmap, vmin=low, vmax=high if cmap == "gray" else None)
        ax.axis("off")
        return
    if truth is not None:
        ax.plot(truth.numpy(), color="0.6", linestyle="--", linewidth=1)
    ax.plot(image.numpy(), color="black" if cmap == "gray" else "tab:red", linewidth=1)
    if cmap == "gray":
        margin = 0.1 * (high - low)
        ax.set_ylim(low - margin, high + margin)
    ax.set_xticks([])
    ax.tick_params(labelsize=6)
