"""Frozen, validated settings and the places embedviz reads and writes.

A settings object's :meth:`key` is a stable hash of exactly the fields that change the
numbers, so it doubles as a cache key; the app's URL state is built on the same objects.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from embedviz.errors import ConfigError
from embedviz.hashing import stable_hash  # noqa: F401  (re-exported: store and viewstate import it here)

WHISPER_MODES = ("padded", "crop")
WHISPER_MODE_LABELS = {"padded": "padded to 30 s (exact)", "crop": "cropped (fast, approximate)"}
#: Clips longer than this are cut to it (Whisper's encoder window); documented in README.
DEFAULT_MAX_SECONDS = 30.0
_DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
#: Environment variable that asks store entries created from then on to keep the time grid
#: behind ``time:<s>`` pooling. ``python -m embedviz extract --time-grid`` asks the same thing
#: for one run; :func:`time_grid_requested` is the one place that decides.
TIME_GRID_ENV = "EMBEDVIZ_TIME_GRID"
TIME_GRID_FLAG = "--time-grid"
#: How to get an entry with the time grid, in words (store errors, the README and the CLI say it).
TIME_GRID_HOW = f"extract again with `python -m embedviz extract {TIME_GRID_FLAG}` (or with {TIME_GRID_ENV}=1 set)"


def time_grid_requested(flag: bool | None = None) -> bool:
    """Whether a store entry created now keeps the time grid behind ``time:<s>`` pooling.

    Args:
        flag: ``extract --time-grid`` (True), or None when the caller was not asked: then
            ``$EMBEDVIZ_TIME_GRID`` decides (1/true/yes/on). The grid costs about twice the
            space of every other pooling together, so it is off by default.
    """
    if flag is not None:
        return bool(flag)
    return os.environ.get(TIME_GRID_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def check_device_name(device: str | None) -> str:
    """``device`` normalised (``auto``, ``cpu``, ``cuda``, ``cuda:<n>``, ``mps``), checked without torch.

    Whether the device exists on this machine is :func:`embedviz.models.resolve_device`'s question.

    Raises:
        ConfigError: not a device name.
    """
    wanted = (device or "auto").strip().lower()
    if not _DEVICE_NAME.fullmatch(wanted):
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:<n>' or 'mps'")
    return wanted



@dataclass(frozen=True)
class ExtractionSettings:
    """What determines the numbers an extraction produces (besides the clip itself).

    Attributes:
        model: catalogue id, ``random-init:<id>``, ``baseline:mel``, or a local folder.
        whisper_mode: ``padded`` (exact, 30 s window) or ``crop`` (approximation);
            ignored for non-Whisper models.
        seed: seed of ``random-init:`` models; ignored otherwise.
        max_seconds: longer clips are cut to this many seconds.
    """

    model: str
    whisper_mode: Literal["padded", "crop"] = "padded"
    seed: int = 0
    max_seconds: float = DEFAULT_MAX_SECONDS

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"model must be a non-empty name or folder, got {self.model!r}")
        if self.whisper_mode not in WHISPER_MODES:
            raise ConfigError(
                f"whisper_mode must be one of {', '.join(WHISPER_MODES)}, got {self.whisper_mode!r}"
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not (0.1 <= float(self.max_seconds) <= 600):
            raise ConfigError(f"max_seconds must be between 0.1 and 600, got {self.max_seconds!r}")

    def numeric_options(self, family: str) -> dict[str, Any]:
        """The options that change this model's numbers (part of the store key).

        ``max_seconds`` for every family, plus the fields the family declares in its
        :class:`~embedviz.extractors.registry.FamilySpec` ``numeric_options``.
        """
        from embedviz.extractors.registry import family as family_spec

        options: dict[str, Any] = {"max_seconds": float(self.max_seconds)}
        for name in family_spec(family).numeric_options:
            options[name] = getattr(self, name)
        return options

    def key(self) -> str:
        return stable_hash(asdict(self))

    def replace(self, **changes: Any) -> "ExtractionSettings":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return ExtractionSettings(**values)


def _paths_from_env(name: str) -> list[Path]:
    raw = os.environ.get(name, "")
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


def default_cache_dir() -> Path:
    """Embedding store root: ``$EMBEDVIZ_CACHE``, else the per-user cache folder."""
    env = os.environ.get("EMBEDVIZ_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("embedviz")) / "embeddings"


def data_roots() -> list[Path]:
    """Folders under which the app may open datasets (``$EMBEDVIZ_DATA_ROOTS``).

    The bundled demo dataset is always allowed in addition to these, and so are the
    folders ``python -m embedviz fetch-speech-commands`` fetched (:mod:`embedviz.fetch`).
    """
    from embedviz.fetch import fetched_roots

    roots = _paths_from_env("EMBEDVIZ_DATA_ROOTS")
    return roots + [r for r in fetched_roots() if r not in roots]


def model_roots() -> list[Path]:
    """Folders under which the app may load local models (``$EMBEDVIZ_MODEL_ROOTS``)."""
    return _paths_from_env("EMBEDVIZ_MODEL_ROOTS")
