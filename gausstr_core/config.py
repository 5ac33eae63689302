"""YAML-backed configuration dataclasses.

A config file is a YAML mapping with the sections `model`, `data`, `grid`, `inference` and
`train`; any field left out keeps its default. Command-line overrides use dotted keys with YAML
values, e.g. `train.lr=1e-4` or `data.cameras=[CAM_FRONT,CAM_BACK]`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gausstr_core.grid import OCC3D_RANGE, OCC3D_VOXEL_SIZE, VoxelGrid

NUSCENES_CAMERAS = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)


@dataclass
class ModelConfig:
    """GaussTR network hyper-parameters (defaults: the authors' Talk2DINO model)."""

    variant: str = "talk2dino"  # talk2dino | featup
    feature_dim: int = 768  # C of the input/target feature maps
    patch_size: int = 14  # network-input pixels per feature-map cell
    embed_dims: int = 256
    num_queries: int = 300  # Gaussians per view
    num_layers: int = 3
    num_heads: int = 8
    num_levels: int = 4
    num_points: int = 4
    ffn_dims: int = 2048
    mlp_hidden: int = 1024
    dropout: float = 0.1
    self_attn_scope: str = "view"  # view (authors' code) | scene (paper)
    depth_max: float = 51.2  # m, depth maps are clamped to this
    scale_range: tuple[float, float] = (1.0, 16.0)
    scale_multiplier: float = 7.5  # scale = s * depth * scale_multiplier / fx
    segment_classes: int = 0  # >0 adds the 2D segmentation head (FeatUp variant: 26)
    segment_in_dims: int = 128  # rendered (PCA) feature dims seen by the segmentation head
    segment_hidden: int = 512  # hidden width of the segmentation MLP (authors: 4 x segment_in_dims)
    deterministic_refs: bool = True  # eval mode: seeded stratified reference points (else random, as the authors)
    ref_seed: int = 0  # seed of the deterministic reference points
    depth_head: bool = False  # metric-depth head on the neck (model/depth_head.py), trained from the depth provider
    depth_head_dims: int = 64  # hidden channels of the depth head


@dataclass
class DataConfig:
    """Where the data lives and how samples are shaped."""

    dataroot: str = "data/nuscenes"
    version: str = "v1.0-trainval"
    occ_root: str = "data/nuscenes/gts"  # Occ3D gts/<scene>/<token>/labels.npz
    cache_root: str = "data/nuscenes/cache"  # prepared feature/depth maps
    train_split: str = "train"
    val_split: str = "val"
    cameras: tuple[str, ...] = NUSCENES_CAMERAS
    image_size: tuple[int, int] = (900, 1600)  # H, W of the original images
    input_size: tuple[int, int] = (504, 896)  # H, W fed to the network
    feature_kind: str = "talk2dino"  # cache sub-folder / provider name for feature maps
    depth_kind: str = "metric3d"  # cache sub-folder / provider name for depth maps
    segmentation_kind: str = ""  # optional 2D pseudo labels cache sub-folder
    feature_source: str = "cache"  # cache | online (run the frozen feature provider)
    feature_provider: dict[str, Any] = field(default_factory=dict)  # provider spec, see foundation
    depth_provider: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 2


@dataclass
class GridConfig:
    range: tuple[float, float, float, float, float, float] = OCC3D_RANGE
    size: float = OCC3D_VOXEL_SIZE

    def build(self) -> VoxelGrid:
        return VoxelGrid(range=tuple(self.range), size=self.size)


@dataclass
class InferenceConfig:
    """Gaussians -> semantic occupancy (docs/model_and_data_facts.md section 1, inference)."""

    vocabulary: str = "vocabulary_occ3d.yaml"  # a YAML path, else a packaged vocabulary (gausstr_core.resources)
    prototypes: str = ""  # optional prototype file; else computed from the vocabulary
    # text encoder spec (foundation.registry) for vocabularies without a prototype file; empty: the
    # feature provider's match (synthetic -> synthetic, maskclip -> clip)
    text_encoder: dict[str, Any] = field(default_factory=dict)
    filter_gaussians: bool = False  # Talk2DINO config: True
    min_opacity: float = 0.6
    min_extent: float = 1.5e-2  # 6 * min sigma^2 (diag of covariance) must exceed this
    density_threshold: float = 4e-2
    denoise_threshold: float = 0.1
    denoise_temperature: float = 100.0
    deterministic: bool = True
    seed: int = 0
    chunk_size: int = 1 << 22  # voxeliser: (voxel, Gaussian) evaluations per chunk, ~16 bytes each


AMP_MODES = ("fp16", "bf16", "off")
VAL_METRICS = ("miou17", "miou15", "iou", "density_iou")  # EvalResult.scores() names


@dataclass
class TrainConfig:
    """Optimisation and self-supervised losses."""

    lr: float = 2e-4
    weight_decay: float = 5e-3
    epochs: int = 24
    batch_size: int = 2
    warmup_iters: int = 200
    lr_milestones: tuple[int, ...] = (16,)  # epochs at which lr *= lr_gamma
    lr_gamma: float = 0.1
    grad_clip: float = 35.0
    # mixed precision on CUDA: fp16 (autocast + GradScaler, the authors') | bf16 (autocast) | off;
    # old configs' true / false read as bf16 / off
    amp: str | bool = "fp16"
    pca_dims: int = 128
    feature_loss_weight: float = 5.0
    depth_loss_weight: float = 1.0
    depth_l1_weight: float = 0.2
    segment_loss_weight: float = 1.0
    depth_head_weight: float = 1.0  # depth head loss (silog + depth_l1_weight * l1 against the depth maps)
    # fraction of the budget (max_seconds, else max_steps, else the epochs), at its end, in which only
    # the depth head trains, on its loss alone: no rendering, everything else frozen (train/loop.py)
    depth_head_phase: float = 0.0
    # fraction of the full steps (spread evenly) whose decoder takes the depth head's depth, detached,
    # instead of the depth maps: the Gaussians learn from the depth they get at inference (train/loop.py)
    head_depth_mix: float = 0.0
    # fraction of the budget, at its end, over which the full steps' learning rate (the schedule's) falls
    # linearly to 0 (train/loop.py); 0: the schedule alone
    lr_anneal: float = 0.0
    # decay of the weights' exponential moving average, which validation scores and checkpoints hold
    # (train/weight_average.py); 0: off, the live weights
    ema_decay: float = 0.0
    far_depth: float = 51.2  # target depth >= this is replaced by far_target
    far_target: float = 1e-3
    render_near: float = 0.1
    render_far: float = 100.0
    checkpoint_every: int = 500
    log_every: int = 50
    image_log_every: int = 500
    seed: int = 0
    work_dir: str = "work_dirs/gausstr"
    # validation during training: every val_every epochs (0: never) on val_split ("": data.val_split),
    # its first val_limit keyframes (0: all); best.pt = the checkpoint with the highest best_metric
    val_every: int = 0
    val_split: str = ""
    val_limit: int = 0
    best_metric: str = "miou17"  # one of VAL_METRICS

    def __post_init__(self) -> None:
        if self.best_metric not in VAL_METRICS:
            raise ValueError(f"config: train.best_metric must be one of {list(VAL_METRICS)}, got {self.best_metric!r}")
        if self.val_every < 0 or self.val_limit < 0:
            raise ValueError(
                f"config: train.val_every and train.val_limit must be >= 0, got {self.val_every}, {self.val_limit}"
            )
        for name in ("depth_head_phase", "lr_anneal", "ema_decay"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"config: train.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.head_depth_mix <= 1.0:
            raise ValueError(f"config: train.head_depth_mix must be in [0, 1], got {self.head_depth_mix}")
        if isinstance(self.amp, bool):
            self.amp = "bf16" if self.amp else "off"
        if self.amp not in AMP_MODES:
            raise ValueError(f"config: train.amp must be one of {list(AMP_MODES)} (or true / false), got {self.amp!r}")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML value to the annotated field type, with an error naming the key."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"config: {where} must be a mapping, got {value!r}")
        return _build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config: {where} must be a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(args) != len(value):
            raise ValueError(f"config: {where} needs {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if origin is dict or hint is Any:
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config: {where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config: {where} must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"config: {where} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"config: {where} must be a string, got {value!r}")
        return value
    return value


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"config: unknown key(s) {unknown} in {where or 'top level'}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> Config:
    """Build a Config from a nested mapping, validating every key and type."""
    return _build(Config, values or {}, "")


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=yaml_value` overrides to a nested mapping (returns a new mapping)."""
    result = _to_plain(dict(values))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"config override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"config override {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return result


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (None: defaults) and apply dotted overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"config file {path} must hold a mapping")
        values = loaded or {}
    return config_from_dict(apply_overrides(values, overrides or []))


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
