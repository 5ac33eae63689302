"""open_clip providers on a tiny random CLIP: text encoder, Talk2DINO projection, MaskCLIP (+ FeatUp)."""

from __future__ import annotations

import json

import pytest
import torch
from test_foundation_fakes import write_fake_featup_hub, write_tiny_open_clip
from torch import nn

from gausstr_core.foundation.base import FeatureProvider, TextEncoder
from gausstr_core.foundation.registry import build_feature_provider, build_text_encoder
from gausstr_core.foundation.weights import WeightsNotFoundError

PROMPTS = ["car", "road", "person", "building"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory):
    return write_tiny_open_clip(tmp_path_factory.mktemp("clip") / "tiny_clip")


@pytest.fixture(scope="module")
def reference(clip_dir):
    import open_clip

    net = open_clip.create_model(f"local-dir:{clip_dir}").eval()
    return net, open_clip.get_tokenizer(f"local-dir:{clip_dir}")


def test_clip_text_matches_open_clip_and_ensembles_normalised_templates(clip_dir, reference) -> None:
    from gausstr_core.vocabulary import Vocabulary, compute_prototypes

    net, tokenizer = reference
    encoder = build_text_encoder({"name": "clip", "model": f"local-dir:{clip_dir}"})
    assert isinstance(encoder, TextEncoder) and encoder.feature_dim == 16
    with torch.no_grad():
        expected = net.encode_text(tokenizer(PROMPTS))
    torch.testing.assert_close(encoder.encode(PROMPTS), expected, atol=1e-5, rtol=1e-4)

    vocabulary = Vocabulary.from_dict({"free_class": "road", "classes": [{"name": p, "prompts": [p]} for p in PROMPTS]})
    templates = ["a photo of a {}.", "{} in the street"]
    templated = build_text_encoder({"name": "clip", "model": f"local-dir:{clip_dir}", "templates": templates})
    with torch.no_grad():
        per_template = [net.encode_text(tokenizer([t.format(p) for p in PROMPTS])) for t in templates]
    unit = [e / e.norm(dim=1, keepdim=True) for e in per_template]
    mean = (unit[0] + unit[1]) / 2
    ensemble = compute_prototypes(vocabulary, templated, "clip").embeddings
    torch.testing.assert_close(ensemble, mean / mean.norm(dim=1, keepdim=True), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ensemble.norm(dim=1), torch.ones(len(PROMPTS)))
    with pytest.raises(ValueError, match="non-empty list"):
        encoder.encode([])


def test_clip_builtin_name_with_weights_file(clip_dir, reference, tmp_path) -> None:
    import open_clip

    # Register like a built-in architecture: open_clip reads <name>.json holding the model config itself.
    config = tmp_path / "tiny-clip-test.json"
    config.write_text(json.dumps(json.loads((clip_dir / "open_clip_config.json").read_text())["model_cfg"]))
    open_clip.add_model_config(config)
    encoder = build_text_encoder(
        {"name": "clip", "model": "tiny-clip-test", "weights": str(clip_dir / "open_clip_pytorch_model.bin")}
    )
    net, tokenizer = reference
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode(PROMPTS), net.encode_text(tokenizer(PROMPTS)), atol=1e-5, rtol=1e-4)


def test_clip_missing_weights(tmp_path) -> None:
    with pytest.raises(WeightsNotFoundError, match="vit_base_patch16_clip_224.openai"):
        build_text_encoder({"name": "clip"})
    with pytest.raises(WeightsNotFoundError, match="not found"):
        build_text_encoder({"name": "clip", "model": f"local-dir:{tmp_path / 'absent'}"})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "open_clip_config.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError, match="no checkpoint"):
        build_text_encoder({"name": "clip", "model": f"local-dir:{tmp_path / 'empty'}"})


def test_talk2dino_projection_released_layout(clip_dir, reference, tmp_path) -> None:
    net, tokenizer = reference
    torch.manual_seed(1)
    w1, b1, w2, b2 = torch.randn(24, 16), torch.randn(24), torch.randn(24, 24), torch.randn(24)
    old_style = tmp_path / "vitb_mlp_infonce.pth"
    torch.save(
        {
            "linear_layer.weight": w1,
            "linear_layer.bias": b1,
            "linear_layer2.weight": w2,
            "linear_layer2.bias": b2,
            "attn_weights": torch.ones(12),
        },
        old_style,
    )
    encoder = build_text_encoder(
        {"name": "talk2dino", "weights": str(old_style), "clip_model": f"local-dir:{clip_dir}", "activation": "tanh"}
    )
    assert isinstance(encoder, TextEncoder) and encoder.feature_dim == 24
    with torch.no_grad():
        clip = net.encode_text(tokenizer(PROMPTS))
    expected = torch.tanh(clip @ w1.T + b1) @ w2.T + b2
    torch.testing.assert_close(encoder.encode(PROMPTS), expected, atol=1e-4, rtol=1e-4)

    new_style = tmp_path / "two_hidden.pth"
    w3, b3 = torch.randn(24, 24), torch.randn(24)
    torch.save(
        {
            "linear_layer.weight": w1,
            "linear_layer.bias": b1,
            "hidden_layers.0.weight": w2,
            "hidden_layers.0.bias": b2,
            "hidden_layers.1.weight": w3,
            "hidden_layers.1.bias": b3,
        },
        new_style,
    )
    relu = build_text_encoder(
        {"name": "talk2dino", "weights": str(new_style), "clip_model": f"local-dir:{clip_dir}", "activation": "relu"}
    )
    expected = torch.relu(torch.relu(clip @ w1.T + b1) @ w2.T + b2) @ w3.T + b3
    torch.testing.assert_close(relu.encode(PROMPTS), expected, atol=1e-4, rtol=1e-4)


