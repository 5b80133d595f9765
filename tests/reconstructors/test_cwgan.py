"""The conditional WGAN sampler: shapes, randomness, the collapse check, training, checkpoints."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from recongap.config.schema import CWGANParams
from recongap.operators import RayTransform
from recongap.reconstructors.cwgan import CWGANModule, unbiased_mean_error
from recongap.reconstructors.lightning import load_checkpoint
from recongap.uncertainty import draw_samples, is_collapsed

SIZE = 16
TINY = CWGANParams(channels=4, depth=2, z_channels=2, critic_width=4, n_critic=2, samples=4).model_dump()


def _module(**changes) -> CWGANModule:
    torch.manual_seed(0)
    geometry = RayTransform(SIZE, angles=5).geometry.resolved()
    return CWGANModule("cwgan", geometry, {**TINY, **changes})


def _data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, SIZE, SIZE, generator=g)
    return RayTransform(SIZE, angles=5)(x), x


def test_samples_differ_and_forward_is_their_mean():
    module = _module().eval()
    y, _ = _data(3)
    with torch.no_grad():
        samples = module.sample(y, 5, torch.Generator().manual_seed(0))
        again = module.sample(y, 5, torch.Generator().manual_seed(0))
        estimate = module(y)
    assert samples.shape == (3, 5, 1, SIZE, SIZE) and estimate.shape == (3, 1, SIZE, SIZE)
    assert torch.equal(samples, again)  # seeded draws repeat
    assert float((samples[:, 0] - samples[:, 1]).abs().max()) > 0
    # chunked drawing gives the same samples as one call
    assert torch.allclose(module.sample(y, 5, torch.Generator().manual_seed(0), chunk=2).detach(), samples, atol=1e-6)


def test_collapse_check_flags_a_generator_that_ignores_z():
    module = _module().eval()
    y, _ = _data(4)
    floor = 1e-4  # an untrained generator's spread is small (~5e-3 here) but not zero
    healthy = draw_samples(module.sample, y, 8, batch_size=2)
    assert not is_collapsed(healthy, floor)
    with torch.no_grad():
        first = module.generator.unet.down[0][0]
        first.weight[:, 1:] = 0  # the z channels no longer reach the network
    ignoring_z = draw_samples(module.sample, y, 8, batch_size=2)
    assert is_collapsed(ignoring_z, floor)


@pytest.mark.parametrize("mean_weight", [0.0, 1.0])
def test_training_steps_move_both_networks_and_log_val_psnr(tmp_path, mean_weight):
    module = _module(mean_weight=mean_weight)
    generator_before = [p.detach().clone() for p in module.generator.parameters()]
    critic_before = [p.detach().clone() for p in module.critic.parameters()]
    y, x = _data(8)
    loader = DataLoader(TensorDataset(y, x), batch_size=2)
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=L.pytorch.loggers.CSVLogger(tmp_path, name="logs", version=0),
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )
    trainer.fit(module, loader, loader)
    assert any(not torch.equal(a, b) for a, b in zip(generator_before, module.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, module.critic.parameters()))
    assert "val_psnr" in trainer.callback_metrics and torch.isfinite(trainer.callback_metrics["val_psnr"])
    # 2 epochs x 4 batches: a critic step on each of the 8, a generator step
    # on every n_critic-th, counted across epochs (batches 0, 2, 4, 6)
    assert TINY["n_critic"] == 2 and trainer.global_step == 8 + 4
    assert ("mean_error" in trainer.callback_metrics) == (mean_weight > 0)
    # both cosine schedules end at 0 with the last step of their optimiser
    assert [round(o.param_groups[0]["lr"], 12) for o in trainer.optimizers] == [0.0, 0.0]


def test_unbiased_mean_error_ignores_the_spread():
    """Gaussian samples around mean m with std s: the estimate's average is
    ||m - x||^2 whatever s is, while the plain error of the sample mean grows
    by s^2 * pixels / n; the estimate is the one that does not reward collapse."""
    g = torch.Generator().manual_seed(0)
    truth = torch.zeros(1, 1, 4, 4)
    centre = torch.full((1, 1, 4, 4), 0.5)  # ||m - x||^2 = 16 * 0.25 = 4
    n, repeats = 3, 20000
    for std in (0.0, 1.0, 3.0):
        samples = centre.unsqueeze(1) + std * torch.randn(repeats, n, 1, 4, 4, generator=g)
        truths = truth.expand(repeats, -1, -1, -1)
        estimate = float(unbiased_mean_error(samples, truths))
        plain = float((samples.mean(dim=1) - truths).flatten(1).pow(2).sum(dim=1).mean())
        assert estimate == pytest.approx(4.0, abs=0.05 + 0.05 * std**2)
        assert plain == pytest.approx(4.0 + 16 * std**2 / n, rel=0.03)
    with pytest.raises(ValueError, match="at least 2 samples"):
        unbiased_mean_error(torch.zeros(2, 1, 1, 4, 4), torch.zeros(2, 1, 4, 4))


def test_nan_loss_is_reported():
    module = _module()
    with pytest.raises(FloatingPointError, match="non-finite critic loss .* batch 3"):
        module._check_finite(torch.tensor(float("nan")), "critic", 3)


def test_checkpoint_round_trip_and_refusal(tmp_path):
    module = _module()
    path = tmp_path / "best.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    geometry = module.generator.operator.geometry
    loaded = load_checkpoint(path, "cwgan", geometry)
    assert isinstance(loaded, CWGANModule) and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), module.state_dict().values()))
    with pytest.raises(ValueError, match="checkpoint is for method 'cwgan', asked for 'lpd'"):
        load_checkpoint(path, "lpd", geometry)


def test_checkpoint_without_newer_options_gets_their_defaults(tmp_path):
    """A checkpoint saved before `mean_weight` and `val_samples` existed loads
    and validates (training reads the same filled options): the module fills
    missing options from CWGANParams instead of raising KeyError."""
    module = _module()
    old = {k: v for k, v in TINY.items() if k not in ("mean_weight", "val_samples")}
    hparams = {**dict(module.hparams), "network": old}
    path = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": hparams, "state_dict": module.state_dict()}, path)
    loaded = load_checkpoint(path, "cwgan", module.generator.operator.geometry)
    defaults = CWGANParams()
    assert loaded.options["mean_weight"] == defaults.mean_weight
    assert loaded.options["val_samples"] == defaults.val_samples
    y, x = _data(4)
    loaded.log = lambda *args, **kwargs: None  # outside a Trainer
    loaded.validation_step((y, x), 0)
    # a checkpoint saved while `epochs` was a single number (registered models of 790682b-cd2f8e9) loads too
    torch.save({"hyper_parameters": {**dict(module.hparams), "network": {**TINY, "epochs": 1}}, "state_dict": module.state_dict()}, path)
    loaded = load_checkpoint(path, "cwgan", module.generator.operator.geometry)
    assert "epochs" not in loaded.options  # a budget, not an option of the model
    loaded.log = lambda *args, **kwargs: None
    loaded.validation_step((y, x), 0)


def _postproc(channels: int = 4, depth: int = 2, filter: str = "hann"):
    from recongap.reconstructors.lightning import ReconstructionModule

    torch.manual_seed(2)
    geometry = RayTransform(SIZE, angles=5).geometry.resolved()
    module = ReconstructionModule("postproc", geometry, {"channels": channels, "depth": depth, "filter": filter})
    with torch.no_grad():  # stand-in for training: weights and BatchNorm statistics unlike a fresh U-Net's
        for p in module.network.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for m in module.network.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    return module.eval()


def test_generator_starts_as_the_trained_postproc_whatever_z():
    module, postproc = _module().eval(), _postproc()
    y, _ = _data(3)
    with torch.no_grad():
        before = module.sample(y, 4, torch.Generator().manual_seed(0))
        module.start_from(postproc)
        after = module.sample(y, 4, torch.Generator().manual_seed(0))
        target = postproc(y)
    assert float((before[:, 0] - target).abs().max()) > 1e-3  # not already equal
    for k in range(4):  # every sample is postproc's estimate: the noise weights start at zero
        assert torch.allclose(after[:, k], target, atol=1e-5)


@pytest.mark.parametrize(
    "changes, message",
    [({"channels": 8}, "differs from the network to start from"), ({"filter": "ram-lak"}, "'hann' FBP filter, the network to start from uses 'ram-lak'")],
)
def test_start_from_refuses_another_network_shape_or_filter(changes, message):
    module = _module()
    with pytest.raises(ValueError, match=message):
        module.start_from(_postproc(**changes))
