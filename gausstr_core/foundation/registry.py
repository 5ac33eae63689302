"""Build providers from spec dicts such as {"name": "dinov2", "weights": "/path/model.safetensors", "device": "cpu"}.

Spec keys besides `name` are the provider's constructor arguments:

feature providers
  dinov2     weights (file or timm hub id), arch, input_size [H, W], model_kwargs, device
  maskclip   model (open_clip name or local-dir:/folder), weights, featup_dir, featup_entry,
             featup_kwargs, output_stride, normalization (imagenet | clip), device
  synthetic  see gausstr_core.foundation.synthetic.SyntheticFeatureProvider
depth providers
  depth_anything  weights (model folder or hub id), process_size, device
  metric3d        hub_dir, entry, weights, process_size [h, w], device
text encoders
  talk2dino  weights (projection file), clip_model, clip_weights, activation, templates, device
  clip       model, weights, templates, device
  synthetic  see gausstr_core.foundation.synthetic.SyntheticTextEncoder

Modules are imported only when their provider is built (timm, open_clip and transformers are heavy).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from gausstr_core.foundation.base import DepthProvider, FeatureProvider, TextEncoder

FEATURE_PROVIDERS = {
    "dinov2": "gausstr_core.foundation.dinov2:DINOv2FeatureProvider",
    "maskclip": "gausstr_core.foundation.maskclip:MaskCLIPFeatureProvider",
    "synthetic": "gausstr_core.foundation.synthetic:SyntheticFeatureProvider",
}
DEPTH_PROVIDERS = {
    "depth_anything": "gausstr_core.foundation.depth_anything:DepthAnythingProvider",
    "metric3d": "gausstr_core.foundation.metric3d:Metric3DProvider",
}
TEXT_ENCODERS = {
    "talk2dino": "gausstr_core.foundation.talk2dino:Talk2DINOTextEncoder",
    "clip": "gausstr_core.foundation.clip_text:ClipTextEncoder",
    "synthetic": "gausstr_core.foundation.synthetic:SyntheticTextEncoder",
}


def build_feature_provider(spec: dict[str, Any], device: str | None = None) -> FeatureProvider:
    """Image -> feature-map provider named by spec['name']; `device` overrides spec['device']."""
    return _build(spec, FEATURE_PROVIDERS, "feature provider", device)


def build_depth_provider(spec: dict[str, Any], device: str | None = None) -> DepthProvider:
    """Image (+ intrinsics) -> metric depth provider named by spec['name']; `device` overrides spec['device']."""
    return _build(spec, DEPTH_PROVIDERS, "depth provider", device)


def build_text_encoder(spec: dict[str, Any], device: str | None = None) -> TextEncoder:
    """Prompts -> embeddings encoder named by spec['name']; `device` overrides spec['device']."""
    return _build(spec, TEXT_ENCODERS, "text encoder", device)


def text_encoder_name(encoder: object) -> str:
    """The registry name of an encoder object's class (e.g. 'clip'), else its class name."""
    path = f"{type(encoder).__module__}:{type(encoder).__name__}"
    return next((name for name, target in TEXT_ENCODERS.items() if target == path), type(encoder).__name__)


def _build(spec: dict[str, Any], table: dict[str, str], kind: str, device: str | None) -> Any:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"{kind} spec must be a mapping with a 'name' (one of {sorted(table)}), got {spec!r}")
    name = spec["name"]
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; known: {sorted(table)}")
    kwargs = {key: value for key, value in spec.items() if key != "name"}
    if device is not None:
        kwargs["device"] = device
    module_name, class_name = table[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as err:
        raise ValueError(f"{kind} {name!r}: bad spec keys {sorted(kwargs)}: {err}") from err
    return cls(**kwargs)
