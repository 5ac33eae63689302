"""Prototypes: computed (L2-normalised, template ensembles), our files and the authors' (C, P) layout."""

from __future__ import annotations

import pytest
import torch

from gausstr_core.resources import vocabulary_file
from gausstr_core.vocabulary import (
    TEMPLATE_SETS,
    Prototypes,
    Vocabulary,
    compute_prototypes,
    load_prototypes,
    save_prototypes,
)


class LengthEncoder:
    """Test encoder: text -> [len, first letter code, 1]; records the texts it was given."""

    feature_dim = 3

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, prompts: list[str]) -> torch.Tensor:
        self.seen += prompts
        return torch.tensor([[len(p), ord(p[0]), 1.0] for p in prompts])


def _unit(row: list[float]) -> list[float]:
    norm = sum(x * x for x in row) ** 0.5
    return [x / norm for x in row]


@pytest.fixture
def occ3d() -> Vocabulary:
    return Vocabulary.load(vocabulary_file("vocabulary_occ3d.yaml"))


def test_our_file_round_trip(occ3d: Vocabulary, tmp_path) -> None:
    prototypes = compute_prototypes(occ3d, LengthEncoder(), provider="length")
    assert prototypes.embeddings.shape == (21, 3)
    torch.testing.assert_close(prototypes.embeddings[occ3d.prompts.index("construction vehicle")],
                               torch.tensor(_unit([20, ord("c"), 1])))  # L2-normalised per prompt
    path = tmp_path / "nested" / "protos.pth"
    save_prototypes(prototypes, path)
    loaded = load_prototypes(path)
    assert loaded.vocabulary == occ3d and loaded.provider == "length" and loaded.prompts == occ3d.prompts
    torch.testing.assert_close(loaded.embeddings, prototypes.embeddings)
    assert load_prototypes(path, occ3d).vocabulary == occ3d
    other = Vocabulary.from_dict({"free_class": "sky", "classes": [{"name": "sky", "prompts": ["sky"]}]})
    with pytest.raises(ValueError, match="not the given vocabulary"):
        load_prototypes(path, other)


@pytest.mark.parametrize(
    "wrap",
    [lambda t: t, lambda t: {"text_proto_embeds": t},
     lambda t: {"state_dict": {f"gauss_heads.{i}.text_proto_embeds": t for i in range(3)}}],
    ids=["tensor", "dict", "state_dict"],
)
@pytest.mark.parametrize("authors_layout", [True, False], ids=["(C, P)", "(P, C)"])
def test_authors_tensor_layout(occ3d: Vocabulary, tmp_path, wrap, authors_layout: bool) -> None:
    """The authors compute features @ text_proto_embeds: their files are (feature_dim, prompts)."""
    embeddings = torch.randn(8, 21, dtype=torch.float16)  # (C, P)
    path = tmp_path / "text_proto_embeds_talk2dino.pth"
    torch.save(wrap(embeddings if authors_layout else embeddings.t().contiguous()), path)
    loaded = load_prototypes(path, occ3d)
    assert loaded.embeddings.dtype == torch.float32 and loaded.embeddings.shape == (21, 8)
    torch.testing.assert_close(loaded.embeddings, embeddings.t().float())  # row i = prompt i
    assert loaded.prompts[13] == "grass" and loaded.provider == "file:text_proto_embeds_talk2dino.pth"
    with pytest.raises(ValueError, match="needs a vocabulary"):
        load_prototypes(path)


def test_square_prototype_tensor_is_ambiguous(occ3d: Vocabulary, tmp_path) -> None:
    path = tmp_path / "square.pth"
    torch.save(torch.randn(21, 21), path)
    with pytest.raises(ValueError, match=r"ambiguous: it reads as \(21 prompts, 21 dims\) and as the authors' "
                                         r"\(21 dims, 21 prompts\)"):
        load_prototypes(path, occ3d)


def test_template_ensembles_per_vocabulary_and_encoder(occ3d: Vocabulary) -> None:
    encoder = LengthEncoder()
    compute_prototypes(occ3d, encoder, provider="talk2dino")
    assert encoder.seen == occ3d.prompts  # Talk2DINO's authors: the bare prompt
    encoder = LengthEncoder()
    clip = compute_prototypes(occ3d, encoder, provider="clip")
    sub = TEMPLATE_SETS["openai_imagenet_sub"]
    assert encoder.seen[: len(sub)] == [t.format("barrier") for t in sub] and len(encoder.seen) == 21 * len(sub)
    rows = torch.nn.functional.normalize(LengthEncoder().encode([t.format("car") for t in sub]), dim=-1)
    torch.testing.assert_close(clip.embeddings[3], torch.nn.functional.normalize(rows.mean(0), dim=0))

    custom = Vocabulary.from_dict({**occ3d.to_dict(), "templates": {"clip": ["a {} nearby", "the {}"],
                                                                     "talk2dino": "vanilla"}})
    encoder = LengthEncoder()
    compute_prototypes(custom, encoder, provider="clip")
    assert encoder.seen[:2] == ["a barrier nearby", "the barrier"]
    encoder = LengthEncoder()
    compute_prototypes(custom, encoder, provider="talk2dino")
    assert encoder.seen[0] == "a photo of a barrier"
    assert Vocabulary.from_dict(custom.to_dict()) == custom
    encoder = LengthEncoder()
    encoder.templates = ("{} here",)  # an encoder spec's own templates, below the vocabulary's entry
    compute_prototypes(occ3d, encoder, provider="clip")
    assert encoder.seen[0] == "barrier here"
    for bad, message in (({"clip": "fancy"}, "unknown template set"), ({"clip": ["no slot"]}, "exactly once"),
                         (["{}"], "must map text-encoder names")):
        with pytest.raises(ValueError, match=message):
            Vocabulary.from_dict({**occ3d.to_dict(), "templates": bad})


def test_authors_layout_count_mismatch(occ3d: Vocabulary, tmp_path) -> None:
    path = tmp_path / "text_proto_embeds_other.pth"
    torch.save(torch.randn(20, 8), path)
    with pytest.raises(ValueError, match=r"\(20, 8\) does not fit 21 prompts"):
        load_prototypes(path, occ3d)
    torch.save({"a": torch.randn(21, 8), "b": torch.randn(21, 8)}, path)
    with pytest.raises(ValueError, match="holding one tensor"):
        load_prototypes(path, occ3d)
    with pytest.raises(FileNotFoundError):
        load_prototypes(tmp_path / "absent.pth", occ3d)


def test_prototypes_shape_checked(occ3d: Vocabulary) -> None:
    with pytest.raises(ValueError, match="do not match the 21 prompts"):
        Prototypes(vocabulary=occ3d, embeddings=torch.zeros(16, 4), provider="x")
