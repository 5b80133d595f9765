"""Reconstruction methods: registry, classical baselines, networks, checkpoints."""

from __future__ import annotations

import pytest
import torch

from recongap.metrics import psnr
from recongap.operators import FILTERS, RayTransform
from recongap.priors import EllipsePrior
from recongap.reconstructors import RECONSTRUCTORS, FBPReconstructor, TVReconstructor, build_network, get_method
from recongap.reconstructors.classical import gradient, gradient_adjoint
from recongap.reconstructors.lightning import ReconstructionModule, load_checkpoint


@pytest.fixture(scope="module")
def problem():
    """32x32 ellipses, 30 angles, 5% noise."""
    g = torch.Generator().manual_seed(3)
    op = RayTransform(32, angles=30)
    prior = EllipsePrior()
    x = prior.render(prior.sample(16, g), 32).float()
    clean = op(x)
    y = clean + 0.05 * float(clean.abs().mean()) * torch.randn(clean.shape, generator=g)
    return op, x, y


def test_registry():
    assert set(RECONSTRUCTORS) == {
        "fbp", "first", "tv", "linear_mmse", "pnp", "dip", "adp", "gen_range", "gen_soft", "denoiser", "vae", "postproc", "lgd", "lpd", "cwgan",
    }
    assert [m for m in RECONSTRUCTORS if RECONSTRUCTORS[m].learned] == ["denoiser", "vae", "postproc", "lgd", "lpd", "cwgan"]
    assert [m for m in RECONSTRUCTORS if RECONSTRUCTORS[m].prior_model] == ["denoiser", "vae"]
    assert [m for m in RECONSTRUCTORS if RECONSTRUCTORS[m].per_item] == ["dip", "adp", "gen_range", "gen_soft"]
    for method in RECONSTRUCTORS.values():  # every named builder imports
        assert callable(method.build), method.name
    assert "width" in get_method("lpd").retrain
    with pytest.raises(ValueError, match="unknown method 'unet'"):
        get_method("unet")
    with pytest.raises(ValueError, match="'tv' is not learned"):
        build_network("tv", RayTransform(8, angles=3))


def test_gradient_adjoint_is_exact():
    x = torch.rand(2, 1, 9, 7, dtype=torch.float64)
    g = torch.rand(2, 2, 9, 7, dtype=torch.float64)
    assert float((gradient(x) * g).sum()) == pytest.approx(float((x * gradient_adjoint(g)).sum()), rel=1e-12)


def test_tuned_tv_beats_tuned_fbp_on_ellipses(problem):
    op, x, y = problem
    fbp, tv = FBPReconstructor(op), TVReconstructor(op, iterations=200)
    fbp.fit(y[:8], x[:8])
    tv.fit(y[:8], x[:8], weights=(3e-4, 1e-3, 3e-3))
    assert float(psnr(tv(y[8:]), x[8:]).mean()) > float(psnr(fbp(y[8:]), x[8:]).mean()) + 1.0


def _grid_argmin(build, grid, y, x):
    """The grid point whose reconstructor, built afresh, has the lowest mean squared error."""
    errors = {point: float(((build(point)(y) - x) ** 2).mean()) for point in grid}
    return min(errors, key=errors.get), errors


def test_fbp_fit_picks_the_argmin_of_its_grid(problem):
    op, x, y = problem
    scalings = (0.3, 0.5, 0.7, 1.0)
    grid = [(f, c) for f in FILTERS for c in scalings]
    best, errors = _grid_argmin(lambda point: FBPReconstructor(op, *point), grid, y[:8], x[:8])
    assert len(set(errors.values())) > len(grid) // 2  # the grid points really differ
    fbp = FBPReconstructor(op, filter="ram-lak", frequency_scaling=1.0)
    assert fbp.fit(y[:8], x[:8], scalings=scalings) == {"filter": best[0], "frequency_scaling": best[1]}


def test_tv_fit_picks_the_argmin_of_its_grid(problem):
    op, x, y = problem
    weights = (1e-4, 1e-3, 1e-2, 1e-1)
    best, errors = _grid_argmin(lambda w: TVReconstructor(op, weight=w, iterations=50), weights, y[:4], x[:4])
    assert len(set(errors.values())) == len(weights)  # the weights really differ
    tv = TVReconstructor(op, weight=1.0, iterations=50)
    assert tv.fit(y[:4], x[:4], weights=weights) == {"weight": best} and tv.weight == best


