"""Map the authors' GaussTR state dict (mmengine/mmdet module names) onto `GaussTR`.

Every key of their two released models is either renamed onto one of our parameters, or is one
of three known extras: `backbone.*` (the frozen DINOv2 ViT-B/14 of the Talk2DINO model; our
feature providers load it themselves), `gauss_heads.<i>.text_proto_embeds` ((C, P) text
prototypes, one copy per layer) and `gauss_heads.<i>.voxelizer.vol_range` (the volume, also in
our grid config). Anything else is an error that lists the keys.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gausstr_core.config import Config
from gausstr_core.model.checkpoint import atomic_save, load_state_dict_strict, save_checkpoint
from gausstr_core.model.gausstr import GaussTR
from gausstr_core.model.safe_unpickle import load_foreign_checkpoint
from gausstr_core.resources import resolve_resource
from gausstr_core.vocabulary import Vocabulary

# (authors' pattern, our replacement); each authors' key matches at most one pattern.
RENAMES: tuple[tuple[str, str], ...] = (
    (r"^query_embeds\.weight$", r"query_embed.weight"),
    (r"^neck\.scale_convs\.(\d+)\.(.+)$", r"neck.rescale.\1.\2"),
    (r"^neck\.lateral_convs\.(\d+)\.conv\.weight$", r"neck.lateral.\1.conv.weight"),
    (r"^neck\.lateral_convs\.(\d+)\.norm_layer\.(weight|bias)$", r"neck.lateral.\1.norm.\2"),
    (r"^neck\.fpn_convs\.(\d+)\.conv\.weight$", r"neck.output.\1.conv.weight"),
    (r"^neck\.fpn_convs\.(\d+)\.norm_layer\.(weight|bias)$", r"neck.output.\1.norm.\2"),
    (r"^decoder\.ref_point_head\.layers\.0\.(weight|bias)$", r"pos_mlp.fc1.\1"),
    (r"^decoder\.ref_point_head\.layers\.1\.(weight|bias)$", r"pos_mlp.fc2.\1"),
    (r"^decoder\.norm\.(weight|bias)$", r"out_norm.\1"),
    (r"^decoder\.layers\.(\d+)\.cross_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)\.(weight|bias)$",
     r"layers.\1.cross_attn.\2.\3"),
    (r"^decoder\.layers\.(\d+)\.self_attn\.attn\.(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)$",
     r"layers.\1.self_attn.\2"),
    (r"^decoder\.layers\.(\d+)\.ffn\.layers\.0\.0\.(weight|bias)$", r"layers.\1.ffn.fc1.\2"),
    (r"^decoder\.layers\.(\d+)\.ffn\.layers\.1\.(weight|bias)$", r"layers.\1.ffn.fc2.\2"),
    (r"^decoder\.layers\.(\d+)\.norms\.0\.(weight|bias)$", r"layers.\1.norm_cross.\2"),
    (r"^decoder\.layers\.(\d+)\.norms\.1\.(weight|bias)$", r"layers.\1.norm_self.\2"),
    (r"^decoder\.layers\.(\d+)\.norms\.2\.(weight|bias)$", r"layers.\1.norm_ffn.\2"),
    (r"^gauss_heads\.(\d+)\.regress_head\.layers\.0\.(weight|bias)$", r"heads.\1.offset.fc1.\2"),
    (r"^gauss_heads\.(\d+)\.regress_head\.layers\.1\.(weight|bias)$", r"heads.\1.offset.fc2.\2"),
    (r"^gauss_heads\.(\d+)\.opacity_head\.layers\.0\.(weight|bias)$", r"heads.\1.opacity.fc1.\2"),
    (r"^gauss_heads\.(\d+)\.opacity_head\.layers\.1\.(weight|bias)$", r"heads.\1.opacity.fc2.\2"),
    (r"^gauss_heads\.(\d+)\.scale_head\.layers\.0\.(weight|bias)$", r"heads.\1.scale.fc1.\2"),
    (r"^gauss_heads\.(\d+)\.scale_head\.layers\.1\.(weight|bias)$", r"heads.\1.scale.fc2.\2"),
    (r"^gauss_heads\.(\d+)\.feature_head\.layers\.0\.(weight|bias)$", r"heads.\1.feature.fc1.\2"),
    (r"^gauss_heads\.(\d+)\.feature_head\.layers\.1\.(weight|bias)$", r"heads.\1.feature.fc2.\2"),
    (r"^gauss_heads\.(\d+)\.segment_head\.layers\.0\.(weight|bias)$", r"segment_head.mlps.\1.fc1.\2"),
    (r"^gauss_heads\.(\d+)\.segment_head\.layers\.1\.(weight|bias)$", r"segment_head.mlps.\1.fc2.\2"),
)
_COMPILED = tuple((re.compile(p), r) for p, r in RENAMES)
BACKBONE_PREFIX = "backbone."
_PROTOTYPES = re.compile(r"^gauss_heads\.\d+\.text_proto_embeds$")
_VOLUME = re.compile(r"^gauss_heads\.\d+\.voxelizer\.vol_range$")


@dataclass
class ConvertedWeights:
    """The authors' state dict split up: our weights, the text prototypes (P, C) or None, the
    backbone weights (prefix removed; empty for FeatUp) and the volume range or None."""

    state_dict: dict[str, torch.Tensor]
    prototypes: torch.Tensor | None
    backbone: dict[str, torch.Tensor] = field(default_factory=dict)
    volume_range: tuple[float, ...] | None = None


def rename_key(key: str) -> str | None:
    """Our parameter name for one of the authors' keys, or None if no rule applies."""
    for pattern, replacement in _COMPILED:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return None


