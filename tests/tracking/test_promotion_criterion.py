"""Which figure gated promotion compares: normalized error only against a converged reference."""

from __future__ import annotations

import json

import pytest

from recongap.config.schema import RegistryParams
from recongap.datasets import DataError
from tasks.promote import promotion_criterion

REGISTRY = RegistryParams(promotion_margin_db=0.1, promotion_margin_normalized_error=0.05)


def _metrics(tmp_path, reference):
    path = tmp_path / "ellipses.json"
    path.write_text(json.dumps({"methods": {}, **({"reference": reference} if reference else {})}))
    return path


def test_psnr_without_a_converged_reference(tmp_path):
    assert promotion_criterion(tmp_path / "missing.json", REGISTRY).name == "psnr"
    assert promotion_criterion(_metrics(tmp_path, None), REGISTRY).name == "psnr"
    flagged = {"kind": "mcmc", "bayes_mse": 0.02, "items": 4, "reliable": False}
    criterion = promotion_criterion(_metrics(tmp_path, flagged), REGISTRY)
    assert (criterion.name, criterion.margin) == ("psnr", 0.1)
    assert criterion.beats(30.2, 30.0) and not criterion.beats(30.05, 30.0)


def test_normalized_error_against_closed_form_or_converged_mcmc(tmp_path):
    closed = promotion_criterion(_metrics(tmp_path, {"kind": "closed_form", "bayes_mse": 0.01}), REGISTRY)
    assert (closed.name, closed.bayes_mse, closed.items, closed.margin) == ("normalized_error", 0.01, None, 0.05)
    mcmc = promotion_criterion(_metrics(tmp_path, {"kind": "mcmc", "bayes_mse": 0.02, "items": 4, "reliable": True}), REGISTRY)
    assert (mcmc.name, mcmc.items) == ("normalized_error", 4)
    assert mcmc.beats(1.10, 1.20) and not mcmc.beats(1.18, 1.20)  # lower is better, by the margin


def test_unreadable_metrics_file_is_named(tmp_path):
    path = tmp_path / "ellipses.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="ellipses.json: not valid JSON"):
        promotion_criterion(path, REGISTRY)
