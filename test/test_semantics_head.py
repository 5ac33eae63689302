"""OpenVocabularyHead on hand-built cases: prompt softmax, synonym merge, denoising, density threshold;
the fused numba classification against the PyTorch path, and the fallback without numba."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gausstr_core import semantics_fused
from gausstr_core.config import InferenceConfig
from gausstr_core.grid import VoxelGrid
from gausstr_core.semantics import OpenVocabularyHead
from gausstr_core.vocabulary import Vocabulary


def head_for(prompt_to_class, num_classes, free_label, channels=4, **kwargs):
    prototypes = torch.eye(len(prompt_to_class), channels)
    return OpenVocabularyHead(prototypes, torch.tensor(prompt_to_class), num_classes, free_label, **kwargs)


def test_prompt_probabilities_are_softmax_of_raw_dot_products() -> None:
    prototypes = torch.tensor([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]])
    head = OpenVocabularyHead(prototypes, torch.tensor([0, 1, 1]), num_classes=2, free_label=1)
    features = torch.tensor([[0.2, 0.4], [-1.0, 2.0]])
    probs = head.prompt_probabilities(features)
    for f, row in zip(features.tolist(), probs.tolist()):
        logits = [f[0] * p[0] + f[1] * p[1] for p in prototypes.tolist()]  # no normalisation
        expected = [math.exp(x) / sum(math.exp(y) for y in logits) for x in logits]
        assert row == pytest.approx(expected, rel=1e-6)


def test_synonyms_merge_by_max_not_sum() -> None:
    # class 0: prompt 0; class 1: prompts 1 and 2 (synonyms); class 2: free (prompt 3)
    head = head_for([0, 1, 1, 2], num_classes=3, free_label=2, denoise_threshold=0.0)
    q = torch.tensor([0.40, 0.35, 0.25, 0.0]).expand(1, 1, 1, 4)
    labels, confidence = head.classify_voxels(torch.ones(1, 1, 1), q)
    soft = np.exp(q[0, 0, 0].numpy()) / np.exp(q[0, 0, 0].numpy()).sum()
    assert soft[1] + soft[2] > soft[0]  # a sum would pick class 1
    assert labels.dtype == torch.uint8 and labels.item() == 0
    assert confidence.item() == pytest.approx(soft[0], rel=1e-6)
    merged = head.merge_synonyms(torch.tensor([[0.1, 0.3, 0.5, 0.05]]))
    assert merged[0].tolist() == pytest.approx([0.1, 0.5, 0.05])


def test_denoising_drops_prompts_that_never_dominate() -> None:
    # 12 prompts = 12 classes; voxel A is a near-tie that prompt 0 wins by a hair, voxel B is
    # clearly prompt 2. Only prompt 2 reaches softmax(100 q) >= 0.1 anywhere.
    head = head_for(list(range(12)), num_classes=12, free_label=11, channels=12)
    voxel_a = torch.full((12,), 1 / 12)
    voxel_a[0] += 0.001
    voxel_a[1] += 0.0005
    voxel_a[2] += 0.0004
    voxel_b = torch.full((12,), 0.02)
    voxel_b[2] = 0.78
    q = torch.stack([voxel_a, voxel_b]).view(2, 1, 1, 12)
    sharp = torch.softmax(100 * q.view(2, 12).double(), -1).amax(0)
    assert sharp[0] < 0.1 and sharp[2] > 0.1
    probs = head.voxel_probabilities(q)
    kept = (sharp >= 0.1).tolist()
    assert (probs.view(2, 12)[:, [not k for k in kept]] == 0).all()
    np.testing.assert_allclose(probs.view(2, 12)[:, kept].numpy(), torch.softmax(q.view(2, 12), -1)[:, kept].numpy())
    labels, _ = head.classify_voxels(torch.ones(2, 1, 1), q)
    assert labels.flatten().tolist() == [2, 2]
    head.denoise_threshold = 0.0  # off: voxel A goes back to its raw argmax
    labels, _ = head.classify_voxels(torch.ones(2, 1, 1), q)
    assert labels.flatten().tolist() == [0, 2]


def test_density_threshold_makes_voxels_free() -> None:
    head = head_for([0, 1, 2], num_classes=3, free_label=2, density_threshold=4e-2, denoise_threshold=0.0)
    q = torch.tensor([0.9, 0.05, 0.05]).expand(1, 1, 3, 3)
    density = torch.tensor([0.039, 0.04, 0.041]).view(1, 1, 3)
    labels, confidence = head.classify_voxels(density, q)
    assert labels.flatten().tolist() == [2, 2, 0]  # "<= threshold" is free
    soft = torch.softmax(torch.tensor([0.9, 0.05, 0.05]), -1).tolist()
    assert confidence.flatten().tolist() == pytest.approx([soft[2], soft[2], soft[0]], rel=1e-6)


def test_scene_labels_and_runtime_vocabulary_swap() -> None:
    grid = VoxelGrid(range=(0.0, 0.0, 0.0, 4.0, 2.0, 2.0), size=0.5)
    means = torch.tensor([[0.75, 0.75, 0.75], [3.25, 0.75, 0.75]])
    covariances = torch.eye(3).expand(2, 3, 3) * 0.04
    opacities = torch.tensor([0.9, 0.8])
    features = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    prototypes = torch.eye(3)  # prompts: "car", "road", "sky"
    head = OpenVocabularyHead(prototypes, torch.tensor([0, 1, 2]), num_classes=3, free_label=2)
    result = head(means, covariances, opacities, features, grid)
    assert result.labels.shape == grid.dims and result.labels.dtype == torch.uint8
    assert result.labels[1, 1, 1].item() == 0 and result.labels[6, 1, 1].item() == 1
    assert result.labels[3, 3, 3].item() == 2  # far from both Gaussians: free
    assert result.density[1, 1, 1].item() == pytest.approx(0.9, rel=1e-3)
    assert ((result.confidence >= 0) & (result.confidence <= 1)).all()
    expected = torch.softmax(features @ prototypes.T, -1)
    torch.testing.assert_close(result.gaussian_probabilities, expected)

    # New vocabulary, no model involved: "road" first, "car" second, "free" last; 2 synonyms for road.
    head.set_vocabulary(torch.stack([prototypes[1], prototypes[0], prototypes[2], prototypes[1] * 0.5]),
                        torch.tensor([0, 1, 2, 0]), num_classes=3, free_label=2)
    swapped = head(means, covariances, opacities, features, grid)
    assert swapped.labels[1, 1, 1].item() == 1 and swapped.labels[6, 1, 1].item() == 0
    assert swapped.gaussian_probabilities.shape == (2, 3)


def test_from_vocabulary_uses_its_classes_and_config_thresholds() -> None:
    vocabulary = Vocabulary.from_dict(
        {
            "name": "tiny",
            "free_class": "empty",
            "classes": [
                {"name": "vehicle", "prompts": ["car", "truck"]},
                {"name": "empty", "prompts": ["sky"]},
                {"name": "ground", "prompts": ["road"]},
            ],
        }
    )
    config = InferenceConfig(density_threshold=0.5, denoise_threshold=0.2, denoise_temperature=10.0)
    head = OpenVocabularyHead.from_vocabulary(vocabulary, torch.randn(4, 6), config)
    assert head.num_classes == 3 and head.free_label == 1
    assert head.prompt_to_class.tolist() == [0, 0, 1, 2]
    assert (head.density_threshold, head.denoise_threshold, head.denoise_temperature) == (0.5, 0.2, 10.0)


def test_bad_vocabulary_or_features_raise() -> None:
    with pytest.raises(ValueError, match="classes \\[1\\] have no prompt"):
        head_for([0, 0, 2], num_classes=3, free_label=2)
    with pytest.raises(ValueError, match="prompt_to_class values"):
        head_for([0, 5], num_classes=2, free_label=1)
    with pytest.raises(ValueError, match="free_label 3"):
        head_for([0, 1, 2], num_classes=3, free_label=3)
    with pytest.raises(ValueError, match="must be in 1..256"):
        head_for(list(range(3)), num_classes=300, free_label=0)
    head = head_for([0, 1], num_classes=2, free_label=1, channels=4)
    with pytest.raises(ValueError, match=r"features must be \(N, 4\)"):
        head.prompt_probabilities(torch.zeros(3, 5))


@pytest.mark.parametrize("num_prompts", [4, 12])
def test_sparse_classification_equals_dense_reference(num_prompts: int) -> None:
    """classify_voxels skips voxels no Gaussian reaches; the result must equal the full-grid maths
    (softmax, denoise over every voxel, synonym max, argmax, density threshold) written out here."""
    generator = torch.Generator().manual_seed(3)
    classes = torch.arange(num_prompts) % 3
    head = OpenVocabularyHead(torch.randn(num_prompts, 4, generator=generator), classes, num_classes=3,
                              free_label=2, density_threshold=0.05, denoise_threshold=0.2)
    density = torch.rand(6, 5, 4, generator=generator) * (torch.rand(6, 5, 4, generator=generator) > 0.6)
    q = torch.rand(6, 5, 4, num_prompts, generator=generator).softmax(-1) * (density > 0)[..., None]
    labels, confidence = head.classify_voxels(density, q)

    probs = q.softmax(-1).reshape(-1, num_prompts).numpy()
    sharp = (q * 100.0).softmax(-1).reshape(-1, num_prompts).numpy()
    keep = sharp.max(0) >= 0.2
    merged = np.stack([(probs * keep)[:, classes.numpy() == k].max(1) for k in range(3)], 1)
    expected = merged.argmax(1)
    free = density.reshape(-1).numpy() <= 0.05
    expected[free] = 2
    expected_conf = np.where(free, merged[:, 2], merged[np.arange(len(expected)), expected])
    assert np.array_equal(labels.reshape(-1).numpy(), expected.astype(np.uint8))
    assert np.allclose(confidence.reshape(-1).numpy(), expected_conf, atol=1e-6)


@pytest.mark.parametrize("denoise", [0.0, 0.2, 0.9])
def test_fused_classification_matches_torch_path(denoise: float) -> None:
    pytest.importorskip("numba")
    generator = torch.Generator().manual_seed(4)
    classes = torch.tensor([0, 1, 1, 2, 3, 3, 3, 4])
    head = OpenVocabularyHead(torch.randn(8, 4, generator=generator), classes, num_classes=5, free_label=4,
                              density_threshold=0.05, denoise_threshold=denoise)
    density = torch.rand(20, 18, 7, generator=generator) * (torch.rand(20, 18, 7, generator=generator) > 0.3)
    logits = 4 * torch.randn(20, 18, 7, 8, generator=generator)
    q = logits.softmax(-1) * (density > 0)[..., None]
    labels, confidence = head.classify_voxels(density, q, backend="fused")
    expected_labels, expected_confidence = head.classify_voxels(density, q, backend="torch")
    assert torch.equal(labels, expected_labels)
    torch.testing.assert_close(confidence, expected_confidence, rtol=1e-5, atol=1e-6)


def test_classification_falls_back_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    head = OpenVocabularyHead(torch.eye(3), torch.tensor([0, 1, 1]), num_classes=2, free_label=1)
    density = torch.tensor([[[0.0, 0.5, 0.01]]])
    q = torch.tensor([[[[0.0, 0.0, 0.0], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]]])
    expected = head.classify_voxels(density, q, backend="torch")
    monkeypatch.setattr(semantics_fused, "numba", None)
    labels, confidence = head.classify_voxels(density, q)
    assert torch.equal(labels, expected[0]) and torch.equal(confidence, expected[1])
    assert labels.flatten().tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="needs CPU tensors and numba"):
        head.classify_voxels(density, q, backend="fused")


def test_reused_workspace_gives_a_fresh_heads_result() -> None:
    """The head reuses one voxel-probability buffer per thread: a call after another scene equals a fresh
    head's call (nothing of the first scene is left in it)."""
    grid = VoxelGrid(range=(0.0, 0.0, 0.0, 4.0, 2.0, 2.0), size=0.5)
    covariances = torch.eye(3).expand(2, 3, 3) * 0.04
    prototypes = torch.eye(3)
    first = (torch.tensor([[0.75, 0.75, 0.75], [3.25, 0.75, 0.75]]), covariances, torch.tensor([0.9, 0.8]),
             torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]]))
    second = (torch.tensor([[2.25, 1.25, 1.25], [0.25, 0.25, 1.75]]), covariances, torch.tensor([0.7, 0.95]),
              torch.tensor([[0.0, 4.0, 1.0], [3.0, 0.0, 1.0]]))
    head = OpenVocabularyHead(prototypes, torch.tensor([0, 1, 2]), num_classes=3, free_label=2)
    head(*first, grid)
    reused = head(*second, grid)
    fresh = OpenVocabularyHead(prototypes, torch.tensor([0, 1, 2]), num_classes=3, free_label=2)(*second, grid)
    for name in ("labels", "confidence", "density", "gaussian_probabilities"):
        torch.testing.assert_close(getattr(reused, name), getattr(fresh, name), rtol=0, atol=0)
