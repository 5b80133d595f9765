"""Per-item reference files: resume skips done items, changed settings redo them."""

from __future__ import annotations

import numpy as np

from recongap.posterior.store import ItemReference, is_flagged, item_path, load_item, load_reference, run_items, summarize


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


def test_load_reference_names_a_missing_item(tmp_path):
    run_items(tmp_path, [0], lambda i: {"item": i}, Recorder())
    assert list(load_reference(tmp_path)) == [0]
    try:
        load_reference(tmp_path, [0, 1])
    except ValueError as e:
        assert "item_00001.npz" in str(e)
    else:
        raise AssertionError("a missing item must fail")
