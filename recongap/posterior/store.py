"""Per-item reference posteriors on disk: written atomically, resumed, summarised.

One file per test item, `item_00007.npz`, holds the posterior mean, pixel
standard deviation, thinned samples, the sampler diagnostics and the
fingerprint of what produced it (sampler settings, data, item, and a hash of
the code that samples it). A run that was interrupted finds the items already
done with the same fingerprint and skips them; an item made with other
settings or other code is sampled again. The sampler itself lives elsewhere
(`recongap.posterior.reference`); this module only decides what to run and
keeps the results.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..datasets.io import DataError
from ..files import atomic_path, write_text_atomic

SUMMARY_NAME = "summary.json"


@dataclass
class ItemReference:
    """The reference posterior of one test item, as numpy arrays (1, 1, N, N)."""

    mean: np.ndarray
    std: np.ndarray
    samples: np.ndarray  # (S, 1, N, N), thinned
    diagnostics: dict
    closed_form_mean: np.ndarray | None = None  # Gaussian priors: the exact answer beside the MCMC one
    closed_form_std: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def code_fingerprint(modules: Iterable[ModuleType]) -> str:
    """sha256 over the source files of `modules`, in module-name order.

    Put into an item's fingerprint, it makes an item sampled by older code
    stale: a fix to the sampler or the prior redoes the items it made, where
    settings alone would call them done.
    """
    by_name = {module.__name__: module for module in modules}
    digest = hashlib.sha256()
    for name in sorted(by_name):
        file = getattr(by_name[name], "__file__", None)
        if file is None:
            raise ValueError(f"module {name} has no source file to fingerprint")
        source_sha256 = hashlib.sha256(Path(file).read_bytes()).hexdigest()
        digest.update(f"{name} {source_sha256}\n".encode())
    return digest.hexdigest()


def item_path(directory: str | Path, index: int) -> Path:
    return Path(directory) / f"item_{index:05d}.npz"


def _jsonable(value):
    """Diagnostics as plain JSON (numpy and torch scalars, tensors as lists)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def save_item(path: str | Path, item: ItemReference, fingerprint: dict) -> None:
    """Write one item's reference via a temporary file and rename."""
    arrays = {"mean": item.mean, "std": item.std, "samples": item.samples}
    if item.closed_form_mean is not None:
        arrays["closed_form_mean"] = item.closed_form_mean
        arrays["closed_form_std"] = item.closed_form_std
    meta = {"fingerprint": fingerprint, "diagnostics": _jsonable(item.diagnostics)}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)


def load_item(path: str | Path) -> tuple[ItemReference, dict]:
    """One item's reference and the fingerprint it was made with."""
    path = Path(path)
    try:
        with np.load(path) as f:
            meta = json.loads(str(f["meta"]))
            arrays = {k: f[k] for k in f.files if k != "meta"}
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: not a readable reference item file ({e})") from None
    missing = {"mean", "std", "samples"} - set(arrays)
    if missing:
        raise ValueError(f"{path}: missing array(s) {sorted(missing)}")
    item = ItemReference(diagnostics=meta["diagnostics"], **arrays)
    return item, meta["fingerprint"]


def is_done(path: str | Path, fingerprint: dict) -> bool:
    """True when the item's file exists, reads, and was made with `fingerprint`."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        _, stored = load_item(path)
    except ValueError:
        return False  # unreadable: sample it again
    return stored == json.loads(json.dumps(fingerprint, sort_keys=True))


def run_items(
    directory: str | Path,
    indices: Sequence[int],
    fingerprint: Callable[[int], dict],
    sample: Callable[[list[int]], list[ItemReference]],
    batch_items: int = 1,
) -> dict[str, list[int]]:
    """Sample every item of `indices` not already done with its fingerprint,
    `batch_items` at a time, saving each as soon as its batch ends.

    Returns which items were sampled and which were skipped.
    """
    pending = [i for i in indices if not is_done(item_path(directory, i), fingerprint(i))]
    skipped = [i for i in indices if i not in set(pending)]
    with tqdm(total=len(indices), initial=len(skipped), desc="reference items", unit="item") as bar:
        for start in range(0, len(pending), batch_items):
            batch = pending[start : start + batch_items]
            results = sample(batch)
            if len(results) != len(batch):
                raise RuntimeError(f"sampler returned {len(results)} results for {len(batch)} items")
            for i, result in zip(batch, results):
                save_item(item_path(directory, i), result, fingerprint(i))
            bar.update(len(batch))
    return {"sampled": pending, "skipped": skipped}


def is_flagged(diagnostics: dict, rhat_max: float, ess_min: float) -> bool:
    """Not to be trusted: R-hat above the bound, ESS below it, either not a
    number, the mode probe found a better fit than the kept chains hold, or
    (where the posterior is known exactly) the chains' mean disagrees with it."""
    rhat, ess = diagnostics.get("rhat_max"), diagnostics.get("ess_min")
    if rhat is None or ess is None or not math.isfinite(rhat) or not math.isfinite(ess):
        return True
    disagrees = diagnostics.get("closed_form", {}).get("agrees") is False
    return rhat > rhat_max or ess < ess_min or bool(diagnostics.get("probe", {}).get("multimodal")) or disagrees


