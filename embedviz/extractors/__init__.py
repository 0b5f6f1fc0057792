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

Each family module declares its family once with
:func:`embedviz.extractors.registry.register`; ask the registry
(:func:`~embedviz.extractors.registry.family`, :func:`~embedviz.extractors.registry.families`)
rather than this table. Use :func:`embedviz.models.load_extractor` to get a ready extractor
by model name.

Names are resolved lazily so that importing this package imports neither torch nor numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, tuple[str, str]] = {
    "Extractor": ("embedviz.extractors.base", "Extractor"),
    "FrameFeatures": ("embedviz.extractors.base", "FrameFeatures"),
    "ModelInfo": ("embedviz.extractors.base", "ModelInfo"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
