"""DINOv2 feature provider: tiny random timm weights from a local file, through the registry."""

from __future__ import annotations

import pytest
import torch
from test_foundation_fakes import TINY_DINO_KWARGS, write_tiny_dinov2

from gausstr_core.foundation.base import FeatureProvider
from gausstr_core.foundation.registry import build_feature_provider
from gausstr_core.foundation.weights import WeightsNotFoundError

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory):
    return write_tiny_dinov2(tmp_path_factory.mktemp("dino") / "tiny_dinov2.pth")


def _spec(weights, input_size=(56, 84)) -> dict:
    return {"name": "dinov2", "weights": str(weights), "input_size": list(input_size), "model_kwargs": TINY_DINO_KWARGS}


def test_patch_tokens_match_timm_and_drop_prefix_tokens(weights) -> None:
    import timm

    provider = build_feature_provider(_spec(weights), device="cpu")
    assert isinstance(provider, FeatureProvider)
    assert provider.feature_dim == 48 and provider.patch_size == 14
    images = torch.rand(2, 3, 56, 84)
    features = provider(images)
    assert features.shape == (2, 48, 4, 6)

    reference = timm.create_model(
        "vit_base_patch14_reg4_dinov2",
        pretrained=True,
        num_classes=0,
        img_size=(56, 84),
        pretrained_cfg_overlay={"file": str(weights)},
        **TINY_DINO_KWARGS,
    ).eval()
    with torch.no_grad():
        tokens = reference.forward_features((images - IMAGENET_MEAN) / IMAGENET_STD)
    assert tokens.shape[1] == 1 + 4 + 24  # class + 4 registers + 4 x 6 patches
    for b, row, col in [(0, 0, 0), (1, 3, 5), (0, 2, 1), (1, 0, 4)]:
        torch.testing.assert_close(features[b, :, row, col], tokens[b, 5 + row * 6 + col], atol=1e-5, rtol=1e-4)


def test_frozen_and_other_sizes(weights) -> None:
    provider = build_feature_provider(_spec(weights))
    provider.train()
    assert not provider.training and not any(m.training for m in provider.modules())
    assert all(not p.requires_grad for p in provider.parameters())
    images = torch.rand(1, 3, 28, 42, requires_grad=True)
    features = provider(images)
    assert features.shape == (1, 48, 2, 3) and not features.requires_grad
    with pytest.raises(ValueError, match="multiple of the patch size 14"):
        provider(torch.rand(1, 3, 30, 42))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        provider(torch.rand(3, 28, 42))


def test_missing_weights_say_what_to_download(tmp_path) -> None:
    with pytest.raises(WeightsNotFoundError, match="vit_base_patch14_reg4_dinov2.lvd142m"):
        build_feature_provider({"name": "dinov2", "weights": str(tmp_path / "absent.safetensors")})
    with pytest.raises(WeightsNotFoundError, match="no path given"):
        build_feature_provider({"name": "dinov2"})


def test_hub_id_offline_raises_weights_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="could not be fetched"):
        build_feature_provider({"name": "dinov2", "weights": "timm/no-such-model-offline", "input_size": [28, 28]})


def test_meta_checkpoint_layout_loads_the_same(weights, tmp_path) -> None:
    """Meta's dinov2_vitb14_reg4_pretrain.pth layout: mask_token, register_tokens, pos_embed with a class slot."""
    state = torch.load(weights, weights_only=True)
    class_slot = torch.randn(1, 1, state["pos_embed"].shape[-1])
    meta = {k: v for k, v in state.items() if k not in ("reg_token", "cls_token", "pos_embed")}
    meta.update(
        mask_token=torch.zeros(1, state["pos_embed"].shape[-1]),
        register_tokens=state["reg_token"],
        cls_token=state["cls_token"] - class_slot,
        pos_embed=torch.cat([class_slot, state["pos_embed"]], dim=1),
    )
    meta_path = tmp_path / "dinov2_tiny_reg4_pretrain.pth"
    torch.save(meta, meta_path)
    images = torch.rand(1, 3, 56, 84)
    expected = build_feature_provider(_spec(weights))(images)
    torch.testing.assert_close(build_feature_provider(_spec(meta_path))(images), expected, atol=1e-5, rtol=1e-4)
