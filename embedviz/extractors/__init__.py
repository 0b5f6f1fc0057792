"""One Extractor class per model family, all implementing :class:`extractors.base.Extractor`.

=========  ==================================  ===============================
family     class                               module
=========  ==================================  ===============================
wav2vec2   ``SSLExtractor``                    ``embedviz.extractors.ssl``
hubert     ``SSLExtractor``                    ``embedviz.extractors.ssl``
wavlm      ``SSLExtractor``                    ``embedviz.extractors.ssl``
whisper    ``WhisperExtractor``                ``embedviz.extractors.whisper``
dac        ``DacExtractor``                    ``embedviz.extractors.dac``
baseline   ``MelBaselineExtractor``            ``embedviz.extractors.baseline``
=========  ==================================  ===============================

Each module also exposes ``layer_names_for_config(config)`` (layer names without weights).
Use :func:`embedviz.models.load_extractor` to get a ready extractor by model name.

Names are resolved lazily so that importing this package imports neither torch nor numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

#: family -> (module, extractor class name)
EXTRACTORS: dict[str, tuple[str, str]] = {
    "wav2vec2": ("embedviz.extractors.ssl", "SSLExtractor"),
    "hubert": ("embedviz.extractors.ssl", "SSLExtractor"),
    "wavlm": ("embedviz.extractors.ssl", "SSLExtractor"),
    "whisper": ("embedviz.extractors.whisper", "WhisperExtractor"),
    "dac": ("embedviz.extractors.dac", "DacExtractor"),
    "baseline": ("embedviz.extractors.baseline", "MelBaselineExtractor"),
}

_LAZY: dict[str, tuple[str, str]] = {
    "Extractor": ("embedviz.extractors.base", "Extractor"),
    "FrameFeatures": ("embedviz.extractors.base", "FrameFeatures"),
    "ModelInfo": ("embedviz.extractors.base", "ModelInfo"),
    **{cls: (module, cls) for module, cls in EXTRACTORS.values()},
}

__all__ = ["EXTRACTORS", "extractor_class", *sorted(_LAZY)]


def extractor_class(family: str) -> type:
    """The Extractor subclass of ``family`` (imports its module)."""
    try:
        module, name = EXTRACTORS[family]
    except KeyError:
        from embedviz.errors import ModelLoadError

        raise ModelLoadError(f"no extractor for family {family!r}; expected one of {', '.join(EXTRACTORS)}") from None
    return getattr(importlib.import_module(module), name)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
