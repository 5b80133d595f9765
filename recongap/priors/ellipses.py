"""Random-ellipse images: the prior of Adler & Öktem's learned primal-dual.

Parameters live in a fixed number of slots, each (intensity, semi-axis a,
semi-axis b, centre x, centre y, rotation); a slot with intensity exactly 0 is
unused. Fixed slots keep the parameter dimension constant, which MCMC with
birth/death moves and batching needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .special import log_exp1

#: Columns of an ellipse slot.
FIELDS = ("intensity", "a", "b", "x", "y", "rotation")


def render_ellipses(params: torch.Tensor, size: int, supersample: int = 2) -> torch.Tensor:
    """Anti-aliased sum of ellipses: (n, K, 6) parameters -> (n, 1, size, size).

    The image covers [-1, 1]^2, row 0 at the top. Each ellipse's indicator is
    replaced by a linear ramp one sample wide across its boundary (signed
    distance from a first-order expansion), averaged over supersample^2 points
    per pixel: an approximation of pixel-area weighting that is a continuous,
    almost everywhere differentiable function of the parameters.

    Each ellipse is computed only on the window of samples it can reach (most
    cover a few percent of the image), which adds exactly the numbers the
    full-grid definition `_render_forward` adds. With gradients on, the
    backward pass is hand-written (`_RenderEllipses`): autograd kept about
    twenty full-grid intermediates per ellipse and spent five times the
    forward's time going back through them, the MCMC reference's main cost
    per step (docs/benchmarks.md, `python -m benchmarks.render`).
    """
    if params.ndim != 3 or params.shape[-1] != len(FIELDS):
        raise ValueError(f"ellipse parameters must have shape (n, slots, {len(FIELDS)}), got {tuple(params.shape)}")
    if params.requires_grad and torch.is_grad_enabled():
        return _RenderEllipses.apply(params, size, supersample)
    return _render_windowed(params, size, supersample)


def _fine_grid(size: int, supersample: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    fine = size * supersample
    h = 2.0 / fine
    c = -1 + (torch.arange(fine, device=like.device, dtype=like.dtype) + 0.5) * h
    gy, gx = torch.meshgrid(c.flip(0), c, indexing="ij")
    return gx, gy, h


def _render_forward(params: torch.Tensor, size: int, supersample: int) -> torch.Tensor:
    """render_ellipses' definition, every slot on the full grid. The render
    itself computes each slot on its window only (`_render_windowed`,
    `_RenderEllipses`); the tests hold it to this, bit for bit, and its
    gradient to autograd's through this."""
    n = params.shape[0]
    # Rendering is a sum over slots: move used slots to the front and stop at
    # the largest count in the batch instead of visiting every slot.
    params, _, k = _used_first(params)
    gx, gy, h = _fine_grid(size, supersample, params)
    image = params.new_zeros(n, *gx.shape)
    for slot in range(k):
        v, a, b, x0, y0, rot = (params[:, slot, i].reshape(n, 1, 1) for i in range(6))
        on = v != 0
        # unused slots may hold zero axes: keep them finite so 0 * coverage is 0
        a, b = torch.where(on, a, torch.ones_like(a)), torch.where(on, b, torch.ones_like(b))
        dx, dy = gx - x0, gy - y0
        cos, sin = torch.cos(rot), torch.sin(rot)
        u, w = dx * cos + dy * sin, -dx * sin + dy * cos
        a2, b2 = a * a, b * b
        q = u * u / a2 + w * w / b2  # < 1 inside
        grad = 2 * torch.sqrt(u * u / (a2 * a2) + w * w / (b2 * b2))
        signed_distance = (q - 1) / (grad + 1e-12)
        coverage = torch.clamp(0.5 - signed_distance / h, 0.0, 1.0)
        image = image + v * coverage
    image = image.reshape(n, size, supersample, size, supersample).mean(dim=(2, 4))
    return image.unsqueeze(1)


