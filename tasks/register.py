"""DVC stage `register` (first half): every trained model of a pipeline (its
learned methods, and the prior models pnp and the generative regularisers
use) becomes a version of `<PIPELINE>-<METHOD>` in the MLflow registry.

    python -m tasks.register PIPELINE

A version carries the checkpoint's sha256 as a tag; a checkpoint already
registered is skipped, so re-running never duplicates a version. The newest
version gets the alias `challenger`; `python -m tasks.promote` decides about
`champion` for the learned methods. A prior model (served by
tasks/serving_prior.py: noisy images to denoised ones, latents to images)
is scored on its own task, and not promoted: pnp and gen_* use the trained
model of their own DVC run, and evaluate scores them. The test PSNR at registration is a tag and a run metric.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from recongap.datasets import DataError, read_split
from recongap.evaluation import errors_on_split
from recongap.metrics import psnr
from recongap.reconstructors import get_method
from recongap.reconstructors.lightning import load_checkpoint

from . import tracking
from .common import load_configs, run_stage, stage_parser

CHECKPOINT_TAG = "checkpoint_sha256"


def model_name(pipeline: str, method: str) -> str:
    return f"{pipeline}-{method}"


def find_version(client, name: str, checkpoint_hash: str):
    """The version of `name` registered from this checkpoint, or None."""
    for version in client.search_model_versions(f"name='{name}'"):
        if version.tags.get(CHECKPOINT_TAG) == checkpoint_hash:
            return version
    return None


def register_method(pipeline: str, method: str, models: Path, data: Path, batch_size: int, stage: str) -> tuple[str, bool]:
    """Register one checkpoint (or find it registered); alias it `challenger`.
    `stage` is the dvc.yaml stage that trained it. Returns (version, whether it is new)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from . import serving, serving_prior

    out = models / pipeline / method
    checkpoint, config_file = out / "best.ckpt", out / "config.json"
    for path in (checkpoint, config_file):
        if not path.exists():
            raise DataError(f"{path}: no trained model (run `dvc repro {stage}`)")
    test_file = data / pipeline / "test.h5"
    if not test_file.exists():
        raise DataError(f"{test_file}: no test split (run `dvc repro simulate@{pipeline}`)")

    name = model_name(pipeline, method)
    client = MlflowClient()
    with open(checkpoint, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()  # as tasks/train.py hashes cwgan's init
    existing = find_version(client, name, digest) if _model_exists(client, name) else None
    if existing is not None:
        return existing.version, False

    config = json.loads(config_file.read_text())
    try:
        module = load_checkpoint(checkpoint, method, config["geometry"])
    except ValueError as e:  # another method's or geometry's, or not weights only
        raise DataError(str(e)) from None
    if get_method(method).prior_model:  # scored on its own task on the test images (its `restore`)
        python_model, figure, signature = serving_prior.__file__, *_prior_model_card(module, method, test_file)
    else:
        python_model = serving.__file__
        figure = float(errors_on_split(method, module, test_file, batch_size)[1].mean())  # reported, never decides
        example = read_split(test_file).measurements[:2].astype(np.float32)
        with torch.no_grad():
            signature = infer_signature(example, module(torch.from_numpy(example)).numpy(), params={"samples": 0})

    tags = {**tracking.stage_tags(stage), CHECKPOINT_TAG: digest, "test_psnr": f"{figure:.4f}"}
    with mlflow.start_run(experiment_id=tracking.experiment_id(pipeline), run_name=f"register-{method}", tags=tags):
        mlflow.log_params({"method": method, "checkpoint": str(checkpoint)})
        mlflow.log_metric("test_psnr", figure)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,  # stored as code: loading needs recongap, not tasks/
            artifacts={"checkpoint": str(checkpoint), "config": str(config_file)},
            signature=signature,
            # the package must be installed where the model is served
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", "recongap"],
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, "challenger", version)
    return version, True


def _prior_model_card(module, method: str, test_file: Path) -> tuple[float, object]:
    """A prior model's test PSNR on its own task (denoising, autoencoding) and
    the signature of what its served model takes (noisy images, latents)."""
    from mlflow.models import infer_signature

    images = torch.from_numpy(read_split(test_file).images)
    with torch.no_grad():
        figure = float(psnr(module.restore(images), images).mean())
        if method == "vae":
            example = torch.zeros(2, module.network.latent)
            return figure, infer_signature(example.numpy(), module(example).numpy())
        level = module.network.max_noise / 2
        return figure, infer_signature(images[:2].numpy(), module(images[:2], level).numpy(), params={"noise_std": level})


def _model_exists(client, name: str) -> bool:
    return bool(client.search_registered_models(f"name='{name}'"))


def main() -> None:
    parser = stage_parser("Register every trained learned model of one pipeline in MLflow.", "pipeline")
    parser.add_argument("--data", default="data")
    parser.add_argument("--models", default="models")
    args = parser.parse_args()
    params, catalogue = load_configs(args)
    tracking.connect()
    for method in catalogue.trained_models:
        stage = tracking.train_stage(args.pipeline, method, catalogue.sampler_methods, catalogue.prior_models)
        version, new = register_method(args.pipeline, method, Path(args.models), Path(args.data), params.evaluate.batch_size, stage)
        state = f"registered version {version}, alias challenger" if new else f"checkpoint already registered as version {version}: nothing new"
        print(f"{model_name(args.pipeline, method)}: {state}")


if __name__ == "__main__":
    run_stage(main)
