"""Provider registry: names, spec validation, lazy imports, the synthetic providers."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from gausstr_core.foundation.base import FeatureProvider, TextEncoder
from gausstr_core.foundation.registry import build_depth_provider, build_feature_provider, build_text_encoder


def test_unknown_names_and_bad_specs() -> None:
    with pytest.raises(
        ValueError, match=r"unknown feature provider 'dino'; known: \['dinov2', 'maskclip', 'synthetic'\]"
    ):
        build_feature_provider({"name": "dino"})
    with pytest.raises(ValueError, match="unknown depth provider 'synthetic'"):
        build_depth_provider({"name": "synthetic"})
    with pytest.raises(ValueError, match="mapping with a 'name'"):
        build_text_encoder(["clip"])
    with pytest.raises(ValueError, match=r"bad spec keys \['size'\]"):
        build_feature_provider({"name": "synthetic", "size": 3})


def test_synthetic_providers_agree_through_the_registry() -> None:
    from gausstr_core.synthetic_palette import PALETTE_CLASSES, palette_tensor

    features = build_feature_provider(
        {"name": "synthetic", "feature_dim": 16, "patch_size": 4, "noise": 0.0}, device="cpu"
    )
    text = build_text_encoder({"name": "synthetic", "feature_dim": 16})
    assert isinstance(features, FeatureProvider) and isinstance(text, TextEncoder)
    car = PALETTE_CLASSES.index("car")
    image = palette_tensor()[car].view(1, 3, 1, 1).expand(1, 3, 8, 8).contiguous()
    maps = features(image)
    assert maps.shape == (1, 16, 2, 2)
    # A car-coloured image has the car prototype in every cell, the text prototype of "car".
    torch.testing.assert_close(maps[0].permute(1, 2, 0).reshape(4, 16), text.encode(["car"]).expand(4, 16))


def test_registry_import_is_light() -> None:
    code = (
        "import sys; import gausstr_core.foundation; "
        "heavy = [m for m in ('timm', 'open_clip', 'transformers') if m in sys.modules]; print(heavy); "
        "assert not heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
