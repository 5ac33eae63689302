"""FeatUp joint-bilateral upsampler loaded from a local torch.hub directory (a clone of mhamilton723/FeatUp)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gausstr_core.foundation.weights import require_path

FEATUP_HOW_TO_GET = (
    "Clone https://github.com/mhamilton723/FeatUp (its hubconf.py) and set the spec's 'featup_dir' to the clone; "
    "the entry downloads its upsampler checkpoint into $TORCH_HOME/hub/checkpoints on first use, so copy "
    "that file there (e.g. maskclip_jbu_stack_cocostuff.ckpt) on an offline machine."
)

Upsampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def load_featup_upsampler(
    hub_dir: str, entry: str = "maskclip", device: torch.device | str = "cpu", **entry_kwargs: Any
) -> torch.nn.Module:
    """`torch.hub.load(hub_dir, entry, source='local', **entry_kwargs).upsampler`, frozen on `device`.

    Contract: the entry returns a module with an `upsampler` attribute called as
    upsampler(features (B, C, h, w), guidance (B, 3, H, W) ImageNet-normalised) -> (B, C, H', W').
    """
    folder = require_path(hub_dir, "FeatUp torch.hub directory", FEATUP_HOW_TO_GET, is_dir=True)
    if not (folder / "hubconf.py").is_file():
        raise FileNotFoundError(f"FeatUp directory {folder} has no hubconf.py. {FEATUP_HOW_TO_GET}")
    hub_model = torch.hub.load(str(folder), entry, source="local", **entry_kwargs)
    upsampler = getattr(hub_model, "upsampler", None)
    if not isinstance(upsampler, torch.nn.Module):
        raise TypeError(
            f"FeatUp entry {entry!r} in {folder} returned {type(hub_model).__name__} without an 'upsampler' module"
        )
    return upsampler.to(device).eval().requires_grad_(False)
