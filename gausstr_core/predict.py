"""The one inference entry point: camera views -> Gaussians -> open-vocabulary semantic occupancy.

    predictor = OccupancyPredictor.from_checkpoint("model.pth", device="cuda")
    prediction = predictor.predict(Views(images, intrinsics, cam2ego, depths=depths))
    prediction.labels            # (X, Y, Z) uint8 in the vocabulary's label space
    prediction.labels_occ3d()    # Occ3D ids through the vocabulary's declared mapping

Stages (`Prediction.timings`, ms): preprocess (resize to `data.input_size` with the dataset's
ResizeCrop, so a dataset sample and the original images give the same network input), features
(feature provider, unless given), depth (depth provider, or with `model_depth` the model's depth
head, unless given), model (GaussTR in eval mode: neck and decoder, last decoder layer), voxelize
(optional Gaussian filter + voxeliser), semantics (prompt probabilities, denoising, synonym merge,
labels), total. Each stage is a public method that `predict` composes (as timm's forward_features /
forward_head): prepare, features, depths, gaussians (model, and the depth head), select_gaussians
and semantics (the OpenVocabularyHead itself, voxeliser included). Timing is one StageTimer per
call; it synchronises CUDA at the stage boundaries only with `profile=True` (benchmarks).
Deterministic by default (`inference.deterministic`): the decoder's reference points come from a
generator seeded with `inference.seed`, so identical views give identical labels.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gausstr_core.config import Config, ModelConfig
from gausstr_core.data.augment import plan_resize_crop
from gausstr_core.foundation.base import DepthProvider, FeatureProvider, TextEncoder
from gausstr_core.foundation.registry import (
    FEATURE_PROVIDERS,
    build_depth_provider,
    build_feature_provider,
    build_text_encoder,
    text_encoder_name,
)
from gausstr_core.gaussians import Gaussians
from gausstr_core.geometry import pixel_to_input_matrix
from gausstr_core.grid import VoxelGrid
from gausstr_core.model.checkpoint import build_model_from_checkpoint, load_checkpoint
from gausstr_core.query import DEFAULT_MAX_CLUSTERS, DEFAULT_THRESHOLD, QueryAnswer, SceneQuery
from gausstr_core.resources import resolve_resource
from gausstr_core.semantics import OpenVocabularyHead, SemanticOccupancy
from gausstr_core.stage_timer import StageTimer
from gausstr_core.vocabulary import Prototypes, Vocabulary, VocabularyClass, compute_prototypes, load_prototypes
from gausstr_core.voxelize import filter_gaussians

STAGES = ("preprocess", "features", "depth", "model", "voxelize", "semantics", "total")
LOG = logging.getLogger(__name__)


@dataclass
class Views:
    """N camera views of one time step as tensors, the predictor's input; `prepare` makes the
    NetworkInputs from them (the chain from ROS messages on: docs/ARCHITECTURE.md, Names).

    images: (N, 3, H, W) RGB, uint8 or float in [0, 1], each covering the full original frame at
        any resolution (normally the original; a reduced JPEG decode works too), or None when
        `features` and `depths` are given.
    intrinsics: (N, 3, 3) K of the optical frame in original pixels (of `image_size`).
    cam2ego: (N, 4, 4) optical frame -> ego frame.
    depths: (N, h, w) optical z, m, full frame at any resolution (original, or network input as in
        the prepared caches and bag depth topics); 0, NaN or inf = no measurement. None: the depth
        provider runs on `images` as given (the full original frames: the authors' setting) and its
        output is resized to the input like a given depth map.
    features: (N, C, h', w') precomputed full-frame feature maps (e.g. the prepared caches), or
        None: the feature provider runs.
    original_to_input: (N, 3, 3) original -> network-input pixels, only when images, depths and
        features are already at network-input size (as GaussTRDataset delivers them); nothing is
        resized then.
    image_size: (H, W) of the original images that `intrinsics` refer to; default: the images'
        size, else config.data.image_size.
    img_aug: deprecated keyword for original_to_input (its old name), accepted for one release with
        a DeprecationWarning; reading `views.img_aug` warns too.
    """

    images: torch.Tensor | None
    intrinsics: torch.Tensor
    cam2ego: torch.Tensor
    depths: torch.Tensor | None = None
    features: torch.Tensor | None = None
    original_to_input: torch.Tensor | None = None
    image_size: tuple[int, int] | None = None
    img_aug: dataclasses.InitVar[torch.Tensor | None] = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self, img_aug: torch.Tensor | None) -> None:
        if img_aug is None:
            return
        _warn_img_aug(stacklevel=4)  # the caller of Views(...), above __init__ and __post_init__
        if self.original_to_input is not None:
            raise ValueError("Views: give original_to_input or its deprecated name img_aug, not both")
        self.original_to_input = img_aug


def _warn_img_aug(stacklevel: int) -> None:
    warnings.warn("Views.img_aug is deprecated: it is now Views.original_to_input (the same (N, 3, 3) original -> "
                  "network-input pixel matrix); the old name goes in the next release", DeprecationWarning,
                  stacklevel=stacklevel)


class _ImgAugAlias:
    """`views.img_aug` (deprecated): warns and gives original_to_input. Inside `dataclasses` (replace() reads
    every init argument, the InitVar too) it reads None, "not given", so replace() keeps working."""

    def __get__(self, views: Views | None, owner: type | None = None) -> torch.Tensor | None:
        if views is None or sys._getframe(1).f_globals.get("__name__") == "dataclasses":
            return None
        _warn_img_aug(stacklevel=3)
        return views.original_to_input


Views.img_aug = _ImgAugAlias()  # after @dataclass, which set the InitVar's class attribute to its default, None


@dataclass
class NetworkInputs:
    """What the network takes: Views brought to the network-input size (H, W) on the predictor's device.

    images: (N, 3, H, W) float in [0, 1] or None; depths: (N, H, W) m (0 = none) or None;
    features: (N, C, H // p, W // p) or None; intrinsics (N, 3, 3) original-pixel K;
    cam2ego (N, 4, 4); original_to_input (N, 3, 3) original -> input pixels.
    """

    images: torch.Tensor | None
    depths: torch.Tensor | None
    features: torch.Tensor | None
    intrinsics: torch.Tensor
    cam2ego: torch.Tensor
    original_to_input: torch.Tensor


@dataclass
class Prediction:
    """Result for one time step; tensors live on the predictor's device.

    gaussians: Gaussians with batch dimension B = 1: the G Gaussians that were voxelised (after the
        optional filter), means (1, G, 3) ego frame, m, covariances (1, G, 3, 3) m^2, quats w x y z.
    class_probs: (G, K) per-Gaussian class probabilities (prompt softmax, synonyms merged by max).
    gaussian_labels: (G,) int64 argmax of class_probs.
    labels: (X, Y, Z) uint8 class index of `vocabulary` (free_label for empty voxels), [x, y, z].
    confidence: (X, Y, Z) probability of the chosen class.
    density: (X, Y, Z) voxelised Gaussian density.
    class_names: the vocabulary's K class names; free_label: index of its free class.
    timings: ms per stage (STAGES); CUDA-synchronised at each stage boundary only when the predictor
        profiles (`profile`), else host wall time (queued GPU work may land in a later stage).
    """

    gaussians: Gaussians
    class_probs: torch.Tensor
    gaussian_labels: torch.Tensor
    labels: torch.Tensor
    confidence: torch.Tensor
    density: torch.Tensor
    class_names: list[str]
    free_label: int
    grid: VoxelGrid
    vocabulary: Vocabulary
    timings: dict[str, float]

    def labels_occ3d(self) -> torch.Tensor:
        """(X, Y, Z) uint8 Occ3D ids via the vocabulary's declared mapping (ValueError if it has none)."""
        return self.vocabulary.to_occ3d(self.labels)


def prepare_views(
    views: Views, input_size: tuple[int, int], patch_size: int, default_image_size: tuple[int, int],
    device: torch.device | str = "cpu",
) -> NetworkInputs:
    """Validate `views` and bring them to the network input (H, W) = input_size on `device`.

    Without original_to_input every map is resized with the dataset's ResizeCrop planned from the original
    size (`views.image_size`, else the images' size, else default_image_size) to input_size.
    """
    n = _check_views(views)
    device = torch.device(device)
    images = None if views.images is None else views.images.to(device)
    eight_bit = images is not None and images.dtype == torch.uint8
    depths = None
    if views.depths is not None:
        depths = torch.nan_to_num(views.depths.to(device).float(), nan=0.0, posinf=0.0, neginf=0.0)
    features = None if views.features is None else views.features.to(device).float()
    intrinsics = views.intrinsics.to(device).float()
    cam2ego = views.cam2ego.to(device).float()
    height, width = input_size
    if views.original_to_input is not None:
        original_to_input = views.original_to_input.to(device).float()
        images = None if images is None else images.float()
        expected = {"images": (images, (height, width)), "depths": (depths, (height, width)),
                    "features": (features, (height // patch_size, width // patch_size))}
        for name, (tensor, size) in expected.items():
            if tensor is not None and tuple(tensor.shape[-2:]) != size:
                raise ValueError(
                    f"Views.{name} must be at network-input size {size} when original_to_input is given, "
                    f"got {tuple(tensor.shape[-2:])}"
                )
    else:
        source = views.image_size or (tuple(images.shape[-2:]) if images is not None else default_image_size)
        _check_principal_points(intrinsics, source)
        resize = plan_resize_crop(tuple(source), tuple(input_size))
        original_to_input = resize.matrix.to(device).expand(n, 3, 3).clone()
        images = None if images is None else resize.image(images)
        depths = None if depths is None else resize.depth(depths)
        features = None if features is None else resize.features(features, patch_size)
    if eight_bit:  # resized first, then / 255: bit-identical to GaussTRDataset and the synthetic caches
        images = images / 255.0
    return NetworkInputs(images, depths, features, intrinsics, cam2ego, original_to_input)


class OccupancyPredictor:
    """GaussTR + open-vocabulary head behind one `predict(views)` call (the ROS node's only entry).

    feature_provider / depth_provider / text_encoder: objects, registry spec dicts (built on first
    use, on `device`) or None (then views must carry features / depths, and every vocabulary needs
    prototypes). vocabulary: Vocabulary or YAML path, None: config.inference.vocabulary (with
    config.inference.prototypes when set). prototypes: Prototypes or prototype-file path for that
    vocabulary; None: encoded with the text encoder. model_depth: views without depths take the
    model's depth head instead of the depth provider (needs model.depth_head; settable later).
    profile: synchronise CUDA at every stage boundary so Prediction.timings hold each stage's own GPU
    time (benchmarks; settable later); off, predict never waits on the GPU for a timing.
    """

    def __init__(
        self,
        model: nn.Module,
        config: Config,
        *,
        device: torch.device | str = "cpu",
        feature_provider: FeatureProvider | dict[str, Any] | None = None,
        depth_provider: DepthProvider | dict[str, Any] | None = None,
        text_encoder: TextEncoder | dict[str, Any] | None = None,
        vocabulary: Vocabulary | str | Path | None = None,
        prototypes: Prototypes | str | Path | None = None,
        model_depth: bool = False,
        profile: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.profile = profile
        self.model = model.to(self.device).eval()
        self.config = config
        self.model_depth = model_depth
        self.grid = config.grid.build()
        self._feature_provider = _LazyProvider(
            feature_provider, build_feature_provider, self.device, lambda p: _check_feature_provider(p, config.model)
        )
        self._depth_provider = _LazyProvider(depth_provider, build_depth_provider, self.device)
        self._text_encoder = _LazyProvider(text_encoder, build_text_encoder, self.device)
        self.scene_query = SceneQuery(self.encode_prompts)  # open-vocabulary 3D queries (query())
        if vocabulary is None:
            vocabulary = config.inference.vocabulary
            prototypes = prototypes or config.inference.prototypes or None
        self._initial_vocabulary = (vocabulary, prototypes)
        self.set_vocabulary(vocabulary, prototypes)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: torch.device | str = "cpu",
        *,
        config: Config | None = None,
        vocabulary: Vocabulary | str | Path | None = None,
        prototypes: Prototypes | str | Path | None = None,
        feature_provider: FeatureProvider | dict[str, Any] | None = None,
        depth_provider: DepthProvider | dict[str, Any] | None = None,
        text_encoder: TextEncoder | dict[str, Any] | None = None,
        model_depth: bool = False,
        profile: bool = False,
    ) -> OccupancyPredictor:
        """Predictor for a `save_checkpoint` file.

        config: replaces the checkpoint's data, grid, inference and train sections (the model
        section always comes from the checkpoint). Providers default to the config:
        data.feature_provider (or {'name': data.feature_kind} when that names a registry provider),
        data.depth_provider, inference.text_encoder (or the feature provider's match).
        Prototypes: with no vocabulary, prototypes or inference.prototypes given, the checkpoint's own
        text prototypes (a converted authors' checkpoint, see checkpoint_prototypes) when they fit
        inference.vocabulary; otherwise as in the constructor.
        """
        model, saved = build_model_from_checkpoint(path, device)
        config = saved if config is None else dataclasses.replace(config, model=saved.model)
        if feature_provider is None:
            feature_provider = default_feature_spec(config)
        if depth_provider is None:
            depth_provider = dict(config.data.depth_provider) or None
        if text_encoder is None:
            text_encoder = dict(config.inference.text_encoder) or matching_text_encoder_spec(feature_provider)
        if vocabulary is None and prototypes is None and not config.inference.prototypes:
            prototypes = checkpoint_prototypes(path, config)
            vocabulary = None if prototypes is None else prototypes.vocabulary
        return cls(
            model, config, device=device, feature_provider=feature_provider, depth_provider=depth_provider,
            text_encoder=text_encoder, vocabulary=vocabulary, prototypes=prototypes, model_depth=model_depth,
            profile=profile,
        )

    @property
    def has_depth_head(self) -> bool:
        """Whether the model predicts depth itself (model.depth_head)."""
        return getattr(self.model, "depth_head", None) is not None

    @property
    def model_depth(self) -> bool:
        """True: views without depths get the model's depth head, not the depth provider."""
        return self._model_depth

    @model_depth.setter
    def model_depth(self, value: bool) -> None:
        if value and not self.has_depth_head:
            raise ValueError("model_depth needs a model with a depth head (model.depth_head: true in the checkpoint's "
                             "config); this one has none: give depth maps or a depth provider")
        self._model_depth = bool(value)

    @property
    def vocabulary(self) -> Vocabulary:
        return self._semantics[0]

    @property
    def head(self) -> OpenVocabularyHead:
        return self._semantics[1]

    def set_vocabulary(
        self, vocabulary: Vocabulary | str | Path, prototypes: Prototypes | str | Path | None = None
    ) -> None:
        """Swap the vocabulary at run time (no model reload). prototypes: as in the constructor."""
        if not isinstance(vocabulary, Vocabulary):
            vocabulary = Vocabulary.load(resolve_resource(vocabulary, "vocabulary file"))
        if prototypes is None:
            encoder = self._text_encoder.get()
            if encoder is None:
                raise ValueError(
                    f"vocabulary {vocabulary.name!r} needs prototypes: give a prototype file (gausstr-prepare "
                    "text; inference.prototypes) or a text encoder (inference.text_encoder)"
                )
            with torch.no_grad():
                prototypes = compute_prototypes(vocabulary, encoder, text_encoder_name(encoder))
        elif not isinstance(prototypes, Prototypes):
            prototypes = load_prototypes(resolve_resource(prototypes, "prototype file"), vocabulary)
        if prototypes.prompts != vocabulary.prompts:
            raise ValueError(
                f"prototypes are for prompts {prototypes.prompts}, not vocabulary {vocabulary.name!r}'s "
                f"{vocabulary.prompts}"
            )
        dim = prototypes.embeddings.shape[1]
        if dim != self.config.model.feature_dim:
            raise ValueError(
                f"prototypes have {dim} dims but the model's Gaussian features have {self.config.model.feature_dim}"
            )
        head = OpenVocabularyHead.from_vocabulary(
            vocabulary, prototypes.embeddings.to(self.device), self.config.inference
        )
        self._semantics = (vocabulary, head)  # one assignment: a concurrent predict sees old or new, never a mix
        self.prototypes_source = prototypes.provider

    def reset_vocabulary(self) -> None:
        """Back to the vocabulary and prototypes this predictor started with (e.g. a converted
        checkpoint's own text prototypes)."""
        self.set_vocabulary(*self._initial_vocabulary)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """(Q, C) prototypes of free-text prompts, encoded as set_vocabulary encodes a vocabulary's
        (the same text encoder and template recipe); ValueError when no text encoder is configured."""
        encoder = self._text_encoder.get()
        if encoder is None:
            raise ValueError("no text encoder is configured (inference.text_encoder) to encode new prompts")
        classes = tuple(VocabularyClass(name=f"prompt{i}", prompts=(p,)) for i, p in enumerate(prompts))
        vocabulary = dataclasses.replace(self.vocabulary, name="query", classes=classes, free_class=classes[0].name)
        with torch.no_grad():
            return compute_prototypes(vocabulary, encoder, text_encoder_name(encoder)).embeddings

    def query(
        self, prediction: Prediction, prompts: list[str], threshold: float = DEFAULT_THRESHOLD,
        max_clusters: int = DEFAULT_MAX_CLUSTERS,
    ) -> list[QueryAnswer]:
        """Open-vocabulary 3D query on a Prediction of this predictor (gausstr_core.query): per prompt the
        voxel relevance (X, Y, Z) in [0, 1] and the top clusters. Does not run the network; prototypes
        of prompts seen before are cached. PromptError names a prompt that cannot be encoded."""
        vocabulary, head = self._semantics
        if prediction.vocabulary is vocabulary:
            background = head.prototypes
        else:  # the vocabulary changed since that prediction: its prompts' prototypes from the cache or encoder
            background = self.scene_query.prototypes(prediction.vocabulary.prompts)
        return self.scene_query.query(
            prediction, prompts, background, head.density_threshold, threshold, max_clusters,
            chunk_size=self.config.inference.chunk_size,
        )

    def prepare(self, views: Views) -> NetworkInputs:
        """Stage "preprocess": views at network-input size on the predictor's device (see prepare_views)."""
        data = self.config.data
        return prepare_views(views, data.input_size, self.config.model.patch_size, data.image_size, self.device)

    @torch.inference_mode()
    def predict(self, views: Views) -> Prediction:
        """Views of one time step -> Prediction: the stage methods below in turn, each timed under its
        stage name (module docstring); CUDA-synchronised at the stage boundaries only with `profile`."""
        timer = StageTimer(STAGES, self.device if self.profile else None)
        with timer("total"):
            at_input = views.original_to_input is not None
            if views.depths is None and not at_input and views.images is not None and not self.model_depth:
                with timer("depth"):
                    views = dataclasses.replace(views, depths=self.depths(views))
            with timer("preprocess"):
                inputs = self.prepare(views)
            if inputs.features is None:
                with timer("features"):
                    inputs = dataclasses.replace(inputs, features=self.features(inputs.images))
            if inputs.depths is None and not self.model_depth:  # network-size views (original_to_input given)
                with timer("depth"):
                    inputs = dataclasses.replace(inputs, depths=self.depths(inputs))
            gaussians = self.gaussians(inputs, timer)
            with timer("voxelize"):
                gaussians = self.select_gaussians(gaussians)
            vocabulary, occupancy = self.semantics(gaussians, timer)
        class_probs = occupancy.gaussian_probabilities
        return Prediction(
            gaussians=gaussians, class_probs=class_probs, gaussian_labels=class_probs.argmax(-1),
            labels=occupancy.labels, confidence=occupancy.confidence, density=occupancy.density,
            class_names=vocabulary.class_names, free_label=vocabulary.free_label, grid=self.grid,
            vocabulary=vocabulary, timings=timer.timings,
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Stage "features": the feature provider on network-input images (N, 3, H, W) float in [0, 1]
        -> (N, C, H // p, W // p) on the predictor's device."""
        provider = self._feature_provider.get()
        if provider is None:
            raise ValueError("Views.features are missing and no feature provider is configured (data.feature_provider)")
        features = provider(images)
        model = self.config.model
        expected = (images.shape[0], model.feature_dim, images.shape[-2] // model.patch_size,
                    images.shape[-1] // model.patch_size)
        if tuple(features.shape) != expected:
            raise ValueError(f"feature provider returned {tuple(features.shape)}, the model needs {expected}")
        return features.to(self.device).float()

    def depths(self, views: Views | NetworkInputs) -> torch.Tensor:
        """Stage "depth" (the depth provider): on Views, the images as given (normally the full original
        frames, as the authors run it), intrinsics scaled to their resolution -> (N, h, w) m at that
        resolution, which prepare() resizes to the input size like any given depth map (the dataset's
        resize); on NetworkInputs, the network-input images -> (N, H, W) m. 0 = no depth."""
        if isinstance(views, NetworkInputs):
            input_intrinsics = pixel_to_input_matrix(views.intrinsics, views.original_to_input)
            return self._run_depth_provider(views.images, input_intrinsics)
        _check_views(views)
        if views.images is None:
            raise ValueError("Views need images for the depth provider (or give depths)")
        images = views.images.to(self.device)
        images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        source = views.image_size or tuple(images.shape[-2:])
        to_images = plan_resize_crop(tuple(source), tuple(images.shape[-2:])).matrix.to(self.device)
        intrinsics = pixel_to_input_matrix(views.intrinsics.to(self.device).float(), to_images)
        return self._run_depth_provider(images, intrinsics)

    def _run_depth_provider(self, images: torch.Tensor | None, intrinsics: torch.Tensor) -> torch.Tensor:
        """images (N, 3, h, w) float in [0, 1], intrinsics (N, 3, 3) of those pixels -> depth (N, h, w) m."""
        provider = self._depth_provider.get()
        if provider is None:
            raise ValueError("Views.depths are missing and no depth provider is configured (data.depth_provider)")
        if images is None:
            raise ValueError("Views need images for the depth provider (or give depths)")
        depths = provider(images, intrinsics)
        if tuple(depths.shape) != (images.shape[0], *images.shape[-2:]):
            raise ValueError(
                f"depth provider returned {tuple(depths.shape)}, expected (N, H, W) = "
                f"{(images.shape[0], *images.shape[-2:])} (the images it was given)"
            )
        return torch.nan_to_num(depths.to(self.device).float(), nan=0.0, posinf=0.0, neginf=0.0)

    def gaussians(self, inputs: NetworkInputs, timer: StageTimer | None = None) -> Gaussians:
        """Stage "model": GaussTR (neck, decoder) on prepared views that carry features -> the last decoder
        layer's Gaussians, B = 1 (means (1, G, 3) ego frame, m; features (1, G, C)). Views without
        depths take the model's depth head (stage "depth"). timer: where the stages' times go."""
        timer = timer or StageTimer(STAGES)
        if inputs.features is None:
            raise ValueError("gaussians() needs prepared views with features (see features())")
        features, depths = inputs.features, inputs.depths
        cameras = (inputs.intrinsics[None], inputs.cam2ego[None], inputs.original_to_input[None])
        with timer("model"):
            self.model.check_inputs(features[None], None if depths is None else depths[None], *cameras)
            value_maps = self.model.encode(features[None])
        if depths is None:
            if inputs.images is None:
                raise ValueError("the model's depth head needs the views' images (none given)")
            with timer("depth"):
                depths = self.model.predict_depth(value_maps, inputs.images[None], *cameras)[0]
        with timer("model"):
            return self.model.decode(
                value_maps, depths[None], *cameras, ref_points=self._reference_points(features.shape[0])
            )[-1]

    def semantics(
        self, gaussians: Gaussians, timer: StageTimer | None = None
    ) -> tuple[Vocabulary, SemanticOccupancy]:
        """Stages "semantics" and "voxelize": the open-vocabulary head (OpenVocabularyHead.__call__) on
        Gaussians with B = 1 -> the active vocabulary and the head's labels, confidence, density and
        per-Gaussian class probabilities (a consistent pair while set_vocabulary may swap them)."""
        vocabulary, head = self._semantics
        occupancy = head(
            gaussians.means[0], gaussians.covariances[0], gaussians.opacities[0], gaussians.features[0], self.grid,
            chunk_size=self.config.inference.chunk_size, timer=timer,
        )
        return vocabulary, occupancy

    def warm_up(self) -> None:
        """Run the voxelize and semantics stages once on one Gaussian at the grid's centre, so that one-off
        costs (loading the fused kernels' compiled code, first allocations) do not land on the first
        prediction; callers that time predictions or serve live input call it after loading."""
        head, grid, device = self._semantics[1], self.grid, self.device
        centre = [(lo + hi) / 2 for lo, hi in zip(grid.range[:3], grid.range[3:])]
        with torch.no_grad():
            head(torch.tensor([centre], device=device), torch.eye(3, device=device)[None], torch.ones(1, device=device),
                 torch.zeros(1, head.prototypes.shape[1], device=device), grid,
                 chunk_size=self.config.inference.chunk_size)

    def _reference_points(self, views: int) -> torch.Tensor:
        inference = self.config.inference
        generator = torch.Generator().manual_seed(inference.seed) if inference.deterministic else None
        return self.model.sample_reference_points(
            1, views, generator=generator, deterministic=inference.deterministic, device=self.device
        )

    def select_gaussians(self, gaussians: Gaussians) -> Gaussians:
        """Stage "voxelize", first part: with inference.filter_gaussians, only the Gaussians (B = 1) that
        voxelize.filter_gaussians keeps (min_opacity, min_extent, inside the grid); else all of them."""
        inference = self.config.inference
        if not inference.filter_gaussians:
            return gaussians
        keep = filter_gaussians(
            gaussians.means[0], gaussians.covariances[0], gaussians.opacities[0], self.grid,
            inference.min_opacity, inference.min_extent,
        )
        return Gaussians(**{f.name: getattr(gaussians, f.name)[:, keep] for f in dataclasses.fields(gaussians)})


def checkpoint_prototypes(path: str | Path, config: Config) -> Prototypes | None:
    """A converted checkpoint's own text prototypes (extra 'text_prototypes' (P, C), the authors'
    buffer) for config.inference.vocabulary, when they fit it: the prompts stored with them
    ('text_prototypes_vocabulary') equal the vocabulary's, or (older files) their count does.
    None when the checkpoint has none or they do not fit (logged); a use is logged once."""
    ckpt = load_checkpoint(path)
    embeddings = ckpt.get("text_prototypes")
    if not isinstance(embeddings, torch.Tensor):
        return None
    vocabulary = Vocabulary.load(resolve_resource(config.inference.vocabulary, "vocabulary file"))
    stored = ckpt.get("text_prototypes_vocabulary")
    prompts = Vocabulary.from_dict(stored, source=f"{path} text_prototypes_vocabulary").prompts if stored else None
    if (prompts is not None and prompts != vocabulary.prompts) or embeddings.shape[0] != len(vocabulary.prompts):
        LOG.warning(
            "checkpoint %s: its text prototypes %s (prompts %s) do not fit vocabulary %r (%d prompts); not used",
            path, tuple(embeddings.shape), prompts, vocabulary.name, len(vocabulary.prompts),
        )
        return None
    source = ckpt.get("source", {}).get("file") if isinstance(ckpt.get("source"), dict) else None
    provider = f"checkpoint {Path(path).name}" + (f" (converted from {source})" if source else "")
    prototypes = Prototypes(vocabulary=vocabulary, embeddings=embeddings.float(), provider=provider)
    LOG.info(
        "using the text prototypes of %s for vocabulary %r: %d prompts x %d dims",
        provider, vocabulary.name, *prototypes.embeddings.shape,
    )
    return prototypes


def default_feature_spec(config: Config) -> dict[str, Any] | None:
    """data.feature_provider, else {'name': data.feature_kind} when that names a registry provider, else None."""
    if config.data.feature_provider:
        return dict(config.data.feature_provider)
    if config.data.feature_kind in FEATURE_PROVIDERS:
        return {"name": config.data.feature_kind}
    return None


def matching_text_encoder_spec(feature_provider: FeatureProvider | dict[str, Any] | None) -> dict[str, Any] | None:
    """Text encoder spec whose embeddings live in the feature provider's space, where one is implied:
    synthetic -> synthetic (same feature_dim and seed), maskclip -> clip (same model and weights)."""
    from gausstr_core.foundation.synthetic import SyntheticFeatureProvider

    if isinstance(feature_provider, SyntheticFeatureProvider):
        return {"name": "synthetic", "feature_dim": feature_provider.feature_dim, "seed": feature_provider.seed}
    if not isinstance(feature_provider, dict):
        return None
    keys = {"synthetic": ("feature_dim", "seed"), "maskclip": ("model", "weights")}
    target = {"synthetic": "synthetic", "maskclip": "clip"}.get(feature_provider.get("name"))
    if target is None:
        return None
    return {"name": target, **{k: feature_provider[k] for k in keys[feature_provider["name"]] if k in feature_provider}}


class _LazyProvider:
    """A provider object, or a registry spec built (once) on first use: heavy models load only if needed."""

    def __init__(
        self, value: Any, build: Callable[..., Any], device: torch.device, check: Callable[[Any], None] | None = None
    ) -> None:
        self.build, self.device, self.check = build, device, check
        self.spec = value if isinstance(value, dict) else None
        self.value = None if isinstance(value, dict) else value
        if self.value is not None and self.check is not None:
            self.check(self.value)

    def get(self) -> Any:
        if self.value is None and self.spec:
            value = self.build(self.spec, device=str(self.device))
            if self.check is not None:
                self.check(value)
            self.value = value
        return self.value


def _check_feature_provider(provider: FeatureProvider, model: ModelConfig) -> None:
    got = (getattr(provider, "feature_dim", None), getattr(provider, "patch_size", None))
    if got != (model.feature_dim, model.patch_size):
        raise ValueError(
            f"feature provider gives feature_dim {got[0]} and patch_size {got[1]}; the model needs "
            f"{model.feature_dim} and {model.patch_size}"
        )


def _check_views(views: Views) -> int:
    """Shape checks with errors naming the field; returns the number of views N."""
    if not isinstance(views, Views):
        raise TypeError(f"predict needs a Views, got {type(views).__name__}")
    if views.intrinsics.ndim != 3 or views.intrinsics.shape[1:] != (3, 3):
        raise ValueError(f"Views.intrinsics must be (N, 3, 3), got {tuple(views.intrinsics.shape)}")
    n = views.intrinsics.shape[0]
    if n < 1:
        raise ValueError("Views hold no camera")
    shapes = {
        "cam2ego": (views.cam2ego, 3, (n, 4, 4)),
        "original_to_input": (views.original_to_input, 3, (n, 3, 3)),
        "images": (views.images, 4, (n, 3)),
        "depths": (views.depths, 3, (n,)),
        "features": (views.features, 4, (n,)),
    }
    for name, (tensor, ndim, lead) in shapes.items():
        if tensor is not None and (tensor.ndim != ndim or tuple(tensor.shape[: len(lead)]) != lead):
            want = ", ".join([str(s) for s in lead] + ["*"] * (ndim - len(lead)))
            raise ValueError(f"Views.{name} must have shape ({want}), got {tuple(tensor.shape)}")
    if views.images is None and views.features is None:
        raise ValueError("Views need images or precomputed features")
    if views.images is not None and views.images.dtype != torch.uint8 and not views.images.is_floating_point():
        raise ValueError(f"Views.images must be uint8 or float in [0, 1], got {views.images.dtype}")
    if views.image_size is not None and (len(views.image_size) != 2 or min(views.image_size) <= 0):
        raise ValueError(f"Views.image_size must be (H, W) > 0, got {views.image_size!r}")
    return n


def _check_principal_points(intrinsics: torch.Tensor, image_size: tuple[int, int]) -> None:
    """The principal points must lie inside the original image: catches intrinsics for another size."""
    height, width = image_size
    cx, cy = intrinsics[:, 0, 2], intrinsics[:, 1, 2]
    if bool(((cx <= 0) | (cx >= width) | (cy <= 0) | (cy >= height)).any()):
        raise ValueError(
            f"Views.intrinsics principal points {torch.stack([cx, cy], -1).tolist()} lie outside the original "
            f"image {width}x{height}; set Views.image_size to the size the intrinsics refer to"
        )
