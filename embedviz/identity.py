"""Weight identity: a cheap, stable name for the weights a model reference would load.

The identity is part of every store key, so two extractions share stored rows exactly when
they would compute with the same weights:

* ``<id>@<commit>`` for hub models (``<id>@main`` when not cached yet);
* ``local:<sha256>`` for folders, over config.json, preprocessor_config.json and the weights;
* ``random-init:<id>:seed<seed>:v1`` for random-init controls;
* ``baseline:mel:v1`` for the baseline.

Nothing is loaded; file hashes are memoised by (path, size, mtime) in :mod:`embedviz.hashing`.
"""

from __future__ import annotations

from pathlib import Path

from embedviz.errors import ConfigError
from embedviz.hashing import digest, file_sha256
from embedviz.modelref import RANDOM_INIT_PREFIX, ModelRef

BASELINE_IDENTITY = "baseline:mel:v1"
#: Bump when the random-init recipe changes (it changes the weights for a given seed).
RANDOM_INIT_VERSION = "v1"


def _identity_files(folder: Path) -> list[Path]:
    names = {"config.json", "preprocessor_config.json"}
    files = [p for p in folder.iterdir() if p.is_file() and (
        p.name in names or p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json"))]
    return sorted(files, key=lambda p: p.name)


def folder_identity(folder: Path) -> str:
    """``local:<sha256>`` over config.json, preprocessor_config.json and the weight files.

    Each file's hash is memoised by (path, size, mtime), so repeated calls do not re-read
    multi-GB weights unless they change.
    """
    return "local:" + digest("".join(f"{p.name}\0{file_sha256(p)}\n" for p in _identity_files(folder)))


def model_identity(name: str | ModelRef, *, seed: int = 0) -> str:
    """A cheap, stable identity of the weights ``name`` would load (nothing is loaded).

    Raises:
        ConfigError: a random-init seed that is not a non-negative int.
        ModelLoadError: ``name`` is malformed, or a folder that is not a supported model.
    """
    from embedviz import catalogue, hub

    ref = ModelRef.parse(name)
    if ref.kind == "baseline":
        return BASELINE_IDENTITY
    if ref.kind == "random_init":
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        return f"{RANDOM_INIT_PREFIX}{ref.id}:seed{seed}:{RANDOM_INIT_VERSION}"
    if ref.kind == "local_folder":
        folder = Path(ref.id)
        catalogue.folder_family(folder)
        return folder_identity(folder)
    commit = hub.cached_commit(ref.id)
    return f"{ref.id}@{commit or 'main'}"
