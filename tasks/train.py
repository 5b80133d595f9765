"""DVC stage `train`: one learned method on one pipeline's data.

    python -m tasks.train PIPELINE METHOD

Writes models/PIPELINE/METHOD/{best.ckpt,last.ckpt,config.json}. A run that
was interrupted resumes from last.ckpt when started again with the same
config; a changed config starts afresh.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from recongap.config import ConfigError
from recongap.datasets import read_attrs
from recongap.reconstructors.lightning import PairedDataModule, lightning_module

from . import tracking
from .common import load_configs, run_stage, stage_parser


def main() -> None:
    parser = stage_parser("Train one learned method on one pipeline.", "pipeline", "method")
    parser.add_argument("--data", default="data")
    parser.add_argument("--out", default="models")
    args = parser.parse_args()

    params, catalogue = load_configs(args)
    if args.method not in catalogue.learned_methods:
        raise ConfigError(f"{args.pipelines}: {args.method!r} is not among learned_methods {catalogue.learned_methods}")
    data = Path(args.data) / args.pipeline
    geometry = read_attrs(data / "train.h5")["config"]["geometry"]
    settings = params.train
    config = {
        "pipeline": args.pipeline,
        "method": args.method,
        "scale": params.scale,
        "epochs": params.current.epochs,
        "geometry": geometry,
        "network": getattr(params.methods, args.method).model_dump(),
        "train": settings.model_dump(),
    }

    out = Path(args.out) / args.pipeline / args.method
    config_file = out / "config.json"
    if config_file.exists() and json.loads(config_file.read_text()) != config:
        shutil.rmtree(out)  # trained for something else: never resume from it
    out.mkdir(parents=True, exist_ok=True)
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True))

    mlflow_logger = tracking.lightning_logger(args.pipeline, f"train@{args.pipeline}-{args.method}")
    mlflow_logger.log_hyperparams(config)
    L.seed_everything(settings.seed, workers=True)
    module = lightning_module(args.method)(args.method, geometry, config["network"], lr=settings.lr, beta2=settings.beta2)
    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=params.current.epochs,
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
    last = out / "last.ckpt"
    trainer.fit(module, PairedDataModule(data, params.batch_size(args.method), settings.seed), ckpt_path=last if last.exists() else None)


if __name__ == "__main__":
    run_stage(main)
