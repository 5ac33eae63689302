"""Vocabulary YAML format, the shipped Occ3D vocabulary and its Occ3D id mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from gausstr_core.resources import vocabulary_file
from gausstr_core.vocabulary import Vocabulary

OCC3D_NAMES = [
    "others",
    "barrier",
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "trailer",
    "truck",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
    "free",
]
AUTHOR_GROUPS = [
    ["barrier"],
    ["bicycle"],
    ["bus"],
    ["car"],
    ["construction vehicle"],
    ["motorcycle"],
    ["person"],
    ["cone"],
    ["trailer"],
    ["truck"],
    ["road"],
    ["sidewalk"],
    ["terrain", "grass"],
    ["building", "wall", "fence", "pole", "sign"],
    ["vegetation"],
    ["sky"],
]


@pytest.fixture
def occ3d() -> Vocabulary:
    return Vocabulary.load(vocabulary_file("vocabulary_occ3d.yaml"))


def test_shipped_vocabulary_is_the_authors_prompt_groups(occ3d: Vocabulary) -> None:
    assert [list(c.prompts) for c in occ3d.classes] == AUTHOR_GROUPS
    assert occ3d.free_class == "sky" and occ3d.free_label == 15
    assert occ3d.prompts == [p for group in AUTHOR_GROUPS for p in group]
    assert len(occ3d.prompts) == 21
    assert occ3d.prompt_to_class.tolist() == [i for i, group in enumerate(AUTHOR_GROUPS) for _ in group]
    # docs/model_and_data_facts.md section 1, inference: group i -> i + 1, one more above index 10, sky -> free (17).
    expected = [i + 1 + (i > 10) for i in range(16)]
    assert occ3d.occ3d_ids.tolist() == expected and expected[-1] == 17
    assert 0 not in expected and 12 not in expected  # others / other_flat never predicted
    for cls, occ_id in zip(occ3d.classes, expected):  # class names are the Occ3D names (sky = free)
        assert cls.name == ("sky" if occ_id == 17 else OCC3D_NAMES[occ_id])


def test_to_occ3d_keeps_container_and_shape(occ3d: Vocabulary) -> None:
    labels = np.array([[0, 10, 11], [12, 13, 15]], dtype=np.int64)
    mapped = occ3d.to_occ3d(labels)
    assert isinstance(mapped, np.ndarray) and mapped.dtype == np.uint8
    assert mapped.tolist() == [[1, 11, 13], [14, 15, 17]]
    tensor = occ3d.to_occ3d(torch.tensor(labels, dtype=torch.uint8))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.uint8
    assert tensor.tolist() == mapped.tolist()
    with pytest.raises(ValueError, match="outside 0..15"):
        occ3d.to_occ3d(np.array([16]))
    with pytest.raises(ValueError, match="integer"):
        occ3d.to_occ3d(np.array([1.0]))


def test_round_trip_and_custom_vocabulary(tmp_path) -> None:
    data = {
        "name": "tiny",
        "free_class": "empty",
        "classes": [{"name": "thing", "prompts": ["car", "truck"]}, {"name": "empty", "prompts": ["sky"]}],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    vocab = Vocabulary.load(path)
    assert vocab.class_names == ["thing", "empty"] and vocab.free_label == 1
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab
    with pytest.raises(ValueError, match=r"no Occ3D mapping: classes \['thing', 'empty'\]"):
        vocab.to_occ3d(np.array([0]))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"free_class": "a", "classes": []}, "non-empty list"),
        ({"free_class": "b", "classes": [{"name": "a", "prompts": ["x"]}]}, "free_class 'b'"),
        ({"free_class": "a", "classes": [{"name": "a", "prompts": []}]}, r"classes\[0\] \(a\): 'prompts'"),
        (
            {"free_class": "a", "classes": [{"name": "a", "prompts": ["x"]}, {"name": "a", "prompts": ["y"]}]},
            "duplicate class names",
        ),
        (
            {"free_class": "a", "classes": [{"name": "a", "prompts": ["x"]}, {"name": "b", "prompts": ["x"]}]},
            r"prompts \['x'\] appear more than once",
        ),
        ({"free_class": "a", "classes": [{"name": "a", "prompts": ["x"], "occ3d_id": 18}]}, "occ3d_id must be"),
        (
            {"free_class": "a", "classes": [{"name": "a", "prompts": ["x"], "colour": 1}]},
            r"unknown key\(s\) \['colour'\]",
        ),
        (
            {"free_class": "a", "classes": [{"name": "a", "prompts": ["x"]}], "extra": 1},
            r"unknown key\(s\) \['extra'\]",
        ),
    ],
)
def test_bad_vocabularies_name_the_problem(data, message) -> None:
    with pytest.raises(ValueError, match=message):
        Vocabulary.from_dict(data, source="bad.yaml")


def test_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        Vocabulary.load(tmp_path / "absent.yaml")
