"""Read the authors' mmengine `.pth` checkpoints without importing mmengine or running foreign code.

Those files carry non-tensor metadata (mmengine message hub, numpy arrays and scalars) that
`torch.load(weights_only=True)` refuses. `load_foreign_checkpoint` runs torch's own zip reader with
an allow-list unpickler: only tensor/storage rebuilding, OrderedDict, numpy array/scalar/dtype
reconstruction and `_codecs.encode` (protocol-2 bytes) resolve to real objects; globals of the
OpenMMLab packages become `InertObject` stand-ins that only record their arguments and state;
anything else (os.system, builtins.eval, ...) stops the load with `UnsafeCheckpointError`
before it can be called. TorchScript archives, which torch.load would hand to torch.jit.load (running
their code, our unpickler never asked), are refused before torch opens the file (file_checks).
"""

from __future__ import annotations

import _codecs
import collections
import importlib
import pickle
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gausstr_core.errors import DamagedFileError, UserError
from gausstr_core.file_checks import TORCH_LOAD_ERRORS, check_torch_file

INERT_PACKAGES = ("mmengine", "mmcv", "mmdet", "mmdet3d", "mmseg", "mmpretrain")


class UnsafeCheckpointError(UserError, pickle.UnpicklingError):
    """The pickle referenced a global outside the allow-list."""


class InertObject:
    """Stand-in for an OpenMMLab object: keeps constructor args, pickled state and, for dict or list
    subclasses (e.g. ConfigDict), the pickled items; runs nothing."""

    qualname = "InertObject"

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.elements = args, kwargs, None, {}, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.elements.append(value)

    def extend(self, values: Any) -> None:
        self.elements.extend(values)

    def __repr__(self) -> str:
        return f"<inert {self.qualname}>"


def _numpy_multiarray() -> types.ModuleType:
    # numpy 2 moved numpy.core to numpy._core; numpy 1.26 ships numpy._core.multiarray as an alias
    return importlib.import_module("numpy._core.multiarray")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    multiarray = _numpy_multiarray()
    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("_codecs", "encode"): _codecs.encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class AllowListUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose find_class resolves only allow-listed globals (see module docstring)."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if module.split(".")[0] in INERT_PACKAGES:
            return type(name, (InertObject,), {"qualname": f"{module}.{name}", "__module__": __name__})
        raise UnsafeCheckpointError(
            f"refusing to load global {module}.{name}: not on the checkpoint allow-list (nothing was executed)"
        )


def _pickle_load(file: Any, **kwargs: Any) -> Any:
    return AllowListUnpickler(file, **kwargs).load()


# Passed to torch.load as `pickle_module`: torch subclasses our Unpickler (it only adds the mapping
# of '*Storage' names to its storage types) and uses `load` for legacy (pre-zip) files.
ALLOW_LIST_PICKLE = types.SimpleNamespace(
    __name__="gausstr_allow_list_pickle", Unpickler=AllowListUnpickler, load=_pickle_load
)


def load_foreign_checkpoint(path: str | Path) -> Any:
    """Load a third-party torch checkpoint on CPU through the allow-list unpickler (after check_torch_file)."""
    path = check_torch_file(path, "checkpoint")
    # weights_only must be False to pass a pickle_module; safety comes from check_torch_file (no
    # TorchScript reaches torch.jit.load) and AllowListUnpickler (every global of the pickle).
    try:
        return torch.load(path, map_location="cpu", pickle_module=ALLOW_LIST_PICKLE, weights_only=False)
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, *TORCH_LOAD_ERRORS) as exc:
        raise DamagedFileError(f"checkpoint {path} is corrupt or not a torch file: {exc}") from exc
