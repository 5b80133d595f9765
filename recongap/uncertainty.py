"""What posterior samples say beyond their mean: pixel std, calibration of
credible intervals, collapse checks, and a region-of-interest test.

Samples are (B, K, 1, N, N) tensors (B items, K samples each) or (K, 1, N, N)
/ (K, N, N) for one item, as drawn by a sampler such as `CWGANModule.sample`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import ot
import torch
from matplotlib.figure import Figure
from torch.nn.functional import max_pool1d, max_pool2d

from .files import atomic_path
from .posterior.store import ReferencePosterior, read_reference
from .reports.figures import show

Sampler = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


def pixel_std(samples: torch.Tensor) -> torch.Tensor:
    """Pixelwise standard deviation over the sample axis (dim 1): (B, 1, N, N)."""
    return samples.std(dim=1)


def credible_coverage(samples: torch.Tensor, truth: torch.Tensor, level: float = 0.9) -> torch.Tensor:
    """Per item, the fraction of true pixels inside the central `level`
    pixelwise credible interval of the samples: (B,). Ideal value: `level`."""
    if samples.shape[0] != truth.shape[0] or samples.shape[2:] != truth.shape[1:]:
        raise ValueError(f"samples {tuple(samples.shape)} do not match truth {tuple(truth.shape)} as (B, K, *image)")
    if not 0 < level < 1:
        raise ValueError(f"credible level must be in (0, 1), got {level}")
    tail = (1 - level) / 2
    bounds = torch.quantile(samples.flatten(2).double(), torch.tensor([tail, 1 - tail], dtype=torch.float64), dim=1)
    flat = truth.flatten(1).double()
    return ((flat >= bounds[0]) & (flat <= bounds[1])).double().mean(dim=1)


def surrounding_ring(mask: torch.Tensor, width: int) -> torch.Tensor:
    """The pixels within `width` pixels (chessboard distance) of `mask`, mask
    excluded; for a 1-D mask, the points within `width` of it."""
    m = mask.bool()
    pool = max_pool1d if m.dim() == 1 else max_pool2d
    grown = pool(m[None, None].float(), 2 * width + 1, stride=1, padding=width)[0, 0] > 0
    return grown & ~m


def roi_exceedance_probability(samples: torch.Tensor, mask: torch.Tensor, ring_width: int = 3) -> float:
    """Posterior probability that the mean intensity inside `mask` exceeds the
    mean over its surrounding ring of `ring_width` pixels, estimated as the
    fraction of samples for which it does: Adler & Öktem's lesion test.

    samples: (K, 1, N, N) or (K, N, N) for one item; mask: (N, N) boolean.
    """
    images = samples.reshape(samples.shape[0], *samples.shape[-2:])
    if mask.shape != images.shape[1:]:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from the samples' image shape {tuple(images.shape[1:])}")
    inside = mask.bool()
    if not inside.any():
        raise ValueError("mask is empty")
    ring = surrounding_ring(inside, ring_width)
    if not ring.any():
        raise ValueError("mask leaves no surrounding ring inside the image")
    return float((images[:, inside].mean(1) > images[:, ring].mean(1)).double().mean())


def interval_mask(size: int, centre: float, radius: float) -> torch.Tensor:
    """(size,) boolean interval of points within `radius` of `centre`: a 1-D signal's ROI."""
    return (torch.arange(size) - centre).abs() <= radius


