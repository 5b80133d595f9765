"""EllipsePrior: sampling law, log_prob consistency, rendering."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special as sc
import scipy.stats as st
import torch

from recongap.priors import EllipsePrior, render_ellipses, shepp_logan
from recongap.priors.special import log_exp1


def test_log_exp1_matches_scipy():
    """The torch series and continued fraction (the path with a gradient, and
    on a GPU) against scipy; the CPU fast path (scipy itself) against them,
    0-d input and z past scipy's underflow included."""
    z = torch.tensor(np.concatenate([np.logspace(-10, 0, 40), np.linspace(1.01, 80, 80)]), dtype=torch.float64)
    torch_path = log_exp1(z.clone().requires_grad_()).detach()
    assert torch.allclose(torch_path, torch.from_numpy(np.log(sc.exp1(z.numpy()))), rtol=1e-10, atol=1e-12)
    assert torch.allclose(log_exp1(z), torch_path, rtol=1e-12, atol=1e-12)
    assert torch.allclose(log_exp1(torch.tensor(0.3, dtype=torch.float64)), torch.tensor(math.log(sc.exp1(0.3)), dtype=torch.float64))
    far = torch.tensor([650.0, 800.0], dtype=torch.float64)
    assert torch.isfinite(log_exp1(far)).all() and float(log_exp1(far)[1]) < -800


def test_sample_shapes_and_unused_slots(generator):
    prior = EllipsePrior(mean_count=5, slots=12)
    params = prior.sample(200, generator)
    assert params.shape == (200, 12, 6) and params.dtype == torch.float64
    active = params[..., 0] != 0
    assert (params[~active] == 0).all()
    # every slot is used equally often (uniform random subsets)
    per_slot = active.double().mean(0)
    assert float(per_slot.min()) > 0.25 and float(per_slot.max()) < 0.6


def test_count_is_poisson_capped_at_slots(generator):
    prior = EllipsePrior(mean_count=50, slots=100)
    counts = prior.sample_count(4000, generator).double()
    assert float(counts.mean()) == pytest.approx(50, abs=3 * math.sqrt(50 / 4000))
    capped = EllipsePrior(mean_count=50, slots=40).sample_count(2000, generator)
    assert int(capped.max()) == 40
    # the cap's log-probability is the Poisson tail mass
    tail = EllipsePrior(mean_count=50, slots=40).log_count_prob(torch.tensor([40]))
    assert float(tail.exp()) == pytest.approx(st.poisson(50).sf(39), rel=1e-6)


def _intensity_cdf(v: np.ndarray, s: float) -> np.ndarray:
    """CDF of (U - 1/2) * Exp(scale s), from integrating E1(2|t|/s)/s."""
    a = np.abs(v)
    half = (a * sc.exp1(2 * a / s) + s / 2 * (1 - np.exp(-2 * a / s))) / s
    return 0.5 + np.sign(v) * half


def test_intensity_law_matches_its_log_density(generator):
    prior = EllipsePrior(mean_count=50, slots=100)
    params = prior.sample(100, generator)
    v = params[..., 0][params[..., 0] != 0].numpy()
    assert st.kstest(v, lambda t: _intensity_cdf(t, 0.4)).pvalue > 0.01
    # and the density log_prob uses is that CDF's derivative
    grid = np.linspace(0.01, 1.0, 50)
    numeric = (_intensity_cdf(grid + 1e-6, 0.4) - _intensity_cdf(grid - 1e-6, 0.4)) / 2e-6
    density = torch.exp(log_exp1(torch.from_numpy(2 * grid / 0.4)) - math.log(0.4)).numpy()
    assert np.allclose(density, numeric, rtol=1e-4)


