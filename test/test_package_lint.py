"""The whole tree passes ruff (configuration in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path


def test_ruff_clean(repo_root: Path) -> None:
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run([str(ruff), "check", "."], cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
