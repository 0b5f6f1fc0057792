"""Signal-processing baselines: log-mel spectrogram and MFCCs (no weights, no download).

A learned representation is only interesting relative to what plain acoustics already
separates, so every study can include ``baseline:mel``:

* ``logmel``: 80 mel bands (HTK mel scale, 0-8000 Hz), power spectrum of 25 ms Hann
  windows (400 samples, FFT size 512) every 10 ms (160 samples), natural log with a
  floor of 1e-10. Frames are centred: frame ``t`` covers ``t * 10 ms`` (the clip is
  zero-padded by half a window on each side), so a clip of ``n`` samples has
  ``n // 160 + 1`` frames: 100 frames/s.
* ``mfcc``: the first 13 coefficients of the orthonormal DCT-II of ``logmel`` (c0
  included), then their deltas and delta-deltas (regression over +-2 frames, edges
  repeated): 39-d at the same frame rate.

Every clip is processed on its own, so batching cannot change the numbers.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from embedviz.errors import ConfigError
from embedviz.extractors.base import Extractor, FrameFeatures, ModelInfo, check_waveform

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WIN_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
N_FFT = 512
N_MELS = 80
F_MIN = 0.0
F_MAX = 8000.0
N_MFCC = 13
DELTA_WIDTH = 2
LOG_FLOOR = 1e-10

LAYER_NAMES: tuple[str, ...] = ("logmel", "mfcc")
BASELINE_NAME = "baseline:mel"
BASELINE_KEY = "baseline:mel:v1"


def layer_names_for_config(config: Any = None) -> tuple[str, ...]:
    """Layer names of the mel baseline (it has no config; the argument is ignored)."""
    return LAYER_NAMES


def default_info() -> ModelInfo:
    """The :class:`ModelInfo` of ``baseline:mel``."""
    return ModelInfo(
        name=BASELINE_NAME,
        family="baseline",
        key=BASELINE_KEY,
        sample_rate=SAMPLE_RATE,
        layer_names=LAYER_NAMES,
        n_params=0,
    )


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_center_frequencies(n_mels: int = N_MELS, f_min: float = F_MIN, f_max: float = F_MAX) -> np.ndarray:
    """Centre frequency (Hz) of each mel band."""
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    return edges[1:-1]


def mel_filter_bank(
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    sample_rate: int = SAMPLE_RATE,
    f_min: float = F_MIN,
    f_max: float = F_MAX,
) -> np.ndarray:
    """Triangular mel filters, ``(n_fft // 2 + 1, n_mels)``, peak 1 (HTK style, no area norm)."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (fft_freqs[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - fft_freqs[:, None]) / (upper - centre)[None, :]
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float64)


