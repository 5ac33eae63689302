"""The optional depth head: camera-ray channels, bounds, GaussTR stages, loss, training, checkpoints,
the predictor's model depth and `gausstr-eval --depth model`."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from tiny_world import synthetic_world, tiny_config, untrained_checkpoint

from gausstr_core.cli import eval as eval_cli
from gausstr_core.cli.run_config import run_config
from gausstr_core.cli.train import build_parser, config_from_args
from gausstr_core.config import ModelConfig, TrainConfig
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.losses import depth_loss, gausstr_losses
from gausstr_core.model import GaussTR
from gausstr_core.model.checkpoint import build_model_from_checkpoint, load_checkpoint, save_checkpoint
from gausstr_core.model.depth_head import MIN_DEPTH, PRIOR_FAR, DepthHead, foot_prior, ray_channels
from gausstr_core.predict import OccupancyPredictor
from gausstr_core.prediction_io import load_sample_views
from gausstr_core.train.loop import mixed_step, train

B, N, H, W = 1, 2, 16, 24
OPTICAL_TO_FORWARD = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical z -> ego x


def _config(**overrides) -> ModelConfig:
    values = dict(feature_dim=16, patch_size=4, embed_dims=32, num_queries=9, num_layers=2, num_heads=2,
                  num_points=2, ffn_dims=64, mlp_hidden=64, depth_head=True, depth_head_dims=8)
    return ModelConfig(**{**values, **overrides})


def _cameras(height: float = 1.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Level cameras looking along ego x at `height` m: intrinsics, cam2ego, original_to_input (B, N, ...)."""
    k = torch.tensor([[20.0, 0.0, 12.0], [0.0, 20.0, 8.0], [0.0, 0.0, 1.0]])
    cam2ego = torch.eye(4).repeat(B, N, 1, 1)
    cam2ego[..., :3, :3] = OPTICAL_TO_FORWARD
    cam2ego[..., 2, 3] = height
    return k.expand(B, N, 3, 3), cam2ego, torch.eye(3).expand(B, N, 3, 3)


