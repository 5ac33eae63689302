"""CLIP text encoder (open_clip): prompts -> CLIP embeddings, the MaskCLIP/FeatUp variant's prototypes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gausstr_core.foundation.frozen import FrozenModel
from gausstr_core.foundation.openclip_loader import DEFAULT_CLIP_MODEL, load_open_clip

_PROMPTS_PER_CALL = 256


class ClipTextEncoder(FrozenModel):
    """Frozen open_clip text tower: texts -> (T, C) raw (unnormalised) projected text embeddings.

    `templates` (format strings such as "a photo of a {}.") is this encoder's template ensemble,
    applied by `gausstr_core.vocabulary.compute_prototypes` (None: the vocabulary's or the default);
    `encode` itself embeds the texts exactly as given. The image tower is dropped after loading.
    """

    def __init__(
        self,
        model: str = DEFAULT_CLIP_MODEL,
        weights: str | None = None,
        device: torch.device | str = "cpu",
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        net, self.tokenizer = load_open_clip(model, weights, device)
        self.feature_dim: int = int(net.visual.output_dim)
        net.visual = nn.Identity()
        self.clip = net
        self.templates = tuple(templates) if templates else None
        for template in self.templates or ():
            if template.count("{}") != 1:
                raise ValueError(f"clip text template {template!r} must contain '{{}}' exactly once")
        self.freeze(device)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        if not prompts or not all(isinstance(p, str) and p for p in prompts):
            raise ValueError(f"clip text: prompts must be a non-empty list of non-empty strings, got {prompts!r}")
        chunks = [
            self.clip.encode_text(self.tokenizer(prompts[i : i + _PROMPTS_PER_CALL]).to(self.device))
            for i in range(0, len(prompts), _PROMPTS_PER_CALL)
        ]
        return torch.cat(chunks).float()
