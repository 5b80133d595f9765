"""What the methods fitted to one measurement at a time share (the deep
image prior, the analytic deep prior): an iterative fit whose stopping step
and one weight are chosen on validation items, from the error recorded along
each fit, so one fit per item and weight scores every stopping step."""

from __future__ import annotations

from typing import Callable

import torch

from ..metrics import mse

#: called with the number of steps just taken (a progress bar's update)
Progress = Callable[[int], None]
Record = Callable[[int, torch.Tensor], None]


class StoppedFit:
    """A subclass provides `trajectory(y, iterations, weight, record, progress)`,
    returning the fitted image first, and calls record(step, image) every
    `record_every` steps. `weight_name` names the weight in the choice."""

    weight_name = "weight"

    def __init__(self, weights: tuple[float, ...], max_iterations: int, record_every: int) -> None:
        self.weights, self.max_iterations, self.record_every = tuple(weights), max_iterations, record_every
        self.weight, self.iterations = self.weights[0], max_iterations

    def trajectory(self, y: torch.Tensor, iterations: int, weight: float, record: Record | None = None, progress: Progress | None = None) -> tuple:
        raise NotImplementedError

    def solve(self, y: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
        """The reconstruction of one measurement (1, 1, *range shape) at the chosen settings."""
        return self.trajectory(y, self.iterations, self.weight, progress=progress)[0]

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.solve(y[i : i + 1]) for i in range(y.shape[0])])

    def fit(self, y: torch.Tensor, x: torch.Tensor, progress: Progress | None = None) -> dict:
        """For each weight, one fit of `max_iterations` steps per validation
        item, its MSE recorded every `record_every` steps; the (weight, step)
        of the lowest mean MSE is chosen."""
        scores: dict[tuple[float, int], list[float]] = {}
        for w in self.weights:
            for i in range(y.shape[0]):
                def record(step: int, image: torch.Tensor, w=w, i=i) -> None:
                    scores.setdefault((w, step), []).append(float(mse(image, x[i : i + 1])))
                self.trajectory(y[i : i + 1], self.max_iterations, w, record, progress)
        means = {key: sum(v) / len(v) for key, v in scores.items()}
        self.weight, self.iterations = min(means, key=means.get)
        return {self.weight_name: self.weight, "iterations": self.iterations}

    def fit_steps(self, items: int) -> int:
        """Steps `fit` takes on `items` validation items (for a progress bar)."""
        return len(self.weights) * items * self.max_iterations

    def choose(self, chosen: dict) -> None:
        """Set the settings `fit` chose (read back by a resumed run)."""
        self.weight, self.iterations = float(chosen[self.weight_name]), int(chosen["iterations"])
