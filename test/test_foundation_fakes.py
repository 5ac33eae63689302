"""Tiny random-weight foundation models written to temp dirs, shared by the foundation and prepare tests.

Imported by test_foundation_*.py and test_prepare_*.py; holds no tests itself.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import torch

TINY_CLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    },
    "preprocess_cfg": {},
}
TINY_DINO_KWARGS = {"embed_dim": 48, "depth": 2, "num_heads": 2}


def write_tiny_dinov2(path: Path) -> Path:
    """Random timm vit_base_patch14_reg4_dinov2 shrunk by TINY_DINO_KWARGS, state dict saved at `path`."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_base_patch14_reg4_dinov2", pretrained=False, num_classes=0, **TINY_DINO_KWARGS)
    torch.save(model.state_dict(), path)
    return path


def write_tiny_open_clip(folder: Path) -> Path:
    """open_clip local-dir folder (open_clip_config.json + open_clip_pytorch_model.bin) of a tiny random CLIP."""
    from open_clip.model import CLIP

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    torch.manual_seed(0)
    torch.save(CLIP(**TINY_CLIP_CONFIG["model_cfg"]).state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def write_tiny_depth_anything(folder: Path, kind: str = "metric") -> Path:
    """transformers Depth Anything with a 4-layer 32-wide DINOv2 backbone, save_pretrained into `folder`."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=56,
        patch_size=14,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
        apply_layernorm=True,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type=kind,
        max_depth=80,
    )
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    return folder


METRIC3D_HUBCONF = '''
"""Fake Metric3D hub entry with the real input/output contract.

inference({'input': x}) with x = (RGB 0..255 - mean) / std, padded with 0, returns
(canonical depth (B, 1, h, w), confidence, dict); canonical depth = 1 + gain * gray, gray in [0, 1].
"""
import os
import time

import torch
from torch import nn

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
DELAY = float(os.environ.get("FAKE_METRIC3D_DELAY", "0"))  # seconds per call


class FakeMetric3D(nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(10.0))
        self.seen_shapes = []

    def inference(self, data):
        x = data["input"]
        self.seen_shapes.append(tuple(x.shape))
        time.sleep(DELAY)
        gray = (x * STD + MEAN).mean(1, keepdim=True) / 255.0
        depth = 1.0 + self.gain * gray
        return depth, torch.ones_like(depth), {}


def metric3d_vit_small(pretrain=False, **kwargs):
    if pretrain:
        raise OSError("offline: cannot download the Metric3D checkpoint")
    return FakeMetric3D()
'''


def write_fake_metric3d_hub(folder: Path) -> Path:
    """A torch.hub directory whose `metric3d_vit_small` follows Metric3D's contract (see METRIC3D_HUBCONF).

    Env FAKE_METRIC3D_DELAY (seconds) slows every inference call, for kill-and-resume tests.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hubconf.py").write_text(textwrap.dedent(METRIC3D_HUBCONF))
    return folder


FEATUP_HUBCONF = '''
"""Fake FeatUp hub entry: `.upsampler(features, guidance)` repeats each cell to the guidance size."""
import torch.nn.functional as F
from torch import nn


class NearestUpsampler(nn.Module):
    def forward(self, source, guidance):
        assert guidance.shape[1] == 3
        return F.interpolate(source, size=guidance.shape[-2:], mode="nearest")


class UpsampledBackbone(nn.Module):
    def __init__(self, use_norm):
        super().__init__()
        self.use_norm = use_norm
        self.upsampler = NearestUpsampler()


def maskclip(use_norm=True):
    return UpsampledBackbone(use_norm)
'''


def write_fake_featup_hub(folder: Path) -> Path:
    """A torch.hub directory with FeatUp's `maskclip` entry shape (module with an `upsampler`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hubconf.py").write_text(textwrap.dedent(FEATUP_HUBCONF))
    return folder


def write_tiny_nuscenes(
    dataroot: Path, samples: int = 3, width: int = 84, height: int = 56, version: str = "v1.0-mini"
) -> str:
    """One-scene nuScenes tree (tables via the synthetic writer's NuScenesTables) with random-colour JPEGs.

    Six nuScenes cameras scaled to width x height, `samples` keyframes, no sweeps; split "train"
    (and "val") = that scene in `<version>/splits.json`. Returns the scene name.
    """
    import numpy as np
    from PIL import Image

    from gausstr_core.data.synthetic.rig import nuscenes_rig
    from gausstr_core.data.synthetic.tables import NuScenesTables

    rng = np.random.default_rng(0)
    tables = NuScenesTables(seed=7)
    scene = "tiny-scene-0000"
    log = tables.add_log("tiny-log", "2025-01-01")
    rig = nuscenes_rig(width, height)
    sample_tokens = [tables.token("sample", j) for j in range(samples)]
    stamps = [1_700_000_000_000_000 + j * 500_000 for j in range(samples)]
    for cam in rig:
        calib = tables.add_calibration(log, cam.name, cam.intrinsics, cam.cam2ego)
        chain = []
        for j, (sample, stamp) in enumerate(zip(sample_tokens, stamps)):
            filename = f"samples/{cam.name}/tiny__{cam.name}__{stamp}.jpg"
            (dataroot / filename).parent.mkdir(parents=True, exist_ok=True)
            blocks = rng.integers(0, 256, size=(height // 14 + 1, width // 14 + 1, 3), dtype=np.uint8)
            pixels = np.kron(blocks, np.ones((14, 14, 1), dtype=np.uint8))[:height, :width]
            Image.fromarray(pixels).save(dataroot / filename, quality=95)
            ego2global = np.eye(4)
            ego2global[0, 3] = 5.0 * j
            chain.append(
                {
                    "token": tables.token("sample_data", cam.name, j),
                    "sample_token": sample,
                    "calibrated_sensor_token": calib,
                    "timestamp": stamp,
                    "is_key_frame": True,
                    "width": width,
                    "height": height,
                    "filename": filename,
                    "ego2global": ego2global,
                }
            )
        tables.add_image_chain(chain)
    tables.add_scene(scene, log, sample_tokens, stamps, "tiny test scene")
    (dataroot / "maps").mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8)).save(dataroot / "maps" / "tiny.png")
    tables.add_map("maps/tiny.png")
    tables.write(dataroot, version)
    (dataroot / version / "splits.json").write_text(json.dumps({"train": [scene], "val": [scene]}))
    return scene
