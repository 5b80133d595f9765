"""Per-item reference files: resume skips done items, changed settings redo them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from recongap.posterior.store import (
    ItemReference,
    code_fingerprint,
    is_flagged,
    item_path,
    load_item,
    load_reference,
    run_items,
    summarize,
)


def _result(i: int, rhat: float = 1.001) -> ItemReference:
    mean = np.full((1, 1, 4, 4), float(i))
    return ItemReference(
        mean=mean, std=np.ones_like(mean), samples=np.stack([mean[0]] * 3),
        diagnostics={"rhat_max": rhat, "ess_min": 900.0, "seconds": 1.0, "ess_per_second": 900.0, "acceptance": [0.7, 0.6]},
    )


class Recorder:
    """A sampler standing in for MCMC: records which items it was asked for."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, batch: list[int]) -> list[ItemReference]:
        self.calls.append(list(batch))
        return [_result(i) for i in batch]


def test_second_run_skips_done_items_and_changed_settings_redo_them(tmp_path):
    settings = {"draws": 100}
    fingerprint = lambda i: {"settings": dict(settings), "item": i}  # noqa: E731
    first = Recorder()
    done = run_items(tmp_path, [0, 1, 2], fingerprint, first, batch_items=2)
    assert first.calls == [[0, 1], [2]] and done["sampled"] == [0, 1, 2]
    item, stored = load_item(item_path(tmp_path, 1))
    assert stored == {"settings": {"draws": 100}, "item": 1} and np.all(item.mean == 1.0)

    # an interruption: item 2 never written, item 1 left half-written
    item_path(tmp_path, 2).unlink()
    item_path(tmp_path, 1).write_bytes(b"truncated")
    second = Recorder()
    done = run_items(tmp_path, [0, 1, 2], fingerprint, second, batch_items=2)
    assert second.calls == [[1, 2]] and done["skipped"] == [0]

    third = Recorder()
    assert run_items(tmp_path, [0, 1, 2], fingerprint, third)["sampled"] == [] and third.calls == []

    settings["draws"] = 200  # other settings: every item is stale
    fourth = Recorder()
    assert run_items(tmp_path, [0, 1, 2], fingerprint, fourth)["sampled"] == [0, 1, 2]
    assert load_item(item_path(tmp_path, 0))[1]["settings"] == {"draws": 200}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_summary_flags_unconverged_items(tmp_path):
    items = {0: _result(0), 1: _result(1, rhat=1.05), 2: _result(2, rhat=float("nan"))}
    summary = summarize(items, rhat_max=1.01, ess_min=400)
    assert summary["items_flagged"] == [1, 2] and summary["items"] == 3
    assert is_flagged({"rhat_max": 1.0, "ess_min": 10.0}, 1.01, 400)
    assert not is_flagged({"rhat_max": 1.0, "ess_min": 500.0}, 1.01, 400)
    # converged, but the mode probe found a better fit than the kept chains hold
    assert is_flagged({"rhat_max": 1.0, "ess_min": 500.0, "probe": {"multimodal": True}}, 1.01, 400)
    assert not is_flagged({"rhat_max": 1.0, "ess_min": 500.0, "probe": {"multimodal": False}}, 1.01, 400)


def test_summary_reports_the_probe_and_both_bayes_error_estimates():
    items = {i: _result(i) for i in range(3)}
    for i, (variance, truth, multimodal) in enumerate([(1.0, 1.2, False), (2.0, 1.9, True), (3.0, 3.2, False)]):
        items[i].diagnostics.update(bayes_mse={"variance": variance, "truth": truth}, probe={"multimodal": multimodal})
    summary = summarize(items, rhat_max=1.01, ess_min=400)
    assert summary["items_probed"] == 3 and summary["items_multimodal"] == [1] and 1 in summary["items_flagged"]
    assert summary["bayes_mse"]["variance"]["mean"] == 2.0 and summary["bayes_mse"]["variance"]["stderr"] == 1 / 3**0.5
    assert abs(summary["bayes_mse"]["truth"]["mean"] - 2.1) < 1e-12 and summary["bayes_mse"]["truth"]["items"] == 3


def test_load_reference_names_a_missing_item(tmp_path):
    run_items(tmp_path, [0], lambda i: {"item": i}, Recorder())
    assert list(load_reference(tmp_path)) == [0]
    try:
        load_reference(tmp_path, [0, 1])
    except ValueError as e:
        assert "item_00001.npz" in str(e)
    else:
        raise AssertionError("a missing item must fail")


def _import_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_code_fingerprint_follows_the_source_and_nothing_else(tmp_path):
    (tmp_path / "sampler_a.py").write_text("STEP = 0.1\n")
    (tmp_path / "prior_b.py").write_text("SCALE = 1.0\n")
    sampler = _import_file("sampler_a", tmp_path / "sampler_a.py")
    prior = _import_file("prior_b", tmp_path / "prior_b.py")

    before = code_fingerprint([sampler, prior])
    assert len(before) == 64 and int(before, 16) >= 0  # a sha256 hex digest
    assert code_fingerprint([sampler, prior]) == before  # stable across calls
    assert code_fingerprint([prior, sampler]) == before  # and across the order given
    assert code_fingerprint([sampler]) != before  # another set of modules

    (tmp_path / "sampler_a.py").write_text("STEP = 0.2  # the fix\n")
    after = code_fingerprint([sampler, prior])
    assert after != before
    assert code_fingerprint([sampler, prior]) == after


def test_code_fingerprint_of_a_module_without_a_file_fails():
    try:
        code_fingerprint([sys])
    except ValueError as e:
        assert "sys" in str(e)
    else:
        raise AssertionError("a module without a source file must fail")


def test_other_code_makes_done_items_stale(tmp_path):
    code = {"code_sha256": code_fingerprint([np])}
    fingerprint = lambda i: {"settings": {"draws": 100}, "item": i, **code}  # noqa: E731
    first = Recorder()
    assert run_items(tmp_path, [0, 1], fingerprint, first)["sampled"] == [0, 1] and first.calls == [[0], [1]]

    same_code = Recorder()
    done = run_items(tmp_path, [0, 1], fingerprint, same_code)
    assert done == {"sampled": [], "skipped": [0, 1]} and same_code.calls == []

    code["code_sha256"] = code_fingerprint([np, importlib.util])  # a sampler fix: same settings, other code
    other_code = Recorder()
    done = run_items(tmp_path, [0, 1], fingerprint, other_code)
    assert done == {"sampled": [0, 1], "skipped": []} and other_code.calls == [[0], [1]]
    assert load_item(item_path(tmp_path, 1))[1]["code_sha256"] == code["code_sha256"]
