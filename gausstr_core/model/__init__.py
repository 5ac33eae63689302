"""The GaussTR network, its checkpoints and the converter for the authors' released weights."""

from gausstr_core.model.checkpoint import (
    atomic_save,
    build_model_from_checkpoint,
    checkpoint_config,
    load_checkpoint,
    save_checkpoint,
)
from gausstr_core.model.gausstr import GaussTR

__all__ = [
    "GaussTR", "atomic_save", "build_model_from_checkpoint", "checkpoint_config", "load_checkpoint", "save_checkpoint",
]