def _slot_windows(slot: torch.Tensor, h: float, fine: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row, the fine-grid rectangle outside which one slot's coverage and
    its gradient are exactly 0: (rows (n, W_r), cols (n, W_c), flat indices
    (n, W_r * W_c)), one window size for all rows, each row's placed on its
    ellipse (an unused slot's anywhere: it adds nothing).

    With u = a U, w = b W the ramp's signed distance is (q - 1) / (2 sqrt(U^2/a^2
    + W^2/b^2)) >= (r - 1/r) m / 2 for r = sqrt(q), m = min(a, b). It reaches
    h/2, where coverage is 0, once r >= R = (h/m + sqrt((h/m)^2 + 4)) / 2, so the
    bounding box of the ellipse scaled by R (plus a sample) holds every
    non-zero sample.
    """
    with torch.no_grad():
        v, a, b, x0, y0, rot = slot.unbind(-1)
        on = v != 0
        # the render squares the axes: a state with a negative axis (off the
        # prior's support, mid-trajectory) is the ellipse of |a|
        a, b = torch.where(on, a.abs(), torch.ones_like(a)), torch.where(on, b.abs(), torch.ones_like(b))
        ratio = h / torch.minimum(a, b)
        scale = (ratio + torch.sqrt(ratio * ratio + 4)) / 2
        cos, sin = torch.cos(rot), torch.sin(rot)
        half_x = torch.where(on, scale * torch.sqrt((a * cos) ** 2 + (b * sin) ** 2), torch.zeros_like(a))
        half_y = torch.where(on, scale * torch.sqrt((a * sin) ** 2 + (b * cos) ** 2), torch.zeros_like(a))
        # sample j sits at -1 + (j + 0.5) h in x; row i at 1 - (i + 0.5) h in y
        col_lo = torch.floor((x0 - half_x + 1) / h - 0.5).clamp(0, fine - 1).long() - 1
        col_hi = torch.ceil((x0 + half_x + 1) / h - 0.5).clamp(0, fine - 1).long() + 1
        row_lo = torch.floor((1 - y0 - half_y) / h - 0.5).clamp(0, fine - 1).long() - 1
        row_hi = torch.ceil((1 - y0 + half_y) / h - 0.5).clamp(0, fine - 1).long() + 1
        width = min(int((col_hi - col_lo).max()) + 1, fine)
        height = min(int((row_hi - row_lo).max()) + 1, fine)
        cols = col_lo.clamp(0, fine - width)[:, None] + torch.arange(width, device=slot.device)
        rows = row_lo.clamp(0, fine - height)[:, None] + torch.arange(height, device=slot.device)
        flat = (rows[:, :, None] * fine + cols[:, None, :]).reshape(slot.shape[0], -1)
    return rows, cols, flat


def _slot_geometry(slot: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, size: int, supersample: int):
    """One slot's quantities on its window, as render's loop computes them on the full grid."""
    n = slot.shape[0]
    gx, gy, h = _fine_grid(size, supersample, slot)
    v, a, b, x0, y0, rot = (slot[:, i].reshape(n, 1, 1) for i in range(6))
    on = v != 0
    a, b = torch.where(on, a, torch.ones_like(a)), torch.where(on, b, torch.ones_like(b))
    dx = gx[0][cols][:, None, :] - x0  # (n, 1, W_c): the same numbers as gx - x0 at those samples
    dy = gy[:, 0][rows][:, :, None] - y0  # (n, W_r, 1)
    cos, sin = torch.cos(rot), torch.sin(rot)
    u, w = dx * cos + dy * sin, -dx * sin + dy * cos
    return v, a, b, on, cos, sin, u, w, h


class _RenderEllipses(torch.autograd.Function):
    """render_ellipses with the gradient of each slot's six parameters written
    out (chain rule through the signed distance of the boundary ramp),
    recomputed slot by slot instead of stored, each slot only on the window
    where it is non-zero (most ellipses cover a few percent of the image).
    The forward adds the very numbers the full-grid loop adds, so the image
    is the same to the bit (tested)."""

    @staticmethod
    def forward(ctx, params: torch.Tensor, size: int, supersample: int) -> torch.Tensor:
        ctx.save_for_backward(params)
        ctx.size, ctx.supersample = size, supersample
        return _render_windowed(params, size, supersample)

    @staticmethod
    def backward(ctx, grad_image: torch.Tensor):
        (params,) = ctx.saved_tensors
        size, ss = ctx.size, ctx.supersample
        n, fine = params.shape[0], size * ss
        params, order, k = _used_first(params)
        # the pixel mean over ss x ss samples, backwards: each sample gets grad / ss^2
        g_fine = (grad_image.reshape(n, size, size).repeat_interleave(ss, 1).repeat_interleave(ss, 2) / (ss * ss)).reshape(n, -1)
        grad = torch.zeros_like(params)
        for slot in range(k):
            rows, cols, flat = _slot_windows(params[:, slot], 2.0 / fine, fine)
            v, a, b, on, cos, sin, u, w, h = _slot_geometry(params[:, slot], rows, cols, size, ss)
            g = g_fine.gather(1, flat).reshape(n, rows.shape[1], cols.shape[1])
            a2, b2 = a * a, b * b
            q = u * u / a2 + w * w / b2
            root = torch.sqrt(u * u / (a2 * a2) + w * w / (b2 * b2))  # the forward's grad / 2
            denom = 2 * root + 1e-12
            signed_distance = (q - 1) / denom
            ramp = 0.5 - signed_distance / h
            on_flat = on.flatten()
            grad[:, slot, 0] = (g * torch.clamp(ramp, 0.0, 1.0)).sum((1, 2)) * on_flat  # an unused slot gets no gradient
            # d loss / d signed distance, only inside the ramp (clamp passes its ends, as autograd's does)
            g_sd = torch.where((ramp >= 0) & (ramp <= 1), -g * v / h, torch.zeros_like(ramp))
            g_q = g_sd / denom
            g_p = torch.where(root > 0, -g_sd * signed_distance / (denom * root.clamp_min(1e-300)), torch.zeros_like(root))
            g_u = g_q * 2 * u / a2 + g_p * 2 * u / (a2 * a2)
            g_w = g_q * 2 * w / b2 + g_p * 2 * w / (b2 * b2)
            grad[:, slot, 1] = (g_q * (-2 * u * u / (a2 * a)) + g_p * (-4 * u * u / (a2 * a2 * a))).sum((1, 2)) * on_flat
            grad[:, slot, 2] = (g_q * (-2 * w * w / (b2 * b)) + g_p * (-4 * w * w / (b2 * b2 * b))).sum((1, 2)) * on_flat
            grad[:, slot, 3] = (-g_u * cos + g_w * sin).sum((1, 2))
            grad[:, slot, 4] = (-g_u * sin - g_w * cos).sum((1, 2))
            grad[:, slot, 5] = (g_u * w - g_w * u).sum((1, 2))
        return torch.zeros_like(grad).scatter(1, order[..., None].expand_as(grad), grad), None, None


def _render_windowed(params: torch.Tensor, size: int, supersample: int) -> torch.Tensor:
    """_render_forward, each slot computed on its window only (the same numbers)."""
    n, fine = params.shape[0], size * supersample
    sorted_params, _, k = _used_first(params)
    image = params.new_zeros(n, fine * fine)
    for slot in range(k):
        rows, cols, flat = _slot_windows(sorted_params[:, slot], 2.0 / fine, fine)
        v, a, b, on, cos, sin, u, w, h = _slot_geometry(sorted_params[:, slot], rows, cols, size, supersample)
        a2, b2 = a * a, b * b
        q = u * u / a2 + w * w / b2
        grad = 2 * torch.sqrt(u * u / (a2 * a2) + w * w / (b2 * b2))
        coverage = torch.clamp(0.5 - (q - 1) / (grad + 1e-12) / h, 0.0, 1.0)
        image.scatter_add_(1, flat, (v * coverage).reshape(n, -1))
    image = image.reshape(n, size, supersample, size, supersample).mean(dim=(2, 4))
    return image.unsqueeze(1)


def _used_first(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Slots reordered so that each row's used ones come first (stable), the
    order, and the largest count of used slots in a row."""
    active = params[..., 0] != 0
    order = torch.argsort((~active).to(torch.int8), dim=1, stable=True)
    k = int(active.sum(1).max()) if params.shape[0] else 0
    return torch.gather(params, 1, order[..., None].expand_as(params)), order, k


