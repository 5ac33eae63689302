"""Prototype files: ours (with vocabulary) and the authors' bare-tensor layout."""

from __future__ import annotations

import pytest
import torch

from gausstr_core.vocabulary import Prototypes, Vocabulary, compute_prototypes, load_prototypes, save_prototypes


class LengthEncoder:
    """Test encoder: prompt -> [len, first letter code, 1]."""

    feature_dim = 3

    def encode(self, prompts: list[str]) -> torch.Tensor:
        return torch.tensor([[len(p), ord(p[0]), 1.0] for p in prompts])


@pytest.fixture
def occ3d(repo_root) -> Vocabulary:
    return Vocabulary.load(repo_root / "config" / "vocabulary_occ3d.yaml")


def test_our_file_round_trip(occ3d: Vocabulary, tmp_path) -> None:
    prototypes = compute_prototypes(occ3d, LengthEncoder(), provider="length")
    assert prototypes.embeddings.shape == (21, 3)
    assert prototypes.embeddings[occ3d.prompts.index("construction vehicle")].tolist() == [20, ord("c"), 1]
    path = tmp_path / "nested" / "protos.pth"
    save_prototypes(prototypes, path)
    loaded = load_prototypes(path)
    assert loaded.vocabulary == occ3d and loaded.provider == "length" and loaded.prompts == occ3d.prompts
    torch.testing.assert_close(loaded.embeddings, prototypes.embeddings)
    assert load_prototypes(path, occ3d).vocabulary == occ3d
    other = Vocabulary.from_dict({"free_class": "sky", "classes": [{"name": "sky", "prompts": ["sky"]}]})
    with pytest.raises(ValueError, match="not the given vocabulary"):
        load_prototypes(path, other)


@pytest.mark.parametrize("wrap", [lambda t: t, lambda t: {"text_proto_embeds": t}])
def test_authors_tensor_layout(occ3d: Vocabulary, tmp_path, wrap) -> None:
    embeddings = torch.randn(21, 8, dtype=torch.float16)
    path = tmp_path / "text_proto_embeds_talk2dino.pth"
    torch.save(wrap(embeddings), path)
    loaded = load_prototypes(path, occ3d)
    assert loaded.embeddings.dtype == torch.float32
    torch.testing.assert_close(loaded.embeddings, embeddings.float())
    assert loaded.prompts[13] == "grass" and loaded.provider == "file:text_proto_embeds_talk2dino.pth"
    with pytest.raises(ValueError, match="needs a vocabulary"):
        load_prototypes(path)


def test_authors_layout_count_mismatch(occ3d: Vocabulary, tmp_path) -> None:
    path = tmp_path / "text_proto_embeds_other.pth"
    torch.save(torch.randn(20, 8), path)
    with pytest.raises(ValueError, match=r"\(20, 8\) does not fit vocabulary 'occ3d' with 21 prompts"):
        load_prototypes(path, occ3d)
    torch.save({"a": torch.randn(21, 8), "b": torch.randn(21, 8)}, path)
    with pytest.raises(ValueError, match="holding one tensor"):
        load_prototypes(path, occ3d)
    with pytest.raises(FileNotFoundError):
        load_prototypes(tmp_path / "absent.pth", occ3d)


def test_prototypes_shape_checked(occ3d: Vocabulary) -> None:
    with pytest.raises(ValueError, match="do not match the 21 prompts"):
        Prototypes(vocabulary=occ3d, embeddings=torch.zeros(16, 4), provider="x")
