"""YAML configs and dotted command-line overrides."""

from pathlib import Path

import pytest

from gausstr_core.config import Config, config_from_dict, load_config, save_config


def test_overrides_apply_with_yaml_values(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  embed_dims: 64\ntrain:\n  lr: 0.01\n")
    config = load_config(path, ["train.lr=1e-3", "data.cameras=[CAM_FRONT,CAM_BACK]", "grid.size=0.5"])
    assert config.model.embed_dims == 64
    assert config.train.lr == pytest.approx(1e-3)  # YAML 1.1 reads 1e-3 as a string: still a number
    assert config.data.cameras == ("CAM_FRONT", "CAM_BACK")
    assert config.grid.build().dims == (160, 160, 13)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=fast", "train.lr must be a number"),
        ("model.embed_dims=1.5", "model.embed_dims must be an integer"),
        ("model.colour=red", "unknown key(s) ['colour'] in model"),
        ("data.input_size=[1,2,3]", "data.input_size needs 2 values"),
        ("train.amp=yes please", "train.amp must be one of ['fp16', 'bf16', 'off']"),
        ("nokey", "must look like section.key=value"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        load_config(None, [override])
    assert message in str(error.value)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    config = load_config(None, ["model.num_queries=7", "inference.density_threshold=0.5"])
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config
    assert config_from_dict(config.to_dict()) == config
    assert Config() == load_config(None)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.yaml"):
        load_config(tmp_path / "nothere.yaml")


@pytest.mark.parametrize(
    ("value", "expected"), [("fp16", "fp16"), ("bf16", "bf16"), ("off", "off"), ("true", "bf16"), ("false", "off")]
)
def test_amp_modes_and_old_boolean_values(value: str, expected: str) -> None:
    assert load_config(None, [f"train.amp={value}"]).train.amp == expected
    assert load_config(None).train.amp == "fp16"  # the authors' setting
