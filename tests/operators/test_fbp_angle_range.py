"""FBP weights each angle by its share of the scanned range, and refuses ranges it cannot weight."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from recongap.config.schema import ForwardConfig
from recongap.operators import RayTransform
from recongap.operators.fbp import angle_weight, backprojection_matrix
from recongap.operators.geometry import Geometry
from recongap.priors import shepp_logan


@pytest.mark.parametrize("kind", ["parallel", "fan"])
@pytest.mark.parametrize("angles", [1, 7, 30, 60, 360])
def test_default_full_scan_weight_is_the_old_pi_over_angles_bit_for_bit(kind, angles):
    """Every committed pipeline scans the default range: its outputs must not move."""
    assert angle_weight(Geometry(size=8, angles=angles, kind=kind)) == math.pi / angles


def test_limited_angle_scan_is_the_matching_block_of_the_full_scan():
    """[0, pi/2) with n angles is the first half of [0, pi) with 2n angles, weight for weight."""
    n, size = 20, 32
    half = RayTransform(size, angles=n, angle_range=math.pi / 2)
    full = RayTransform(size, angles=2 * n)
    assert angle_weight(half.geometry) == pytest.approx(math.pi / (2 * n), rel=1e-15)
    nd = full.geometry.resolved_detectors
    a_half = backprojection_matrix(half.geometry)
    a_full = backprojection_matrix(full.geometry)[:, : n * nd]
    assert abs(a_half - a_full).max() < 1e-12

    x = shepp_logan(size).double()
    y_full = full(x)
    y_first = y_full.clone()
    y_first[..., n:, :] = 0  # only the first half of the angles measured
    limited = half.fbp(y_full[..., :n, :], filter="ram-lak")
    assert torch.allclose(limited, full.fbp(y_first, filter="ram-lak"), atol=1e-10)


def test_parallel_full_turn_matches_half_turn():
    """A 2 pi parallel scan sees each line twice: same reconstruction as the pi scan."""
    size = 32
    x = shepp_logan(size).double()
    half = RayTransform(size, angles=30)
    turn = RayTransform(size, angles=60, angle_range=2 * math.pi)
    a, b = half.fbp(half(x), filter="ram-lak"), turn.fbp(turn(x), filter="ram-lak")
    assert float((a - b).norm() / a.norm()) < 0.02


@pytest.mark.parametrize(
    "kind, span",
    [("parallel", 1.5 * math.pi), ("fan", math.pi + 0.8), ("fan", math.pi / 2)],
)
def test_ranges_needing_redundancy_weights_are_refused_by_fbp_and_by_the_config(kind, span):
    op = RayTransform(16, angles=12, geometry=kind, angle_range=span)
    with pytest.raises(ValueError, match="angle_range=.*redundancy weights"):
        op.fbp(torch.zeros(1, 1, *op.geometry.data_shape))
    with pytest.raises(ValidationError, match="angle_range"):
        ForwardConfig(geometry=kind, angles=12, angle_range=span)


@pytest.mark.parametrize("span", [0.0, -1.0, 7.0])
def test_a_range_outside_zero_to_two_pi_is_refused_by_the_geometry(span):
    with pytest.raises(ValueError, match=r"angle_range must be in \(0, 2 pi\]"):
        Geometry(size=8, angle_range=span)
