"""Calibration and region-of-interest functions against cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recongap.datasets import DataError
from recongap.posterior.store import ItemReference, item_path, read_reference, save_item
from recongap.uncertainty import (
    calibration,
    credible_coverage,
    disk_mask,
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
    """Items in the reference stage's own format (recongap.posterior.store)."""
    for i in range(items):
        samples = torch.randn(50, 1, size, size, generator=generator).numpy()
        item = ItemReference(mean=samples.mean(0)[None], std=samples.std(0)[None], samples=samples, diagnostics={})
        save_item(item_path(folder, i), item, {"item": i})


def test_reference_is_read_and_checked(tmp_path, generator):
    assert read_reference(tmp_path / "absent", 8) is None
    _write_reference(tmp_path / "ref", 2, 8, generator)
    ref = read_reference(tmp_path / "ref", 8)
    assert ref.indices == [0, 1]
    assert ref.mean.shape == (2, 1, 8, 8) and ref.samples.shape == (2, 50, 1, 8, 8)
    lean = read_reference(tmp_path / "ref", 8, samples=False)  # what the gap reads: means and stds
    assert torch.equal(lean.mean, ref.mean) and torch.equal(lean.std, ref.std) and lean.samples.numel() == 0
    with pytest.raises(DataError, match=r"expected images of \(4, 4\)"):
        read_reference(tmp_path / "ref", 4)
    (tmp_path / "ref" / "item_00001.npz").write_bytes(b"truncated")
    with pytest.raises(DataError, match="item_00001.npz: not a readable reference item file"):
        read_reference(tmp_path / "ref", 8)


def test_calibration_summary_with_and_without_reference(tmp_path, generator):
    truth = torch.randn(2, 1, 8, 8, generator=generator)
    samples = torch.randn(2, 40, 1, 8, 8, generator=generator)
    alone = calibration(samples, truth, 0.01, None, tmp_path / "ref")
    assert alone["mcmc"].startswith("skipped: no MCMC reference") and not alone["collapsed"]
    assert 0.7 < alone["coverage_90"] < 1 and alone["mean_pixel_std"] == pytest.approx(1, abs=0.15)
    _write_reference(tmp_path / "ref", 1, 8, generator)  # the reference may cover only the first items
    ref = read_reference(tmp_path / "ref", 8)
    both = calibration(samples, truth, 0.01, ref, tmp_path / "ref")
    assert set(both["mcmc"]) == {"items", "coverage_90", "sampler_coverage_90_same_items", "mean_pixel_std", "std_correlation"}
    assert both["mcmc"]["items"] == 1
    assert 0.7 < both["mcmc"]["coverage_90"] < 1
    save_gallery(tmp_path / "gallery.png", truth, samples)
    assert (tmp_path / "gallery.png").stat().st_size > 1000


def test_roi_command_answers_for_the_sampler_and_the_mcmc_reference(tmp_path, generator, capsys, monkeypatch):
    import json
    import sys

    from recongap.config.schema import CWGANParams
    from recongap.datasets.io import Split, write_split
    from recongap.operators import RayTransform
    from recongap.reconstructors.cwgan import CWGANModule
    from recongap.uncertainty import main

    size, op = 8, RayTransform(8, angles=5)
    tiny = CWGANParams(channels=2, depth=1, z_channels=1, critic_width=2).model_dump()
    module = CWGANModule("cwgan", op.geometry.resolved(), tiny)
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, tmp_path / "best.ckpt")
    x = torch.rand(3, 1, size, size, generator=generator)
    attrs = {"config": {"geometry": op.geometry.resolved()}}
    write_split(tmp_path / "test.h5", Split(images=x.numpy(), measurements=op(x).numpy(), params=np.zeros((3, 1)), attrs=attrs))
    _write_reference(tmp_path / "reference", 2, size, generator)  # items 0 and 1; pure noise: P(inside > ring) near 1/2

    def run(item: int) -> dict:
        args = [str(tmp_path / "best.ckpt"), str(tmp_path / "test.h5"), "--item", str(item), "--centre", "4", "4",
                "--radius", "2", "--ring", "1", "--samples", "20", "--reference", str(tmp_path / "reference")]
        monkeypatch.setattr(sys, "argv", ["recongap.uncertainty", *args])
        main()
        return json.loads(capsys.readouterr().out)

    answer = run(1)
    assert answer["samples"] == 20 and 0 <= answer["probability_inside_exceeds_ring"] <= 1
    assert answer["mcmc"]["samples"] == 50 and 0.2 < answer["mcmc"]["probability_inside_exceeds_ring"] < 0.8
    with pytest.raises(SystemExit, match="no MCMC samples of item 2"):
        run(2)


def test_exact_comparison_rates_exact_draws_ideal_and_an_overconfident_sampler_not(generator):
    """Against the exact posterior of a Gaussian mixture (8x8): the posterior's
    own draws have std ratio 1, cover 90% of other exact draws, sit at the
    sliced-Wasserstein floor and answer the ROI test right; draws shrunk
    towards the mean (a sampler too sure of itself) fail each of these."""
    from recongap.operators import RayTransform
    from recongap.posterior import GaussianMixturePosterior
    from recongap.priors import GaussianFieldPrior, GaussianMixturePrior
    from recongap.uncertainty import exact_comparison

    prior = GaussianMixturePrior(
        [GaussianFieldPrior(8, mean=0.6, std=0.15, length_scale=0.5, nugget=1e-3), GaussianFieldPrior(8, mean=0.3, std=0.3, length_scale=0.1, nugget=1e-3)],
        [0.5, 0.5],
    )
    op, noise = RayTransform(8, angles=4), 0.3
    exact = GaussianMixturePosterior(prior, op, noise)
    x = prior.render(prior.sample(6, generator), 8)
    y = op(x) + noise * torch.randn(6, 1, *op.range_shape, generator=generator, dtype=torch.float64)
    draws = exact.sample(y, 64, generator)
    mask = disk_mask(8, (4, 4), 1.5)
    good = exact_comparison(draws, y, exact, mask, seed=1)
    ideal = good["coverage_90_of_exact_draws_by_exact_draws"]
    assert 0.8 < ideal < 0.9  # K = 64 empirical quantiles make intervals a little narrower than the law's
    assert abs(good["std_ratio"] - 1) < 0.1 and abs(good["coverage_90_of_exact_draws"] - ideal) < 0.02
    assert good["sliced_wasserstein"] < 1.25 * good["sliced_wasserstein_exact_vs_exact"]
    assert good["roi_probability_abs_error"] < 0.1
    mean = draws.mean(1, keepdim=True)
    shrunk = exact_comparison(mean + 0.3 * (draws - mean), y, exact, mask, seed=1)
    assert shrunk["std_ratio"] < 0.4 and shrunk["coverage_90_of_exact_draws"] < 0.6 * shrunk["coverage_90_of_exact_draws_by_exact_draws"]
    assert shrunk["sliced_wasserstein"] > 1.5 * shrunk["sliced_wasserstein_exact_vs_exact"]
