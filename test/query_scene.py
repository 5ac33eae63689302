"""Shared by the query tests: a hand-made street scene (car, pedestrian, road Gaussians) with known answers."""

from __future__ import annotations

import torch

from gausstr_core.foundation.synthetic import SyntheticTextEncoder
from gausstr_core.gaussians import Gaussians
from gausstr_core.grid import VoxelGrid
from gausstr_core.predict import Prediction
from gausstr_core.semantics import OpenVocabularyHead
from gausstr_core.vocabulary import Vocabulary
from gausstr_core.voxelize import voxelize_gaussians

GRID = VoxelGrid(range=(-10.0, -10.0, -1.0, 10.0, 10.0, 3.0), size=0.4)
CAR_AT, PERSON_AT = (5.0, 2.0, 0.8), (-3.0, -4.0, 0.9)
VOCABULARY = Vocabulary.from_dict({"name": "street", "free_class": "sky", "classes": [
    {"name": "car", "prompts": ["car"]}, {"name": "pedestrian", "prompts": ["person"]},
    {"name": "driveable_surface", "prompts": ["road"]}, {"name": "sky", "prompts": ["sky"]}]})


def _blob(centre: tuple[float, float, float], count: int, spread: float, generator: torch.Generator) -> torch.Tensor:
    return torch.tensor(centre) + spread * (torch.rand(count, 3, generator=generator) - 0.5)


def street_prediction(noise: float = 0.1) -> tuple[Prediction, torch.Tensor, SyntheticTextEncoder]:
    """A car blob, a pedestrian blob and a flat road, features = the synthetic world's class prototypes
    plus noise, labelled by the real head; returns the Prediction, the vocabulary prototypes, the encoder."""
    encoder = SyntheticTextEncoder(feature_dim=64)
    generator = torch.Generator().manual_seed(0)
    road = torch.stack(torch.meshgrid(torch.arange(-9.0, 9.5, 1.0), torch.arange(-9.0, 9.5, 1.0), indexing="ij"), -1)
    road = torch.cat([road.reshape(-1, 2), torch.zeros(road.numel() // 2, 1)], -1)
    parts = {"car": _blob(CAR_AT, 40, 1.6, generator), "person": _blob(PERSON_AT, 20, 0.5, generator), "road": road}
    means = torch.cat(list(parts.values()))
    features = torch.cat([encoder.encode([name]).expand(len(m), -1) for name, m in parts.items()])
    features = features + noise * torch.randn(features.shape, generator=generator) / 8
    scale = torch.cat([torch.full((len(parts["car"]) + len(parts["person"]), 3), 0.25),
                       torch.tensor([[0.5, 0.5, 0.1]]).expand(len(road), 3)])
    covariances = torch.diag_embed(scale**2)
    opacities = torch.full((len(means),), 0.6)
    prototypes = encoder.encode(VOCABULARY.prompts)
    head = OpenVocabularyHead.from_vocabulary(VOCABULARY, prototypes)
    probs = head.prompt_probabilities(features)
    density, voxel_probs = voxelize_gaussians(means, covariances, opacities, probs, GRID)
    labels, confidence = head.classify_voxels(density, voxel_probs)
    class_probs = head.merge_synonyms(probs)
    quats = torch.tensor([1.0, 0, 0, 0]).expand(1, len(means), 4)
    gaussians = Gaussians(means=means[None], scales=scale[None], quats=quats, covariances=covariances[None],
                          opacities=opacities[None], features=features[None])
    prediction = Prediction(gaussians=gaussians, class_probs=class_probs, gaussian_labels=class_probs.argmax(-1),
                            labels=labels, confidence=confidence, density=density, class_names=VOCABULARY.class_names,
                            free_label=VOCABULARY.free_label, grid=GRID, vocabulary=VOCABULARY, timings={})
    return prediction, prototypes, encoder
