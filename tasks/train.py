"""DVC stage `train`: one learned method on one pipeline's data.

    python -m tasks.train PIPELINE METHOD
    python -m tasks.train PIPELINE cwgan --init models/PIPELINE/postproc/best.ckpt

Writes models/PIPELINE/METHOD/{best.ckpt,last.ckpt,config.json}. A run that
was interrupted (its `in_progress` marker, removed at a clean end, is still
there) resumes from last.ckpt when started again with the same config. A
changed config, or a finished run (DVC reruns one only when its code or data
changed), starts afresh. `--init` starts a sampler's
generator from a trained postproc checkpoint (its sha256 is part of the
config, so a retrained postproc never resumes an old run); a bad one is
refused before anything in the output folder changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.trainer.states import TrainerStatus

from recongap.config import ConfigError
from recongap.config.schema import Params, Pipelines, TrainParams
from recongap.datasets import DataError, read_attrs
from recongap.reconstructors.lightning import PairedDataModule, lightning_module, load_checkpoint

from . import tracking
from .common import load_configs, run_stage, stage_parser


def main() -> None:
    parser = stage_parser("Train one learned method on one pipeline.", "pipeline", "method")
    parser.add_argument("--data", default="data")
    parser.add_argument("--out", default="models")
    parser.add_argument("--init", type=Path, help="a trained postproc checkpoint to start a sampler's generator from")
    args = parser.parse_args()

    params, catalogue = load_configs(args)
    check_arguments(args, catalogue)
    data, settings = Path(args.data) / args.pipeline, params.train
    module_class = lightning_module(args.method)
    config = run_config(args, params, module_class, read_attrs(data / "train.h5")["config"]["geometry"])
    out = Path(args.out) / args.pipeline / args.method
    resume = may_resume(out, config)
    L.seed_everything(settings.seed, workers=True)
    module = module_class(args.method, config["geometry"], config["network"], lr=settings.lr, beta2=settings.beta2)
    if args.init is not None and not resume:  # checked before anything in `out` is touched
        try:
            module.start_from(load_checkpoint(args.init, "postproc", config["geometry"]))
        except ValueError as e:  # another method, geometry or network shape: named in the message
            raise DataError(f"--init {args.init}: {e}") from None
    start_output(out, config, resume)

    stage = tracking.train_stage(args.pipeline, args.method, catalogue.sampler_methods, catalogue.prior_models)
    mlflow_logger = tracking.lightning_logger(args.pipeline, stage)
    mlflow_logger.log_hyperparams({**config, "init": str(args.init)} if args.init else config)
    trainer = make_trainer(out, config, settings, module, mlflow_logger)
    trainer.fit(module, PairedDataModule(data, params.batch_size(args.method), settings.seed), ckpt_path=out / "last.ckpt" if resume else None)
    if trainer.is_global_zero and trainer.state.status == TrainerStatus.FINISHED:
        (out / "in_progress").unlink()


def check_arguments(args: argparse.Namespace, catalogue: Pipelines) -> None:
    """Refuse a method the pipeline does not train, or a bad --init, before any work."""
    if args.method not in catalogue.trained_models:
        raise ConfigError(
            f"{args.pipelines}: {args.method!r} is not among learned_methods {catalogue.learned_methods} "
            f"or sampler_methods {catalogue.sampler_methods} or prior_models {catalogue.prior_models}"
        )
    if args.init is not None and args.method not in catalogue.sampler_methods:
        raise ConfigError(f"--init: {args.method!r} trains from scratch; only sampler_methods start from a trained model")
    if args.init is not None and not args.init.is_file():
        raise DataError(f"{args.init}: no such checkpoint (run `dvc repro train@{args.pipeline}-postproc`)")


def run_config(args: argparse.Namespace, params: Params, module_class: type[L.LightningModule], geometry: dict) -> dict:
    """Everything a run's result depends on: equal configs may resume each other."""
    used = getattr(module_class, "TRAIN_KEYS", None)  # the train keys the method reads (cwgan has its own optimiser settings)
    config = {
        "pipeline": args.pipeline,
        "method": args.method,
        "scale": params.scale,
        "epochs": params.epochs(args.method),
        "geometry": geometry,
        "network": getattr(params.methods, args.method).model_dump(),
        "train": params.train.model_dump(include=set(used) if used else None),
    }
    if args.init is not None:  # its content, not its path, decides whether a run may resume
        with open(args.init, "rb") as f:
            config["init_sha256"] = hashlib.file_digest(f, "sha256").hexdigest()
    return config


def may_resume(out: Path, config: dict) -> bool:
    """An interrupted run (marker still there) of the same config resumes from last.ckpt."""
    config_file = out / "config.json"
    return (
        (out / "last.ckpt").exists() and (out / "in_progress").exists() and config_file.exists()
        and json.loads(config_file.read_text()) == config
    )


def start_output(out: Path, config: dict, resume: bool) -> None:
    """Clear a folder trained for something else (or finished), then mark the run in progress."""
    config_file = out / "config.json"
    if config_file.exists() and not resume:
        shutil.rmtree(out)  # trained for something else, finished, or never checkpointed: never resume from it
    out.mkdir(parents=True, exist_ok=True)
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True))
    (out / "in_progress").write_text("removed when this run ends; while here, a restart with the same config resumes from last.ckpt\n")


def make_trainer(out: Path, config: dict, settings: TrainParams, module: L.LightningModule, mlflow_logger: Logger) -> L.Trainer:
    """The Trainer: best and last checkpoints by validation PSNR, early stopping, CSV and MLflow logs."""
    return L.Trainer(
        default_root_dir=out,
        max_epochs=config["epochs"],
        accelerator="auto",
        devices=settings.devices,
        strategy="ddp" if settings.devices > 1 else "auto",
        deterministic="warn",
        # manual optimisation (cwgan) clips by hand; Trainer refuses to
        gradient_clip_val=settings.gradient_clip if module.automatic_optimization else None,
        logger=[L.pytorch.loggers.CSVLogger(out, name="logs", version=0), mlflow_logger],
        callbacks=[
            ModelCheckpoint(dirpath=out, filename="best", monitor="val_psnr", mode="max", save_last=True),
            EarlyStopping(monitor="val_psnr", mode="max", patience=settings.early_stopping_patience),
        ],
        enable_progress_bar=True,
        enable_model_summary=False,
    )


if __name__ == "__main__":
    run_stage(main)
