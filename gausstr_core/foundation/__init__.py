"""Foundation-model providers: image features, metric depth and text embeddings.

Build them from spec dicts with `build_feature_provider`, `build_depth_provider` and
`build_text_encoder` (see `gausstr_core.foundation.registry` for the names and spec keys); the
heavy libraries (timm, open_clip, transformers) load only when a provider needs them.
"""

from gausstr_core.foundation.base import DepthProvider, FeatureProvider, TextEncoder
from gausstr_core.foundation.registry import build_depth_provider, build_feature_provider, build_text_encoder
from gausstr_core.foundation.weights import WeightsNotFoundError

__all__ = [
    "DepthProvider",
    "FeatureProvider",
    "TextEncoder",
    "WeightsNotFoundError",
    "build_depth_provider",
    "build_feature_provider",
    "build_text_encoder",
]