def _features(cfg: ModelConfig, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, cfg.feature_dim, H // cfg.patch_size, W // cfg.patch_size, generator=g)


def _images(seed: int = 0) -> torch.Tensor:
    """(B, N, 3, H, W) RGB in [0, 1]."""
    return torch.rand(B, N, 3, H, W, generator=torch.Generator().manual_seed(seed))


def _ground_depth(height: float = 1.5) -> torch.Tensor:
    """(B, N, H, W) optical depth of the ground plane z = 0 seen by _cameras (sky rows: 0 = none)."""
    v = torch.arange(H, dtype=torch.float32) + 0.5
    below = v - 8.0
    rows = torch.where(below > 0, height * 20.0 / below.clamp(min=1e-6), torch.zeros_like(v))
    return rows[:, None].expand(H, W).expand(B, N, H, W).clone()


def test_ray_channels_give_the_ground_plane_depth() -> None:
    intrinsics, cam2ego, original_to_input = (t.flatten(0, 1) for t in _cameras(1.5))
    rays = ray_channels(intrinsics, cam2ego, original_to_input, (H, W), (H, W), MIN_DEPTH, 51.2)
    assert rays.shape == (B * N, 3, H, W)
    v = torch.arange(H, dtype=torch.float32) + 0.5
    torch.testing.assert_close(rays[0, 0, :, 5], -(v - 8.0) / 20.0)  # ego z per metre of optical depth
    descends = v > 8.0
    assert torch.equal(rays[0, 2, :, 5].bool(), descends)
    log_ground = math.log(MIN_DEPTH) + rays[0, 1, :, 5] * (math.log(51.2) - math.log(MIN_DEPTH))
    expected = _ground_depth(1.5)[0, 0, :, 5].clamp(MIN_DEPTH, 51.2)
    torch.testing.assert_close(log_ground.exp()[descends], expected[descends], rtol=1e-4, atol=1e-4)
    assert torch.allclose(rays[0, 1, ~descends], torch.ones(()))  # never reaches the ground: the far end


def test_head_output_is_bounded_at_the_input_size() -> None:
    torch.manual_seed(0)
    head = DepthHead(in_channels=8, hidden=4, levels=3, max_depth=51.2)
    maps = [torch.randn(2, 8, 8, 12) * 1e3, torch.randn(2, 8, 4, 6) * 1e3, torch.randn(2, 8, 2, 3) * 1e3]
    intrinsics, cam2ego, original_to_input = (t.flatten(0, 1) for t in _cameras())
    with torch.no_grad():
        depth = head(maps, _images()[0], intrinsics, cam2ego, original_to_input)
    assert depth.shape == (2, H, W) and bool(torch.isfinite(depth).all())
    assert float(depth.min()) >= MIN_DEPTH * (1 - 1e-5) and float(depth.max()) <= 51.2 * (1 + 1e-5)
    with pytest.raises(ValueError, match="expected 3 neck maps"):
        head(maps[:2], _images()[0], intrinsics, cam2ego, original_to_input)
    with pytest.raises(ValueError, match=r"images must be \(M, 3, H, W\) with M = 2 views"):
        head(maps, _images()[0, :1], intrinsics, cam2ego, original_to_input)


def test_untrained_head_starts_at_the_flat_ground_depth_capped() -> None:
    torch.manual_seed(0)
    head = DepthHead(in_channels=8, hidden=4, levels=3, max_depth=51.2)
    maps = [torch.randn(2, 8, 8, 12), torch.randn(2, 8, 4, 6), torch.randn(2, 8, 2, 3)]
    intrinsics, cam2ego, original_to_input = (t.flatten(0, 1) for t in _cameras())
    with torch.no_grad():
        depth = head(maps, _images()[0], intrinsics, cam2ego, original_to_input)
    ground = _ground_depth().flatten(0, 1)
    expected = torch.where(ground > 0, ground, torch.full_like(ground, math.inf)).clamp(MIN_DEPTH, PRIOR_FAR)
    assert float(((depth - expected).abs() / expected).max()) < 0.02  # above the horizon: PRIOR_FAR
    assert bool((ground < PRIOR_FAR).any() & (ground > PRIOR_FAR).any() & (ground == 0).any())


def test_foot_prior_carries_the_ground_depth_up_to_what_stands_on_it() -> None:
    """A pole (not ground) on rows 2..5 of a column stands where the ground of row 6 is: its rows take that
    depth; ground rows keep their own; a soft g mixes in what lies below."""
    ground = torch.linspace(0.9, 0.2, 10)[None, :, None].repeat(1, 1, 3)  # far at the top, near at the bottom
    is_ground = torch.ones(1, 10, 3)
    is_ground[0, 2:6, 1] = 0.0
    prior = foot_prior(ground, is_ground)
    torch.testing.assert_close(prior[0, :, 0], ground[0, :, 0])
    torch.testing.assert_close(prior[0, 2:6, 1], ground[0, 6, 1].expand(4))
    torch.testing.assert_close(prior[0, 6:, 1], ground[0, 6:, 1])
    is_ground[0, 4, 2] = 0.25
    prior = foot_prior(ground, is_ground)
    torch.testing.assert_close(prior[0, 4, 2], 0.25 * ground[0, 4, 2] + 0.75 * ground[0, 5, 2])


def test_forward_without_depths_uses_the_head_and_equals_the_stages() -> None:
    torch.manual_seed(0)
    cfg = _config()
    model = GaussTR(cfg).eval()
    features, cameras = _features(cfg), _cameras()
    refs = model.sample_reference_points(B, N, deterministic=True)
    with torch.no_grad():
        images = _images()
        layers, head_depths = model(features, None, *cameras, ref_points=refs, images=images, return_depth=True)
        maps = model.encode(features)
        staged_depths = model.predict_depth(maps, images, *cameras)
        staged = model.decode(maps, staged_depths, *cameras, ref_points=refs)
        given = model(features, head_depths, *cameras, ref_points=refs)
        other = model(features, head_depths * 2, *cameras, ref_points=refs, images=images, return_depth=True)
        with pytest.raises(ValueError, match="the depth head needs the network-input images"):
            model(features, None, *cameras)
    assert head_depths.shape == (B, N, H, W)
    torch.testing.assert_close(head_depths, staged_depths)
    torch.testing.assert_close(layers[-1].means, staged[-1].means)
    torch.testing.assert_close(layers[-1].means, given[-1].means)
    # Given depths drive the Gaussians; the head's depth is still returned, unchanged.
    torch.testing.assert_close(other[1], head_depths)
    assert not torch.allclose(other[0][-1].means, layers[-1].means)


def test_gaussians_fed_the_heads_depth_send_no_gradient_into_the_head() -> None:
    torch.manual_seed(0)
    cfg = _config()
    model = GaussTR(cfg).train()
    layers, head_depths = model(_features(cfg), None, *_cameras(), images=_images(), return_depth=True)
    layers[-1].means.square().sum().backward(retain_graph=True)  # the neck is shared by both outputs
    head_grads = [p.grad for p in model.depth_head.parameters()]
    assert all(g is None or not g.any() for g in head_grads)
    assert model.query_embed.weight.grad is not None and model.query_embed.weight.grad.any()
    head_depths.sum().backward()  # the head's own output still carries its gradients
    assert any(p.grad is not None and p.grad.any() for p in model.depth_head.parameters())


def test_mixed_steps_spread_evenly() -> None:
    for fraction in (0.1, 0.5, 0.9):
        for start in (0, 37):
            picked = sum(mixed_step(step, fraction) for step in range(start, start + 200))
            assert abs(picked - 200 * fraction) <= 3
    assert not any(mixed_step(step, 0.0) for step in range(100))
    assert all(mixed_step(step, 1.0) for step in range(100))


def test_a_model_without_head_needs_depths() -> None:
    cfg = _config(depth_head=False)
    model = GaussTR(cfg).eval()
    features, cameras = _features(cfg), _cameras()
    assert model.depth_head is None
    with pytest.raises(ValueError, match="no depth head"):
        model(features, None, *cameras)
    with pytest.raises(ValueError, match="return_depth needs the depth head"):
        model(features, _ground_depth() + 1, *cameras, images=_images(), return_depth=True)
    with pytest.raises(ValueError, match="no depth head"):
        model.predict_depth(model.encode(features), _images(), *cameras)


def test_loss_adds_the_head_term_with_its_weight() -> None:
    torch.manual_seed(0)
    cfg = _config()
    model = GaussTR(cfg).train()
    features, cameras = _features(cfg), _cameras()
    intrinsics, cam2ego, original_to_input = cameras
    target = _ground_depth() + 80.0 * (_ground_depth() == 0)  # sky beyond the range
    layers, head_depths = model(features, target, *cameras, images=_images(), return_depth=True)
    train_cfg = TrainConfig(pca_dims=4, depth_head_weight=0.5)
    total, terms = gausstr_losses(layers, features, target, cam2ego, intrinsics, original_to_input, train_cfg,
                                  head_depths=head_depths)
    silog, l1 = depth_loss(head_depths, target.clamp(max=train_cfg.far_depth), far_depth=math.inf)
    torch.testing.assert_close(terms["depth_head/silog"], silog.detach())
    torch.testing.assert_close(terms["depth_head/l1"], l1.detach())
    layer_totals = sum(terms[f"layer{i}/total"] for i in range(cfg.num_layers))
    torch.testing.assert_close(total.detach(), layer_totals + 0.5 * (silog + train_cfg.depth_l1_weight * l1).detach())
    torch.testing.assert_close(terms["total"], total.detach())
    total.backward()
    assert all(p.grad is not None and p.grad.any() for p in model.depth_head.parameters())


def test_head_learns_a_wall_beyond_the_ground() -> None:
    """From constant features (no depth cue but the rays) the head learns a wall 6 m ahead: the ground
    prior's depth where the ground is nearer, 6 m elsewhere."""
    torch.manual_seed(0)
    cfg = _config()
    model = GaussTR(cfg).train()
    features, cameras = torch.zeros(B, N, cfg.feature_dim, H // 4, W // 4), _cameras()
    ground = _ground_depth()
    target = torch.where((ground > 0) & (ground < 6.0), ground, torch.full_like(ground, 6.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    errors = []
    images = _images()
    for _ in range(60):
        depth = model.predict_depth(model.encode(features), images, *cameras)
        silog, l1 = depth_loss(depth, target, far_depth=math.inf)
        errors.append(float(((depth.detach() - target).abs() / target).mean()))
        optimizer.zero_grad()
        (silog + 0.2 * l1).backward()
        optimizer.step()
    assert errors[-1] < 0.5 * errors[0], errors


def test_checkpoint_records_the_head_and_old_checkpoints_load(tmp_path: Path) -> None:
    config = dataclasses.replace(tiny_config(), model=_config())
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "head.pth", GaussTR(config.model), config)
    model, saved = build_model_from_checkpoint(tmp_path / "head.pth")
    assert saved.model.depth_head and model.depth_head is not None
    assert load_checkpoint(tmp_path / "head.pth")["config"]["model"]["depth_head"] is True

    # A checkpoint written before the switch existed: its config has no depth_head keys.
    plain = dataclasses.replace(config, model=_config(depth_head=False))
    save_checkpoint(tmp_path / "old.pth", GaussTR(plain.model), plain)
    ckpt = load_checkpoint(tmp_path / "old.pth")
    for key in ("depth_head", "depth_head_dims"):
        del ckpt["config"]["model"][key]
    ckpt["meta"].pop("sha256", None)  # edited by hand: no content digest (files from before it load too)
    torch.save(ckpt, tmp_path / "old.pth")
    model, saved = build_model_from_checkpoint(tmp_path / "old.pth")
    assert not saved.model.depth_head and model.depth_head is None

    # Config and weights that disagree about the head: an error naming its keys.
    ckpt["config"]["model"]["depth_head"] = True
    torch.save(ckpt, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"missing keys .*depth_head\."):
        build_model_from_checkpoint(tmp_path / "bad.pth")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One synthetic keyframe at the tiny input size; untrained tiny checkpoints with and without head."""
    root = tmp_path_factory.mktemp("depth_head")
    summary = synthetic_world(root, samples_per_scene=1)
    config = run_config(tiny_config(), str(summary.config_path), None, [])
    head_config = dataclasses.replace(config, model=dataclasses.replace(config.model, depth_head=True,
                                                                        depth_head_dims=16))
    return {"summary": summary, "config": config, "plain": untrained_checkpoint(root / "plain.pth", config),
            "head": untrained_checkpoint(root / "head.pth", head_config)}


def test_predictor_takes_depth_from_the_model(world: dict) -> None:
    predictor = OccupancyPredictor.from_checkpoint(world["head"], model_depth=True)
    data = predictor.config.data
    reader = NuScenesReader(data.dataroot, data.version, data.cameras)
    views = load_sample_views(reader.sample_record(reader.split_samples("val")[0]), data, depth=False)
    assert views.depths is None and predictor.has_depth_head
    prediction = predictor.predict(views)
    assert prediction.timings["depth"] > 0
    # The same labels as feeding the head's depth map in as given depths.
    inputs = predictor.prepare(views)
    features = predictor.features(inputs.images)
    with torch.no_grad():
        maps = predictor.model.encode(features[None])
        head_depths = predictor.model.predict_depth(
            maps, inputs.images[None], inputs.intrinsics[None], inputs.cam2ego[None], inputs.original_to_input[None])[0]
    given = predictor.predict(dataclasses.replace(views, depths=head_depths, original_to_input=inputs.original_to_input,
                                                  images=inputs.images))
    assert torch.equal(given.labels, prediction.labels)
    assert given.timings["depth"] == 0.0

    plain = OccupancyPredictor.from_checkpoint(world["plain"])
    assert not plain.has_depth_head
    with pytest.raises(ValueError, match="model_depth needs a model with a depth head"):
        plain.model_depth = True


def test_eval_scores_the_model_depth(world: dict, capsys: pytest.CaptureFixture) -> None:
    args = ["--data", str(world["summary"].dataroot), "--split", "val", "--limit", "1", "--no-progress"]
    assert eval_cli.main([str(world["head"]), *args, "--depth", "model"]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "depth" in out
    assert eval_cli.main([str(world["plain"]), *args, "--depth", "model"]) == 2
    assert "model_depth needs a model with a depth head" in capsys.readouterr().err


def test_training_updates_and_saves_the_head(tiny_train_args: list[str], tmp_path: Path) -> None:
    argv = [*tiny_train_args, "model.depth_head=true", "model.depth_head_dims=8", "--work-dir", str(tmp_path)]
    config = config_from_args(build_parser().parse_intermixed_args(argv))
    result = train(config, device="cpu", max_steps=2, show_progress=False)
    model, saved = build_model_from_checkpoint(result.last_checkpoint)
    assert saved.model.depth_head and model.depth_head is not None
    torch.manual_seed(config.train.seed)  # the loop's initial weights
    initial = GaussTR(config.model).depth_head.state_dict()
    changed = [k for k, v in model.depth_head.state_dict().items() if not torch.equal(v, initial[k])]
    assert changed, "training left every depth-head weight at its initial value"


def test_depth_head_phase_trains_only_the_head(tiny_train_args: list[str], tmp_path: Path) -> None:
    """2 joint steps, then resumed with train.depth_head_phase 0.5 up to 4 steps: steps 3-4 train the head alone on
    its loss: every other weight stays as the joint steps left it, the head's change, no rendering loss is logged."""
    argv = [*tiny_train_args, "model.depth_head=true", "model.depth_head_dims=8", "--work-dir", str(tmp_path)]
    joint = train(config_from_args(build_parser().parse_intermixed_args(argv)), device="cpu", max_steps=2,
                  show_progress=False)
    assert joint.head_phase_start is None and "feature" in joint.terms[-1]
    before = load_checkpoint(joint.last_checkpoint)["state_dict"]
    config = config_from_args(build_parser().parse_intermixed_args([*argv, "train.depth_head_phase=0.5"]))
    phase = train(config, device="cpu", resume=joint.last_checkpoint, max_steps=4, show_progress=False)
    assert phase.steps == 4 and phase.head_phase_start == 0
    head_terms = {"depth_head/silog", "depth_head/l1", "total", "grad_norm", "lr", "update_skipped"}
    assert all(set(t) == head_terms for t in phase.terms)
    after = load_checkpoint(phase.last_checkpoint)["state_dict"]
    head = [k for k in after if k.startswith("depth_head.")]
    assert head and all(not torch.equal(after[k], before[k]) for k in head if k.endswith("weight"))
    others = [k for k in after if not k.startswith("depth_head.")]
    assert others and all(torch.equal(after[k], before[k]) for k in others)


def test_head_depth_mix_feeds_the_heads_depth_to_the_decoder(tiny_train_args: list[str], tmp_path: Path) -> None:
    """train.head_depth_mix: the chosen full steps decode from the head's depth, which changes the rendering
    losses but not the head's own loss; resumed runs pick the same steps."""
    argv = [*tiny_train_args, "model.depth_head=true", "model.depth_head_dims=8", "--work-dir"]
    runs = {}
    for mix in ("0.0", "1.0", "0.5"):
        config = config_from_args(build_parser().parse_intermixed_args(
            [*argv, str(tmp_path / mix), f"train.head_depth_mix={mix}"]))
        runs[mix] = train(config, device="cpu", max_steps=4, show_progress=False).terms
    assert [t["head_depth_in"] for t in runs["0.0"]] == [0.0] * 4
    assert [t["head_depth_in"] for t in runs["1.0"]] == [1.0] * 4
    assert [t["head_depth_in"] for t in runs["0.5"]] == [float(mixed_step(s, 0.5)) for s in range(4)] == [0, 1, 0, 1]
    first_plain, first_mixed = runs["0.0"][0], runs["1.0"][0]
    assert first_plain["depth_head/silog"] == pytest.approx(first_mixed["depth_head/silog"])
    assert first_plain["depth_silog"] != pytest.approx(first_mixed["depth_silog"])
    assert runs["0.5"][0]["depth_silog"] == pytest.approx(first_plain["depth_silog"])


@pytest.mark.parametrize(("option", "bad", "bounds"), [("depth_head_phase", 1.0, r"\[0, 1\)"),
                                                    ("head_depth_mix", 1.5, r"\[0, 1\]")])
def test_head_training_options_need_the_head(
    option: str, bad: float, bounds: str, tiny_train_args: list[str], tmp_path: Path
) -> None:
    argv = [*tiny_train_args, f"train.{option}=0.5", "--work-dir", str(tmp_path)]
    config = config_from_args(build_parser().parse_intermixed_args(argv))
    with pytest.raises(ValueError, match=f"{option} needs the depth head"):
        train(config, device="cpu", max_steps=1, show_progress=False)
    with pytest.raises(ValueError, match=f"{option} must be in {bounds}"):
        TrainConfig(**{option: bad})
