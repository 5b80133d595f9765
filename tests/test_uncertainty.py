"""Calibration and region-of-interest functions against cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recongap.datasets import DataError
from recongap.uncertainty import (
    calibration,
    credible_coverage,
    disk_mask,
    read_reference,
    roi_exceedance_probability,
    save_gallery,
    std_correlation,
    surrounding_ring,
)


def _phi(t: float) -> float:
    return 0.5 * (1 + math.erf(t / math.sqrt(2)))


def test_gaussian_samples_cover_90_percent_of_gaussian_truths(generator):
    # truth and samples from the same N(mu, sigma^2) per pixel: a calibrated posterior
    # (8192 pixels: the binomial standard error of the coverage is 0.0033)
    mu = torch.rand(8, 1, 32, 32, generator=generator)
    sigma = 0.1 + torch.rand(8, 1, 32, 32, generator=generator)
    samples = mu[:, None] + sigma[:, None] * torch.randn(8, 400, 1, 32, 32, generator=generator)
    truth = mu + sigma * torch.randn(8, 1, 32, 32, generator=generator)
    coverage = credible_coverage(samples, truth)
    assert coverage.shape == (8,)
    assert abs(float(coverage.mean()) - 0.9) < 0.015
    # an overconfident sampler (std / 3) covers about P(|Z| < 1.645 / 3) = 0.42
    narrow = mu[:, None] + (samples - mu[:, None]) / 3
    assert abs(float(credible_coverage(narrow, truth).mean()) - (2 * _phi(1.645 / 3) - 1)) < 0.04
    with pytest.raises(ValueError, match="do not match truth"):
        credible_coverage(samples, truth[:2, :, :16])


def test_roi_probability_matches_the_normal_law(generator):
    # inside a disk the image is d ~ N(0.5, 1) per sample, the ring is 0: P(d > 0) = Phi(0.5)
    mask = disk_mask(32, (16, 16), 4)
    k = 4000
    d = 0.5 + torch.randn(k, generator=generator)
    samples = d[:, None, None, None] * mask[None, None].float()
    assert roi_exceedance_probability(samples, mask) == pytest.approx(_phi(0.5), abs=0.025)
    assert roi_exceedance_probability(-samples, mask) == pytest.approx(1 - _phi(0.5), abs=0.025)
    with pytest.raises(ValueError, match="mask shape"):
        roi_exceedance_probability(samples, mask[:8])


def test_ring_surrounds_the_mask_only():
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[4, 4] = True
    ring = surrounding_ring(mask, 1)
    assert int(ring.sum()) == 8 and not ring[4, 4] and not ring[2, 4]


def test_std_correlation_is_one_for_proportional_maps_and_minus_one_for_reversed(generator):
    a = torch.rand(3, 1, 8, 8, generator=generator)
    assert torch.allclose(std_correlation(a, 2 * a + 1), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(std_correlation(a, -a), -torch.ones(3, dtype=torch.float64))


def _write_reference(folder, items: int, size: int, generator) -> None:
    folder.mkdir(parents=True)
    for i in range(items):
        samples = torch.randn(50, size, size, generator=generator).numpy()
        np.savez(folder / f"item_{i:04d}.npz", mean=samples.mean(0), std=samples.std(0), samples=samples)


def test_reference_is_read_and_checked(tmp_path, generator):
    assert read_reference(tmp_path / "absent", 2, 8) is None
    _write_reference(tmp_path / "ref", 2, 8, generator)
    ref = read_reference(tmp_path / "ref", 2, 8)
    assert ref.mean.shape == (2, 1, 8, 8) and ref.samples.shape == (2, 50, 1, 8, 8)
    with pytest.raises(DataError, match="2 reference item file"):
        read_reference(tmp_path / "ref", 3, 8)
    np.savez(tmp_path / "ref" / "item_0001.npz", mean=np.zeros((8, 8)), std=np.zeros((8, 8)))
    with pytest.raises(DataError, match=r"item_0001.npz: missing key\(s\) \['samples'\]"):
        read_reference(tmp_path / "ref", 2, 8)


def test_calibration_summary_with_and_without_reference(tmp_path, generator):
    truth = torch.randn(2, 1, 8, 8, generator=generator)
    samples = torch.randn(2, 40, 1, 8, 8, generator=generator)
    alone = calibration(samples, truth, 0.01, None, tmp_path / "ref")
    assert alone["mcmc"].startswith("skipped: no MCMC reference") and not alone["collapsed"]
    assert 0.7 < alone["coverage_90"] < 1 and alone["mean_pixel_std"] == pytest.approx(1, abs=0.15)
    _write_reference(tmp_path / "ref", 2, 8, generator)
    ref = read_reference(tmp_path / "ref", 2, 8)
    both = calibration(samples, truth, 0.01, ref, tmp_path / "ref")
    assert set(both["mcmc"]) == {"coverage_90", "mean_pixel_std", "std_correlation"}
    assert 0.7 < both["mcmc"]["coverage_90"] < 1
    save_gallery(tmp_path / "gallery.png", truth, samples)
    assert (tmp_path / "gallery.png").stat().st_size > 1000