def disk_mask(size: int, centre: tuple[float, float], radius: float) -> torch.Tensor:
    """(size, size) boolean disk; centre (row, column) and radius in pixels."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def is_collapsed(samples: torch.Tensor, floor: float) -> bool:
    """True when the mean pixel std over items is at most `floor`: a sampler
    whose draws for one y barely differ (e.g. a generator that ignores z)."""
    return float(pixel_std(samples).mean()) <= floor


def std_correlation(std: torch.Tensor, reference_std: torch.Tensor) -> torch.Tensor:
    """Per item, the Pearson correlation of two std maps: (B,)."""
    a, b = std.flatten(1).double(), reference_std.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)


# --- against an exact posterior (Gaussian and Gaussian-mixture priors) ----------------
class ExactPosterior(Protocol):
    def mean(self, y: torch.Tensor) -> torch.Tensor: ...

    def pixel_std(self, y: torch.Tensor) -> torch.Tensor: ...

    def sample(self, y: torch.Tensor, draws: int, generator: torch.Generator) -> torch.Tensor: ...

    def probability_positive(self, direction: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


def roi_direction(mask: torch.Tensor, ring_width: int = 3) -> torch.Tensor:
    """The image a with a . x = mean of x inside `mask` - mean over its ring:
    the ROI test asks whether a . x > 0."""
    inside = mask.bool()
    ring = surrounding_ring(inside, ring_width)
    return inside.double() / inside.sum() - ring.double() / ring.sum()


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int, seed: int) -> float:
    """Sliced 2-Wasserstein distance between two sets of images (K, ...), by POT."""
    return float(ot.sliced_wasserstein_distance(a.flatten(1).double().numpy(), b.flatten(1).double().numpy(), n_projections=projections, seed=seed))


def exact_comparison(samples: torch.Tensor, y: torch.Tensor, exact: ExactPosterior, mask: torch.Tensor,
                     projections: int = 200, seed: int = 0) -> dict:
    """A sampler's draws (B, K, 1, N, N) for measurements y against the exact
    posterior, averaged over items: the sliced Wasserstein distance to K exact
    draws, beside that between two independent sets of K exact draws (what K
    samples allow at best); the ratio of pixel stds (sampler / exact, ideal 1);
    the fraction of exact draws' pixels inside the sampler's central 90%
    pixel intervals, beside the same fraction for intervals from K exact
    draws (the ideal for K samples: below 0.9, as K empirical quantiles are
    narrower than the law's); and the ROI test's probability, the sampler's
    fraction against the exact value."""
    generator = torch.Generator().manual_seed(seed)
    k = samples.shape[1]
    direction = roi_direction(mask)
    distance, floor, coverage, ideal = [], [], [], []
    for i in range(y.shape[0]):
        draws = exact.sample(y[i : i + 1].double(), 2 * k, generator)[0]
        distance.append(sliced_wasserstein(samples[i], draws[:k], projections, seed + i))
        floor.append(sliced_wasserstein(draws[k:], draws[:k], projections, seed + i))
        coverage.append(float(credible_coverage(samples[i : i + 1].expand(k, *samples.shape[1:]), draws[:k]).mean()))
        ideal.append(float(credible_coverage(draws[None, k:].expand(k, *draws[k:].shape), draws[:k]).mean()))
    exact_std = exact.pixel_std(y.double())
    std_ratio = (pixel_std(samples.double()).flatten(1).mean(1) / exact_std.flatten(1).mean(1))
    roi_sampler = (samples.double().flatten(2) @ direction.flatten() > 0).double().mean(1)
    roi_exact = exact.probability_positive(direction, y.double())
    return {
        "items": int(y.shape[0]),
        "samples_per_item": int(k),
        "sliced_wasserstein": float(np.mean(distance)),
        "sliced_wasserstein_exact_vs_exact": float(np.mean(floor)),
        "std_ratio": float(std_ratio.mean()),
        "coverage_90_of_exact_draws": float(np.mean(coverage)),
        "coverage_90_of_exact_draws_by_exact_draws": float(np.mean(ideal)),
        "roi_probability_abs_error": float((roi_sampler - roi_exact).abs().mean()),
        "roi_mask": "disk at the centre, radius size/8, ring 3 pixels",
    }


# --- evaluation of a sampler ----------------------------------------------------------
def draw_samples(sampler: Sampler, y: torch.Tensor, k: int, batch_size: int, seed: int = 0) -> torch.Tensor:
    """k samples for every item of y, batch by batch, seeded: (B, k, 1, N, N)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return torch.cat([sampler(y[i : i + batch_size], k, generator) for i in range(0, y.shape[0], batch_size)])


def calibration(samples: torch.Tensor, truth: torch.Tensor, std_floor: float, reference: ReferencePosterior | None,
                reference_folder: str | Path) -> dict:
    """The calibration summary that evaluate writes under the sampler's name."""
    std = pixel_std(samples)
    summary = {
        "samples_per_item": int(samples.shape[1]),
        "coverage_90": float(credible_coverage(samples, truth).mean()),
        "mean_pixel_std": float(std.mean()),
        "std_floor": std_floor,
        "collapsed": is_collapsed(samples, std_floor),
    }
    if reference is None:
        summary["mcmc"] = f"skipped: no MCMC reference at {reference_folder}"
    else:
        on = reference.indices  # the items the reference covers
        summary["mcmc"] = {
            "items": len(on),
            "coverage_90": float(credible_coverage(reference.samples, truth[on]).mean()),
            "sampler_coverage_90_same_items": float(credible_coverage(samples[on], truth[on]).mean()),
            "mean_pixel_std": float(reference.std.mean()),
            "std_correlation": float(std_correlation(std[on], reference.std).mean()),
        }
    return summary


def save_gallery(path: str | Path, truth: torch.Tensor, samples: torch.Tensor, shown: int = 4) -> None:
    """Rows: items; columns: truth, sample mean, pixel std, `shown` samples."""
    mean, std = samples.mean(1), pixel_std(samples)
    shown = min(shown, samples.shape[1])
    columns = ["truth", "mean", "std", *[f"sample {i + 1}" for i in range(shown)]]
    fig = Figure(figsize=(2 * len(columns), 2 * truth.shape[0]))
    axes = fig.subplots(truth.shape[0], len(columns), squeeze=False)
    low, high = float(truth.min()), float(truth.max())
    for r in range(truth.shape[0]):
        images = [truth[r, 0], mean[r, 0], std[r, 0], *[samples[r, i, 0] for i in range(shown)]]
        for c, (title, image) in enumerate(zip(columns, images)):
            ax = axes[r, c]
            if title == "std":
                show(ax, image, 0.0, float(std.max()), cmap="magma")
            else:
                show(ax, image, low, high, truth=None if title == "truth" else truth[r, 0])
            ax.set_title(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)


def assess_sampler(sampler: Sampler, y: torch.Tensor, truth: torch.Tensor, k: int, std_floor: float, batch_size: int,
                   reference_folder: str | Path, gallery: str | Path, gallery_items: int = 4,
                   exact: ExactPosterior | None = None, exact_items: int = 16) -> dict:
    """K samples per test item -> calibration summary (with the MCMC reference
    when `reference_folder` holds one; against the exact posterior on the first
    `exact_items` items where the prior has one) and the gallery PNG."""
    start = time.perf_counter()
    samples = draw_samples(sampler, y, k, batch_size)
    seconds = (time.perf_counter() - start) / y.shape[0]
    reference = read_reference(reference_folder, tuple(truth.shape[2:]))
    summary = calibration(samples, truth, std_floor, reference, reference_folder)
    summary["sampling_seconds_per_item"] = seconds
    if exact is not None:
        n, size = min(exact_items, y.shape[0]), truth.shape[-1]
        signal = truth.dim() == 3
        mask = interval_mask(size, size / 2, size / 8) if signal else disk_mask(size, (size / 2, size / 2), size / 8)
        summary["exact"] = exact_comparison(samples[:n], y[:n], exact, mask)
        if signal:
            summary["exact"]["roi_mask"] = "interval at the centre, radius size/8, ring 3 points"
    save_gallery(gallery, truth[:gallery_items], samples[:gallery_items])
    return summary


def main() -> None:
    """ROI test from the command line: a checkpoint, a test split, an item, a disk."""
    import argparse
    import json

    from .datasets import read_split
    from .reconstructors.lightning import load_checkpoint

    parser = argparse.ArgumentParser(description="P(mean inside a disk > mean of its ring | y) from a sampler's draws.")
    parser.add_argument("checkpoint")
    parser.add_argument("split", help="an HDF5 split written by tasks.simulate, e.g. data/ellipses/test.h5")
    parser.add_argument("--method", default="cwgan")
    parser.add_argument("--item", type=int, default=0)
    parser.add_argument("--centre", type=float, nargs=2, required=True, metavar=("ROW", "COL"))
    parser.add_argument("--radius", type=float, required=True)
    parser.add_argument("--ring", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--reference", help="the reference stage's folder, e.g. models/ellipses/reference: adds the MCMC answer")
    args = parser.parse_args()

    split = read_split(args.split)
    if not 0 <= args.item < split.images.shape[0]:
        raise SystemExit(f"{args.split}: --item {args.item} outside 0..{split.images.shape[0] - 1}")
    sampler = load_checkpoint(args.checkpoint, args.method, split.attrs["config"]["geometry"])
    y = torch.from_numpy(split.measurements[args.item : args.item + 1])
    truth = torch.from_numpy(split.images[args.item, 0])
    if truth.dim() != 2:
        raise SystemExit(f"{args.split}: the ROI test takes 2-D images (a disk and its ring), not signals of shape {tuple(truth.shape)}")
    mask = disk_mask(truth.shape[-1], tuple(args.centre), args.radius)
    reference = read_reference(args.reference, tuple(truth.shape)) if args.reference else None
    if args.reference and (reference is None or args.item not in reference.indices):
        raise SystemExit(f"{args.reference}: no MCMC samples of item {args.item} (items: {reference.indices if reference else []})")
    samples = draw_samples(sampler.sample, y, args.samples, batch_size=1)[0]
    ring = surrounding_ring(mask, args.ring)
    answer = {
        "item": args.item, "centre": args.centre, "radius": args.radius, "ring": args.ring, "samples": args.samples,
        "probability_inside_exceeds_ring": roi_exceedance_probability(samples, mask, args.ring),
        "truth_inside_minus_ring": float(truth[mask].mean() - truth[ring].mean()),
    }
    if reference is not None:
        mcmc = reference.samples[reference.indices.index(args.item)]
        answer["mcmc"] = {"samples": len(mcmc), "probability_inside_exceeds_ring": roi_exceedance_probability(mcmc, mask, args.ring)}
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
