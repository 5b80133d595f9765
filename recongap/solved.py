"""The reconstructions of a method optimised per measurement, item by item.

A folder per (pipeline, method): `settings.json` (everything the results
depend on), `chosen.json` (the settings picked on validation) and one
`items/NNNN.npy` per solved test item with its `items/NNNN.json` (seconds),
plus `items/phantom.npy` for the unseen phantom. Every file is written to a
temporary name and renamed, so an interrupted run leaves whole items only.
While a run works an `in_progress` marker is there: a restart with the same
settings after an interruption solves only the missing items, while a
finished run (DVC reruns one only when its code, data or inputs changed)
starts afresh, as tasks/train.py does for checkpoints.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from .datasets import DataError
from .files import atomic_path, write_text_atomic


class SolvedItems:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.items_dir = self.directory / "items"

    # --- writing ----------------------------------------------------------------
    def start(self, settings: dict) -> bool:
        """Prepare the folder for a run with `settings`: an interrupted run of
        the same settings is kept (returns True: a resume); anything else is
        cleared (returns False). Either way the run is marked in progress."""
        settings_file, marker = self.directory / "settings.json", self.directory / "in_progress"
        settings = json.loads(json.dumps(settings))  # as stored: tuples become lists
        if marker.exists() and settings_file.exists() and json.loads(settings_file.read_text()) == settings:
            return True
        if self.directory.exists():
            shutil.rmtree(self.directory)
        self.items_dir.mkdir(parents=True)
        write_text_atomic(settings_file, json.dumps(settings, indent=2, sort_keys=True) + "\n")
        marker.write_text("removed when this run ends; while here, a restart with the same settings resumes\n")
        return False

    def finish(self) -> None:
        """Every item is solved: the next run starts afresh."""
        (self.directory / "in_progress").unlink()

    def chosen(self) -> dict | None:
        path = self.directory / "chosen.json"
        return json.loads(path.read_text()) if path.exists() else None

    def write_chosen(self, chosen: dict) -> None:
        write_text_atomic(self.directory / "chosen.json", json.dumps(chosen, indent=2, sort_keys=True) + "\n")

    def has(self, key: str) -> bool:
        return (self.items_dir / f"{key}.json").exists()

    def write(self, key: str, estimate: torch.Tensor, seconds: float) -> None:
        """One item's reconstruction (1, 1, *shape); its .json, written last, marks it done."""
        with atomic_path(self.items_dir / f"{key}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, estimate.detach().cpu().numpy().astype(np.float32))
        write_text_atomic(self.items_dir / f"{key}.json", json.dumps({"seconds": seconds}) + "\n")

    # --- reading ----------------------------------------------------------------
    def read(self, items: int, run: str) -> tuple[torch.Tensor, torch.Tensor, float, dict]:
        """(estimates of test items 0..items-1, the phantom's, seconds per image,
        the chosen settings); a missing one is a DataError saying to `run`."""
        keys = [item_key(i) for i in range(items)] + ["phantom"]
        missing = [k for k in keys if not self.has(k)]
        chosen = self.chosen()
        if missing or chosen is None:
            what = f"items {missing[:4]}{'...' if len(missing) > 4 else ''}" if missing else "chosen.json"
            raise DataError(f"{self.directory}: {what} not solved (run `{run}`)")
        arrays = [torch.from_numpy(np.load(self.items_dir / f"{k}.npy")) for k in keys]
        seconds = [json.loads((self.items_dir / f"{k}.json").read_text())["seconds"] for k in keys[:-1]]
        return torch.cat(arrays[:-1]), arrays[-1], sum(seconds) / len(seconds), chosen


def item_key(index: int) -> str:
    return f"{index:04d}"