def split_authors_state_dict(state_dict: dict[str, torch.Tensor]) -> ConvertedWeights:
    """Rename every key; raises ValueError listing the keys no rule knows."""
    ours: dict[str, torch.Tensor] = {}
    backbone: dict[str, torch.Tensor] = {}
    prototypes: list[torch.Tensor] = []
    volumes: list[torch.Tensor] = []
    unknown = []
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"authors' state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        if key.startswith(BACKBONE_PREFIX):
            backbone[key[len(BACKBONE_PREFIX):]] = value
        elif _PROTOTYPES.match(key):
            prototypes.append(value)
        elif _VOLUME.match(key):
            volumes.append(value)
        elif (name := rename_key(key)) is not None:
            ours[name] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unknown keys in the authors' state dict ({len(unknown)}): {', '.join(sorted(unknown))}")
    for name, copies in (("text_proto_embeds", prototypes), ("voxelizer.vol_range", volumes)):
        if any(c.shape != copies[0].shape or not torch.equal(c, copies[0]) for c in copies[1:]):
            raise ValueError(f"authors' state dict: the per-layer copies of {name} differ")
    return ConvertedWeights(
        state_dict=ours,
        prototypes=prototypes[0].t().float().contiguous() if prototypes else None,
        backbone=backbone,
        volume_range=tuple(volumes[0].tolist()) if volumes else None,
    )


def read_authors_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict and the plain scalar entries of `meta` of an authors' `.pth` (allow-list unpickler)."""
    raw = load_foreign_checkpoint(path)
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        state_dict, meta = raw["state_dict"], raw.get("meta")
    elif isinstance(raw, dict) and raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        state_dict, meta = raw, None
    else:
        raise ValueError(f"{path}: no state dict found (expected an mmengine checkpoint with a 'state_dict' entry)")
    meta = meta if isinstance(meta, dict) else {}
    return dict(state_dict), {str(k): v for k, v in meta.items() if isinstance(v, (str, int, float, bool))}


def convert_authors_checkpoint(
    src: str | Path, dst: str | Path, config: Config, backbone_out: str | Path | None = None
) -> dict[str, Any]:
    """Convert an authors' `.pth` into our checkpoint format (strict: every key mapped, every
    parameter filled). Text prototypes go to the extra entry 'text_prototypes' (P, C), with the
    vocabulary whose prompts they are ('text_prototypes_vocabulary': config.inference.vocabulary,
    whose prompt order is the authors'), so predictors use them by default; backbone weights, if
    any, to `backbone_out` when given. Returns a summary (counts, notes)."""
    state_dict, meta = read_authors_checkpoint(src)
    weights = split_authors_state_dict(state_dict)
    model = GaussTR(config.model)
    load_state_dict_strict(model, weights.state_dict, f"authors' checkpoint {src}")
    notes = []
    volume = weights.volume_range
    if volume is not None and not all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(volume, config.grid.range)):
        notes.append(f"the checkpoint's volume {weights.volume_range} differs from grid.range {config.grid.range}")
    extra: dict[str, Any] = {"source": {"file": Path(src).name, "format": "mmengine", "meta": meta}}
    if weights.prototypes is not None:
        extra["text_prototypes"] = weights.prototypes
        vocabulary = Vocabulary.load(resolve_resource(config.inference.vocabulary, "vocabulary file"))
        if len(vocabulary.prompts) == weights.prototypes.shape[0]:  # their prompt order is the vocabulary's
            extra["text_prototypes_vocabulary"] = vocabulary.to_dict()
        else:
            notes.append(
                f"the checkpoint's {weights.prototypes.shape[0]} text prototypes do not fit the "
                f"{len(vocabulary.prompts)} prompts of vocabulary {vocabulary.name!r}; they will not be used by default"
            )
    save_checkpoint(dst, model, config, extra)
    if weights.backbone and backbone_out is not None:
        atomic_save(weights.backbone, backbone_out)
    elif weights.backbone:
        notes.append(f"{len(weights.backbone)} backbone tensors not written (pass a backbone output path to keep them)")
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "backbone_parameters": sum(v.numel() for v in weights.backbone.values()),
        "prototypes": None if weights.prototypes is None else tuple(weights.prototypes.shape),
        "notes": notes,
    }