@pytest.mark.parametrize("name", ["postproc", "lgd", "lpd"])
def test_networks_map_data_to_images_and_train(name, problem):
    op, x, y = problem
    options = {"postproc": {"channels": 4, "depth": 2}, "lgd": {"iterations": 2, "width": 8}, "lpd": {"iterations": 2, "width": 8}}
    net = build_network(name, op, **options[name])
    out = net(y[:2])
    assert out.shape == x[:2].shape
    ((out - x[:2]) ** 2).mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)


def _module(method: str = "lpd", size: int = 16) -> ReconstructionModule:
    geometry = RayTransform(size, angles=5).geometry.resolved()
    return ReconstructionModule(method, geometry, {"iterations": 1, "width": 4})


@pytest.mark.parametrize("name", ["lgd", "lpd"])
def test_unrolled_updates_start_as_adler_and_oktem(name):
    # their published code: Glorot-uniform kernels, zero biases, PReLU slope 0
    torch.manual_seed(0)
    net = build_network(name, RayTransform(16, angles=8), iterations=2, width=8)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    slopes = [m for m in net.modules() if isinstance(m, torch.nn.PReLU)]
    assert len(convs) == 3 * len(slopes) // 2 > 0
    for conv in convs:
        fan_in, fan_out = conv.in_channels * 9, conv.out_channels * 9
        bound = (6 / (fan_in + fan_out)) ** 0.5
        weights = conv.weight.detach().abs()
        assert weights.max() <= bound and weights.max() > 0.8 * bound  # the whole Glorot range is used
        assert not conv.bias.detach().any()
    assert not any(s.weight.detach().any() for s in slopes)


def test_nan_loss_names_step_and_batch():
    module = _module()
    y = torch.full((2, 1, *module.network.operator.range_shape), float("nan"))
    with pytest.raises(FloatingPointError, match="step 0, batch 3"):
        module.training_step((y, torch.zeros(2, 1, 16, 16)), 3)


def test_checkpoint_from_another_method_or_geometry_is_refused(tmp_path):
    module = _module()
    path = tmp_path / "best.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    loaded = load_checkpoint(path, "lpd", module.network.operator.geometry)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), module.state_dict().values()))
    with pytest.raises(ValueError, match="checkpoint is for method 'lpd', asked for 'lgd'"):
        load_checkpoint(path, "lgd", module.network.operator.geometry)
    with pytest.raises(ValueError, match="checkpoint geometry .* differs"):
        load_checkpoint(path, "lpd", RayTransform(16, angles=7).geometry)


class _RunsCode:
    """An object whose unpickling would run code: it would write the file `marker`."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    module = _module()
    path, marker = tmp_path / "best.ckpt", tmp_path / "ran"
    hyper = {**dict(module.hparams), "payload": _RunsCode(marker)}
    torch.save({"hyper_parameters": hyper, "state_dict": module.state_dict()}, path)
    with pytest.raises(ValueError, match="best.ckpt: not a weights-only checkpoint, refused"):
        load_checkpoint(path, "lpd", module.network.operator.geometry)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["lgd", "lpd"])
def test_step_scale_is_loaded_from_the_checkpoint_not_recomputed(tmp_path, name):
    module = _module(name)
    recomputed = float(module.network.scale)
    assert recomputed == pytest.approx(1 / module.network.operator.norm())
    state = module.state_dict()
    state["network.scale"] = torch.tensor(0.125, dtype=torch.float64)  # not what the operator gives
    path = tmp_path / "best.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": state}, path)
    assert float(load_checkpoint(path, name, module.network.operator.geometry).network.scale) == 0.125

    del state["network.scale"]  # a checkpoint written before the scale was stored
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": state}, path)
    assert float(load_checkpoint(path, name, module.network.operator.geometry).network.scale) == recomputed


def test_an_interrupted_run_from_before_the_stored_step_scale_resumes(tmp_path):
    """Lightning's own resume (trainer.fit(ckpt_path=...)) loads strictly: the hook fills the scale."""
    import lightning as L

    module = _module("lgd")
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    y = module.network.operator(torch.rand(4, 1, 16, 16))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(y, torch.rand(4, 1, 16, 16)), batch_size=2)
    trainer.fit(module, data, data)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    old = torch.load(path, weights_only=True)
    del old["state_dict"]["network.scale"]  # as written before the scale was stored
    torch.save(old, path)
    again = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    resumed = _module("lgd")
    again.fit(resumed, data, data, ckpt_path=path)
    assert again.current_epoch == 2 and float(resumed.network.scale) == float(module.network.scale)