@dataclass(frozen=True)
class EllipsePrior:
    """Random ellipses: count ~ Poisson(mean_count) (capped at `slots`),
    semi-axes Exp(scale=axis_scale), centre U[-r, r]^2 with r = centre_range,
    rotation U[0, 2 pi), and intensity by `intensity_law`:
    "signed_exponential", (U - 0.5) * Exp(scale=intensity_scale), or
    "uniform", U(intensity_low, intensity_high).

    Defaults are the learned primal-dual protocol. DIVal's ellipses are
    mean_count=40, slots=70, uniform on (-0.4, 1), centre_range=0.9 and
    normalize_foreground: the rendered image's non-zero pixels are shifted
    and scaled to [0, 1] (a deterministic map of the parameters, so
    `log_prob` is unchanged). A draw activates a uniformly random subset of
    slots, so `log_prob` is the density of exactly what `sample` produces.
    """

    mean_count: float = 50.0
    slots: int = 100
    intensity_law: str = "signed_exponential"
    intensity_scale: float = 0.4
    intensity_low: float = -0.4
    intensity_high: float = 1.0
    axis_scale: float = 0.2
    centre_range: float = 1.0
    normalize_foreground: bool = False
    supersample: int = 2

    def __post_init__(self) -> None:
        if min(self.mean_count, self.intensity_scale, self.axis_scale, self.centre_range) <= 0 or self.slots < 1:
            raise ValueError(f"invalid EllipsePrior parameters: {self}")
        if self.intensity_law not in ("signed_exponential", "uniform"):
            raise ValueError(f"intensity_law must be 'signed_exponential' or 'uniform', got {self.intensity_law!r}")
        if self.intensity_low >= self.intensity_high:
            raise ValueError(f"intensity_low must be below intensity_high, got {self.intensity_low}, {self.intensity_high}")

    @property
    def param_shape(self) -> tuple[int, int]:
        return (self.slots, len(FIELDS))

    def sample_count(self, n: int, generator: torch.Generator) -> torch.Tensor:
        rate = torch.full((n,), float(self.mean_count), dtype=torch.float64)
        return torch.poisson(rate, generator=generator).long().clamp(max=self.slots)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, slots, 6) float64 parameters."""
        k = self.slots
        count = self.sample_count(n, generator)
        order = torch.rand(n, k, generator=generator, dtype=torch.float64).argsort(dim=1)
        active = order < count[:, None]
        return self.sample_slots((n, k), generator) * active[..., None]

    def sample_slots(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """(*shape, 6) float64 draws of one slot's parameters from the slot density
        (what an active slot holds; MCMC birth moves propose from it)."""
        u = torch.rand(*shape, 6, generator=generator, dtype=torch.float64)
        e = torch.empty(*shape, 3, dtype=torch.float64).exponential_(1.0, generator=generator)
        if self.intensity_law == "uniform":
            intensity = self.intensity_low + (self.intensity_high - self.intensity_low) * u[..., 4]
        else:
            intensity = (u[..., 0] - 0.5) * e[..., 0] * self.intensity_scale
        params = torch.stack(
            [
                intensity,
                e[..., 1] * self.axis_scale,
                e[..., 2] * self.axis_scale,
                (2 * u[..., 1] - 1) * self.centre_range,
                (2 * u[..., 2] - 1) * self.centre_range,
                2 * math.pi * u[..., 3],
            ],
            dim=-1,
        )
        return params

    def render(self, params: torch.Tensor, size: int) -> torch.Tensor:
        image = render_ellipses(params, size, self.supersample)
        return normalize_foreground(image) if self.normalize_foreground else image

    def log_count_prob(self, count: torch.Tensor) -> torch.Tensor:
        """log P(count) of the Poisson law capped at `slots` (tail mass on the cap)."""
        lam = torch.as_tensor(self.mean_count, dtype=torch.float64)
        c = count.to(torch.float64)
        log_pmf = c * torch.log(lam) - lam - torch.lgamma(c + 1)
        if (count >= self.slots).any():
            ks = torch.arange(self.slots, dtype=torch.float64)
            below = torch.logsumexp(ks * torch.log(lam) - lam - torch.lgamma(ks + 1), 0)
            log_tail = torch.log1p(-torch.exp(below).clamp(max=1.0))
            log_pmf = torch.where(count >= self.slots, log_tail, log_pmf)
        return log_pmf

    def slot_log_density(self, params: torch.Tensor) -> torch.Tensor:
        """Log-density of each active slot's 6 parameters: (..., K, 6) -> (..., K)."""
        v, a, b, x, y, rot = params.unbind(-1)
        s_v, s_ax = self.intensity_scale, self.axis_scale
        if self.intensity_law == "uniform":
            lo, hi = self.intensity_low, self.intensity_high
            log_v = torch.where((v >= lo) & (v <= hi), -math.log(hi - lo), -math.inf)
        else:
            # V = W E with W ~ U(-1/2, 1/2), E ~ Exp(scale s): p(v) = E1(2|v|/s) / s.
            log_v = log_exp1(2 * v.abs() / s_v) - math.log(s_v)
        log_ab = -2 * math.log(s_ax) - (a + b) / s_ax
        r = self.centre_range
        log_xy = -2 * math.log(2.0 * r)
        log_rot = -math.log(2 * math.pi)
        inside = (a > 0) & (b > 0) & (x.abs() <= r) & (y.abs() <= r) & (rot >= 0) & (rot < 2 * math.pi)
        total = log_v + log_ab + log_xy + log_rot
        return torch.where(inside, total, torch.full_like(total, -math.inf))

    def log_prob(self, params: torch.Tensor) -> torch.Tensor:
        """Log-density of (..., slots, 6) parameters w.r.t. counting x Lebesgue measure."""
        if params.shape[-2:] != self.param_shape:
            raise ValueError(f"EllipsePrior expects parameters (..., {self.slots}, 6), got {tuple(params.shape)}")
        active = params[..., 0] != 0
        count = active.sum(-1)
        # which slots are on: uniform over subsets of that size
        k = torch.tensor(float(self.slots), dtype=torch.float64)
        c = count.to(torch.float64)
        log_subset = torch.lgamma(c + 1) + torch.lgamma(k - c + 1) - torch.lgamma(k + 1)
        slot_terms = torch.where(active, self.slot_log_density(params), torch.zeros_like(params[..., 0]))
        return self.log_count_prob(count) + log_subset + slot_terms.sum(-1)


