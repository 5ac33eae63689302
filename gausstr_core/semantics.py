"""Open-vocabulary semantics: Gaussian features -> prompt probabilities -> voxel class labels.

The authors' inference order (docs/model_and_data_facts.md section 1, inference), reproduced exactly:
1. Per Gaussian: logits = features @ prototypes^T (raw, neither side normalised), then softmax over
   the P prompts -> p_g (N, P).
2. Voxelise with the p_g as features: q(v) = density-weighted mean of p_g (voxelize_gaussians).
3. Softmax over prompts again: probs(v) = softmax(q(v)). Prompt denoising: a prompt whose maximum
   over every voxel of the grid (empty ones included) of softmax(temperature * q) is below
   denoise_threshold gets probability 0 in every voxel (denoise_threshold <= 0: off).
4. Merge synonyms: a class's probability is the max over its prompts.
5. label = argmax over classes; voxels with density <= density_threshold get the free label.
Labels index the active vocabulary's classes (uint8); Occ3D ids come only through the
vocabulary's own mapping (Vocabulary.to_occ3d).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from gausstr_core import semantics_fused
from gausstr_core.grid import VoxelGrid
from gausstr_core.voxelize import DEFAULT_CHUNK_SIZE, voxelize_gaussians

if TYPE_CHECKING:
    from gausstr_core.config import InferenceConfig
    from gausstr_core.vocabulary import Vocabulary


@dataclass
class SemanticOccupancy:
    """Result of OpenVocabularyHead.__call__ for one scene.

    labels: (X, Y, Z) uint8 class index of the active vocabulary (free label for empty voxels).
    confidence: (X, Y, Z) merged probability of the chosen class (for voxels made free by the
        density threshold: the free class's probability).
    density: (X, Y, Z) voxelised Gaussian density.
    gaussian_probabilities: (N, K) per-Gaussian class probabilities (prompt softmax, synonyms
        merged by max).
    """

    labels: torch.Tensor
    confidence: torch.Tensor
    density: torch.Tensor
    gaussian_probabilities: torch.Tensor


class OpenVocabularyHead:
    """Text prototypes + thresholds; no network weights, so the vocabulary can be swapped any time.

    prototypes: (P, C) prompt embeddings in the Gaussian feature space.
    prompt_to_class: (P,) int64 class index of each prompt (synonyms share a class).
    num_classes: K (<= 256, labels are uint8); free_label: the class meaning "empty".
    """

    def __init__(
        self,
        prototypes: torch.Tensor,
        prompt_to_class: torch.Tensor,
        num_classes: int,
        free_label: int,
        density_threshold: float = 4e-2,
        denoise_threshold: float = 0.1,
        denoise_temperature: float = 100.0,
    ) -> None:
        self.density_threshold = density_threshold
        self.denoise_threshold = denoise_threshold
        self.denoise_temperature = denoise_temperature
        self._buffers = threading.local()  # per-thread workspaces (_workspace)
        self.set_vocabulary(prototypes, prompt_to_class, num_classes, free_label)

    @classmethod
    def from_vocabulary(
        cls, vocabulary: Vocabulary, prototypes: torch.Tensor, config: InferenceConfig | None = None
    ) -> OpenVocabularyHead:
        """Head for a Vocabulary whose prompts are the rows of prototypes (P, C); thresholds from config."""
        thresholds = {}
        if config is not None:
            thresholds = dict(
                density_threshold=config.density_threshold,
                denoise_threshold=config.denoise_threshold,
                denoise_temperature=config.denoise_temperature,
            )
        num_classes = len(vocabulary.class_names)
        return cls(prototypes, vocabulary.prompt_to_class, num_classes, vocabulary.free_label, **thresholds)

    def set_vocabulary(
        self, prototypes: torch.Tensor, prompt_to_class: torch.Tensor, num_classes: int, free_label: int
    ) -> None:
        """Replace the prototypes and class structure (same meaning as the constructor arguments)."""
        if prototypes.ndim != 2 or not prototypes.is_floating_point():
            raise ValueError(
                f"prototypes must be a (P, C) float tensor, got {tuple(prototypes.shape)} {prototypes.dtype}"
            )
        if prompt_to_class.shape != (prototypes.shape[0],) or prompt_to_class.is_floating_point():
            raise ValueError(
                f"prompt_to_class must be ({prototypes.shape[0]},) integers (one class per prompt), "
                f"got {tuple(prompt_to_class.shape)} {prompt_to_class.dtype}"
            )
        if not 1 <= num_classes <= 256:
            raise ValueError(f"num_classes must be in 1..256 (labels are uint8), got {num_classes}")
        if not 0 <= free_label < num_classes:
            raise ValueError(f"free_label {free_label} is not a class index in 0..{num_classes - 1}")
        prompt_to_class = prompt_to_class.long()
        if prompt_to_class.numel() and (int(prompt_to_class.min()) < 0 or int(prompt_to_class.max()) >= num_classes):
            raise ValueError(f"prompt_to_class values must be in 0..{num_classes - 1}, got {prompt_to_class.tolist()}")
        missing = sorted(set(range(num_classes)) - set(prompt_to_class.tolist()))
        if missing:
            raise ValueError(f"classes {missing} have no prompt")
        self.prototypes = prototypes
        self.prompt_to_class = prompt_to_class
        self.num_classes = num_classes
        self.free_label = free_label

    def prompt_probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Gaussian features (N, C) -> softmax over prompts of features @ prototypes^T, (N, P)."""
        if features.ndim != 2 or features.shape[1] != self.prototypes.shape[1]:
            raise ValueError(
                f"features must be (N, {self.prototypes.shape[1]}) to match the prototypes, got {tuple(features.shape)}"
            )
        return (features @ self.prototypes.to(features).T).softmax(-1)

    def merge_synonyms(self, prompt_probs: torch.Tensor) -> torch.Tensor:
        """(..., P) prompt probabilities -> (..., K) class probabilities, max over each class's prompts."""
        index = self.prompt_to_class.to(prompt_probs.device).expand_as(prompt_probs)
        merged = prompt_probs.new_zeros(*prompt_probs.shape[:-1], self.num_classes)
        return merged.scatter_reduce(-1, index, prompt_probs, reduce="amax", include_self=True)

    def voxel_probabilities(
        self, voxel_prompt_probs: torch.Tensor, empty_voxels: bool = False, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Step 3: (..., P) voxelised prompt probabilities q -> softmax(q), denoised prompts zeroed.

        keep: the denoising mask (P,) of these voxels when already computed (kept_prompts).
        """
        if keep is None:
            keep = self.kept_prompts(voxel_prompt_probs, empty_voxels)
        return voxel_prompt_probs.softmax(-1) * keep.to(voxel_prompt_probs)

    def kept_prompts(self, voxel_prompt_probs: torch.Tensor, empty_voxels: bool = False) -> torch.Tensor:
        """Prompt denoising mask (P,) bool: scene-wide max of softmax(temperature * q) >= threshold.

        The max runs over all given voxels (..., P), plus (empty_voxels) voxels with q = 0 that were
        left out: their sharpened softmax is uniform, 1 / P.
        """
        num_prompts = voxel_prompt_probs.shape[-1]
        if self.denoise_threshold <= 0:
            return torch.ones(num_prompts, dtype=torch.bool, device=voxel_prompt_probs.device)
        sharp = (voxel_prompt_probs.reshape(-1, num_prompts) * self.denoise_temperature).softmax(-1)
        scene_max = sharp.amax(0) if sharp.shape[0] else sharp.new_zeros(num_prompts)
        if empty_voxels:
            scene_max = scene_max.clamp_min(1.0 / num_prompts)
        return scene_max >= self.denoise_threshold

    def classify_voxels(
        self, density: torch.Tensor, voxel_prompt_probs: torch.Tensor, backend: str = "auto"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 3-5: density (X, Y, Z), q (X, Y, Z, P) -> labels (X, Y, Z) uint8, confidence (X, Y, Z).

        Only voxels some Gaussian reaches (density > 0) are computed; every other voxel has q = 0, so
        its probabilities are the uniform softmax, handled in closed form (same result, far less work
        on a mostly empty grid). backend: "torch" (below, any device), "fused" (semantics_fused: CPU,
        numba) or "auto" (fused when it can run).
        """
        num_prompts = self.prototypes.shape[0]
        if voxel_prompt_probs.shape != (*density.shape, num_prompts):
            raise ValueError(
                f"voxel prompt probabilities {tuple(voxel_prompt_probs.shape)} do not match density "
                f"{tuple(density.shape)} and {num_prompts} prompts"
            )
        if backend not in ("auto", "fused", "torch"):
            raise ValueError(f"classify_voxels: backend must be 'auto', 'fused' or 'torch', got {backend!r}")
        on_cpu = density.device.type == "cpu" and voxel_prompt_probs.device.type == "cpu"
        if backend == "fused" and not (on_cpu and semantics_fused.available()):
            raise ValueError("classify_voxels: the fused backend needs CPU tensors and numba")
        if backend != "torch" and on_cpu and semantics_fused.available():
            return semantics_fused.classify(
                density, voxel_prompt_probs.to(density.dtype), self.prompt_to_class, self.free_label,
                self.density_threshold, self.denoise_threshold, self.denoise_temperature,
            )
        touched = density > 0
        empty = not bool(touched.all())
        q = voxel_prompt_probs[touched]  # (M, P)
        keep = self.kept_prompts(q, empty_voxels=empty)
        merged = self.merge_synonyms(self.voxel_probabilities(q, keep=keep))
        merged_empty = self.merge_synonyms(keep.to(q) / num_prompts)  # (K,) of every voxel with q = 0
        labels = merged.argmax(-1, keepdim=True)
        confidence = merged.gather(-1, labels)[..., 0]
        free = density[touched] <= self.density_threshold
        out_labels = torch.full(density.shape, self.free_label, dtype=torch.uint8, device=density.device)
        out_labels[touched] = torch.where(free, self.free_label, labels[..., 0]).to(torch.uint8)
        out_confidence = torch.full_like(density, float(merged_empty[self.free_label]))
        out_confidence[touched] = torch.where(free, merged[..., self.free_label], confidence)
        return out_labels, out_confidence

    def _workspace(self, grid: VoxelGrid, prompt_probs: torch.Tensor) -> torch.Tensor | None:
        """This thread's reusable (X, Y, Z, P) buffer for the voxel prompt probabilities on the CPU (consumed
        within one call: a fresh grid-sized array per call costs ~10 ms of page faults); None elsewhere or
        under autograd."""
        if prompt_probs.device.type != "cpu" or (torch.is_grad_enabled() and prompt_probs.requires_grad):
            return None
        shape = (*grid.dims, prompt_probs.shape[1])
        buffer = getattr(self._buffers, "voxel_prompt_probs", None)
        if buffer is None or tuple(buffer.shape) != shape or buffer.dtype != prompt_probs.dtype:
            buffer = self._buffers.voxel_prompt_probs = torch.empty(shape, dtype=prompt_probs.dtype)
        return buffer

    def __call__(
        self,
        means: torch.Tensor,
        covariances: torch.Tensor,
        opacities: torch.Tensor,
        features: torch.Tensor,
        grid: VoxelGrid,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timer: Callable[[str], AbstractContextManager[None]] | None = None,
    ) -> SemanticOccupancy:
        """Label a grid from one scene's Gaussians.

        means (N, 3) ego frame, m; covariances (N, 3, 3) m^2; opacities (N,); features (N, C).
        Filtering (voxelize.filter_gaussians) is the caller's explicit step. timer: called with
        "voxelize" around the voxeliser and "semantics" around the rest, e.g. a StageTimer.
        """
        timed = timer or (lambda stage: nullcontext())
        with timed("semantics"):
            prompt_probs = self.prompt_probabilities(features)
        with timed("voxelize"):
            density, voxel_prompt_probs = voxelize_gaussians(
                means, covariances, opacities, prompt_probs, grid, chunk_size=chunk_size,
                features_out=self._workspace(grid, prompt_probs),
            )
        with timed("semantics"):
            labels, confidence = self.classify_voxels(density, voxel_prompt_probs)
            gaussian_probabilities = self.merge_synonyms(prompt_probs)
        return SemanticOccupancy(
            labels=labels, confidence=confidence, density=density, gaussian_probabilities=gaussian_probabilities
        )