def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II basis, ``(n_in, n_out)`` (same as scipy.fft.dct(norm='ortho'))."""
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    basis = np.cos(np.pi / n_in * (n + 0.5) * k) * np.sqrt(2.0 / n_in)
    basis[:, 0] /= np.sqrt(2.0)
    return basis


def deltas(features: np.ndarray, width: int = DELTA_WIDTH) -> np.ndarray:
    """Regression deltas over +-``width`` frames along axis 0, edge frames repeated."""
    if features.shape[0] == 0:
        return features.copy()
    padded = np.pad(features, ((width, width), (0, 0)), mode="edge")
    denom = 2.0 * sum(n * n for n in range(1, width + 1))
    t = features.shape[0]
    out = np.zeros_like(features, dtype=np.float64)
    for n in range(1, width + 1):
        out += n * (padded[width + n : width + n + t] - padded[width - n : width - n + t])
    return out / denom


class MelBaselineExtractor(Extractor):
    """Log-mel and MFCC frames of 16 kHz mono audio (see the module docstring).

    Args:
        info: what to report as loaded; defaults to :func:`default_info`.
        device: accepted for interface symmetry; the baseline always runs on the CPU (numpy).
    """

    def __init__(self, *, info: ModelInfo | None = None, device: str = "cpu") -> None:
        info = info if info is not None else default_info()
        if tuple(info.layer_names) != LAYER_NAMES:
            raise ConfigError(
                f"{info.name}: the mel baseline has layers {list(LAYER_NAMES)}, not {list(info.layer_names)}"
            )
        if info.sample_rate != SAMPLE_RATE:
            raise ConfigError(f"{info.name}: the mel baseline runs at {SAMPLE_RATE} Hz, not {info.sample_rate} Hz")
        if device != "cpu":
            logger.debug("%s: the mel baseline runs on the CPU (asked for %s)", info.name, device)
        self.info = info
        self.device = "cpu"
        self.frame_rates: dict[str, float] = {name: SAMPLE_RATE / HOP_LENGTH for name in LAYER_NAMES}
        self._filters = mel_filter_bank()
        self._window = np.hanning(WIN_LENGTH + 1)[:-1]  # periodic Hann
        self._dct = _dct_matrix(N_MELS, N_MFCC)

    def extract(self, waveforms: Sequence[np.ndarray]) -> FrameFeatures:
        """Frames of ``logmel`` (80-d) and ``mfcc`` (39-d) for each clip at 16 kHz.

        Raises:
            ExtractionError: a clip is empty, not 1-D or not finite.
        """
        per_clip = [self._one(self._check(i, w)) for i, w in enumerate(waveforms)]
        lengths = np.array([lm.shape[0] for lm, _ in per_clip], dtype=np.int64)
        t_max = int(lengths.max()) if len(per_clip) else 0
        logmel = np.zeros((len(per_clip), t_max, N_MELS), dtype=np.float32)
        mfcc = np.zeros((len(per_clip), t_max, 3 * N_MFCC), dtype=np.float32)
        for i, (lm, mf) in enumerate(per_clip):
            logmel[i, : lm.shape[0]] = lm
            mfcc[i, : mf.shape[0]] = mf
        return FrameFeatures(
            layers={"logmel": logmel, "mfcc": mfcc},
            lengths={"logmel": lengths, "mfcc": lengths.copy()},
            frame_rates=dict(self.frame_rates),
        )

    def _check(self, index: int, wave: np.ndarray) -> np.ndarray:
        return check_waveform(self.info.name, index, wave).astype(np.float64)

    def _one(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_frames = wave.size // HOP_LENGTH + 1
        half = WIN_LENGTH // 2
        padded = np.zeros((n_frames - 1) * HOP_LENGTH + WIN_LENGTH, dtype=np.float64)
        usable = min(wave.size, padded.size - half)
        padded[half : half + usable] = wave[:usable]
        frames = np.lib.stride_tricks.sliding_window_view(padded, WIN_LENGTH)[::HOP_LENGTH][:n_frames]
        power = np.abs(np.fft.rfft(frames * self._window, n=N_FFT, axis=-1)) ** 2
        logmel = np.log(np.maximum(power @ self._filters, LOG_FLOOR))
        cepstra = logmel @ self._dct
        d1 = deltas(cepstra)
        d2 = deltas(d1)
        mfcc = np.concatenate([cepstra, d1, d2], axis=1)
        return logmel.astype(np.float32), mfcc.astype(np.float32)


# ---------------------------------------------------------------------- registration


def _construct(model: Any, *, info: ModelInfo | None, device: str, preprocessor: Mapping[str, Any],
               options: Mapping[str, Any]) -> MelBaselineExtractor:
    # numpy only: no torch import, and the device does not matter.
    return MelBaselineExtractor(info=info or default_info(), device="cpu")


def _register() -> None:
    from embedviz.extractors.registry import FamilySpec, register

    register(FamilySpec(
        name="baseline",
        layer_names=layer_names_for_config,
        layer_widths=lambda config=None: {"logmel": N_MELS, "mfcc": 3 * N_MFCC},
        construct=_construct,
        preferred_batch_size=64,  # cheap numpy: batches only amortise Python overhead
    ))


_register()