def test_talk2dino_errors(clip_dir, tmp_path) -> None:
    with pytest.raises(WeightsNotFoundError, match="lorebianchi98/Talk2DINO"):
        build_text_encoder({"name": "talk2dino", "clip_model": f"local-dir:{clip_dir}"})
    wrong = tmp_path / "wrong_dim.pth"
    torch.save({"linear_layer.weight": torch.randn(24, 32), "linear_layer.bias": torch.randn(24)}, wrong)
    with pytest.raises(ValueError, match="expects 32-d CLIP embeddings"):
        build_text_encoder({"name": "talk2dino", "weights": str(wrong), "clip_model": f"local-dir:{clip_dir}"})
    with pytest.raises(ValueError, match="bad spec keys"):
        build_text_encoder({"name": "talk2dino", "weights": str(wrong), "colour": "red"})


def _value_path_reference(net: nn.Module, images: torch.Tensor, mean, std) -> torch.Tensor:
    """open_clip's own image forward, its last block replaced by torch attention restricted to the
    diagonal (so each token gets out_proj(value) of itself) with no residual and no MLP."""
    visual = net.visual
    block = visual.transformer.resblocks[-1]
    length = 1 + visual.grid_size[0] * visual.grid_size[1]
    diagonal = torch.full((length, length), float("-inf"))
    diagonal.fill_diagonal_(0.0)

    class ValueOnly(nn.Module):
        def forward(self, x, attn_mask=None):
            y = block.ln_1(x)
            return block.attn(y, y, y, need_weights=False, attn_mask=diagonal)[0]

    resblocks = visual.transformer.resblocks
    resblocks[-1] = ValueOnly()
    visual.output_tokens = True
    try:
        with torch.no_grad():
            normalised = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
            _, tokens = visual(normalised)
    finally:
        resblocks[-1] = block
        visual.output_tokens = False
    rows, cols = visual.grid_size
    return (tokens @ visual.proj).transpose(1, 2).reshape(images.shape[0], -1, rows, cols)


def test_maskclip_is_featups_value_path_on_imagenet_normalised_input(clip_dir, reference) -> None:
    from gausstr_core.foundation.frozen import IMAGENET_MEAN, IMAGENET_STD

    net, _ = reference
    provider = build_feature_provider({"name": "maskclip", "model": f"local-dir:{clip_dir}"})
    assert isinstance(provider, FeatureProvider)
    assert provider.feature_dim == 16 and provider.patch_size == 8
    images = torch.rand(2, 3, 32, 32)
    features = provider(images)
    torch.testing.assert_close(features, _value_path_reference(net, images, IMAGENET_MEAN, IMAGENET_STD),
                               atol=1e-5, rtol=1e-4)
    clip_normalised = _value_path_reference(net, images, net.visual.image_mean, net.visual.image_std)
    assert not torch.allclose(features, clip_normalised, atol=1e-3)  # ImageNet, not CLIP, mean/std
    clip_provider = build_feature_provider(
        {"name": "maskclip", "model": f"local-dir:{clip_dir}", "normalization": "clip"})
    torch.testing.assert_close(clip_provider(images), clip_normalised, atol=1e-5, rtol=1e-4)

    # the last block's MLP and second LayerNorm take no part
    last = provider.visual.transformer.resblocks[-1]
    with torch.no_grad():
        for parameter in (*last.mlp.parameters(), *last.ln_2.parameters()):
            parameter.add_(torch.randn_like(parameter))
    torch.testing.assert_close(provider(images), features)
    with torch.no_grad():
        last.ln_1.weight.mul_(2.0)  # ... its first LayerNorm does
    assert not torch.allclose(provider(images), features)

    other = provider(torch.rand(1, 3, 24, 40))  # position embeddings resampled to a 3 x 5 grid
    assert other.shape == (1, 16, 3, 5) and torch.isfinite(other).all()
    with pytest.raises(ValueError, match="multiple of the patch size 8"):
        provider(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="normalization must be"):
        build_feature_provider({"name": "maskclip", "model": f"local-dir:{clip_dir}", "normalization": "none"})


def test_maskclip_featup_upsampling(clip_dir, tmp_path) -> None:
    hub = write_fake_featup_hub(tmp_path / "FeatUp")
    plain = build_feature_provider({"name": "maskclip", "model": f"local-dir:{clip_dir}"})
    images = torch.rand(1, 3, 32, 48)
    base = plain(images)
    same_stride = build_feature_provider({"name": "maskclip", "model": f"local-dir:{clip_dir}", "featup_dir": str(hub)})
    torch.testing.assert_close(same_stride(images), base)  # nearest x8 then 8x8 area pooling is the identity
    finer = build_feature_provider(
        {"name": "maskclip", "model": f"local-dir:{clip_dir}", "featup_dir": str(hub), "output_stride": 4}
    )
    assert finer.patch_size == 4
    torch.testing.assert_close(finer(images), base.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    with pytest.raises(ValueError, match="needs FeatUp"):
        build_feature_provider({"name": "maskclip", "model": f"local-dir:{clip_dir}", "output_stride": 4})
    with pytest.raises(WeightsNotFoundError, match="mhamilton723/FeatUp"):
        build_feature_provider(
            {"name": "maskclip", "model": f"local-dir:{clip_dir}", "featup_dir": str(tmp_path / "no")}
        )
