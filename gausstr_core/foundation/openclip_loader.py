"""Loading open_clip models from local files (or hub names / pretrained tags when online)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from gausstr_core.foundation.weights import WeightsNotFoundError, looks_like_path, require_path

LOCAL_DIR = "local-dir:"
DEFAULT_CLIP_MODEL = "ViT-B-16-quickgelu"  # OpenAI CLIP ViT-B/16, as used by Talk2DINO and FeatUp
CLIP_HOW_TO_GET = (
    "Download an open_clip model folder (e.g. https://huggingface.co/timm/vit_base_patch16_clip_224.openai: "
    "open_clip_config.json + open_clip_model.safetensors) and set the spec's 'model' to 'local-dir:/that/folder', "
    "or keep a built-in 'model' name (e.g. ViT-B-16-quickgelu) and set 'weights' to the checkpoint file; "
    "with internet access 'weights' may be a pretrained tag such as 'openai'."
)
_CHECKPOINT_PATTERNS = ("*.safetensors", "*.bin", "*.pth", "*.pt")


def load_open_clip(
    model: str, weights: str | None, device: torch.device | str
) -> tuple[nn.Module, Callable[[list[str]], torch.Tensor]]:
    """Build an open_clip CLIP model with its weights and tokenizer.

    model: a built-in architecture name (weights = checkpoint file or pretrained tag),
    'local-dir:/folder' (config and weights in the folder) or 'hf-hub:org/name'.
    Raises WeightsNotFoundError when the weights are neither on disk nor reachable.
    """
    import open_clip

    if model.startswith(LOCAL_DIR):
        folder = require_path(model[len(LOCAL_DIR) :], f"open_clip folder for {model}", CLIP_HOW_TO_GET, is_dir=True)
        if not any(any(folder.glob(pattern)) for pattern in _CHECKPOINT_PATTERNS):
            raise WeightsNotFoundError(f"open_clip folder {folder} holds no checkpoint file. {CLIP_HOW_TO_GET}")
        net = open_clip.create_model(model, device=device)
    elif model.startswith("hf-hub:") or (weights is not None and not looks_like_path(str(weights))):
        try:
            net = open_clip.create_model(
                model, pretrained=None if model.startswith("hf-hub:") else str(weights), device=device
            )
        except (OSError, RuntimeError) as err:
            raise WeightsNotFoundError(
                f"open_clip {model} / {weights} could not be loaded ({err}). {CLIP_HOW_TO_GET}"
            ) from err
    else:
        path = require_path(weights, f"open_clip weights for {model}", CLIP_HOW_TO_GET)
        net = open_clip.create_model(model, pretrained=str(Path(path)), device=device)
    net.eval()
    return net, open_clip.get_tokenizer(model)
