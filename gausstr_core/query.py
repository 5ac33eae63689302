"""Open-vocabulary 3D queries on a Prediction: "where is the X?" without re-running the network.

docs/queries.md derives the maths; in short, for a prompt q with unit text prototype t_q and a
background set B_q (the prediction vocabulary's prompts plus CANONICAL_PHRASES, minus the query's
own class and every prompt whose prototype has cosine > duplicate_cosine with t_q):

    s_g(p) = temperature * cos(f_g, t_p)                       per Gaussian g, prompt p
    r_g    = exp(s_g(q)) / (exp(s_g(q)) + sum_{b in B_q} exp(s_g(b)))          in [0, 1]
    R(v)   = sum_g w_g(v) r_g / density(v)   where density(v) > the head's density threshold, else 0

with w_g(v) the voxeliser's weights (opacity times the Gaussian's value at the voxel centre) and
density(v) = sum_g w_g(v): the same density-weighted mean the semantic head uses for its prompt
probabilities. The numerator is voxelised from the Gaussians with r_g >= min_gaussian_relevance
only (the others add less than that to any R(v)); density(v) is the prediction's own.
Clusters: 26-connected components of the voxels with R(v) > threshold; score = the sum of their
relevance (relevance mass), centroid = relevance-weighted mean of their centres (ego frame, m),
extent = their axis-aligned size (m); the top `max_clusters` by score are kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from gausstr_core.grid import VoxelGrid
from gausstr_core.voxelize import voxelize_gaussians

if TYPE_CHECKING:
    from gausstr_core.predict import Prediction
    from gausstr_core.vocabulary import Vocabulary

# The canonical phrases of LERF (Kerr et al., ICCV 2023): generic words any region resembles a little,
# so a prompt must beat them, not just the vocabulary's classes, to become relevant.
CANONICAL_PHRASES = ("object", "thing", "stuff", "texture")
DEFAULT_THRESHOLD = 0.5  # R(v) > 0.5: the prompt outweighs its whole background set at that voxel
DEFAULT_TEMPERATURE = 10.0
DEFAULT_MAX_CLUSTERS = 5
DUPLICATE_COSINE = 0.9
MIN_GAUSSIAN_RELEVANCE = 1e-3
_DENSITY_FLOOR = 1e-6  # as the voxeliser's feature normalisation


class PromptError(ValueError):
    """A prompt that cannot be answered (e.g. the text encoder is missing); `prompt` names it."""

    def __init__(self, prompt: str, reason: str) -> None:
        super().__init__(f"prompt {prompt!r}: {reason}")
        self.prompt = prompt
        self.reason = reason


@dataclass(frozen=True)
class QueryCluster:
    """One connected group of relevant voxels. centroid, extent: (x, y, z) ego frame, m."""

    centroid: tuple[float, float, float]
    extent: tuple[float, float, float]
    score: float
    max_relevance: float
    voxel_count: int


@dataclass
class QueryAnswer:
    """The answer to one prompt.

    relevance: (X, Y, Z) float32 in [0, 1] over the prediction's grid, [x, y, z], on its device.
    gaussian_relevance: (G,) r_g of the prediction's Gaussians.
    clusters: the top clusters by score (descending). background: the prompts r_g was measured
    against. threshold: the voxel threshold the clusters were cut at.
    """

    prompt: str
    relevance: torch.Tensor
    gaussian_relevance: torch.Tensor
    clusters: list[QueryCluster]
    background: list[str]
    threshold: float
    region: tuple[slice, slice, slice]  # voxel index ranges outside which relevance is 0

    @property
    def max_relevance(self) -> float:
        return float(self.relevance.max()) if self.relevance.numel() else 0.0

    def relevant_voxels(self, grid: VoxelGrid) -> tuple[np.ndarray, np.ndarray]:
        """Voxels above the threshold: centres (M, 3) float32 ego frame, m, and relevance (M,) float32,
        nearest to the grid's origin (the ego) first."""
        relevance = self.relevance[self.region].detach().float().cpu().numpy()
        index = np.argwhere(relevance > self.threshold)
        relevance = relevance[tuple(index.T)]
        index = index + np.array([r.start for r in self.region])
        centres = (np.asarray(grid.min_corner) + (index + 0.5) * grid.size).astype(np.float32)
        order = np.argsort((centres * centres).sum(1), kind="stable")
        return centres[order], relevance[order].astype(np.float32)


