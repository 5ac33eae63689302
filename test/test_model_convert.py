"""gausstr-convert: authors' mmengine checkpoints -> ours (fixture-built files, malicious pickles)."""

from __future__ import annotations

import collections
import math
import os
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from gausstr_core.cli.convert import main as convert_main
from gausstr_core.config import load_config
from gausstr_core.model import GaussTR, build_model_from_checkpoint, load_checkpoint
from gausstr_core.model.safe_unpickle import UnsafeCheckpointError, load_foreign_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
VARIANTS = ("talk2dino", "featup")


def _fixture(variant: str) -> tuple[list[tuple[str, tuple[int, ...], str]], int, int]:
    """Entries (key, shape, kind) and the declared GaussTR / backbone parameter counts."""
    entries, declared = [], None
    for line in (FIXTURES / f"gausstr_{variant}_keys.tsv").read_text().splitlines():
        if line.startswith("# parameters:"):
            numbers = [int(t) for t in line.split() if t.isdigit()]
            declared = (numbers[0], numbers[1])
        elif line and not line.startswith("#"):
            key, shape, kind = line.split("\t")
            entries.append((key, tuple(int(s) for s in shape.split(",")), kind))
    return entries, *declared


class HistoryBuffer:
    """Mimics mmengine's HistoryBuffer: pickled by class reference plus a __dict__ of numpy arrays."""

    def __init__(self, values: list[float]) -> None:
        self.max_length = 1000000
        self._log_history = np.array(values)
        self._count_history = np.ones(len(values), dtype=np.int64)


class ConfigDict(dict):
    """Mimics mmengine's ConfigDict: a dict subclass, pickled with its items."""


class ReducingObject:
    """An mmengine-named object whose pickle asks for a call on load (must stay inert)."""

    def __reduce__(self):
        return (ReducingObject, ("would run on load",))


@contextmanager
def _fake_mmengine() -> Iterator[None]:
    """Make the classes above picklable as mmengine.logging.history_buffer.* for the time of saving."""
    names = ("mmengine", "mmengine.logging", "mmengine.logging.history_buffer")
    module = types.ModuleType(names[-1])
    for cls in (HistoryBuffer, ConfigDict, ReducingObject):
        cls.__module__ = names[-1]
        setattr(module, cls.__name__, cls)
    sys.modules.update({n: types.ModuleType(n) for n in names[:-1]} | {names[-1]: module})
    try:
        yield
    finally:
        for n in names:
            del sys.modules[n]


def _write_authors_file(path: Path, state: dict[str, torch.Tensor], payload: object = None) -> None:
    """torch.save an mmengine-like checkpoint: meta, state_dict, message hub, optimizer state."""
    ckpt = {
        "meta": {"epoch": 20, "iter": 70320, "mmengine_version": "0.10.5", "cfg": "model = dict(type='GaussTR')",
                 "seed": 42, "dataset_meta": {"classes": ("car", "road"), "palette": np.zeros((2, 3), np.uint8)}},
        "state_dict": collections.OrderedDict(state),
        "message_hub": {
            "log_scalars": {"train/loss": HistoryBuffer([1.5, 1.2, 0.9])},
            "runtime_info": {"epoch": 20, "max_lr": np.float64(2e-4), "steps": np.int64(7), "odd": ReducingObject()},
            "resumed_keys": {"epoch": True},
            "cfg": ConfigDict(type="GaussTR", num_queries=300),
        },
        "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(4)}},
                      "param_groups": [{"lr": 2e-5, "betas": (0.9, 0.999), "params": [0]}]},
    }
    if payload is not None:
        ckpt["meta"]["payload"] = payload
    with _fake_mmengine():
        torch.save(ckpt, path)


def _state_from_fixture(variant: str, value: Callable[[int, str, tuple[int, ...]], torch.Tensor]) -> dict:
    """Parameters from `value(index, key, shape)`; buffers as in the authors' model (shared per layer)."""
    entries, _, _ = _fixture(variant)
    protos = torch.randn(entries[[k for k, _, _ in entries].index("gauss_heads.0.text_proto_embeds")][1],
                         generator=torch.Generator().manual_seed(0))
    volume = torch.tensor([-40.0, -40.0, -1.0, 40.0, 40.0, 5.4])
    state = {}
    for i, (key, shape, kind) in enumerate(entries):
        if kind == "buffer":
            state[key] = protos if key.endswith("text_proto_embeds") else volume
        else:
            state[key] = value(i, key, shape)
    return state


