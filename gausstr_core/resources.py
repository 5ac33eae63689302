"""Files the core ships as package data (importlib.resources), so it finds its defaults when installed.

The packaged vocabularies live in gausstr_core/vocabularies/ (the default, `vocabulary_occ3d.yaml`,
is InferenceConfig.vocabulary's). Config paths naming a vocabulary or prototype file go through
`resolve_resource`: a path as given, else the packaged file of that name, so configs and
checkpoints written before the move ('config/vocabulary_occ3d.yaml') still find it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

_VOCABULARIES = "vocabularies"


def packaged_vocabularies() -> list[str]:
    """File names of the vocabularies shipped in gausstr_core/vocabularies/, sorted."""
    folder = files("gausstr_core").joinpath(_VOCABULARIES)
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def vocabulary_file(name: str) -> Path:
    """The packaged vocabulary YAML `name` (e.g. 'vocabulary_occ3d.yaml'); FileNotFoundError naming
    the packaged ones when there is none of that name."""
    resource = files("gausstr_core").joinpath(_VOCABULARIES, name)
    if not resource.is_file():
        raise FileNotFoundError(
            f"no packaged vocabulary {name!r} in gausstr_core/{_VOCABULARIES} (packaged: "
            f"{', '.join(packaged_vocabularies()) or 'none'})"
        )
    if not isinstance(resource, Path):  # a zipped install: no file to hand to readers that want a path
        raise FileNotFoundError(f"packaged vocabulary {name!r} is inside an archive ({resource}); install unzipped")
    return resource


def resolve_resource(path: str | Path, what: str) -> Path:
    """A vocabulary / prototype file named by a config or parameter: as given (absolute, or relative
    to the working directory), else, for a relative path, the packaged vocabulary with its file name.
    FileNotFoundError naming `what` and every place tried."""
    given = Path(path).expanduser()
    if given.is_file():
        return given
    tried = [str(given)]
    if not given.is_absolute():
        try:
            return vocabulary_file(given.name)
        except FileNotFoundError as error:
            tried.append(str(error))
    raise FileNotFoundError(f"{what} not found: tried {'; '.join(tried)}")
