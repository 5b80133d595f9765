"""The registry flavour of a prior model (pnp's denoiser, the generative
regularisers' VAE): an mlflow.pyfunc model whose artifacts are the Lightning
checkpoint and its config.json, registered as code like tasks/serving.py.

    denoiser: predict(noisy images (B, 1, *image shape), params={"noise_std": s}) -> denoised images
    vae:      predict(latents (B, latent)) -> images G(z)
"""

from __future__ import annotations

import json

import mlflow.models
import mlflow.pyfunc
import numpy as np
import torch

from recongap.reconstructors.lightning import load_checkpoint


class PriorModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        config = json.loads(open(context.artifacts["config"]).read())
        self.method = config["method"]
        self.module = load_checkpoint(context.artifacts["checkpoint"], self.method, config["geometry"])

    def predict(self, context, model_input, params: dict | None = None) -> np.ndarray:
        data = torch.from_numpy(np.asarray(model_input, dtype=np.float32))
        network = self.module.network
        with torch.no_grad():
            if self.method == "vae":
                if data.dim() != 2 or data.shape[1] != network.latent:
                    raise ValueError(f"latents of shape {tuple(data.shape)}: expected (batch, {network.latent})")
                return self.module(data).numpy()
            given = (params or {}).get("noise_std")
            level = network.max_noise / 2 if given is None else float(given)
            if data.dim() < 3 or data.shape[1] != 1:
                raise ValueError(f"images of shape {tuple(data.shape)}: expected (batch, 1, *image shape)")
            return self.module(data, level).numpy()


mlflow.models.set_model(PriorModel())  # what MLflow loads from the stored copy of this file
