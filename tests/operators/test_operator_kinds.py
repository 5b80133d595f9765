"""Every forward operator honours the LinearOperator contract: exact adjoint,
autograd through the adjoint, batching, both precisions, its norm, and a
first reconstruction that inverts what was measured."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recongap.operators import LinearOperator, RayTransform
from recongap.operators.blur import Blur, gaussian_kernel, motion_kernel
from recongap.operators.integration import Integration
from recongap.operators.mri import UndersampledFourier, cartesian_mask, radial_mask
from recongap.operators.single_pixel import SinglePixel, low_frequency_patterns, walsh_matrix

OPERATORS = {
    "ct": lambda: RayTransform(16, angles=7),
    "single_pixel": lambda: SinglePixel(16, 60),
    "mri_cartesian": lambda: UndersampledFourier.cartesian(16, 4),
    "mri_radial": lambda: UndersampledFourier.radial(16, 6),
    "blur_gaussian": lambda: Blur.gaussian(16, 1.5),
    "blur_motion": lambda: Blur.motion(16, 5, angle=0.4),
    "integration": lambda: Integration(32),
}
CUDA = torch.cuda.is_available()


@pytest.fixture(params=list(OPERATORS))
def op(request) -> LinearOperator:
    return OPERATORS[request.param]()


def _pair(op: LinearOperator, dtype=torch.float64, batch: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, *op.domain_shape, generator=g, dtype=dtype)
    y = torch.randn(batch, 1, *op.range_shape, generator=g, dtype=dtype)
    return x, y


def test_adjoint_is_exact(op):
    x, y = _pair(op)
    lhs = (op(x) * y).flatten(1).sum(1)
    rhs = (x * op.adjoint(y)).flatten(1).sum(1)
    assert torch.allclose(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_gradient_is_the_adjoint_to_second_order(op):
    x, y = _pair(op, batch=1)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad((op(x) * y).sum(), x, create_graph=True)
    assert torch.allclose(grad, op.adjoint(y), atol=1e-12)
    small = torch.randn(1, 1, *op.domain_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: op.adjoint(op(t)), (small,))


def test_batched_in_both_precisions(op):
    x, _ = _pair(op, batch=3)
    whole = op(x)
    assert torch.allclose(whole[1:2], op(x[1:2]), atol=1e-12)
    single = op(x.float())
    assert single.dtype == torch.float32 and single.shape == (3, 1, *op.range_shape)
    assert torch.allclose(single.double(), whole, atol=1e-4 * float(whole.abs().max()))


def test_norm_is_the_largest_singular_value(op):
    n = int(np.prod(op.domain_shape))
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, *op.domain_shape)
    matrix = op(basis).reshape(n, -1).T
    assert op.norm() == pytest.approx(float(torch.linalg.matrix_norm(matrix, ord=2)), rel=1e-3)


def test_bad_shapes_are_refused_naming_the_expected_shape(op):
    expected = ", ".join(str(s) for s in op.domain_shape)
    with pytest.raises(ValueError, match=rf"images of shape \(B, 1, {expected}\)"):
        op(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="data of shape"):
        op.adjoint(torch.zeros(1, 1, 3, 5))


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_on_gpu_equals_cpu(op):
    x, y = _pair(op)
    assert torch.allclose(op(x.cuda()).cpu(), op(x), atol=1e-10)
    assert torch.allclose(op.adjoint(y.cuda()).cpu(), op.adjoint(y), atol=1e-10)


# --- single-pixel imaging ---------------------------------------------------------
def test_walsh_rows_are_orthonormal_and_in_sequency_order():
    w = walsh_matrix(16)
    assert np.allclose(w @ w.T, np.eye(16))
    changes = (np.diff(np.sign(w), axis=1) != 0).sum(axis=1)
    assert changes.tolist() == list(range(16))


def test_single_pixel_keeps_low_frequencies_first_and_inverts_what_it_measured():
    idx = low_frequency_patterns(64, 333)
    assert idx[0].tolist() == [0, 0] and len(np.unique(idx, axis=0)) == 333
    assert (idx.sum(1)[:-1] <= idx.sum(1)[1:]).all()  # u + v never decreases
    op = SinglePixel(64, 333)
    x = torch.rand(2, 1, 64, 64, dtype=torch.float64)
    y = op(x)
    assert torch.allclose(op(op.first_reconstruction(y)), y, atol=1e-10)  # A A^+ = I on the data
    assert float(y[0, 0, 0, 0]) == pytest.approx(float(x[0].sum()) / 64)  # the constant pattern: the mean times N
    full = SinglePixel(8, 64)
    z = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    assert torch.allclose(full.first_reconstruction(full(z)), z, atol=1e-12)  # every pattern: exact
    with pytest.raises(ValueError, match="power of 2"):
        SinglePixel(48, 10)
    with pytest.raises(ValueError, match=r"patterns must be in \[1, 64\]"):
        SinglePixel(8, 65)


# --- MRI ------------------------------------------------------------------------------
@pytest.mark.parametrize("acceleration", [4, 8])
def test_cartesian_mask_samples_one_line_in_acceleration_with_the_centre(acceleration):
    mask = cartesian_mask(64, acceleration, seed=1)
    rows = mask.any(axis=1)
    assert rows.sum() == 64 // acceleration and mask[rows].all()  # whole lines
    assert rows[32 - 2 : 32 + 3].all()  # round(0.08 * 64) = 5 central lines
    assert (cartesian_mask(64, acceleration, seed=1) == mask).all()
    assert (cartesian_mask(64, acceleration, seed=2) != mask).any()


def test_mri_zero_filled_inverse_is_exact_on_a_full_mask_and_the_adjoint_otherwise():
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    full = UndersampledFourier(np.ones((16, 16), dtype=bool))
    assert torch.allclose(full.first_reconstruction(full(x)), x, atol=1e-12)
    op = UndersampledFourier.radial(16, 6)
    assert op.mask[8, 8] and 0 < op.samples < 256  # spokes cross at the centre
    y = op(x)
    # zero-filled inverse FFT computed independently, with numpy on the centred mask
    k = np.fft.fftshift(np.fft.fft2(x.numpy()[:, 0], norm="ortho"), axes=(-2, -1)) * op.mask
    zero_filled = np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho").real
    assert np.allclose(op.first_reconstruction(y)[:, 0].numpy(), zero_filled, atol=1e-12)
    # data in FFT order, the DC coefficient first: real, the image sum over N
    assert float(y[0, 0, 0, 0]) == pytest.approx(float(x[0].sum()) / 16) and abs(float(y[0, 0, 1, 0])) < 1e-12
    with pytest.raises(ValueError, match="square 2-D boolean"):
        UndersampledFourier(np.zeros((4, 5), dtype=bool))
    assert radial_mask(16, 1)[8].all()  # the horizontal spoke


# --- deblurring -----------------------------------------------------------------------
def test_blur_kernels_keep_the_mean_and_tikhonov_undoes_most_of_the_blur():
    assert gaussian_kernel(16, 2.0).sum() == pytest.approx(1) and motion_kernel(16, 5, 0.0)[0].sum() == pytest.approx(1)
    offset = np.where(np.arange(16) < 8, np.arange(16), np.arange(16) - 16)  # 0, 1, ..., -1: wrap-around
    for length in (1, 2, 4, 5, 6):
        for angle in (0.0, np.pi / 4, 1.0):
            k = motion_kernel(16, length, angle)
            along = np.cos(angle) * offset[None, :] + np.sin(angle) * offset[:, None]
            across = -np.sin(angle) * offset[None, :] + np.cos(angle) * offset[:, None]
            # a uniform segment of this length: variance length^2 / 12 along it (the pixel grid moves it by < 1/4), ~none across
            assert (k * along**2).sum() == pytest.approx(length**2 / 12, abs=0.25), (length, angle)
            assert (k * across**2).sum() < 0.2, (length, angle)
    assert np.count_nonzero(motion_kernel(16, 5, 0.0)) == 5 and np.allclose(motion_kernel(16, 5, np.pi / 4), motion_kernel(16, 5, np.pi / 4).T)
    op = Blur.gaussian(32, 1.0, alpha=1e-6)
    flat = torch.full((1, 1, 32, 32), 0.7, dtype=torch.float64)
    assert torch.allclose(op(flat), flat) and op.norm() == pytest.approx(1.0)
    x = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    x[..., 8:24, 10:20] = 1.0
    blurred = op(x)
    restored = op.first_reconstruction(blurred)
    assert float((restored - x).norm()) < 0.2 * float((blurred - x).norm())
    with pytest.raises(ValueError, match="alpha"):
        Blur.gaussian(8, 1.0, alpha=0.0)


# --- 1-D integration --------------------------------------------------------------------
def test_integration_is_the_midpoint_rule_and_tikhonov_differentiates_back():
    n = 64
    op = Integration(n, alpha=1e-7)
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    assert torch.allclose(op(torch.ones(1, 1, n, dtype=torch.float64))[0, 0], t)  # exact for a constant
    assert (op(t.view(1, 1, n))[0, 0] - t**2 / 2).abs().max() <= 1.0 / n**2
    f = torch.sin(2 * torch.pi * t).view(1, 1, n)
    back = op.first_reconstruction(op(f))
    assert float((back - f).norm() / f.norm()) < 0.05
    assert torch.allclose(op.matrix(), torch.tril(op.matrix()))  # causal: (A f)(t) sees f before t only


def test_a_module_holding_an_operator_moves_and_casts(op):
    """nn.Module.to/cpu/double walk the submodules: the operator must not shadow their hooks."""
    holder = torch.nn.ModuleList([op]).to("cpu").double().float()
    x, _ = _pair(op, batch=1)
    assert torch.allclose(holder[0](x), op(x))
