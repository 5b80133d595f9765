"""The registry flavour of a learned reconstructor: an mlflow.pyfunc model
whose artifacts are the Lightning checkpoint and its config.json.

Registered as code (MLflow's models from code): the registry keeps a copy of
this file beside the checkpoint and runs it when the model loads, so a served
model needs the installed recongap package only, not this repository. Versions
registered before (pickled by reference to `tasks.serving.Reconstructor`) load
where this repository is importable, e.g. from its root.
"""

from __future__ import annotations

import json

import mlflow.models
import mlflow.pyfunc
import numpy as np
import torch

from recongap.reconstructors.lightning import load_checkpoint


class Reconstructor(mlflow.pyfunc.PythonModel):
    """predict(measurements (B, 1, *data shape) float32, e.g. (B, 1, angles, detectors) for CT) -> images
    (B, 1, N, N), or (B, 1, N) signals; with params={"samples": k} and a model that can sample, (B, k, 1, ...) samples."""

    def load_context(self, context) -> None:
        config = json.loads(open(context.artifacts["config"]).read())
        self.module = load_checkpoint(context.artifacts["checkpoint"], config["method"], config["geometry"])
        holder = getattr(self.module, "network", None) or self.module.generator  # a point estimator's network, a sampler's generator
        self.data_shape = tuple(holder.operator.range_shape)

    def predict(self, context, model_input, params: dict | None = None) -> np.ndarray:
        y = np.asarray(model_input, dtype=np.float32)
        if y.ndim != 2 + len(self.data_shape) or y.shape[1] != 1 or tuple(y.shape[2:]) != self.data_shape:
            raise ValueError(f"measurements of shape {y.shape}: expected (batch, 1, {', '.join(map(str, self.data_shape))})")
        samples = int((params or {}).get("samples") or 0)
        with torch.no_grad():
            y_t = torch.from_numpy(y)
            if samples > 0:
                if not hasattr(self.module, "sample"):
                    raise ValueError(f"{self.module.hparams.method} is a point estimator: it cannot draw samples")
                return self.module.sample(y_t, samples).numpy()
            return self.module(y_t).numpy()


mlflow.models.set_model(Reconstructor())  # what MLflow loads from the stored copy of this file
