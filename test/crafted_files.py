"""Hostile files for the loader tests: a TorchScript archive whose loading creates a file."""

from __future__ import annotations

from pathlib import Path

import torch


class _CreatesFile(torch.nn.Module):
    """On load, TorchScript runs __setstate__, which maps `marker` with shared=True: the file is created."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.mapped = torch.zeros(8)

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        self.mapped = torch.from_file(self.marker, True, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def torchscript_archive(path: Path, marker: Path) -> Path:
    """Write a TorchScript archive to `path` whose loading (torch.jit.load) creates `marker`."""
    torch.jit.script(_CreatesFile(str(marker))).save(str(path))
    marker.unlink(missing_ok=True)
    return path
