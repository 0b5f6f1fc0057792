"""Typed exceptions with messages a user can act on.

Every error raised on purpose by embedviz derives from :class:`EmbedvizError`, so the
app and the CLI can catch one type and show ``str(error)`` without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class EmbedvizError(Exception):
    """Base class for all errors embedviz raises on purpose."""


class ConfigError(EmbedvizError, ValueError):
    """A setting has a value embedviz cannot use (names the setting and the value)."""


class AudioLoadError(EmbedvizError):
    """A clip could not be used; names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetError(EmbedvizError):
    """A dataset root is missing, empty or not laid out as <root>/<word>/<file>."""


class ModelLoadError(EmbedvizError):
    """A model could not be resolved or loaded (unknown id, offline, bad folder, ...)."""


class ExtractionError(EmbedvizError):
    """A forward pass failed (out of memory, wrong input, ...).

    ``out_of_memory`` is True when the device ran out of memory: a smaller batch may work.
    It is the one signal for out-of-memory: callers test it, never the message text.
    """

    def __init__(self, message: str, *, out_of_memory: bool = False) -> None:
        super().__init__(message)
        self.out_of_memory = out_of_memory

    def __reduce__(self):  # keep the flag across pickling (worker processes, ray)
        return (_extraction_error, (str(self), self.out_of_memory))


class StoreError(EmbedvizError):
    """The embedding store could not be read or written."""


class Cancelled(EmbedvizError):
    """Long work was stopped because the progress callback asked to stop."""


def _extraction_error(message: str, out_of_memory: bool) -> ExtractionError:
    return ExtractionError(message, out_of_memory=out_of_memory)