def _constant(i: int, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.full((1,), float(i + 1)).expand(shape)  # one stored number per tensor: tiny files


def test_fixtures_declare_the_parameter_counts_of_our_configs(repo_root: Path) -> None:
    for variant in VARIANTS:
        entries, gausstr_params, backbone_params = _fixture(variant)
        counted = [math.prod(s) for k, s, kind in entries if kind == "param"]
        assert sum(counted) == gausstr_params + backbone_params
        model = GaussTR(load_config(repo_root / f"config/gausstr_{variant}.yaml").model)
        assert sum(p.numel() for p in model.parameters()) == gausstr_params
    assert _fixture("talk2dino")[2] > 80_000_000 and _fixture("featup")[2] == 0  # DINOv2 ViT-B only in Talk2DINO


@pytest.mark.parametrize("variant", VARIANTS)
def test_fixture_built_file_converts_strictly_and_maps_each_tensor_once(
    variant: str, tmp_path: Path, repo_root: Path, capsys: pytest.CaptureFixture
) -> None:
    entries, gausstr_params, backbone_params = _fixture(variant)
    src, dst, backbone = tmp_path / "authors.pth", tmp_path / "ours.pt", tmp_path / "backbone.pth"
    state = _state_from_fixture(variant, _constant)
    _write_authors_file(src, state)
    rc = convert_main([str(src), str(dst), "--config", str(repo_root / f"config/gausstr_{variant}.yaml"),
                       "--backbone-out", str(backbone)])
    assert rc == 0, capsys.readouterr().err
    assert f"{gausstr_params:,} parameters" in capsys.readouterr().out
    assert "mmengine" not in sys.modules  # the stand-ins were used; nothing was imported

    ckpt = load_checkpoint(dst)
    ours = ckpt["state_dict"]
    # every parameter of ours is one of the authors' tensors, each used exactly once
    sources = {float(i + 1) for i, (key, _, kind) in enumerate(entries) if kind == "param" and "backbone." not in key}
    seen = []
    for name, tensor in ours.items():
        assert torch.all(tensor == tensor.flatten()[0]), f"{name} mixes several source tensors"
        seen.append(float(tensor.flatten()[0]))
    assert sorted(seen) == sorted(sources)
    assert sum(t.numel() for t in ours.values()) == gausstr_params
    expected = state["gauss_heads.0.text_proto_embeds"].t()
    torch.testing.assert_close(ckpt["text_prototypes"], expected)  # (prompts, feature dim)
    assert ckpt["source"]["meta"]["epoch"] == 20 and ckpt["source"]["meta"]["mmengine_version"] == "0.10.5"
    if backbone_params:
        written = torch.load(backbone, weights_only=True)
        want = {k.removeprefix("backbone."): s for k, s, _ in entries if k.startswith("backbone.")}
        assert {k: tuple(v.shape) for k, v in written.items()} == want
        assert sum(v.numel() for v in written.values()) == backbone_params
    else:
        assert not backbone.exists()


@torch.no_grad()
def test_converted_heads_keep_their_roles(tmp_path: Path, repo_root: Path) -> None:
    """All weights zero except each layer's last-layer biases: outputs reveal which head went where."""
    variant = "featup"
    opacity, scale, dz = [-1.0, 0.5, 2.0], [-2.0, 0.0, 1.0], [0.1, -0.2, 0.3]
    cfg = load_config(repo_root / f"config/gausstr_{variant}.yaml")
    feature = torch.linspace(-1, 1, cfg.model.feature_dim)

    def value(i: int, key: str, shape: tuple[int, ...]) -> torch.Tensor:
        layer = int(key.split(".")[1]) if key.startswith("gauss_heads.") else -1
        if key.endswith("opacity_head.layers.1.bias"):
            return torch.full(shape, opacity[layer])
        if key.endswith("scale_head.layers.1.bias"):
            return torch.full(shape, scale[layer])
        if key.endswith("regress_head.layers.1.bias"):
            return torch.tensor([0.0, 0.0, dz[layer]])
        if key.endswith("feature_head.layers.1.bias"):
            return feature * (layer + 1)
        return torch.zeros(shape)

    src, dst = tmp_path / "authors.pth", tmp_path / "ours.pt"
    _write_authors_file(src, _state_from_fixture(variant, value))
    assert convert_main([str(src), str(dst), "--config", str(repo_root / f"config/gausstr_{variant}.yaml")]) == 0
    model, _ = build_model_from_checkpoint(dst)
    fx, depth = 500.0, 10.0
    layers = model(
        torch.randn(1, 1, cfg.model.feature_dim, 4, 6), torch.full((1, 1, 16, 24), depth),
        torch.tensor([[fx, 0, 12.0], [0, fx, 8.0], [0, 0, 1]])[None, None], torch.eye(4)[None, None],
        torch.eye(3)[None, None],
        ref_points=0.1 + 0.8 * torch.rand(1, 1, cfg.model.num_queries, 2),  # off the zero-padded border
    )
    assert len(layers) == 3
    for i, g in enumerate(layers):
        torch.testing.assert_close(g.opacities, torch.full_like(g.opacities, torch.sigmoid(torch.tensor(opacity[i]))))
        lo, hi = cfg.model.scale_range
        s = (lo + (hi - lo) * torch.sigmoid(torch.tensor(scale[i]))) * depth * cfg.model.scale_multiplier / fx
        torch.testing.assert_close(g.scales, torch.full_like(g.scales, float(s)))
        torch.testing.assert_close(g.means[..., 2], torch.full_like(g.means[..., 2], depth * (1 + dz[i])))
        torch.testing.assert_close(g.features[0, 0], feature * (i + 1))


def test_unknown_and_missing_keys_are_listed(tmp_path: Path, repo_root: Path, capsys: pytest.CaptureFixture) -> None:
    config = str(repo_root / "config/gausstr_featup.yaml")
    state = _state_from_fixture("featup", _constant)
    state["gauss_heads.1.depth_head.layers.0.weight"] = torch.zeros(2, 2)
    state["neck.extra_convs.0.weight"] = torch.zeros(2)
    _write_authors_file(tmp_path / "unknown.pth", state)
    assert convert_main([str(tmp_path / "unknown.pth"), str(tmp_path / "a.pt"), "--config", config]) == 2
    err = capsys.readouterr().err
    assert "unknown keys in the authors' state dict (2)" in err
    assert "gauss_heads.1.depth_head.layers.0.weight" in err and "neck.extra_convs.0.weight" in err

    state = _state_from_fixture("featup", _constant)
    del state["decoder.norm.bias"], state["gauss_heads.2.segment_head.layers.1.weight"]
    _write_authors_file(tmp_path / "missing.pth", state)
    assert convert_main([str(tmp_path / "missing.pth"), str(tmp_path / "b.pt"), "--config", config]) == 2
    err = capsys.readouterr().err
    assert "missing keys (2): out_norm.bias, segment_head.mlps.2.fc2.weight" in err

    # the right keys for the wrong variant: shape mismatches are listed too
    _write_authors_file(tmp_path / "featup.pth", _state_from_fixture("featup", _constant))
    talk2dino = str(repo_root / "config/gausstr_talk2dino.yaml")
    assert convert_main([str(tmp_path / "featup.pth"), str(tmp_path / "c.pt"), "--config", talk2dino]) == 2
    err = capsys.readouterr().err
    assert "shape mismatches" in err and "neck.rescale.1.weight: (512, 256, 2, 2) vs model (768, 384, 2, 2)" in err
    assert not any(tmp_path.glob("*.pt"))


class _Shell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload_cls", [_Shell, _Eval], ids=["os.system", "builtins.eval"])
def test_malicious_pickle_is_refused_and_nothing_runs(
    payload_cls: type, tmp_path: Path, repo_root: Path, capsys: pytest.CaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pth"
    _write_authors_file(src, _state_from_fixture("featup", _constant), payload=payload_cls(marker))
    with pytest.raises(UnsafeCheckpointError, match="refusing to load global"):
        load_foreign_checkpoint(src)
    rc = convert_main([str(src), str(tmp_path / "out.pt"), "--config", str(repo_root / "config/gausstr_featup.yaml")])
    assert rc == 2
    assert "refusing to load global" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_mmengine_objects_become_inert_stand_ins(tmp_path: Path) -> None:
    src = tmp_path / "a.pth"
    _write_authors_file(src, {"w": torch.arange(3.0)})
    raw = load_foreign_checkpoint(src)
    buffer = raw["message_hub"]["log_scalars"]["train/loss"]
    assert type(buffer).__name__ == "HistoryBuffer" and "mmengine" in buffer.qualname
    np.testing.assert_allclose(buffer.state["_log_history"], [1.5, 1.2, 0.9])
    assert raw["message_hub"]["cfg"].items == {"type": "GaussTR", "num_queries": 300}
    odd = raw["message_hub"]["runtime_info"]["odd"]
    assert odd.args == ("would run on load",)  # recorded, not run
    assert raw["message_hub"]["runtime_info"]["max_lr"] == pytest.approx(2e-4)
    assert torch.equal(raw["state_dict"]["w"], torch.arange(3.0))
    assert "mmengine" not in sys.modules
