"""The block sampler (one ellipse at a time, residual kept up to date): its
bookkeeping against the full forward model, and its stationary law where
the exact answer is known (the prior when the data say nothing; a
two-parameter posterior by quadrature)."""

from __future__ import annotations

import math

import arviz
import numpy as np
import pytest
import torch

from recongap.operators import RayTransform
from recongap.operators.backends import system_matrix
from recongap.posterior import ReferenceSettings, sample_reference
from recongap.posterior.ellipse_blocks import EllipseBlockSampler, run_blocks, slot_pixels
from recongap.priors import EllipsePrior, GaussianFieldPrior


def _problem(prior: EllipsePrior, size: int, angles: int, items: int, noise: float, seed: int = 0):
    op = RayTransform(size, angles=angles)
    gen = torch.Generator().manual_seed(seed)
    params = prior.sample(items, gen)
    clean = op(prior.render(params, size)).flatten(1)
    y = clean + noise * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    return op, params, y


def test_slot_pixels_add_up_to_the_render():
    prior = EllipsePrior(mean_count=20, slots=30)
    params = prior.sample(3, torch.Generator().manual_seed(4))
    image = torch.zeros(3, 32 * 32, dtype=torch.float64)
    for k in range(prior.slots):
        flat, values = slot_pixels(params[:, k], 32, prior.supersample)
        image.scatter_add_(1, flat, values)
    torch.testing.assert_close(image, prior.render(params, 32).flatten(1), rtol=0, atol=1e-12)


def test_the_kept_residual_equals_the_full_forward_model_after_every_kind_of_move():
    torch.set_num_threads(1)
    prior = EllipsePrior(mean_count=15, slots=30)
    op, params, y = _problem(prior, 32, 12, 3, 0.01)
    sampler = EllipseBlockSampler(prior, system_matrix(op.geometry), 32, 0.01, y)
    gen = torch.Generator().manual_seed(1)
    state, kernel = sampler.state(params), sampler.kernel(params)
    accepted, joint = 0.0, 0.0
    for _ in range(5):
        accepted += float(sampler.sweep(state, kernel, gen).nanmean())
        for _ in range(5):
            accepted += float(sampler.birth_death(state, gen).mean())
        joint += float(sampler.intensity_move(state, gen).nansum())
    assert accepted > 0 and joint > 0  # something moved, the joint intensity move included
    assert not torch.equal(state.params, params)
    full = op(prior.render(state.params, 32)).flatten(1) - y
    torch.testing.assert_close(state.residual, full, rtol=0, atol=1e-10)
    fresh = sampler.state(state.params)
    torch.testing.assert_close(sampler.log_posterior(state), sampler.log_posterior(fresh), rtol=1e-12, atol=1e-8)


def test_with_uninformative_data_the_chains_sample_the_prior():
    """With noise so large that the likelihood is flat, the block and
    birth/death moves must leave the prior invariant: the ellipse count
    follows Poisson(mean_count) (capped) and each field its prior mean."""
    torch.set_num_threads(1)
    prior = EllipsePrior(mean_count=3.0, slots=8)
    op, params, y = _problem(prior, 16, 4, 1, 1e6)
    chains, draws = 8, 1500
    sampler = EllipseBlockSampler(prior, system_matrix(op.geometry), 16, 1e6, y.repeat(chains, 1))
    count = np.zeros((chains, draws))
    sums = np.zeros((chains, draws, 4))  # over used slots: |v|, a, centre x, rotation (an unused slot holds zeros)

    def on_draw(i: int, q: torch.Tensor, u: torch.Tensor) -> None:
        p = q.reshape(chains, prior.slots, 6)
        count[:, i] = (p[..., 0] != 0).sum(1).numpy()
        sums[:, i] = torch.stack([p[..., 0].abs(), p[..., 1], p[..., 3], p[..., 5]], -1).sum(1).numpy()

    start = prior.sample(chains, torch.Generator().manual_seed(2))  # a prior draw is an exact draw here too
    run_blocks(sampler, start, warmup=50, draws=draws, generator=torch.Generator().manual_seed(3), restart=True,
               birth_death_moves=3, on_draw=on_draw)
    expected_count = prior.mean_count  # the cap at 8 slots moves it by < 0.02
    z = (count.mean() - expected_count) / float(arviz.mcse(count))
    assert abs(z) < 4, (count.mean(), expected_count, z)
    var_z = count.var() / prior.mean_count
    assert 0.8 < var_z < 1.2, var_z  # a Poisson count: variance = mean
    # a sum over used slots has mean E[count] * (one slot's mean): count and slots are independent.
    # |V| = |W| E: E|W| = 1/4, E[E] = intensity_scale
    slot_means = {"|v|": prior.intensity_scale / 4, "a": prior.axis_scale, "x": 0.0, "rotation": math.pi}
    for j, (name, mean) in enumerate(slot_means.items()):
        z_sum = (sums[..., j].mean() - expected_count * mean) / float(arviz.mcse(sums[..., j]))
        assert abs(z_sum) < 4, (name, sums[..., j].mean(), expected_count * mean, z_sum)