def normalise_prompt(text: str) -> str:
    """Lower case, '_' and runs of white space as one space: 'Traffic_Cone ' -> 'traffic cone'."""
    return re.sub(r"[\s_]+", " ", text.lower()).strip()


class SceneQuery:
    """Prompt -> relevance engine (module docstring); caches the prototypes of prompts seen.

    encode: free-text prompts -> (Q, C) prototypes in the Gaussian feature space (the predictor's
    text encoder, with the vocabulary's template recipe), or None when there is none: then only the
    vocabulary's own prompts can be asked and the background has no canonical phrases.
    """

    def __init__(
        self,
        encode: Callable[[list[str]], torch.Tensor] | None,
        *,
        canonical_phrases: Sequence[str] = CANONICAL_PHRASES,
        temperature: float = DEFAULT_TEMPERATURE,
        duplicate_cosine: float = DUPLICATE_COSINE,
        min_gaussian_relevance: float = MIN_GAUSSIAN_RELEVANCE,
    ) -> None:
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"SceneQuery: temperature must be a positive number, got {temperature!r}")
        if not -1.0 <= duplicate_cosine <= 1.0:
            raise ValueError(f"SceneQuery: duplicate_cosine must be in [-1, 1], got {duplicate_cosine!r}")
        if not 0.0 <= min_gaussian_relevance < 1.0:
            raise ValueError(f"SceneQuery: min_gaussian_relevance must be in [0, 1), got {min_gaussian_relevance!r}")
        self.encode = encode
        self.canonical_phrases = tuple(canonical_phrases)
        self.temperature = float(temperature)
        self.duplicate_cosine = float(duplicate_cosine)
        self.min_gaussian_relevance = float(min_gaussian_relevance)
        self._cache: dict[str, torch.Tensor] = {}  # prompt -> (C,) unit prototype on the CPU
        self._canonical: tuple[list[str], list[torch.Tensor]] | None = None  # encoded once, failures left out

    def cached(self, prompt: str) -> bool:
        """Whether `prompt`'s prototype is cached (a later query does not run the text encoder)."""
        return prompt.strip() in self._cache

    def prototypes(self, prompts: Sequence[str], known: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """(Q, C) unit prototypes: `known` rows (e.g. the vocabulary's), else the cache, else encoded
        (and cached). PromptError names the first prompt that is empty or cannot be encoded."""
        keys = [_check_prompt(p) for p in prompts]
        known = known or {}
        missing = list(dict.fromkeys(k for k in keys if k not in known and k not in self._cache))
        if missing:
            if self.encode is None:
                raise PromptError(missing[0], "no text encoder is configured (inference.text_encoder), so only the "
                                  f"vocabulary's prompts can be asked: {sorted(known)}")
            try:
                encoded = self.encode(missing)
            except Exception as err:  # noqa: BLE001 -- any encoder failure (absent weights, ...) names the prompt
                raise PromptError(missing[0] if len(missing) == 1 else ", ".join(missing),
                                  f"the text encoder failed: {err}") from err
            if encoded.ndim != 2 or encoded.shape[0] != len(missing):
                raise PromptError(missing[0], f"the text encoder returned {tuple(encoded.shape)} for "
                                  f"{len(missing)} prompts")
            for key, row in zip(missing, F.normalize(encoded.detach().float().cpu(), dim=-1)):
                self._cache[key] = row
        rows = [known[k] if k in known else self._cache[k] for k in keys]
        return F.normalize(torch.stack([r.detach().float().cpu() for r in rows]), dim=-1)

    def background(
        self, prompt: str, prototype: torch.Tensor, vocabulary: Vocabulary, vocabulary_prototypes: torch.Tensor
    ) -> tuple[list[str], torch.Tensor]:
        """The background set B_q of `prompt` (module docstring): names and (M, C) unit prototypes.

        vocabulary_prototypes: (P, C) rows for vocabulary.prompts. Canonical phrases the encoder
        cannot encode are left out.
        """
        key = normalise_prompt(prompt)
        own = {i for i, c in enumerate(vocabulary.classes)
               if key == normalise_prompt(c.name) or key in {normalise_prompt(p) for p in c.prompts}}
        names = [p for i, c in enumerate(vocabulary.classes) if i not in own for p in c.prompts]
        rows = [vocabulary_prototypes[j] for j, i in enumerate(vocabulary.prompt_to_class.tolist()) if i not in own]
        for phrase, row in zip(*self._canonical_prototypes()):
            if normalise_prompt(phrase) != key:
                names.append(phrase)
                rows.append(row)
        if not rows:
            return [], prototype.new_zeros(0, prototype.shape[0])
        table = F.normalize(torch.stack([r.detach().float().cpu() for r in rows]), dim=-1)
        keep = (table @ prototype.float().cpu()) <= self.duplicate_cosine
        return [n for n, k in zip(names, keep.tolist()) if k], table[keep]

    def _canonical_prototypes(self) -> tuple[list[str], list[torch.Tensor]]:
        """The canonical phrases the encoder can encode and their prototypes (tried once)."""
        if self._canonical is None:
            names, rows = [], []
            for phrase in self.canonical_phrases:
                try:
                    rows.append(self.prototypes([phrase])[0])
                except PromptError:
                    continue
                names.append(phrase)
            self._canonical = (names, rows)
        return self._canonical

    def query(
        self,
        prediction: Prediction,
        prompts: Sequence[str],
        vocabulary_prototypes: torch.Tensor,
        density_threshold: float,
        threshold: float = DEFAULT_THRESHOLD,
        max_clusters: int = DEFAULT_MAX_CLUSTERS,
        chunk_size: int | None = None,
    ) -> list[QueryAnswer]:
        """Answer every prompt on `prediction` (module docstring).

        vocabulary_prototypes: (P, C) prototypes of prediction.vocabulary.prompts (the head's);
        density_threshold: the head's (voxels at or below it are free: relevance 0).
        PromptError for a prompt that cannot be encoded; ValueError for bad arguments.
        """
        check_query_arguments(prompts, threshold, max_clusters)
        features = prediction.gaussians.features[0]
        vocabulary = prediction.vocabulary
        if vocabulary_prototypes.shape != (len(vocabulary.prompts), features.shape[-1]):
            raise ValueError(
                f"vocabulary prototypes {tuple(vocabulary_prototypes.shape)} do not fit the prediction's "
                f"{len(vocabulary.prompts)} prompts and {features.shape[-1]}-dim Gaussian features (a prediction "
                "loaded from a dump carries no features)"
            )
        known = dict(zip(vocabulary.prompts, vocabulary_prototypes))
        queries = self.prototypes(prompts, known)
        unit_features = F.normalize(features.float(), dim=-1)
        relevances, backgrounds = [], []
        for prompt, prototype in zip(prompts, queries):
            names, table = self.background(prompt, prototype, vocabulary, vocabulary_prototypes)
            backgrounds.append(names)
            relevances.append(self.gaussian_relevance(unit_features, prototype, table))
        answers = []
        for prompt, r, names in zip(prompts, relevances, backgrounds):
            relevance, region = self._voxel_relevance(prediction, r, density_threshold, chunk_size)
            empty = region[0].start >= region[0].stop
            clusters = [] if empty else find_clusters(
                relevance[region], _region_grid(prediction.grid, region), threshold, max_clusters)
            answers.append(QueryAnswer(prompt=prompt, relevance=relevance, gaussian_relevance=r, clusters=clusters,
                                       background=names, threshold=threshold, region=region))
        return answers

    def gaussian_relevance(
        self, unit_features: torch.Tensor, prototype: torch.Tensor, background: torch.Tensor
    ) -> torch.Tensor:
        """r_g (G,) from unit features (G, C), the unit query prototype (C,) and background (M, C)."""
        table = torch.cat([prototype[None], background]).to(unit_features)
        return (self.temperature * unit_features @ table.T).softmax(-1)[:, 0]

    def _voxel_relevance(
        self, prediction: Prediction, gaussian_relevance: torch.Tensor, density_threshold: float,
        chunk_size: int | None,
    ) -> tuple[torch.Tensor, Region]:
        """R(v) (X, Y, Z) from r_g (G,), and the region (index slices) outside which R is 0.

        Only the Gaussians with r_g >= min_gaussian_relevance are voxelised, and only over the
        box of voxels their 3-sigma boxes (plus a voxel) can reach.
        """
        density = prediction.density
        relevance = density.new_zeros(density.shape)
        keep = gaussian_relevance >= self.min_gaussian_relevance
        g = prediction.gaussians
        means, covariances = g.means[0][keep], g.covariances[0][keep]
        region = _reach(means, covariances, prediction.grid)
        if region is None:
            return relevance, (slice(0, 0),) * 3
        options = {} if chunk_size is None else {"chunk_size": chunk_size}
        with torch.no_grad():
            part_density, part_mean = voxelize_gaussians(
                means, covariances, g.opacities[0][keep], gaussian_relevance[keep, None],
                _region_grid(prediction.grid, region), **options,
            )
        box = density[region]
        # In place over the dense box (boolean indexing of a large grid is several times slower).
        numerator = part_mean[..., 0].mul_(part_density)
        numerator.div_(box.clamp_min(_DENSITY_FLOOR)).masked_fill_(box <= density_threshold, 0.0)
        relevance[region] = numerator.clamp_(0.0, 1.0)
        return relevance, region


Region = tuple[slice, slice, slice]


def _reach(means: torch.Tensor, covariances: torch.Tensor, grid: VoxelGrid) -> Region | None:
    """Index slices of the grid box holding every voxel within 3 sigma (+ one voxel) of the Gaussians
    means (N, 3) ego m, covariances (N, 3, 3); None when that is empty."""
    if means.shape[0] == 0:
        return None
    sigma = torch.diagonal(covariances, dim1=-2, dim2=-1).clamp_min(0).sqrt()
    origin = means.new_tensor(grid.min_corner)
    lo = torch.floor((means - 3 * sigma - origin) / grid.size).amin(0).long() - 1
    hi = torch.floor((means + 3 * sigma - origin) / grid.size).amax(0).long() + 2
    region = tuple(slice(max(int(a), 0), min(int(b), n)) for a, b, n in zip(lo, hi, grid.dims))
    return None if any(r.start >= r.stop for r in region) else region


def _region_grid(grid: VoxelGrid, region: Region) -> VoxelGrid:
    """The sub-grid of `grid` covering `region` (same voxels, same centres)."""
    lo = [m + r.start * grid.size for m, r in zip(grid.min_corner, region)]
    hi = [m + r.stop * grid.size for m, r in zip(grid.min_corner, region)]
    return VoxelGrid(range=(*lo, *hi), size=grid.size)


def find_clusters(
    relevance: torch.Tensor, grid: VoxelGrid, threshold: float, max_clusters: int = DEFAULT_MAX_CLUSTERS
) -> list[QueryCluster]:
    """26-connected clusters of voxels with relevance (X, Y, Z) > threshold, top `max_clusters` by
    score (relevance mass), as QueryCluster (ego frame, m)."""
    values = relevance.detach().float().cpu().numpy()
    mask = values > threshold
    if max_clusters == 0 or not mask.any():
        return []
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    index = np.argwhere(mask)
    ids = labels[mask] - 1  # argwhere and boolean indexing share C order
    weight = values[mask].astype(np.float64)
    centres = np.asarray(grid.min_corner) + (index + 0.5) * grid.size
    score = np.bincount(ids, weight, count)
    voxels = np.bincount(ids, minlength=count)
    centroid = np.stack([np.bincount(ids, weight * centres[:, a], count) for a in range(3)], -1) / score[:, None]
    low = np.full((count, 3), np.inf)
    high = np.full((count, 3), -np.inf)
    np.minimum.at(low, ids, centres)
    np.maximum.at(high, ids, centres)
    peak = np.zeros(count)
    np.maximum.at(peak, ids, weight)
    extent = high - low + grid.size
    order = np.argsort(-score, kind="stable")[:max_clusters]
    return [QueryCluster(centroid=tuple(float(v) for v in centroid[i]), extent=tuple(float(v) for v in extent[i]),
                         score=float(score[i]), max_relevance=float(peak[i]), voxel_count=int(voxels[i]))
            for i in order]


def check_query_arguments(prompts: Sequence[str], threshold: float, max_clusters: int) -> None:
    """ValueError for a threshold outside (0, 1), max_clusters < 0 or no prompts; PromptError for an
    empty prompt (what SceneQuery.query refuses, checked before any work)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"query threshold must be in (0, 1), got {threshold!r}")
    if max_clusters < 0:
        raise ValueError(f"max_clusters must be >= 0, got {max_clusters!r}")
    if isinstance(prompts, str) or not prompts:
        raise ValueError(f"query needs a non-empty list of prompts, got {prompts!r}")
    for prompt in prompts:
        _check_prompt(prompt)


def _check_prompt(prompt: object) -> str:
    if not isinstance(prompt, str):
        raise PromptError(repr(prompt), "prompts must be strings")
    key = prompt.strip()
    if not key:
        raise PromptError(prompt, "the prompt is empty")
    return key