def summarize(items: dict[int, ItemReference], rhat_max: float, ess_min: float) -> dict:
    """Diagnostics over all items: worst R-hat, least ESS, the flagged items."""
    diag = {i: item.diagnostics for i, item in sorted(items.items())}
    flagged = [i for i, d in diag.items() if is_flagged(d, rhat_max, ess_min)]

    def values(key: str) -> list[float]:
        return [float(d[key]) for d in diag.values() if d.get(key) is not None]

    seconds, ess_per_second = values("seconds"), values("ess_per_second")
    probed = [i for i, d in diag.items() if "probe" in d]
    bayes = {
        kind: mean_and_stderr([d["bayes_mse"][kind] for d in diag.values() if "bayes_mse" in d])
        for kind in ("variance", "truth")
    }
    return {
        "items": len(diag),
        "rhat_max": max(values("rhat_max"), default=float("nan")),
        "ess_min": min(values("ess_min"), default=float("nan")),
        "ess_per_second_min": min(ess_per_second, default=float("nan")),
        "seconds_per_item": sum(seconds) / len(seconds) if seconds else float("nan"),
        "thresholds": {"rhat_max": rhat_max, "ess_min": ess_min},
        "items_flagged": flagged,
        "items_probed": len(probed),
        "items_multimodal": [i for i in probed if diag[i]["probe"]["multimodal"]],
        # two estimates of the mean Bayes MSE per pixel over the items (reference.bayes_error_estimates)
        "bayes_mse": bayes,
        "per_item": {
            str(i): {k: d.get(k) for k in ("rhat_max", "ess_min", "ess_per_second", "seconds", "acceptance", "bayes_mse", "probe")}
            for i, d in diag.items()
        },
    }


def mean_and_stderr(values: list[float]) -> dict[str, float]:
    """Mean over items and its standard error (NaN with fewer than two)."""
    if not values:
        return {"mean": math.nan, "stderr": math.nan, "items": 0}
    a = np.asarray(values, dtype=np.float64)
    se = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else math.nan
    return {"mean": float(a.mean()), "stderr": se, "items": len(a)}


def write_summary(directory: str | Path, summary: dict) -> None:
    write_text_atomic(Path(directory) / SUMMARY_NAME, json.dumps(_jsonable(summary), indent=2, sort_keys=True) + "\n")


def load_reference(directory: str | Path, indices: Sequence[int] | None = None) -> dict[int, ItemReference]:
    """Every item file in `directory` (or exactly `indices`, failing on a missing one)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: no reference directory (run `dvc repro reference@PIPELINE`)")
    if indices is None:
        indices = sorted(int(p.stem.split("_")[1]) for p in directory.glob("item_*.npz"))
    out = {}
    for i in indices:
        path = item_path(directory, i)
        if not path.exists():
            raise ValueError(f"{path}: reference item missing (re-run the reference stage)")
        out[i] = load_item(path)[0]
    return out


@dataclass
class ReferencePosterior:
    """A reference stage's items, stacked for scoring: their indices in the test
    split, posterior means and pixel stds (B, 1, N, N), thinned samples
    (B, S, 1, N, N) and each item's diagnostics."""

    indices: list[int]
    mean: torch.Tensor
    std: torch.Tensor
    samples: torch.Tensor
    diagnostics: list[dict]


def read_reference(directory: str | Path, shape: int | tuple[int, ...], samples: bool = True) -> ReferencePosterior | None:
    """Every item in `directory`, checked to be images of `shape` (a size: size x size); None when
    the folder is absent or empty. The stage may cover only the first items of
    the test split, so callers compare on `indices`. samples=False leaves the
    thinned samples out (an empty tensor): the gap needs means and stds only."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    try:
        items = load_reference(directory)
    except ValueError as e:
        raise DataError(str(e)) from None
    if not items:
        return None
    shape = (shape, shape) if isinstance(shape, int) else tuple(shape)
    for i, item in items.items():
        for name in ("mean", "std"):
            if getattr(item, name).size != math.prod(shape):
                raise DataError(f"{item_path(directory, i)}: {name!r} has shape {getattr(item, name).shape}, expected images of {shape}")
    counts = {len(item.samples) for item in items.values()}
    if samples and len(counts) > 1:
        raise DataError(f"{directory}: items have different sample counts {sorted(counts)}")

    def stacked(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.stack([torch.from_numpy(np.asarray(getattr(item, name), dtype=np.float32)).reshape(shape) for item in items.values()])

    return ReferencePosterior(
        list(items), stacked("mean", (1, *shape)), stacked("std", (1, *shape)),
        stacked("samples", (-1, 1, *shape)) if samples else torch.empty(len(items), 0, 1, *shape),
        [item.diagnostics for item in items.values()],
    )
