"""Talk2DINO text path: CLIP text embedding -> learned projection -> DINOv2 patch-token space.

Our own implementation of the projection design described by Talk2DINO (Barsellotti et al.,
arXiv 2411.19331, github.com/lorebianchi98/Talk2DINO): one linear layer from the CLIP embedding
to the DINOv2 width, followed by zero or more (activation, linear) pairs. Layer count and widths
are read from the weights file; the activation (tanh for the released ViT-B 'vitb_mlp_infonce'
projection, whose config says `act: tanh`) cannot be read from the weights and is a spec option.
State-dict keys follow the released files: `linear_layer.*`, then `hidden_layers.<i>.*` (older
files name the single hidden layer `linear_layer2.*`, accepted too). Extra keys in the file that
belong to Talk2DINO's image side (e.g. attention-head weights) are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gausstr_core.foundation.clip_text import ClipTextEncoder
from gausstr_core.foundation.frozen import FrozenModel
from gausstr_core.foundation.openclip_loader import DEFAULT_CLIP_MODEL
from gausstr_core.foundation.weights import load_state_dict_file, require_path

TALK2DINO_HOW_TO_GET = (
    "Download the Talk2DINO projection weights (vitb_mlp_infonce.pth, ViT-B/14-reg version) from "
    "https://github.com/lorebianchi98/Talk2DINO/tree/main/weights and set the spec's 'weights' to that file."
)
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "none": nn.Identity}


class Talk2DINOProjection(nn.Module):
    """(..., clip_dim) CLIP text embeddings -> (..., dino_dim): linear, then (activation, linear) x num_hidden."""

    def __init__(self, clip_dim: int, dino_dim: int, num_hidden: int = 1, activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"talk2dino: unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        self.linear_layer = nn.Linear(clip_dim, dino_dim)
        self.hidden_layers = nn.ModuleList(nn.Linear(dino_dim, dino_dim) for _ in range(num_hidden))
        self.act = ACTIVATIONS[activation]()

    def forward(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        x = self.linear_layer(text_embeddings)
        for layer in self.hidden_layers:
            x = layer(self.act(x))
        return x

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], activation: str = "tanh") -> Talk2DINOProjection:
        """Build with widths and depth read from a released (or our own) state dict, and load it."""
        state = {
            (key.replace("linear_layer2.", "hidden_layers.0.", 1) if key.startswith("linear_layer2.") else key): value
            for key, value in state.items()
            if key.startswith(("linear_layer.", "linear_layer2.", "hidden_layers."))
        }
        if "linear_layer.weight" not in state:
            raise ValueError("talk2dino: weights have no 'linear_layer.weight'; not a Talk2DINO projection file")
        dino_dim, clip_dim = state["linear_layer.weight"].shape
        num_hidden = len({key.split(".")[1] for key in state if key.startswith("hidden_layers.")})
        projection = cls(int(clip_dim), int(dino_dim), num_hidden, activation)
        projection.load_state_dict(state)
        return projection


class Talk2DINOTextEncoder(FrozenModel):
    """Prompts -> (P, dino_dim) text prototypes in DINOv2 space (CLIP text tower + Talk2DINO projection).

    Talk2DINO ViT-B pairs OpenAI CLIP ViT-B/16 (open_clip 'ViT-B-16-quickgelu' with the 'openai'
    weights) with the DINOv2 ViT-B/14-reg projection.
    """

    def __init__(
        self,
        weights: str | None = None,
        clip_model: str = DEFAULT_CLIP_MODEL,
        clip_weights: str | None = None,
        activation: str = "tanh",
        device: torch.device | str = "cpu",
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        path = require_path(weights, "Talk2DINO projection weights", TALK2DINO_HOW_TO_GET)
        self.projection = Talk2DINOProjection.from_state_dict(load_state_dict_file(path), activation)
        self.clip = ClipTextEncoder(clip_model, clip_weights, device, templates)
        clip_dim = self.projection.linear_layer.in_features
        if self.clip.feature_dim != clip_dim:
            raise ValueError(
                f"talk2dino: projection {path} expects {clip_dim}-d CLIP embeddings but {clip_model} gives "
                f"{self.clip.feature_dim}-d"
            )
        self.feature_dim: int = self.projection.linear_layer.out_features
        self.templates = self.clip.templates  # applied by vocabulary.compute_prototypes
        self.freeze(device)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        return self.projection(self.clip.encode(prompts))
