"""The one contract every model family implements: waveforms in, per-layer frames out.

Modelled on s3prl's upstream interface: an extractor is built once (weights loaded,
device chosen) and then called on batches of mono float32 waveforms at its own
``sample_rate``. It returns, for every layer it exposes, a padded ``(B, T, D)`` float32
array, the number of valid frames of each item and the layer's frame rate. Pooling,
storage and analysis never need to know which family produced the frames.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np

from embedviz.errors import ExtractionError


@dataclass(frozen=True)
class FrameFeatures:
    """Per-layer frame features of one batch.

    Attributes:
        layers: layer name -> ``(B, T, D)`` float32 array, zero-padded past each valid length.
        lengths: layer name -> ``(B,)`` int array of valid frame counts (>= 1).
        frame_rates: layer name -> frames per second of that layer.
    """

    layers: Mapping[str, np.ndarray]
    lengths: Mapping[str, np.ndarray]
    frame_rates: Mapping[str, float]

    def valid(self, layer: str, index: int) -> np.ndarray:
        """The ``(T_valid, D)`` frames of item ``index`` in ``layer``."""
        return self.layers[layer][index, : int(self.lengths[layer][index])]


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded, for the store key and for display."""

    name: str  # what the user asked for: hub id, folder, 'random-init:<id>', 'baseline:logmel'
    family: str  # wav2vec2 | hubert | wavlm | whisper | dac | baseline
    key: str  # stable identity of the weights: id@revision, content hash, or seed
    sample_rate: int
    layer_names: tuple[str, ...]
    n_params: int = 0
    options: tuple[tuple[str, str], ...] = ()  # settings that change the numbers


class Extractor(ABC):
    """Base class of every model family's feature extractor."""

    info: ModelInfo
    device: str = "cpu"
    #: Clips per forward pass this instance prefers over its family's
    #: ``FamilySpec.preferred_batch_size`` (e.g. Whisper in crop mode); None: the family's.
    batch_size_hint: int | None = None

    @property
    def sample_rate(self) -> int:
        return self.info.sample_rate

    @property
    def layer_names(self) -> tuple[str, ...]:
        return self.info.layer_names

    @abstractmethod
    def extract(self, waveforms: Sequence[np.ndarray]) -> FrameFeatures:
        """Run one batch of mono float32 waveforms (at ``sample_rate``) through the model."""

    def close(self) -> None:
        """Release the model (and GPU memory). Safe to call twice."""


def check_waveform(name: str, index: int, wave: np.ndarray) -> np.ndarray:
    """Clip ``index`` of a batch as mono float32, or an ExtractionError saying what is wrong."""
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ExtractionError(f"{name}: clip {index} has shape {wave.shape}; expected mono 1-D audio")
    if wave.size == 0:
        raise ExtractionError(f"{name}: clip {index} is empty")
    wave = wave.astype(np.float32, copy=False)
    if not np.all(np.isfinite(wave)):
        raise ExtractionError(f"{name}: clip {index} contains NaN or infinite samples")
    return wave


@contextlib.contextmanager
def forward_errors(name: str, device: str) -> Iterator[None]:
    """Turn forward-pass failures into ExtractionError (``out_of_memory`` set for OOM)."""
    import torch

    try:
        yield
    except ExtractionError:
        raise
    except torch.cuda.OutOfMemoryError as error:
        free_device_memory(device)
        raise ExtractionError(
            f"{name}: out of GPU memory on {device}; lower the batch size (or use a smaller model or the CPU)",
            out_of_memory=True,
        ) from error
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        if "out of memory" in str(error).lower():  # MPS and some CUDA paths raise a plain RuntimeError
            free_device_memory(device)
            raise ExtractionError(f"{name}: out of memory on {device}; lower the batch size: {error}",
                                  out_of_memory=True) from error
        raise ExtractionError(f"{name}: forward pass failed on {device}: {error}") from error


def free_device_memory(device: str) -> None:
    """Return cached GPU memory to the driver after a model is closed or an OOM."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
