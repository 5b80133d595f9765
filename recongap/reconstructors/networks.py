"""Learned reconstructors as plain torch modules mapping data y to images.

Each holds the operator inside its graph (torch backend), scaled by its norm
as in Adler & Öktem's learned primal-dual. Convolutions are 2-D for images
and 1-D for signals (the integration kind): `dims`, read off the operator.
"""

from __future__ import annotations

import torch
from torch import nn

from ..operators import LinearOperator, RayTransform


def first_image(operator: LinearOperator, y: torch.Tensor, filter: str) -> torch.Tensor:
    """The input of post-processing: FBP with `filter` for CT, the operator's
    own first reconstruction for every other kind (`filter` unused)."""
    if isinstance(operator, RayTransform):
        return operator.fbp(y, filter)
    return operator.first_reconstruction(y)


CONV = {1: nn.Conv1d, 2: nn.Conv2d}
CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}
BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
MAX_POOL = {1: nn.functional.max_pool1d, 2: nn.functional.max_pool2d}


def block(channels_in: int, channels_out: int, width: int = 32, dims: int = 2) -> nn.Sequential:
    """Three 3x3 (3 for signals) convolutions with PReLU between: the update of LGD and LPD.

    Initialised as in Adler & Öktem's published code: Glorot-uniform kernels,
    zero biases, PReLU slopes 0 (torch's defaults are smaller kernels, random
    biases and slopes 0.25, under which lpd learns markedly slower at first;
    docs/benchmarks.md, "Initialisation of lgd and lpd").
    """
    conv = CONV[dims]
    seq = nn.Sequential(
        conv(channels_in, width, 3, padding=1),
        nn.PReLU(width),
        conv(width, width, 3, padding=1),
        nn.PReLU(width),
        conv(width, channels_out, 3, padding=1),
    )
    for layer in seq:
        if isinstance(layer, conv):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        else:
            nn.init.zeros_(layer.weight)
    return seq


class UNet(nn.Module):
    """Residual U-Net (FBPConvNet style): x + f(x), `depth` poolings.

    With `in_channels` > 1 the extra channels (e.g. a noise input) feed f
    only; the residual is the first channel.
    """

    def __init__(self, channels: int = 32, depth: int = 3, in_channels: int = 1, dims: int = 2) -> None:
        super().__init__()
        self.dims = dims
        conv_layer, norm = CONV[dims], BATCH_NORM[dims]

        def conv(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                conv_layer(cin, cout, 3, padding=1), norm(cout), nn.ReLU(inplace=True),
                conv_layer(cout, cout, 3, padding=1), norm(cout), nn.ReLU(inplace=True),
            )

        widths = [channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([conv(in_channels, widths[0])] + [conv(widths[i], widths[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([CONV_TRANSPOSE[dims](widths[i + 1], widths[i], 2, stride=2) for i in range(depth)])
        self.merge = nn.ModuleList([conv(2 * widths[i], widths[i]) for i in range(depth)])
        self.out = conv_layer(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, h = [], x
        for i, down in enumerate(self.down):
            h = down(h if i == 0 else MAX_POOL[self.dims](h, 2))
            skips.append(h)
        for i in reversed(range(len(self.up))):
            h = self.merge[i](torch.cat([self.up[i](h), skips[i]], dim=1))
        return x[:, :1] + self.out(h)


class PostProcessing(nn.Module):
    """The first reconstruction (FBP for CT) followed by a residual U-Net."""

    def __init__(self, operator: LinearOperator, channels: int = 32, depth: int = 3, filter: str = "hann") -> None:
        super().__init__()
        self.operator, self.filter = operator, filter
        self.unet = UNet(channels, depth, dims=len(operator.domain_shape))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.unet(first_image(self.operator, y, self.filter))


def step_scale(operator: LinearOperator) -> torch.Tensor:
    """1/||A|| as a float64 scalar buffer: the unrolled networks' data and
    gradients are scaled by it, and the weights were trained for this value,
    so it is saved with them rather than recomputed at load."""
    return torch.tensor(1.0 / operator.norm(), dtype=torch.float64)


class LearnedGradientDescent(nn.Module):
    """x_{k+1} = x_k + G_k(x_k, A^T(A x_k - y)), from x_0 = 0, with memory channels."""

    def __init__(self, operator: LinearOperator, iterations: int = 10, memory: int = 5, width: int = 32) -> None:
        super().__init__()
        self.operator, self.memory = operator, memory
        self.register_buffer("scale", step_scale(operator))
        self.updates = nn.ModuleList([block(2 + memory, 1 + memory, width, len(operator.domain_shape)) for _ in range(iterations)])

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        a = self.operator
        y = y * self.scale
        h = torch.zeros(y.shape[0], 1 + self.memory, *a.domain_shape, dtype=y.dtype, device=y.device)
        for update in self.updates:
            x = h[:, :1]
            grad = a.adjoint(a(x) * self.scale - y) * self.scale
            h = h + update(torch.cat([h, grad], dim=1))
        return h[:, :1]


class LearnedPrimalDual(nn.Module):
    """Adler & Öktem (2018): primal and dual updates by small CNNs, from zeros."""

    def __init__(self, operator: LinearOperator, iterations: int = 10, primal: int = 5, dual: int = 5, width: int = 32) -> None:
        super().__init__()
        self.operator, self.primal, self.dual = operator, primal, dual
        self.register_buffer("scale", step_scale(operator))
        self.dual_updates = nn.ModuleList([block(dual + 2, dual, width, len(operator.range_shape)) for _ in range(iterations)])
        self.primal_updates = nn.ModuleList([block(primal + 1, primal, width, len(operator.domain_shape)) for _ in range(iterations)])

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        a = self.operator
        y = y * self.scale
        f = torch.zeros(y.shape[0], self.primal, *a.domain_shape, dtype=y.dtype, device=y.device)
        h = torch.zeros(y.shape[0], self.dual, *a.range_shape, dtype=y.dtype, device=y.device)
        for dual_update, primal_update in zip(self.dual_updates, self.primal_updates):
            h = h + dual_update(torch.cat([h, a(f[:, 1:2]) * self.scale, y], dim=1))
            f = f + primal_update(torch.cat([f, a.adjoint(h[:, :1]) * self.scale], dim=1))
        return f[:, :1]
