"""cwgan training settings compared on a short budget of real data.

    python -m benchmarks.cwgan_settings data/ellipses --batches 300 \
        --set '{}' --set '{"mean_weight": 1.0, "n_critic": 2, "lr": 1e-3}'

For each `--set` (JSON overrides of params.yaml `methods.cwgan`), trains a
cwgan from seed 0 (its generator from random weights, or from `--init`) for `--batches` batches of its batch size
(`methods.cwgan.batch_size`, overridable too) on
DATA/train.h5, then scores it on the first `--items` items of DATA/val.h5:
PSNR of the mean of `--samples` draws, 90% pixelwise coverage and mean pixel
std. Prints one JSON line per setting. A screen, not a full training run:
GAN figures move a lot early on, so compare settings at the same budget.
`--init models/PIPELINE/postproc/best.ckpt` starts each generator from that
trained postproc, as the train_sampler stage does.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L

from recongap.config import load_params
from recongap.config.schema import CWGANParams
from recongap.datasets import PairedDataset, read_attrs
from recongap.metrics import psnr
from recongap.reconstructors.cwgan import CWGANModule
from recongap.reconstructors.lightning import PairedDataModule, load_checkpoint
from recongap.uncertainty import credible_coverage, draw_samples, pixel_std

from .common import machine


def screen(data: Path, overrides: dict, batches: int, items: int, samples: int, init: Path | None = None) -> dict:
    params = load_params()
    # validated: a misspelt key is refused by name, not silently ignored
    options = CWGANParams(**{**params.methods.cwgan.model_dump(), **overrides}).model_dump()
    geometry = read_attrs(data / "train.h5")["config"]["geometry"]
    L.seed_everything(params.train.seed)
    module = CWGANModule("cwgan", geometry, options)
    if init is not None:  # a checkpoint of another method, geometry or size: ValueError naming both
        module.start_from(load_checkpoint(init, "postproc", geometry))
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=batches, limit_val_batches=0, accelerator="cpu", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    start = time.perf_counter()
    batch_size = options["batch_size"]
    trainer.fit(module, PairedDataModule(data, batch_size, params.train.seed))
    train_seconds = time.perf_counter() - start

    val = PairedDataset(data / "val.h5")
    y, x = val.measurements[:items], val.images[:items]
    module.eval()
    draws = draw_samples(module.sample, y, samples, batch_size=8)
    return {
        "overrides": overrides,
        "init": str(init) if init else None,
        "batch_size": batch_size,
        "train_seconds": round(train_seconds, 1),
        "val_psnr": round(float(psnr(draws.mean(dim=1), x).mean()), 2),
        "coverage_90": round(float(credible_coverage(draws, x).mean()), 3),
        "mean_pixel_std": round(float(pixel_std(draws).mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a simulated pipeline folder, e.g. data/ellipses")
    parser.add_argument("--set", dest="settings", action="append", type=json.loads, default=None,
                        help="JSON overrides of methods.cwgan; repeat to compare settings")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--init", type=Path, default=None, help="a trained postproc checkpoint to start the generator from")
    args = parser.parse_args()
    for split in ("train.h5", "val.h5"):
        if not (args.data / split).is_file():
            parser.error(f"{args.data / split} not found: run `dvc repro simulate@<pipeline>` first")
    if args.init is not None and not args.init.is_file():
        parser.error(f"{args.init} not found: run `dvc repro train@<pipeline>-postproc` first")
    for overrides in args.settings or [{}]:
        try:
            result = screen(args.data, overrides, args.batches, args.items, args.samples, args.init)
        except ValueError as e:
            parser.error(f"--set {json.dumps(overrides)}: {e}")
        print(json.dumps({"benchmark": "cwgan_settings", "machine": machine(), "batches": args.batches,
                          "items": args.items, "samples": args.samples, **result}), flush=True)


if __name__ == "__main__":
    main()