@pytest.mark.parametrize("intensity_by", ["sweep", "intensity_move"])
def test_one_ellipse_block_moves_match_quadrature(intensity_by: str):
    """One ellipse at 32x32 with centre x and intensity free (the kernel's
    covariance is zero on the other fields, so they stay at the truth): the
    block sampler's mean must agree with dense quadrature within 3 MCSE.
    With intensity_by="intensity_move" the sweep moves x only and v moves
    by the joint intensity move alone (its slot counted as determined)."""
    torch.set_num_threads(1)
    size, noise = 32, 0.1
    prior = EllipsePrior(mean_count=1.0, slots=1)
    op = RayTransform(size, angles=6)
    truth = torch.tensor([[[0.5, 0.35, 0.2, 0.1, -0.05, 0.4]]], dtype=torch.float64)
    y = op(prior.render(truth, size)).flatten(1) + noise * torch.randn(1, op.range_shape[0] * op.range_shape[1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def full(grid: torch.Tensor) -> torch.Tensor:
        params = truth.expand(grid.shape[0], 1, 6).clone()
        params[:, 0, 3], params[:, 0, 0] = grid[:, 0], grid[:, 1]
        return params

    cx, cv = torch.linspace(-0.12, 0.26, 91, dtype=torch.float64), torch.linspace(0.24, 0.72, 81, dtype=torch.float64)
    grid = torch.cartesian_prod(cx, cv)
    params = full(grid)
    residual = op(prior.render(params, size)).flatten(1) - y
    log_p = -0.5 * (residual**2).sum(1) / noise**2 + prior.slot_log_density(params)[:, 0]
    log_p = (log_p - log_p.max()).reshape(91, 81)
    assert max(log_p[[0, -1]].max(), log_p[:, [0, -1]].max()) < -20
    weights = log_p.exp().flatten() / log_p.exp().sum()
    exact = [float(weights @ grid[:, 0]), float(weights @ grid[:, 1])]

    chains, draws = 4, 3000
    sampler = EllipseBlockSampler(prior, system_matrix(op.geometry), size, noise, y.repeat(chains, 1))
    start = truth.repeat(chains, 1, 1)
    kernel = sampler.kernel(start)
    free = torch.tensor([1.0 if intensity_by == "sweep" else 0.0, 0, 0, 1.0, 0, 0], dtype=torch.float64)
    sampler.determined_fraction = math.inf
    kernel.chol = kernel.chol * free[:, None] * free[None, :]  # fields 1, 2, 4, 5 never move
    gen = torch.Generator().manual_seed(4)
    pilot = sampler.state(start)
    for i in range(200):
        sampler.sweep(pilot, kernel, gen, adapt_weight=1 / math.sqrt(i + 1))
    state = sampler.state(start)
    traces = np.zeros((chains, draws, 2))
    for i in range(draws):
        sampler.sweep(state, kernel, gen)
        if intensity_by == "intensity_move":
            sampler.intensity_move(state, gen)
        traces[:, i] = state.params[:, 0, [3, 0]].numpy()
    torch.testing.assert_close(state.params[:, 0, [1, 2, 4, 5]], start[:, 0, [1, 2, 4, 5]], rtol=0, atol=0)
    for j, name in enumerate(("x", "v")):
        trace = traces[..., j]
        assert float(arviz.rhat(trace)) < 1.02, name
        z = abs(trace.mean() - exact[j]) / float(arviz.mcse(trace))
        assert z < 3, (name, trace.mean(), exact[j], z)


def test_sample_reference_with_blocks_runs_and_records_its_sampler():
    torch.set_num_threads(1)
    prior = EllipsePrior(mean_count=5, slots=12)
    op = RayTransform(16, angles=8)
    params = prior.sample(2, torch.Generator().manual_seed(5))
    x = prior.render(params, 16)
    y = op(x) + 0.02 * torch.randn(2, 1, *op.range_shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    settings = ReferenceSettings(chains=2, warmup=5, draws=20, thin=5, start="truth", sampler="auto", probe_chains=1)
    results = sample_reference(prior, op, 0.02, y, settings, truth=x, truth_params=params)
    for r in results:
        assert r.diagnostics["sampler"] == "blocks"
        assert set(r.diagnostics["acceptance"]) == {"blocks", "birth_death"}
        assert r.diagnostics["summaries"]["mse_to_truth"]["mean"] > 0  # the chains left the truth
        assert "multimodal" in r.diagnostics["probe"]


def test_auto_keeps_hmc_for_normalised_ellipses():
    """DIVal's foreground normalisation makes the image no sum over slots:
    "auto" must pick HMC there, and "blocks" must refuse it up front."""
    torch.set_num_threads(1)
    prior = EllipsePrior(mean_count=3, slots=6, normalize_foreground=True)
    op = RayTransform(16, angles=4)
    params = prior.sample(1, torch.Generator().manual_seed(5))
    x = prior.render(params, 16)
    y = op(x) + 0.05 * torch.randn(1, 1, *op.range_shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    settings = ReferenceSettings(chains=2, warmup=2, draws=4, thin=2, leapfrog_steps=1, start="truth", sampler="auto")
    (result,) = sample_reference(prior, op, 0.05, y, settings, truth=x, truth_params=params)
    assert result.diagnostics["sampler"] == "hmc"
    with pytest.raises(ValueError, match="normalize_foreground"):
        sample_reference(prior, op, 0.05, y, ReferenceSettings(start="truth", sampler="blocks"), truth=x, truth_params=params)


def test_blocks_refuse_what_they_cannot_sample():
    with pytest.raises(ValueError, match="sampler='blocks' with start='prior'"):
        ReferenceSettings(sampler="blocks", start="prior")
    ellipses = EllipsePrior(mean_count=3, slots=4)
    ray = RayTransform(8, angles=4)
    blocks = EllipseBlockSampler(ellipses, system_matrix(ray.geometry), 8, 0.1, torch.zeros(2, ray.range_shape[0] * ray.range_shape[1], dtype=torch.float64))
    start = ellipses.sample(2, torch.Generator().manual_seed(0))
    start[1, 0] = torch.tensor([0.5, -0.1, 0.2, 0.0, 0.0, 1.0], dtype=torch.float64)  # a negative axis: zero prior density
    with pytest.raises(ValueError, match=r"chains \[1\] start outside the prior's support"):
        blocks.state(start)
    prior = GaussianFieldPrior(size=8)
    op = RayTransform(8, angles=4)
    y = torch.zeros(1, 1, *op.range_shape, dtype=torch.float64)
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    theta = torch.zeros(1, *prior.param_shape, dtype=torch.float64)
    with pytest.raises(ValueError, match="needs an EllipsePrior"):
        sample_reference(prior, op, 0.1, y, ReferenceSettings(start="truth", sampler="blocks"), truth=x, truth_params=theta)
