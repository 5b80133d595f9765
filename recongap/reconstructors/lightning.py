"""Lightning wrappers: a LightningModule per learned method and the data module."""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..datasets import PairedDataset
from ..metrics import mse, psnr
from ..operators import canonical, operator_from
from .registry import build_network, get_method


class ReconstructionModule(L.LightningModule):
    """Trains a learned method on MSE; logs validation PSNR per epoch.

    The method and the operator's description (`geometry`, a CT geometry or
    another kind's, recongap.operators.operator_from) are saved as
    hyper-parameters, so a checkpoint knows what it was trained for (see
    `load_checkpoint`).
    """

    def __init__(self, method: str, geometry: dict, network: dict, lr: float = 1e-3, beta2: float = 0.99) -> None:
        super().__init__()
        self.save_hyperparameters()
        operator = operator_from(geometry)
        self.network = build_network(method, operator, **network)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.network(y)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """lgd/lpd checkpoints written before the step scale was stored get the
        scale recomputed from the operator, as they were trained; Lightning
        calls this on resume, `load_checkpoint` on every other load."""
        state = checkpoint["state_dict"]
        if isinstance(getattr(self.network, "scale", None), torch.Tensor) and "network.scale" not in state:
            state["network.scale"] = self.network.scale

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        y, x = batch
        loss = mse(self(y), x).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({float(loss.detach())}) at step {self.global_step}, batch {batch_idx}; "
                f"the last good checkpoint is kept"
            )
        self.log("train_mse", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        y, x = batch
        self.log("val_psnr", psnr(self(y), x).mean(), prog_bar=True, on_epoch=True)

    def configure_optimizers(self):
        return adam_with_cosine_decay(self)


def adam_with_cosine_decay(module: L.LightningModule) -> dict:
    """Adam at hparams lr and beta2, its rate decayed to 0 over the run by a
    cosine, step by step: how every MSE-trained model here trains."""
    optimizer = torch.optim.Adam(module.parameters(), lr=module.hparams.lr, betas=(0.9, module.hparams.beta2))
    steps = max(1, int(module.trainer.estimated_stepping_batches)) if module._trainer else 1
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def lightning_module(method: str) -> type[L.LightningModule]:
    """The LightningModule class that trains `method`, from the registry."""
    module_name, class_name = get_method(method).lightning_module.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def load_checkpoint(path: str | Path, method: str, geometry: dict) -> L.LightningModule:
    """Load a trained model, refusing one trained for another method or operator
    (`geometry`: the data's operator description, recongap.operators.operator_from).

    Weights only: a checkpoint (one from the registry too) holds tensors and
    plain values, never code to run. Lightning's checkpoints of every method
    load with torch's default allow-list, so none is added."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: not a weights-only checkpoint, refused ({str(e).splitlines()[0]})") from None
    hp = checkpoint.get("hyper_parameters", {})
    if hp.get("method") != method:
        raise ValueError(f"{path}: checkpoint is for method {hp.get('method')!r}, asked for {method!r}")
    trained, wanted = canonical(hp["geometry"]), canonical(geometry)
    if trained != wanted:
        raise ValueError(f"{path}: checkpoint geometry {trained} differs from the data's {wanted}")
    module = lightning_module(method)(**hp)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


class PairedDataModule(L.LightningDataModule):
    """train/val/test splits of data/<pipeline>/ as (y, x) batches."""

    def __init__(self, root: str | Path, batch_size: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.root, self.batch_size, self.seed = Path(root), batch_size, seed

    def setup(self, stage: str | None = None) -> None:
        self.train = PairedDataset(self.root / "train.h5")
        self.val = PairedDataset(self.root / "val.h5")

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True, generator=g, drop_last=len(self.train) > self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.batch_size)

