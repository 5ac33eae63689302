"""Synthetic feature provider and text encoder: pixels alone give class-aligned features."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gausstr_core.data.synthetic.raycast import RayCaster
from gausstr_core.data.synthetic.render import decode_jpeg, encode_jpeg, render_view
from gausstr_core.data.synthetic.rig import nuscenes_rig
from gausstr_core.data.synthetic.scene import generate_world
from gausstr_core.foundation.base import FeatureProvider, TextEncoder
from gausstr_core.foundation.synthetic import SyntheticFeatureProvider, SyntheticTextEncoder, decode_classes
from gausstr_core.synthetic_palette import CLASS_COLORS, PALETTE_CLASSES

PATCH = 8


@pytest.fixture(scope="module")
def views() -> list:
    """Rendered views (160 x 96, so patches tile the image) of two scenes."""
    out = []
    for seed in (0, 1):
        world = generate_world(np.random.default_rng(seed), 1.0)
        caster = RayCaster(world)
        for cam in nuscenes_rig(160, 96)[:3]:
            view = render_view(
                caster,
                cam.intrinsics,
                world.path.ego2road(0.2) @ cam.cam2ego,
                160,
                96,
                torch.Generator().manual_seed(seed),
            )
            out.append(view)
    return out


def _float(image_uint8: torch.Tensor) -> torch.Tensor:
    return image_uint8.float()[None] / 255


def test_palette_covers_every_class_once() -> None:
    assert list(CLASS_COLORS) == list(PALETTE_CLASSES) and len(PALETTE_CLASSES) == 18
    assert len(set(CLASS_COLORS.values())) == 18


def test_class_colours_decode_through_shading_texture_and_jpeg(views: list) -> None:
    for view in views:
        jpeg = decode_jpeg(encode_jpeg(view.rgb, 90))
        assert (decode_classes(_float(jpeg))[0] == view.classes).float().mean() > 0.98
        buffer = io.BytesIO()  # common 4:2:0 JPEGs smear colour at edges; most pixels still decode
        Image.fromarray(view.rgb.numpy()).save(buffer, format="JPEG", quality=85)
        smeared = decode_jpeg(buffer.getvalue())
        assert (decode_classes(_float(smeared))[0] == view.classes).float().mean() > 0.85


def test_zero_shot_features_recover_the_class_map(views: list) -> None:
    provider = SyntheticFeatureProvider(feature_dim=64, patch_size=PATCH, seed=7)
    encoder = SyntheticTextEncoder(feature_dim=64, seed=7)
    assert isinstance(provider, FeatureProvider) and isinstance(encoder, TextEncoder)
    prototypes = encoder.encode(list(PALETTE_CLASSES))
    correct = total = 0
    for view in views:
        image = _float(decode_jpeg(encode_jpeg(view.rgb, 90)))
        features = provider(image)
        assert features.shape == (1, 64, 96 // PATCH, 160 // PATCH)
        predicted = torch.einsum("bchw,kc->bkhw", features, prototypes).argmax(1)[0]
        onehot = F.one_hot(view.classes, 18).permute(2, 0, 1).float()[None]
        majority = F.avg_pool2d(onehot, PATCH)[0].argmax(0)
        correct += int((predicted == majority).sum())
        total += majority.numel()
    assert correct / total > 0.9
    # A different seed gives a different table: the zero-shot match collapses.
    other = SyntheticTextEncoder(feature_dim=64, seed=8).encode(list(PALETTE_CLASSES))
    assert (torch.einsum("bchw,kc->bkhw", features, other).argmax(1)[0] == majority).float().mean() < 0.5


def test_features_depend_on_pixels_only_and_deterministically(views: list) -> None:
    provider = SyntheticFeatureProvider(feature_dim=32, patch_size=PATCH, seed=0, noise=0.2)
    a, b = _float(views[0].rgb.permute(2, 0, 1)), _float(views[1].rgb.permute(2, 0, 1))
    fa = provider(torch.cat([a, b]))
    torch.testing.assert_close(provider(a)[0], fa[0])  # same image, same features, batch or not
    noise_free = SyntheticFeatureProvider(feature_dim=32, patch_size=PATCH, seed=0, noise=0.0)
    residual = fa - noise_free(torch.cat([a, b]))
    assert residual.std() > 0.01 and not torch.allclose(residual[0], residual[1])
    with pytest.raises(ValueError, match="float"):
        provider(views[0].rgb.permute(2, 0, 1)[None])


def test_text_encoder_synonyms_unknown_prompts_and_strict_mode() -> None:
    encoder = SyntheticTextEncoder(feature_dim=16, seed=0)
    table = encoder.encode(list(PALETTE_CLASSES))
    synonyms = {
        "person": "pedestrian",
        "cone": "traffic_cone",
        "road": "driveable_surface",
        "grass": "terrain",
        "Building": "manmade",
        "a fence.": "manmade",
        "construction vehicle": "construction_vehicle",
        "sky": "sky",
        "traffic_cone": "traffic_cone",
    }
    got = encoder.encode(list(synonyms))
    for row, name in zip(got, synonyms.values()):
        torch.testing.assert_close(row, table[PALETTE_CLASSES.index(name)])
    unknown = encoder.encode(["fire hydrant", "fire hydrant"])
    torch.testing.assert_close(unknown[0], unknown[1])
    assert unknown[0].norm() == pytest.approx(1.0) and (table @ unknown[0]).abs().max() < 0.9
    with pytest.raises(KeyError, match="unknown prompt 'fire hydrant'"):
        SyntheticTextEncoder(feature_dim=16, strict=True).encode(["fire hydrant"])
    with pytest.raises(TypeError):
        encoder.encode("car")


def test_registry_builds_the_synthetic_pair() -> None:
    from gausstr_core.foundation.registry import build_feature_provider, build_text_encoder

    provider = build_feature_provider({"name": "synthetic", "feature_dim": 8, "patch_size": 4, "seed": 2})
    encoder = build_text_encoder({"name": "synthetic", "feature_dim": 8, "seed": 2})
    torch.testing.assert_close(provider.prototypes, encoder.encode(list(PALETTE_CLASSES)))