def normalize_foreground(image: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Shift and scale the non-zero pixels of each image to [0, 1], background 0 (DIVal's convention)."""
    flat = image.flatten(1)
    foreground = flat.abs() > eps
    big = torch.finfo(image.dtype).max
    low = torch.where(foreground, flat, torch.full_like(flat, big)).min(1, keepdim=True).values
    shifted = torch.where(foreground, flat - low, torch.zeros_like(flat))
    high = shifted.max(1, keepdim=True).values.clamp_min(eps)
    return (shifted / high).reshape(image.shape)


# Modified Shepp-Logan (Toft): intensity, a, b, centre x, centre y, rotation (degrees).
_SHEPP_LOGAN = [
    (1.0, 0.69, 0.92, 0.0, 0.0, 0),
    (-0.8, 0.6624, 0.8740, 0.0, -0.0184, 0),
    (-0.2, 0.1100, 0.3100, 0.22, 0.0, -18),
    (-0.2, 0.1600, 0.4100, -0.22, 0.0, 18),
    (0.1, 0.2100, 0.2500, 0.0, 0.35, 0),
    (0.1, 0.0460, 0.0460, 0.0, 0.1, 0),
    (0.1, 0.0460, 0.0460, 0.0, -0.1, 0),
    (0.1, 0.0460, 0.0230, -0.08, -0.605, 0),
    (0.1, 0.0230, 0.0230, 0.0, -0.606, 0),
    (0.1, 0.0230, 0.0460, 0.06, -0.605, 0),
]


def shepp_logan_params() -> torch.Tensor:
    """(1, 10, 6) ellipse parameters of the modified Shepp-Logan phantom."""
    rows = [(v, a, b, x, y, math.radians(r)) for v, a, b, x, y, r in _SHEPP_LOGAN]
    return torch.tensor(rows, dtype=torch.float64).unsqueeze(0)


def shepp_logan(size: int, supersample: int = 4) -> torch.Tensor:
    """The modified Shepp-Logan phantom, (1, 1, size, size) float32, values in [0, 1]."""
    return render_ellipses(shepp_logan_params(), size, supersample).float()