def test_log_prob_by_hand():
    prior = EllipsePrior(mean_count=3, slots=4, intensity_scale=0.4, axis_scale=0.2)
    params = torch.zeros(1, 4, 6, dtype=torch.float64)
    params[0, 2] = torch.tensor([0.1, 0.3, 0.2, 0.5, -0.5, 1.0], dtype=torch.float64)
    e1 = sc.exp1(2 * 0.1 / 0.4) / 0.4
    expected = (
        st.poisson(3).logpmf(1)
        - math.log(4)  # which one of 4 slots
        + math.log(e1)
        + st.expon(scale=0.2).logpdf(0.3)
        + st.expon(scale=0.2).logpdf(0.2)
        - math.log(4)
        - math.log(2 * math.pi)
    )
    assert float(prior.log_prob(params)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("column, value", [(1, -0.1), (3, 1.2), (5, 7.0)])
def test_log_prob_is_minus_inf_outside_the_support(column, value):
    prior = EllipsePrior(mean_count=3, slots=4)
    params = torch.zeros(1, 4, 6, dtype=torch.float64)
    params[0, 0] = torch.tensor([0.1, 0.3, 0.2, 0.5, -0.5, 1.0], dtype=torch.float64)
    params[0, 0, column] = value
    assert float(prior.log_prob(params)) == -math.inf


def test_log_prob_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(\.\.\., 4, 6\)"):
        EllipsePrior(slots=4).log_prob(torch.zeros(1, 5, 6))


def test_render_mass_of_one_ellipse():
    params = torch.tensor([[[0.7, 0.4, 0.25, 0.1, -0.2, 0.6]]], dtype=torch.float64)
    image = render_ellipses(params, 128)
    mass = float(image.sum()) * (2 / 128) ** 2
    assert mass == pytest.approx(0.7 * math.pi * 0.4 * 0.25, rel=1e-3)


def test_render_is_continuous_and_differentiable():
    params = torch.tensor([[[0.5, 0.3, 0.2, 0.1, 0.0, 0.3]]], dtype=torch.float64, requires_grad=True)
    image = render_ellipses(params, 32)
    shifted = render_ellipses(params.detach() + torch.tensor([0, 0, 0, 1e-4, 0, 0]), 32)
    assert float((shifted - image.detach()).abs().max()) > 0  # it does move
    assert float((shifted - image.detach()).abs().max()) < 1e-2  # moves by a fraction of a pixel's worth
    image.sum().backward()
    grad = params.grad[0, 0]
    assert torch.isfinite(grad).all()
    # the mass grows with the intensity and the axes
    assert grad[0] > 0 and grad[1] > 0 and grad[2] > 0


def test_render_gradient_is_autograds_through_the_same_forward():
    """The hand-written backward equals autograd's through the very forward
    code, for every parameter of every used slot (float64; rows with
    different counts and slots on and off, so the slot sorting is exercised);
    an unused slot gets no gradient; with or without gradients the image is
    the same to the bit."""
    from recongap.priors.ellipses import _render_forward

    params = EllipsePrior(mean_count=6, slots=10).sample(5, torch.Generator().manual_seed(0))
    params[..., 5] = params[..., 5] * 3 - 2  # rotations outside [0, 2 pi) too
    params.requires_grad_(True)
    weights = torch.randn(5, 1, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (ours,) = torch.autograd.grad((render_ellipses(params, 16, 3) * weights).sum(), params)
    (autograd,) = torch.autograd.grad((_render_forward(params, 16, 3) * weights).sum(), params)
    used = params.detach()[..., 0] != 0
    assert used.sum() > 10 and (~used).sum() > 5
    torch.testing.assert_close(ours[used], autograd[used], rtol=1e-10, atol=1e-10)
    assert float(autograd[used].abs().max()) > 1  # a comparison of real gradients, not of zeros
    assert torch.count_nonzero(ours[~used]) == 0
    assert torch.equal(render_ellipses(params, 16, 3).detach(), render_ellipses(params.detach(), 16, 3))


def test_windowed_render_adds_the_same_numbers_as_the_full_grid():
    """The gradient path renders each ellipse on a window only; the image must
    be the full-grid one to the bit, for the laptop prior, for thin, huge,
    border, off-image and negative-axis ellipses, float32 and float64, and at a
    finer supersampling; its gradient autograd's through the full grid."""
    from recongap.priors.ellipses import _render_forward

    gen = torch.Generator().manual_seed(5)
    laptop = EllipsePrior().sample(4, gen)
    odd = EllipsePrior(mean_count=6, slots=8).sample(6, gen)
    odd[0, :, 1] = 0.002  # needle-thin
    odd[1, :, 1:3] = 3.0  # larger than the image
    odd[2, :, 3:5] = 1.0  # centred on the border
    odd[4, :, 3] = 1.5  # wholly off the image
    odd[3, :, 1] = -0.003  # a thin negative axis (off the support, as mid-trajectory): the ellipse of |a|
    # one row at a time too: in a batch a slot's window is the widest over the rows, which could hide a narrow one
    for params, size, ss in ((laptop, 64, 2), *((row, 24, 2) for row in odd.split(1)), (odd, 16, 3)):
        for dtype in (torch.float64, torch.float32):
            p = params.to(dtype)
            assert torch.equal(render_ellipses(p, size, ss), _render_forward(p, size, ss)), (size, ss, dtype)
            assert torch.equal(render_ellipses(p.clone().requires_grad_(True), size, ss).detach(), _render_forward(p, size, ss))
        # and the windowed backward against autograd's through the full grid, on the same odd cases
        p = params.clone().requires_grad_(True)
        weights = torch.randn(p.shape[0], 1, size, size, generator=gen, dtype=torch.float64)
        (ours,) = torch.autograd.grad((render_ellipses(p, size, ss) * weights).sum(), p)
        (autograd,) = torch.autograd.grad((_render_forward(p, size, ss) * weights).sum(), p)
        used = params[..., 0] != 0
        torch.testing.assert_close(ours[used], autograd[used], rtol=1e-8, atol=1e-8)


def test_shepp_logan():
    x = shepp_logan(64)
    assert x.shape == (1, 1, 64, 64) and x.dtype == torch.float32
    assert float(x.min()) >= -1e-6 and float(x.max()) == pytest.approx(1.0, abs=1e-3)
    # the skull (value 1) surrounds the brain (0.2): the middle row crosses it
    assert float(x[0, 0, 32, 9:13].max()) > 0.6  # a one-pixel skull, anti-aliased
    assert float(x[0, 0, 32, 32]) < 0.5  # inside it, the brain


def test_centre_range_narrows_the_centres(generator):
    prior = EllipsePrior(mean_count=20, slots=40, centre_range=0.5)
    params = prior.sample(50, generator)
    centres = params[..., 3:5][params[..., 0] != 0]
    assert float(centres.abs().max()) <= 0.5 and float(centres.abs().max()) > 0.45
    inside = params.clone()
    assert torch.isfinite(prior.log_prob(inside)).all()
    inside[0, (params[0, :, 0] != 0).nonzero()[0, 0], 3] = 0.7
    assert float(prior.log_prob(inside)[0]) == -math.inf


def test_uniform_intensity_law_and_its_density(generator):
    prior = EllipsePrior(mean_count=40, slots=70, intensity_law="uniform", intensity_low=-0.4, intensity_high=1.0)
    params = prior.sample(100, generator)
    v = params[..., 0][params[..., 0] != 0]
    assert float(v.min()) >= -0.4 and float(v.max()) <= 1.0
    assert st.kstest(v.numpy(), st.uniform(-0.4, 1.4).cdf).pvalue > 0.01
    one = torch.zeros(1, 70, 6, dtype=torch.float64)
    one[0, 0] = torch.tensor([0.5, 0.3, 0.2, 0.1, 0.1, 1.0], dtype=torch.float64)
    slot = float(prior.slot_log_density(one)[0, 0])
    assert slot == pytest.approx(-math.log(1.4) + 2 * math.log(5) - 2.5 - math.log(4) - math.log(2 * math.pi))


def test_normalized_foreground_spans_zero_to_one_with_zero_background(generator):
    prior = EllipsePrior(mean_count=10, slots=20, intensity_law="uniform", centre_range=0.5, normalize_foreground=True)
    images = prior.render(prior.sample(8, generator), 32)
    for image in images:
        assert float(image.min()) == pytest.approx(0.0, abs=1e-6) and float(image.max()) == pytest.approx(1.0, abs=1e-6)
    assert float(images[:, :, 0, 0].abs().max()) < 1e-6  # corners stay background
