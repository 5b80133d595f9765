"""The best linear estimator of x from y built from the training images alone.

E[x] and Cov[x] are estimated from the training split, the covariance shrunk
towards a multiple of the identity by Ledoit and Wolf's formula
(scikit-learn's): with as many images as pixels the sample covariance is
singular, and the shrinkage needs no validation choice. The estimator is then
the closed form of a Gaussian with those moments (recongap.posterior.gaussian),
x^ = m + S A^T (A S A^T + s^2 I)^-1 (y - A m). On a Gaussian prior it tends
to the exact posterior mean (`lmmse`) as the training set grows; on any other
prior it is the strongest linear baseline, and its gap to the learned
methods is what nonlinearity buys.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import ledoit_wolf_shrinkage

from ..operators import LinearOperator
from ..posterior.gaussian import GaussianPosterior


class EmpiricalMoments:
    """Mean and shrunk covariance of a set of images (N, 1, *shape), in float64.

    S = (1 - a) C + a (tr C / n) I with C the sample covariance (1/N) and a
    the Ledoit-Wolf shrinkage. S is applied as C v = X^T (X v) / N on the
    centred images X, never formed."""

    def __init__(self, images: np.ndarray | torch.Tensor) -> None:
        x = torch.as_tensor(np.asarray(images), dtype=torch.float64)
        if x.dim() < 3 or x.shape[0] < 2:
            raise ValueError(f"training images must be (N >= 2, 1, *shape), got {tuple(x.shape)}")
        self.image_shape = tuple(x.shape[2:])
        flat = x.reshape(x.shape[0], -1)
        self._mean = flat.mean(0)
        self._centred = flat - self._mean
        self.shrinkage = float(ledoit_wolf_shrinkage(self._centred.numpy(), assume_centered=True))
        self._level = float((self._centred**2).mean())  # tr C / n

    def mean_image(self) -> torch.Tensor:
        return self._mean.reshape(self.image_shape)

    def covariance_apply(self, v: torch.Tensor) -> torch.Tensor:
        """S v for a batch of images v (..., *shape)."""
        flat = v.to(torch.float64).reshape(-1, self._mean.numel())
        sample = (flat @ self._centred.T) @ self._centred / self._centred.shape[0]
        return ((1 - self.shrinkage) * sample + self.shrinkage * self._level * flat).reshape(v.shape)

    def variance_image(self) -> torch.Tensor:
        sample = (self._centred**2).mean(0)
        return ((1 - self.shrinkage) * sample + self.shrinkage * self._level).reshape(self.image_shape)


class LinearMMSE:
    """x^ = m + S A^T (A S A^T + s^2 I)^-1 (y - A m) with the mean m and shrunk
    covariance S of the first `max_train_items` training images (a bound on
    memory: at the paper scale all of them in float64 would take some 4 GB);
    `noise_std` is the data's."""

    def __init__(self, operator: LinearOperator, train_images: np.ndarray | torch.Tensor, noise_std: float, max_train_items: int = 4096) -> None:
        self.moments = EmpiricalMoments(train_images[:max_train_items])
        self.posterior = GaussianPosterior(self.moments, operator, noise_std)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.posterior.mean(y)

    def fit(self, y: torch.Tensor, x: torch.Tensor) -> dict:
        """Nothing is chosen on validation; reports the shrinkage the training images gave."""
        return {"shrinkage": self.moments.shrinkage}
