"""Metropolis-within-Gibbs on ellipse slots, with the residual kept up to date.

One ellipse changes only the pixels of its window (most cover a few percent
of the image), so a move of one ellipse changes the data A x through the
matching columns of A's sparse matrix only. The sampler keeps the residual
A x - y of every chain and updates it by those columns: a move of one slot
costs a window render and a small scatter, where HMC re-renders and
re-projects the whole image at every leapfrog step. The classic scheme for
object priors (marked point processes); written here because no sampler
library knows our renderer or its sparse columns.

A sweep visits every active slot once, in an order fixed per chain (largest
window first, so that the batched chains render windows of similar sizes
together), and proposes a Gaussian random-walk step of that slot's six
parameters with a covariance fixed per slot: the inverse of its Gauss-Newton
curvature block (J_k^T J_k / sigma^2 plus the prior's scale, J_k the
Jacobian of A render with respect to the slot) at the starting state, scaled
per slot. It then makes birth/death moves of whole slots. Every move is a
Metropolis-Hastings step with a fixed, symmetric (or accounted-for) proposal,
so the chain's stationary law is the exact posterior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from ..priors.ellipses import EllipsePrior, _slot_geometry, _slot_windows


@dataclass(frozen=True)
class PixelColumns:
    """A's columns padded to the longest: column j (pixel j, row-major) has
    data indices rows[j] and weights weights[j] (zero weight on padding)."""

    rows: torch.Tensor  # (N, P) long
    weights: torch.Tensor  # (N, P) float64
    data_size: int

    @classmethod
    def from_matrix(cls, matrix: sp.spmatrix, device: torch.device | str = "cpu") -> "PixelColumns":
        csc = sp.csc_matrix(matrix)
        csc.sort_indices()
        counts = np.diff(csc.indptr)
        width = int(counts.max()) if counts.size else 0
        positions = csc.indptr[:-1, None] + np.arange(width)
        present = np.arange(width) < counts[:, None]
        positions = np.where(present, positions, 0).clip(max=max(csc.nnz - 1, 0))
        rows = np.where(present, csc.indices[positions], 0)
        weights = np.where(present, csc.data[positions], 0.0)
        return cls(torch.from_numpy(rows.astype(np.int64)).to(device), torch.from_numpy(weights.astype(np.float64)).to(device), csc.shape[0])

    def project(self, flat: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """A applied to sparse images: pixel indices flat (T, W), values (T, W) -> (T, M).
        Only the non-zero values are gathered: a window's padding and the
        unchanged part of a moved ellipse cost nothing."""
        t, m = flat.shape[0], self.data_size
        row, col = torch.nonzero(values, as_tuple=True)
        pixel = flat[row, col]
        target = (row[:, None] * m + self.rows[pixel]).reshape(-1)
        contributions = (self.weights[pixel] * values[row, col, None]).reshape(-1)
        return values.new_zeros(t * m).scatter_add_(0, target, contributions).reshape(t, m)


def pixel_window(size: int, supersample: int, *slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the pixel rectangle (rows (T, H), cols (T, W)) holding every
    non-zero pixel of each of the given slots (T, 6) (one size for all rows)."""
    fine = size * supersample
    lo_r, hi_r, lo_c, hi_c = [], [], [], []
    for slot in slots:
        rows, cols, _ = _slot_windows(slot, 2.0 / fine, fine)
        lo_r.append(rows[:, 0]), hi_r.append(rows[:, -1]), lo_c.append(cols[:, 0]), hi_c.append(cols[:, -1])
    top = torch.stack(lo_r).amin(0) // supersample
    left = torch.stack(lo_c).amin(0) // supersample
    height = min(int((torch.stack(hi_r).amax(0) // supersample - top).max()) + 1, size)
    width = min(int((torch.stack(hi_c).amax(0) // supersample - left).max()) + 1, size)
    top, left = top.clamp(max=size - height), left.clamp(max=size - width)
    device = top.device
    return top[:, None] + torch.arange(height, device=device), left[:, None] + torch.arange(width, device=device)


def slot_values(slot: torch.Tensor, pixel_rows: torch.Tensor, pixel_cols: torch.Tensor, size: int, supersample: int) -> torch.Tensor:
    """One slot's contribution to the rendered image on a pixel window,
    (T, H, W): the same samples, ramp and supersample mean as
    render_ellipses, whose image is the sum over a row's slots (up to the
    order of float additions)."""
    t, height, width = slot.shape[0], pixel_rows.shape[1], pixel_cols.shape[1]
    sub = torch.arange(supersample, device=slot.device)
    sample_rows = (pixel_rows[:, :, None] * supersample + sub).reshape(t, -1)
    sample_cols = (pixel_cols[:, :, None] * supersample + sub).reshape(t, -1)
    v, a, b, on, cos, sin, u, w, h = _slot_geometry(slot, sample_rows, sample_cols, size, supersample)
    a2, b2 = a * a, b * b
    q = u * u / a2 + w * w / b2
    grad = 2 * torch.sqrt(u * u / (a2 * a2) + w * w / (b2 * b2))
    coverage = torch.clamp(0.5 - (q - 1) / (grad + 1e-12) / h, 0.0, 1.0)
    # the supersample mean as a pooling: the same numbers, several times faster than a strided mean
    return v * torch.nn.functional.avg_pool2d(coverage[:, None], supersample)[:, 0]


def slot_pixels(slot: torch.Tensor, size: int, supersample: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One slot's contribution to the image per row: (flat pixel indices (T, W), values (T, W))."""
    rows, cols = pixel_window(size, supersample, slot)
    values = slot_values(slot, rows, cols, size, supersample)
    flat = (rows[:, :, None] * size + cols[:, None, :]).reshape(slot.shape[0], -1)
    return flat, values.reshape(slot.shape[0], -1)


def prior_scales(prior: EllipsePrior) -> torch.Tensor:
    """(6,) the prior's standard deviation of each slot field: the ridge of
    the Gauss-Newton blocks, so that no field gets a wider step than its prior."""
    if prior.intensity_law == "uniform":
        intensity = (prior.intensity_high - prior.intensity_low) / math.sqrt(12)
    else:
        intensity = prior.intensity_scale / math.sqrt(6)  # V = W E: E[W^2] = 1/12, E[E^2] = 2 s^2
    centre = 2 * prior.centre_range / math.sqrt(12)
    return torch.tensor([intensity, prior.axis_scale, prior.axis_scale, centre, centre, 2 * math.pi / math.sqrt(12)], dtype=torch.float64)


@dataclass
class BlockState:
    """Each chain's slots (T, K, 6) and its residual A render(params) - y (T, M)."""

    params: torch.Tensor
    residual: torch.Tensor


@dataclass
class BlockKernel:
    """The fixed part of the kernel: per chain and slot the Cholesky factor of
    the random-walk covariance (T, K, 6, 6) and its log scale (T, K), and the
    order in which a sweep visits the slots (T, K)."""

    chol: torch.Tensor
    log_scale: torch.Tensor
    order: torch.Tensor


class EllipseBlockSampler:
    """The moves, for T chains each targeting p(theta | y_t) under `prior`,
    y_t = A render(theta) + N(0, noise_std^2): A given by its sparse matrix
    (n_data x size^2, the operator that made the data), images rendered at `size`."""

    #: the acceptance rate each slot's random-walk scale is tuned to during a pilot
    target_accept = 0.3

    def __init__(self, prior: EllipsePrior, matrix: sp.spmatrix, size: int, noise_std: float, y: torch.Tensor) -> None:
        if prior.normalize_foreground:
            raise ValueError("the block sampler needs a linear render: normalize_foreground=True is not supported")
        if matrix.shape != (y.shape[-1], size * size):
            raise ValueError(f"matrix must be (n_data={y.shape[-1]}, size^2={size * size}), got {matrix.shape}")
        self.prior, self.size, self.noise_std = prior, size, float(noise_std)
        self.y = y.to(torch.float64)
        self.columns = PixelColumns.from_matrix(matrix, y.device)
        self.matrix = matrix
        self.scales = prior_scales(prior).to(y.device)
        self.rows = torch.arange(y.shape[0], device=y.device)

    # -- state -------------------------------------------------------------
    def state(self, params: torch.Tensor) -> BlockState:
        """Chains at `params` (T, K, 6) (rotations taken modulo 2 pi), their
        residual computed in full; a state the prior gives zero density is refused."""
        params = params.to(self.y.device, torch.float64).clone()
        params[..., 5] = torch.remainder(params[..., 5], 2 * math.pi)
        outside = ~torch.isfinite(self.prior.log_prob(params))
        if outside.any():
            raise ValueError(f"block sampler: chains {torch.nonzero(outside).flatten().tolist()} start outside the prior's support")
        image = torch.zeros(params.shape[0], self.size * self.size, dtype=torch.float64, device=params.device)
        for k in range(params.shape[1]):
            flat, values = slot_pixels(params[:, k], self.size, self.prior.supersample)
            image.scatter_add_(1, flat, values)
        projected = torch.from_numpy(np.asarray(self.matrix @ image.cpu().numpy().T).T).to(image)
        return BlockState(params, projected - self.y)

    def log_likelihood(self, state: BlockState) -> torch.Tensor:
        return -0.5 * (state.residual**2).sum(1) / self.noise_std**2

    def log_posterior(self, state: BlockState) -> torch.Tensor:
        return self.log_likelihood(state) + self.prior.log_prob(state.params)

    # -- the kernel ----------------------------------------------------------
    def change(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """(T, M) change of A x when each row's slot goes from old (T, 6) to new."""
        ss = self.prior.supersample
        rows, cols = pixel_window(self.size, ss, old, new)
        delta = slot_values(new, rows, cols, self.size, ss) - slot_values(old, rows, cols, self.size, ss)
        flat = (rows[:, :, None] * self.size + cols[:, None, :]).reshape(old.shape[0], -1)
        return self.columns.project(flat, delta.reshape(old.shape[0], -1))

    def kernel(self, params: torch.Tensor, step: float = 1e-6) -> BlockKernel:
        """The Gauss-Newton random-walk kernel at `params` (T, K, 6): per active
        slot the covariance (J^T J / sigma^2 + diag(1 / s^2))^-1, J its (M, 6)
        Jacobian by central differences, s the prior's scales; an inactive
        slot (born later) gets a tenth of the prior's scales."""
        t, k, _ = params.shape
        params = params.to(self.y.device, torch.float64)
        active = params[..., 0] != 0
        ridge = torch.diag(1 / self.scales**2)
        precision = ridge.expand(t, k, 6, 6).clone()
        for slot in torch.nonzero(active.any(0)).flatten().tolist():
            base = params[:, slot]
            jac = []
            for field in range(6):
                delta = torch.zeros_like(base)
                delta[:, field] = step
                jac.append(self.change(base - delta, base + delta) / (2 * step))
            jac = torch.stack(jac, 2)  # (T, M, 6)
            block = jac.transpose(1, 2) @ jac / self.noise_std**2 + ridge
            precision[:, slot] = torch.where(active[:, slot, None, None], block, precision[:, slot])
        covariance = torch.linalg.inv(precision)
        covariance = torch.where(active[..., None, None], covariance, torch.diag(self.scales**2 / 100).expand(t, k, 6, 6))
        chol = torch.linalg.cholesky(covariance)
        # largest window first: batched chains then render windows of similar sizes together
        a, b = params[..., 1].abs(), params[..., 2].abs()
        area = torch.where(active, a * b, torch.full_like(a, -1.0))
        order = torch.argsort(-area, dim=1, stable=True)
        log_scale = torch.full((t, k), math.log(2.38 / math.sqrt(6)), dtype=torch.float64, device=params.device)
        return BlockKernel(chol, log_scale, order)

    def _metropolis(
        self, state: BlockState, slot: torch.Tensor, new: torch.Tensor, log_ratio_rest: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Propose slot `slot` (T,) of each row -> new (T, 6); log_ratio_rest (T,) holds the
        prior and proposal terms (-inf where the move is impossible). Updates state in place;
        returns the acceptance probabilities."""
        old = state.params[self.rows, slot]
        possible = torch.isfinite(log_ratio_rest)
        d = self.change(old, torch.where(possible[:, None], new, old))
        r = state.residual
        delta_loglik = -(2 * (r * d).sum(1) + (d * d).sum(1)) / (2 * self.noise_std**2)
        log_ratio = torch.where(possible, delta_loglik + log_ratio_rest, torch.full_like(delta_loglik, -math.inf))
        accept_prob = log_ratio.clamp(max=0).exp()
        accept = torch.rand(slot.shape[0], generator=generator, dtype=torch.float64).to(r.device) < accept_prob
        state.params[self.rows, slot] = torch.where(accept[:, None], new, old)
        state.residual = r + d * accept[:, None]
        return accept_prob

    def sweep(self, state: BlockState, kernel: BlockKernel, generator: torch.Generator, adapt_weight: float = 0.0) -> torch.Tensor:
        """One random-walk update of every active slot, in kernel.order;
        returns each row's mean acceptance probability (NaN: no active slot).
        adapt_weight > 0 (pilot only) moves each slot's log scale towards
        the target acceptance rate by that weight."""
        active = state.params[..., 0] != 0
        ordered_active = active.gather(1, kernel.order)
        # the fixed order restricted to the active slots (an inactive slot's update is the identity)
        k = ordered_active.shape[1]
        position = torch.arange(k, device=active.device).expand_as(kernel.order)
        visit = kernel.order.gather(1, torch.argsort(torch.where(ordered_active, position, position + k), dim=1))
        count = active.sum(1)
        two_pi = 2 * math.pi
        total = torch.zeros_like(count, dtype=torch.float64)
        for j in range(int(count.max()) if count.numel() else 0):
            slot = visit[:, j]
            moving = j < count
            old = state.params[self.rows, slot]
            z = torch.randn(slot.shape[0], 6, generator=generator, dtype=torch.float64).to(old.device)
            step = (kernel.chol[self.rows, slot] @ z[..., None]).squeeze(-1) * kernel.log_scale[self.rows, slot, None].exp()
            new = old + step
            # rotation lives on the circle: wrapping keeps the walk symmetric
            new = torch.cat([new[:, :5], torch.remainder(new[:, 5:], two_pi)], 1)
            log_prior = self.prior.slot_log_density(new) - self.prior.slot_log_density(old)
            log_prior = torch.where(moving, log_prior, torch.full_like(log_prior, -math.inf))
            prob = self._metropolis(state, slot, new, log_prior, generator)
            total = total + torch.where(moving, prob, torch.zeros_like(prob))
            if adapt_weight > 0:
                kernel.log_scale[self.rows, slot] += torch.where(moving, adapt_weight * (prob - self.target_accept), torch.zeros_like(prob))
        return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, math.nan))

    #: intensity_move: a slot's intensity joins the joint move when the data alone pin it
    #: to a standard deviation below this fraction of the prior's
    determined_fraction = 0.1

    def intensity_move(self, state: BlockState, generator: torch.Generator) -> torch.Tensor:
        """One joint move of the intensities the data determine, the shapes fixed.

        Given the shapes, A x is linear in the intensities v, so the
        likelihood of the determined set D (chosen from the shapes alone)
        given everything else is exactly Gaussian, N(mu, Q_DD^-1) with
        Q = S^T S / sigma^2, S the data of each slot at unit intensity. That
        Gaussian is an independence proposal: its Metropolis-Hastings ratio
        is the prior's ratio alone, high where the data dominate the prior.
        It moves overlapping ellipses' intensities together, along the
        correlations one slot at a time cannot follow. Returns each row's
        acceptance probability (NaN: no determined slot)."""
        params = state.params
        t, k, _ = params.shape
        active = params[..., 0] != 0
        unit = torch.zeros(t, self.y.shape[1], k, dtype=torch.float64, device=params.device)
        for slot in torch.nonzero(active.any(0)).flatten().tolist():
            shape = params[:, slot].clone()
            shape[:, 0] = active[:, slot].to(shape)  # unit intensity; a row where the slot is off stays empty
            flat, values = slot_pixels(shape, self.size, self.prior.supersample)
            unit[:, :, slot] = self.columns.project(flat, values)
        precision = unit.transpose(1, 2) @ unit / self.noise_std**2
        pinned_sd = torch.diagonal(precision, dim1=1, dim2=2).clamp_min(1e-300).rsqrt()
        determined = active & (pinned_sd < self.determined_fraction * float(self.scales[0]))
        both = determined[:, :, None] & determined[:, None, :]
        # the determined block, with the identity elsewhere so that every row factors at once
        block = torch.where(both, precision, torch.diag_embed((~determined).to(precision)))
        chol = torch.linalg.cholesky(block)
        v = params[..., 0]
        # mu does not depend on v_D: v_D + Q_DD^-1 S_D^T (y - A x) / sigma^2
        pull = -(unit.transpose(1, 2) @ state.residual[:, :, None])[..., 0] / self.noise_std**2
        mean = v + torch.cholesky_solve((pull * determined)[..., None], chol)[..., 0]
        z = torch.randn(t, k, generator=generator, dtype=torch.float64).to(params.device)
        draw = mean + torch.linalg.solve_triangular(chol.transpose(1, 2), z[..., None], upper=True)[..., 0]
        new_v = torch.where(determined, draw, v)
        new = params.clone()
        new[..., 0] = new_v
        terms = self.prior.slot_log_density(new) - self.prior.slot_log_density(params)
        log_ratio = torch.where(determined, terms, torch.zeros_like(terms)).sum(1)
        possible = determined.any(1) & ~(determined & (new_v == 0)).any(1) & torch.isfinite(log_ratio)
        accept_prob = torch.where(possible, log_ratio.clamp(max=0).exp(), torch.zeros_like(log_ratio))
        accept = torch.rand(t, generator=generator, dtype=torch.float64).to(params.device) < accept_prob
        change = torch.where(accept[:, None], new_v - v, torch.zeros_like(v))
        state.params[..., 0] = v + change
        state.residual = state.residual + (unit @ change[..., None])[..., 0]
        return torch.where(determined.any(1), accept_prob, torch.full_like(accept_prob, math.nan))

    def birth_death(self, state: BlockState, generator: torch.Generator) -> torch.Tensor:
        """One birth or death per row (as reference._birth_death: a birth puts a
        draw of the prior's slot density in a uniformly chosen free slot, a
        death empties a uniformly chosen active one), accepted by the full
        Metropolis-Hastings ratio; returns the acceptance probabilities."""
        prior, params = self.prior, state.params
        t, k, _ = params.shape
        device = params.device
        active = params[..., 0] != 0
        c = active.sum(1).to(torch.float64)
        birth = torch.rand(t, generator=generator, dtype=torch.float64).to(device) < 0.5
        scores = torch.rand(t, k, generator=generator, dtype=torch.float64).to(device)
        eligible = torch.where(birth[:, None], ~active, active)
        slot = torch.where(eligible, scores, torch.full_like(scores, -1.0)).argmax(1)
        new_slot = prior.sample_slots((t,), generator).to(device)
        old = params[self.rows, slot]
        new = torch.where(birth[:, None], new_slot, torch.zeros_like(new_slot))
        proposal = params.clone()
        proposal[self.rows, slot] = new
        log_forward = torch.where(birth, -torch.log(k - c) + prior.slot_log_density(new_slot), -torch.log(c))
        log_backward = torch.where(birth, -torch.log(c + 1), -torch.log(k - c + 1) + prior.slot_log_density(old))
        log_rest = prior.log_prob(proposal) - prior.log_prob(params) + log_backward - log_forward
        log_rest = torch.where(eligible.any(1) & torch.isfinite(log_rest), log_rest, torch.full_like(log_rest, -math.inf))
        return self._metropolis(state, slot, new, log_rest, generator)


def run_blocks(
    sampler: EllipseBlockSampler,
    start: torch.Tensor,
    *,
    warmup: int,
    draws: int,
    generator: torch.Generator,
    restart: bool = True,
    birth_death_moves: int = 1,
    intensity_moves: int = 0,
    on_draw: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Sweeps (each followed by `birth_death_moves` birth/death moves and
    `intensity_moves` joint intensity moves) from
    `start` (T, K, 6) with the Gauss-Newton kernel at `start`: a pilot of
    `warmup` sweeps tunes each slot's random-walk scale; then `draws` sweeps
    with the kernel fixed, from `start` again when `restart` (start is the
    simulated truth, an exact posterior draw: the pilot is discarded and the
    kept chains need no burn-in, up to the kernel's own dependence on the
    truth, docs/reference.md), else from where the pilot ended. After each
    kept sweep on_draw(i, q (T, K*6), u (T,) = -log posterior). Returns each
    row's mean acceptance per move kind over the kept sweeps."""
    kernel = sampler.kernel(start)
    state = sampler.state(start)
    for i in range(warmup):
        sampler.sweep(state, kernel, generator, adapt_weight=1.0 / math.sqrt(i + 1))
        for _ in range(birth_death_moves):
            sampler.birth_death(state, generator)
        for _ in range(intensity_moves):
            sampler.intensity_move(state, generator)
    if restart:
        state = sampler.state(start)
    blocks, births, intensities = [], [], []
    for i in range(draws):
        blocks.append(sampler.sweep(state, kernel, generator))
        for _ in range(birth_death_moves):
            births.append(sampler.birth_death(state, generator))
        for _ in range(intensity_moves):
            intensities.append(sampler.intensity_move(state, generator))
        if on_draw is not None:
            on_draw(i, state.params.reshape(state.params.shape[0], -1), -sampler.log_posterior(state))
    t = start.shape[0]

    def mean(probs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(probs).nanmean(0).cpu() if probs else torch.full((t,), math.nan, dtype=torch.float64)

    acceptance = {"blocks": mean(blocks), "birth_death": mean(births)}
    if intensity_moves:
        acceptance["intensities"] = mean(intensities)
    return acceptance
