"""GaussTR forward: output structure, gradients, reference points, determinism, input errors."""

from __future__ import annotations

import math

import pytest
import torch

from gausstr_core.config import ModelConfig
from gausstr_core.model import GaussTR

B, N, H, W = 1, 2, 16, 24


def _config(**overrides) -> ModelConfig:
    values = dict(feature_dim=16, patch_size=4, embed_dims=32, num_queries=9, num_layers=2, num_heads=2,
                  num_points=2, ffn_dims=64, mlp_hidden=64)
    return ModelConfig(**{**values, **overrides})


def _inputs(cfg: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    k = torch.tensor([[20.0, 0.0, 12.0], [0.0, 20.0, 8.0], [0.0, 0.0, 1.0]])
    cam2ego = torch.eye(4).repeat(B, N, 1, 1)
    cam2ego[:, 1, :3, :3] = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical -> x fwd
    return dict(
        features=torch.randn(B, N, cfg.feature_dim, H // 4, W // 4, generator=g),
        depths=torch.rand(B, N, H, W, generator=g) * 30 + 1,
        intrinsics=k.expand(B, N, 3, 3),
        cam2ego=cam2ego,
        original_to_input=torch.eye(3).expand(B, N, 3, 3),
    )


@pytest.mark.parametrize("scope", ["view", "scene"])
def test_gradients_reach_every_trainable_parameter(scope: str) -> None:
    torch.manual_seed(0)
    cfg = _config(self_attn_scope=scope, segment_classes=5, segment_in_dims=8, segment_hidden=12)
    model = GaussTR(cfg).train()
    with torch.no_grad():  # Deformable DETR starts offsets/weights at zero: perturb so every path carries signal
        for layer in model.layers:
            layer.cross_attn.sampling_offsets.weight.normal_(0, 0.01)
            layer.cross_attn.attention_weights.weight.normal_(0, 0.01)
    layers = model(**_inputs(cfg))
    loss = torch.zeros(())
    for i, g in enumerate(layers):  # a dummy loss touching every output, one segment head per layer
        loss = loss + g.means.square().mean() + g.scales.mean() + g.opacities.mean() + g.features.square().mean()
        loss = loss + model.segment_head(g.features[..., :8], layer=i).square().mean()
    loss.backward()
    no_grad = [name for name, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not no_grad, f"parameters without gradient: {no_grad}"


def test_outputs_one_gaussian_set_per_layer_view_major() -> None:
    torch.manual_seed(0)
    cfg = _config()
    model = GaussTR(cfg).eval()
    inputs = _inputs(cfg)
    refs = model.sample_reference_points(B, N, deterministic=True)
    with torch.no_grad():
        layers = model(**inputs, ref_points=refs)
        # view 1 alone, with the same reference points, gives the second block of Gaussians
        single = model(**{k: v[:, 1:] for k, v in inputs.items()}, ref_points=refs[:, 1:])
    q = cfg.num_queries
    assert len(layers) == cfg.num_layers
    for g in layers:
        assert g.means.shape == (B, N * q, 3) and g.covariances.shape == (B, N * q, 3, 3)
        assert g.quats.shape == (B, N * q, 4) and g.opacities.shape == (B, N * q)
    torch.testing.assert_close(layers[-1].means[:, q:], single[-1].means[:, :q])
    torch.testing.assert_close(layers[-1].features[:, q:], single[-1].features[:, :q])
    # view 1 looks along ego +x: its Gaussians are in front of the car
    assert torch.all(layers[-1].means[0, q:, 0] > 0)


def test_eval_is_deterministic_and_training_draws_new_references() -> None:
    torch.manual_seed(0)
    cfg = _config(dropout=0.0)  # so that only the reference points can differ in training mode
    model = GaussTR(cfg).eval()
    inputs = _inputs(cfg)
    with torch.no_grad():
        first = model(**inputs)[-1]
        second = model(**inputs)[-1]
        assert torch.equal(first.means, second.means) and torch.equal(first.features, second.features)
        model.train()
        a, b = model(**inputs)[-1], model(**inputs)[-1]
        refs = model.sample_reference_points(B, N, deterministic=True)
        c, d = model(**inputs, ref_points=refs)[-1], model(**inputs, ref_points=refs)[-1]
    assert not torch.allclose(a.means, b.means)
    assert torch.equal(c.means, d.means)  # given reference points: no randomness left


def test_eval_without_deterministic_refs_is_stochastic() -> None:
    torch.manual_seed(0)
    cfg = _config(deterministic_refs=False)
    model = GaussTR(cfg).eval()
    inputs = _inputs(cfg)
    with torch.no_grad():
        assert not torch.allclose(model(**inputs)[-1].means, model(**inputs)[-1].means)


def test_deterministic_reference_points_are_stratified_and_seeded() -> None:
    cfg = _config(num_queries=50)
    model = GaussTR(cfg)
    refs = model.sample_reference_points(3, 4, deterministic=True)
    assert refs.shape == (3, 4, 50, 2)
    assert torch.equal(refs, model.sample_reference_points(3, 4, deterministic=True))
    assert torch.equal(refs[0], refs[2])  # independent of the batch position
    assert not torch.equal(refs[0, 0], refs[0, 1])  # views differ
    cells = math.ceil(math.sqrt(50))
    for view in refs[0]:
        cell = (view * cells).floor().long()
        ids = cell[:, 1] * cells + cell[:, 0]
        assert ids.unique().numel() == 50  # one point per cell
    other = GaussTR(_config(num_queries=50, ref_seed=1)).sample_reference_points(1, 4, deterministic=True)
    assert not torch.equal(refs[:1], other)


def test_random_reference_points_follow_the_generator() -> None:
    model = GaussTR(_config())
    a = model.sample_reference_points(2, 3, generator=torch.Generator().manual_seed(5))
    b = model.sample_reference_points(2, 3, generator=torch.Generator().manual_seed(5))
    assert a.shape == (2, 3, 9, 2) and torch.equal(a, b)
    assert torch.all((a >= 0) & (a <= 1))
    assert not torch.equal(a[0], a[1])


def test_segment_head_only_when_configured() -> None:
    assert GaussTR(_config()).segment_head is None
    head = GaussTR(_config(segment_classes=4, segment_in_dims=6, segment_hidden=10)).segment_head
    assert head(torch.randn(3, 7, 6)).shape == (3, 7, 4)
    assert not torch.equal(head.mlps[0].fc1.weight, head.mlps[1].fc1.weight)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(features=torch.zeros(B, N, 8, 4, 6)), "features have 8 channels"),
        (dict(features=torch.zeros(N, 16, 4, 6)), "features must be"),
        (dict(depths=torch.zeros(B, N + 1, H, W)), "depths must have shape"),
        (dict(intrinsics=torch.zeros(B, N, 4, 4)), "intrinsics must have shape"),
        (dict(cam2ego=torch.zeros(B, N, 3, 4)), "cam2ego must have shape"),
        (dict(original_to_input=torch.zeros(B, 1, 3, 3)), "original_to_input must have shape"),
        (dict(ref_points=torch.zeros(B, N, 4, 2)), "ref_points must have shape"),
    ],
)
def test_bad_inputs_name_the_problem(change: dict, message: str) -> None:
    cfg = _config()
    with pytest.raises(ValueError, match=message):
        GaussTR(cfg)(**{**_inputs(cfg), **change})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(variant="clip"), "variant"),
        (dict(self_attn_scope="global"), "self_attn_scope"),
        (dict(num_levels=3), "num_levels"),
        (dict(num_heads=3), "divisible by num_heads"),
        (dict(num_queries=0), "num_queries"),
    ],
)
def test_bad_configs_name_the_field(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GaussTR(_config(**change))
