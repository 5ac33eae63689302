"""The shipped model configs: the authors' two settings and the tiny CPU/test model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gausstr_core.config import load_config
from gausstr_core.model import GaussTR

AUTHORS = {  # docs/model_and_data_facts.md section 1
    "gausstr_talk2dino": dict(feature_dim=768, patch_size=14, input_size=(504, 896), maps=(36, 64), segment_classes=0),
    "gausstr_featup": dict(feature_dim=512, patch_size=16, input_size=(432, 768), maps=(27, 48), segment_classes=26),
}


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_full_configs_match_the_authors(name: str, repo_root: Path) -> None:
    cfg = load_config(repo_root / f"config/{name}.yaml")
    want = AUTHORS[name]
    m = cfg.model
    assert (m.feature_dim, m.patch_size, m.segment_classes) == (want["feature_dim"], want["patch_size"],
                                                                want["segment_classes"])
    shape = (m.num_queries, m.num_layers, m.embed_dims, m.num_heads, m.num_levels, m.num_points)
    assert shape == (300, 3, 256, 8, 4, 4)
    assert (m.ffn_dims, m.mlp_hidden, m.self_attn_scope, m.depth_max) == (2048, 1024, "view", 51.2)
    assert tuple(m.scale_range) == (1.0, 16.0) and m.scale_multiplier == 7.5
    assert tuple(cfg.data.input_size) == want["input_size"]
    assert tuple(s // m.patch_size for s in cfg.data.input_size) == want["maps"]
    assert cfg.inference.filter_gaussians == (name == "gausstr_talk2dino")


@torch.no_grad()
def test_tiny_config_runs_a_six_view_forward(repo_root: Path) -> None:
    cfg = load_config(repo_root / "config/tiny.yaml")
    assert cfg.data.feature_kind == "synthetic" and cfg.data.depth_kind == "synthetic_depth"
    h, w = cfg.data.input_size
    fh, fw = h // cfg.model.patch_size, w // cfg.model.patch_size
    model = GaussTR(cfg.model).eval()
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    out = model(torch.randn(1, 6, cfg.model.feature_dim, fh, fw), torch.rand(1, 6, h, w) * 40 + 1,
                torch.tensor([[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]]).expand(1, 6, 3, 3),
                torch.eye(4).expand(1, 6, 4, 4), torch.eye(3).expand(1, 6, 3, 3))
    assert len(out) == cfg.model.num_layers
    assert out[-1].means.shape == (1, 6 * cfg.model.num_queries, 3)
    assert torch.isfinite(out[-1].covariances).all()
