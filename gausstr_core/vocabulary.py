"""Open-vocabulary class definitions and text-prototype files.

Vocabulary YAML:
    name: occ3d
    free_class: sky                # the class that means "free space" (empty voxel)
    classes:
      - {name: car, prompts: [car], occ3d_id: 4}          # occ3d_id optional
      - {name: manmade, prompts: [building, wall], occ3d_id: 15}

    templates: {clip: openai_imagenet_sub, talk2dino: none}   # optional, per text encoder

Labels index `classes` in file order; several prompts of one class are synonyms (merged by max).

Prototypes we compute (`compute_prototypes`) are L2-normalised per prompt. With a template
ensemble (format strings such as "a photo of a {}."), each prompt's prototype is the mean of its
L2-normalised template embeddings, renormalised (CLIP's zero-shot recipe). The ensemble is chosen
per text encoder (its registry name): the vocabulary's `templates` entry for that encoder (a named
set of TEMPLATE_SETS or a list of format strings), else DEFAULT_TEMPLATES: what each variant's
authors used ('openai_imagenet_sub' for CLIP/MaskCLIP, the FeatUp variant, built with mmpretrain's
CLIP zero-shot builder; the bare prompt for Talk2DINO, whose released file was made with an empty
template), else the bare prompt.

Prototype files (ours): a torch file {"prompts": [P str], "embeddings": (P, C) float tensor,
"vocabulary": vocabulary dict, "provider": str}. The authors' released `text_proto_embeds_*.pth`
hold a (C, P) tensor (their code computes `features @ text_proto_embeds`), bare or in a dict
(one tensor, or a state dict whose `*text_proto_embeds` entries are equal copies); they load
when paired with a vocabulary whose flattened prompt list has P entries, in either layout, (C, P)
or (P, C). A shape that fits both readings (C == P) is refused, naming both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from gausstr_core.file_checks import load_torch_checked
from gausstr_core.foundation.base import TextEncoder

OCC3D_NUM_CLASSES = 18  # ids 0..17, 17 = free
BARE_TEMPLATE = ("{}",)
# Named template ensembles. openai_imagenet_sub: the 7-template subset OpenAI recommend for CLIP
# zero-shot ImageNet (the subset mmpretrain's CLIP zero-shot prototype builder offers).
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "none": BARE_TEMPLATE,
    "vanilla": ("a photo of a {}",),
    "openai_imagenet_sub": (
        "itap of a {}.",
        "a bad photo of the {}.",
        "a origami {}.",
        "a photo of the large {}.",
        "a {} in a video game.",
        "art of the {}.",
        "a photo of the small {}.",
    ),
}
# Text-encoder registry name -> the ensemble its GaussTR variant's authors used (others: bare prompt).
DEFAULT_TEMPLATES = {"clip": "openai_imagenet_sub", "talk2dino": "none"}


@dataclass(frozen=True)
class VocabularyClass:
    name: str
    prompts: tuple[str, ...]
    occ3d_id: int | None = None


@dataclass(frozen=True)
class Vocabulary:
    """Classes (each with synonym prompts) plus the index of the free class."""

    name: str
    classes: tuple[VocabularyClass, ...]
    free_class: str
    templates: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (encoder name, format strings) pairs

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        return cls.from_dict(yaml.safe_load(path.read_text()), source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "vocabulary") -> Vocabulary:
        """Validate and build from the YAML mapping; errors name `source` and the bad entry."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: must be a mapping with name, free_class, classes")
        unknown = sorted(set(data) - {"name", "free_class", "classes", "templates"})
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}")
        raw_classes = data.get("classes")
        if not isinstance(raw_classes, list) or not raw_classes:
            raise ValueError(f"{source}: 'classes' must be a non-empty list")
        classes = tuple(_parse_class(entry, f"{source}: classes[{i}]") for i, entry in enumerate(raw_classes))
        names = [c.name for c in classes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{source}: duplicate class names {duplicates}")
        prompts = [p for c in classes for p in c.prompts]
        repeated = sorted({p for p in prompts if prompts.count(p) > 1})
        if repeated:
            raise ValueError(f"{source}: prompts {repeated} appear more than once")
        free_class = data.get("free_class")
        if free_class not in names:
            raise ValueError(f"{source}: free_class {free_class!r} is not one of the classes {names}")
        name = data.get("name", Path(source).stem)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{source}: 'name' must be a non-empty string")
        templates = _parse_templates(data.get("templates", {}), f"{source}: templates")
        return cls(name=name, classes=classes, free_class=free_class, templates=templates)

    def to_dict(self) -> dict[str, Any]:
        classes = []
        for c in self.classes:
            entry: dict[str, Any] = {"name": c.name, "prompts": list(c.prompts)}
            if c.occ3d_id is not None:
                entry["occ3d_id"] = c.occ3d_id
            classes.append(entry)
        out: dict[str, Any] = {"name": self.name, "free_class": self.free_class, "classes": classes}
        if self.templates:
            out["templates"] = {encoder: list(strings) for encoder, strings in self.templates}
        return out

    def templates_for(self, encoder: str, configured: Sequence[str] | None = None) -> tuple[str, ...]:
        """Template ensemble for the text encoder registered as `encoder`: this vocabulary's entry,
        else the encoder's `configured` templates (its spec), else DEFAULT_TEMPLATES, else the bare prompt."""
        own = dict(self.templates)
        if encoder in own:
            return own[encoder]
        if configured:
            return tuple(configured)
        return TEMPLATE_SETS[DEFAULT_TEMPLATES.get(encoder, "none")]

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def free_label(self) -> int:
        """Label index of the free class."""
        return self.class_names.index(self.free_class)

    @property
    def prompts(self) -> list[str]:
        """All prompts, class by class in file order (P entries)."""
        return [p for c in self.classes for p in c.prompts]

    @property
    def prompt_to_class(self) -> torch.Tensor:
        """(P,) int64 class index of every prompt, for merging synonym scores by max."""
        return torch.tensor([i for i, c in enumerate(self.classes) for _ in c.prompts], dtype=torch.int64)

    @property
    def occ3d_ids(self) -> torch.Tensor:
        """(K,) uint8 Occ3D id per class; ValueError unless every class declares occ3d_id."""
        missing = [c.name for c in self.classes if c.occ3d_id is None]
        if missing:
            raise ValueError(f"vocabulary {self.name!r} has no Occ3D mapping: classes {missing} lack occ3d_id")
        return torch.tensor([c.occ3d_id for c in self.classes], dtype=torch.uint8)

    def to_occ3d(self, labels: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Class labels (any shape, values 0..K-1) -> Occ3D ids, uint8, same container type and shape."""
        table = self.occ3d_ids
        if isinstance(labels, np.ndarray):
            return self.to_occ3d(torch.from_numpy(labels)).numpy()
        if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex():
            raise ValueError(
                f"to_occ3d: labels must be an integer array or tensor, got {getattr(labels, 'dtype', labels)}"
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(table)):
            raise ValueError(
                f"to_occ3d: labels range {int(labels.min())}..{int(labels.max())} outside 0..{len(table) - 1} "
                f"of vocabulary {self.name!r}"
            )
        return table.to(labels.device)[labels.long()]


def _parse_class(entry: Any, where: str) -> VocabularyClass:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: must be a mapping with name, prompts (and optional occ3d_id)")
    unknown = sorted(set(entry) - {"name", "prompts", "occ3d_id"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}")
    name, prompts, occ3d_id = entry.get("name"), entry.get("prompts"), entry.get("occ3d_id")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: 'name' must be a non-empty string, got {name!r}")
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError(f"{where} ({name}): 'prompts' must be a non-empty list of non-empty strings, got {prompts!r}")
    if occ3d_id is not None and (
        isinstance(occ3d_id, bool) or not isinstance(occ3d_id, int) or not 0 <= occ3d_id < OCC3D_NUM_CLASSES
    ):
        raise ValueError(
            f"{where} ({name}): occ3d_id must be an integer in 0..{OCC3D_NUM_CLASSES - 1}, got {occ3d_id!r}"
        )
    return VocabularyClass(name=name, prompts=tuple(prompts), occ3d_id=occ3d_id)


def _parse_templates(raw: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """{encoder: set name | [format strings]} -> sorted (encoder, format strings) pairs."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must map text-encoder names to a template set name or a list of strings")
    out = []
    for encoder, value in sorted(raw.items()):
        if isinstance(value, str):
            if value not in TEMPLATE_SETS:
                raise ValueError(f"{where}.{encoder}: unknown template set {value!r}; known: {sorted(TEMPLATE_SETS)}")
            value = TEMPLATE_SETS[value]
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(t, str) for t in value):
            raise ValueError(f"{where}.{encoder}: must be a template set name or a non-empty list of strings")
        bad = [t for t in value if t.count("{}") != 1]
        if bad:
            raise ValueError(f"{where}.{encoder}: templates {bad} must contain '{{}}' exactly once")
        out.append((str(encoder), tuple(value)))
    return tuple(out)


