"""Our checkpoint format: atomic save, weights_only load, strict rebuild, clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from gausstr_core.config import Config, ModelConfig
from gausstr_core.model import GaussTR, atomic_save, build_model_from_checkpoint, load_checkpoint, save_checkpoint
from gausstr_core.model.checkpoint import content_digest


def _config(**model) -> Config:
    values = dict(feature_dim=16, embed_dims=32, num_queries=4, num_layers=2, num_heads=2, num_points=2,
                  ffn_dims=32, mlp_hidden=32)
    cfg = Config(model=ModelConfig(**{**values, **model}))
    cfg.train.lr = 1.5e-4
    return cfg


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return dict(
        features=torch.randn(1, 2, 16, 3, 4, generator=g),
        depths=torch.rand(1, 2, 12, 16, generator=g) * 20 + 1,
        intrinsics=torch.tensor([[20.0, 0, 8], [0, 20, 6], [0, 0, 1]]).expand(1, 2, 3, 3),
        cam2ego=torch.eye(4).expand(1, 2, 4, 4),
        original_to_input=torch.eye(3).expand(1, 2, 3, 3),
    )


def test_round_trip_rebuilds_the_same_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = _config(segment_classes=3, segment_in_dims=4, segment_hidden=6)
    model = GaussTR(cfg.model).eval()
    path = tmp_path / "ckpt" / "model.pt"
    save_checkpoint(path, model, cfg, extra={"step": 7, "optimizer": {"state": {0: {"m": torch.ones(2)}}}})
    ckpt = load_checkpoint(path)
    assert ckpt["config"] == cfg.to_dict() and ckpt["step"] == 7
    assert ckpt["meta"]["format"] == "gausstr" and ckpt["meta"]["version"] == 1 and ckpt["meta"]["created"]
    rebuilt, rebuilt_cfg = build_model_from_checkpoint(path)
    assert rebuilt_cfg == cfg and not rebuilt.training
    with torch.no_grad():
        a, b = model(**_inputs())[-1], rebuilt(**_inputs())[-1]
    assert torch.equal(a.means, b.means) and torch.equal(a.features, b.features)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary files left


def test_atomic_save_keeps_the_old_file_when_saving_fails(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    atomic_save({"a": torch.zeros(1)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"a": Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(1))
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_extras_must_be_plain_data(tmp_path: Path) -> None:
    cfg = _config()
    model = GaussTR(cfg.model)
    with pytest.raises(TypeError, match=r"extra\['bad'\]\[0\] is a \w*Path"):
        save_checkpoint(tmp_path / "a.pt", model, cfg, extra={"bad": [Path("x")]})
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "a.pt", model, cfg, extra={"meta": {}})


def test_missing_and_corrupt_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    cfg = _config()
    good = tmp_path / "good.pt"
    save_checkpoint(good, GaussTR(cfg.model), cfg)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    for path in (truncated, garbage):
        with pytest.raises(ValueError, match="corrupt"):
            load_checkpoint(path)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="not a GaussTR checkpoint"):
        load_checkpoint(other)


def test_pickled_objects_are_refused_with_a_conversion_hint(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}, "meta": {"where": Path("x")}}, path)
    with pytest.raises(ValueError, match="gausstr-convert"):
        load_checkpoint(path)


def test_state_dict_not_matching_the_config_lists_the_keys(tmp_path: Path) -> None:
    cfg = _config()
    path = tmp_path / "m.pt"
    save_checkpoint(path, GaussTR(cfg.model), cfg)
    ckpt = torch.load(path, weights_only=True)
    state = ckpt["state_dict"]
    del state["out_norm.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["query_embed.weight"] = torch.zeros(5, 32)
    ckpt["meta"]["sha256"] = content_digest(ckpt)  # a consistent file that does not fit the config
    torch.save(ckpt, path)
    with pytest.raises(ValueError) as err:
        build_model_from_checkpoint(path)
    text = str(err.value)
    assert "missing keys (1): out_norm.bias" in text
    assert "unexpected keys (1): extra.weight" in text
    assert "query_embed.weight: (5, 32) vs model (4, 32)" in text


def test_newer_format_versions_are_refused(tmp_path: Path) -> None:
    cfg = _config()
    path = tmp_path / "m.pt"
    save_checkpoint(path, GaussTR(cfg.model), cfg)
    ckpt = torch.load(path, weights_only=True)
    ckpt["meta"]["version"] = 99
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="version 99"):
        load_checkpoint(path)


def test_checkpoint_loads_with_plain_weights_only_torch_load(tmp_path: Path) -> None:
    """The file needs nothing but torch to read safely (no custom classes inside)."""
    cfg = _config()
    path = tmp_path / "m.pt"
    save_checkpoint(path, GaussTR(cfg.model), cfg)
    data = torch.load(path, weights_only=True)
    assert isinstance(data["config"]["model"]["scale_range"], list)
    assert pickle.loads(pickle.dumps(data["config"])) == cfg.to_dict()
