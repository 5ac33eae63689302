"""The C++ fused voxeliser kernel (gausstr_core/csrc/splat_cpu.cpp), built with torch's extension builder.

voxelize_fused.splat runs it for float32 grids of up to `max_channels()` feature channels when it is
built, the numba kernel otherwise. The first `module()` call in a machine compiles it (g++ through
torch.utils.cpp_extension, about half a minute; `make setup` does it) into TORCH_EXTENSIONS_DIR, tuned
for this CPU (-march=native: the extension's name carries a hash of the CPU's model and flags, so a
shared cache never hands one CPU another's build); later calls load the cached build. Without a
compiler, or with GAUSSTR_NATIVE_KERNEL=0, `module()` is None and `unavailable_reason()` says why.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
from importlib import resources
from types import ModuleType

_LOG = logging.getLogger(__name__)
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast")


def _cpu_tag() -> str:
    """Short hash of the CPU's model name and feature flags (Linux), else of platform.processor()."""
    text = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            lines = [line for line in cpuinfo if line.startswith(("model name", "flags"))]
        text = "".join(sorted(set(lines))) or text
    except OSError:
        pass
    return hashlib.sha1(text.encode()).hexdigest()[:10]


@functools.cache
def _build() -> tuple[ModuleType | None, str]:
    if os.environ.get("GAUSSTR_NATIVE_KERNEL", "1") == "0":
        return None, "disabled by GAUSSTR_NATIVE_KERNEL=0"
    try:
        cpp_logger = logging.getLogger("torch.utils.cpp_extension")
        level = cpp_logger.level
        cpp_logger.setLevel(logging.ERROR)  # its import warns that no CUDA runtime is found: irrelevant here
        try:
            from torch.utils import cpp_extension
        finally:
            cpp_logger.setLevel(level)

        source = resources.files("gausstr_core") / "csrc" / "splat_cpu.cpp"
        with resources.as_file(source) as path:
            module = cpp_extension.load(name=f"gausstr_splat_cpu_{_cpu_tag()}", sources=[str(path)],
                                        extra_cflags=list(FLAGS), verbose=False)
        return module, ""
    except Exception as error:  # no compiler, no headers, a failed build: the numba kernel stays
        reason = f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
        _LOG.warning("C++ voxeliser kernel unavailable (the numba kernel runs instead): %s", reason)
        return None, reason


def module() -> ModuleType | None:
    """The built extension (splat(...), max_channels), or None when it cannot be built here."""
    return _build()[0]


def unavailable_reason() -> str:
    """Why module() is None ('' when it is built)."""
    return _build()[1]


def max_channels() -> int:
    """Feature channels the C++ kernel handles (0 when it is not built)."""
    built = module()
    return int(built.max_channels) if built is not None else 0


def main() -> None:
    """`python -m gausstr_core.voxelize_native`: build (or load) the kernel and say which one runs (make setup)."""
    built = module()
    print("C++ voxeliser kernel: " + (f"built ({built.__file__})" if built is not None
                                      else f"not built, the numba kernel runs ({unavailable_reason()})"))


if __name__ == "__main__":
    main()