@dataclass(frozen=True)
class Prototypes:
    """Text prototypes of a vocabulary: embeddings (P, C), row i for vocabulary.prompts[i]."""

    vocabulary: Vocabulary
    embeddings: torch.Tensor
    provider: str

    def __post_init__(self) -> None:
        count = len(self.vocabulary.prompts)
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != count:
            raise ValueError(
                f"prototypes: embeddings {tuple(self.embeddings.shape)} do not match the {count} prompts of "
                f"vocabulary {self.vocabulary.name!r}"
            )

    @property
    def prompts(self) -> list[str]:
        return self.vocabulary.prompts


def compute_prototypes(
    vocabulary: Vocabulary, encoder: TextEncoder, provider: str, templates: Sequence[str] | None = None
) -> Prototypes:
    """Encode every prompt of `vocabulary` with `encoder` -> (P, C) L2-normalised prototypes.

    provider: the encoder's registry name (recorded in the file; picks the template ensemble);
    templates: explicit format strings, else vocabulary.templates_for(provider, encoder.templates).
    Each prompt's row is the renormalised mean of its L2-normalised template embeddings.
    """
    if not templates:
        templates = vocabulary.templates_for(provider, getattr(encoder, "templates", None))
    templates = tuple(templates)
    if not templates or any(t.count("{}") != 1 for t in templates):
        raise ValueError(f"compute_prototypes: templates {list(templates)} must each contain '{{}}' exactly once")
    prompts = vocabulary.prompts
    texts = [template.format(prompt) for prompt in prompts for template in templates]
    embeddings = encoder.encode(texts).detach().float().cpu()
    if embeddings.ndim != 2 or embeddings.shape[0] != len(texts):
        raise ValueError(f"text encoder returned {tuple(embeddings.shape)} for {len(texts)} texts, expected (T, C)")
    per_template = F.normalize(embeddings.view(len(prompts), len(templates), -1), dim=-1)
    embeddings = F.normalize(per_template.mean(dim=1), dim=-1)
    return Prototypes(vocabulary=vocabulary, embeddings=embeddings, provider=provider)


def save_prototypes(prototypes: Prototypes, path: str | Path) -> None:
    """Write our prototype file (see module docstring); creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "prompts": prototypes.prompts,
            "embeddings": prototypes.embeddings.contiguous(),
            "vocabulary": prototypes.vocabulary.to_dict(),
            "provider": prototypes.provider,
        },
        path,
    )


def load_prototypes(path: str | Path, vocabulary: Vocabulary | None = None) -> Prototypes:
    """Read our prototype file or the authors' tensor layout (which needs `vocabulary`).

    With our format and a `vocabulary`, the file's prompts must equal the vocabulary's.
    """
    path = Path(path)
    data = load_torch_checked(path, "prototype file")  # refuses TorchScript, names damage
    if isinstance(data, dict) and {"prompts", "embeddings", "vocabulary"} <= set(data):
        stored = Vocabulary.from_dict(data["vocabulary"], source=f"{path} vocabulary")
        if list(data["prompts"]) != stored.prompts:
            raise ValueError(f"{path}: 'prompts' disagree with the stored vocabulary's prompts")
        if vocabulary is not None and vocabulary.prompts != stored.prompts:
            raise ValueError(
                f"{path}: prototypes were made for prompts {stored.prompts}, "
                f"not the given vocabulary's {vocabulary.prompts}"
            )
        return Prototypes(
            vocabulary=stored, embeddings=data["embeddings"].float(), provider=str(data.get("provider", ""))
        )
    embeddings = _single_tensor(data, path)
    if vocabulary is None:
        raise ValueError(
            f"{path}: a bare prototype tensor (authors' layout) needs a vocabulary giving its prompt order"
        )
    embeddings = prompts_first(embeddings, len(vocabulary.prompts), f"{path} (vocabulary {vocabulary.name!r})")
    return Prototypes(vocabulary=vocabulary, embeddings=embeddings, provider=f"file:{path.name}")


def prompts_first(tensor: torch.Tensor, prompts: int, where: str) -> torch.Tensor:
    """A 2-D prototype tensor in the authors' (C, P) or in (P, C) layout -> (P, C) float32.

    ValueError when neither dimension is P, or when both are (a square tensor reads either way).
    """
    if tensor.ndim != 2 or not tensor.is_floating_point():
        raise ValueError(f"{where}: prototypes must be a 2-D float tensor, got {tuple(tensor.shape)} {tensor.dtype}")
    rows, cols = tensor.shape
    if rows == prompts and cols == prompts:
        raise ValueError(
            f"{where}: prototype tensor {tuple(tensor.shape)} is ambiguous: it reads as ({prompts} prompts, "
            f"{cols} dims) and as the authors' ({rows} dims, {prompts} prompts); save it in our format "
            "(gausstr_core.vocabulary.save_prototypes) to say which"
        )
    if cols == prompts:
        return tensor.t().float().contiguous()
    if rows == prompts:
        return tensor.float().contiguous()
    raise ValueError(
        f"{where}: tensor {tuple(tensor.shape)} does not fit {prompts} prompts: expected the authors' "
        f"(C, {prompts}) or ({prompts}, C)"
    )


def _single_tensor(data: Any, path: Path) -> torch.Tensor:
    """The prototype tensor of a bare tensor, a one-tensor dict or a state dict with text_proto_embeds copies."""
    if isinstance(data, torch.Tensor):
        return data
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if isinstance(data, dict):
        copies = [v for k, v in data.items() if str(k).endswith("text_proto_embeds") and isinstance(v, torch.Tensor)]
        if copies and all(c.shape == copies[0].shape and torch.equal(c, copies[0]) for c in copies):
            return copies[0]
        if copies:
            raise ValueError(f"{path}: its text_proto_embeds copies differ")
    tensors = [v for v in data.values() if isinstance(v, torch.Tensor)] if isinstance(data, dict) else []
    if len(tensors) != 1:
        raise ValueError(
            f"{path}: expected our prototype dict, a (C, P) or (P, C) tensor, or a dict holding one tensor"
        )
    return tensors[0]
