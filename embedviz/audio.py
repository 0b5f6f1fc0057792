"""Audio I/O: decode anything soundfile reads, validate, downmix and resample.

Rules (documented in the README):

- Clips shorter than :data:`MIN_SECONDS` are **rejected**: below 50 ms there is too
  little signal for a word, and padding would make the embedding mostly padding.
- Clips longer than ``max_seconds`` are **cut** to their first ``max_seconds`` seconds
  (with a logged warning). The default, 30 s, is Whisper's encoder window.
- Multichannel audio is downmixed to mono by averaging channels.
- Resampling uses soxr (``HQ``), so every model gets audio at its native rate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedviz.errors import AudioLoadError

logger = logging.getLogger(__name__)

MIN_SECONDS = 0.05
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of a clip, read without decoding it."""

    path: str
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioLoadError(path, "file not found")
    if not path.is_file():
        raise AudioLoadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise AudioLoadError(path, "empty file (0 bytes)")


def audio_info(path: str | Path) -> AudioInfo:
    """Read a clip's header (sample rate, length, channels) without decoding the samples."""
    import soundfile as sf

    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for undecodable input
        raise AudioLoadError(path, f"cannot decode audio ({_short(exc)})") from exc
    return AudioInfo(str(path), int(info.samplerate), int(info.frames), int(info.channels))


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample mono float32 audio with soxr (no-op when the rates match)."""
    if source_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(samples, source_rate, target_rate, quality="HQ").astype(np.float32)


def load_audio(
    path: str | Path,
    sample_rate: int,
    *,
    max_seconds: float = 30.0,
    min_seconds: float = MIN_SECONDS,
) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate``.

    Raises:
        AudioLoadError: missing, empty or undecodable file; zero-length, all-silent or
            non-finite audio; audio shorter than ``min_seconds``.
    """
    import soundfile as sf

    path = Path(path)
    _check_file(path)
    try:
        data, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioLoadError(path, f"cannot decode audio ({_short(exc)})") from exc
    if data.shape[0] == 0:
        raise AudioLoadError(path, "zero-length audio (the file holds no samples)")
    if not np.isfinite(data).all():
        raise AudioLoadError(path, "audio contains NaN or infinite samples")
    samples = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    duration = samples.shape[0] / source_rate
    if duration < min_seconds:
        raise AudioLoadError(
            path,
            f"too short: {duration * 1000:.0f} ms, the minimum is {min_seconds * 1000:.0f} ms "
            "(rejected, not padded)",
        )
    if not np.any(samples):
        raise AudioLoadError(path, "silent: every sample is zero")
    if duration > max_seconds:
        logger.warning("%s: %.1f s long, using only the first %.1f s", path, duration, max_seconds)
        samples = samples[: int(round(max_seconds * source_rate))]
    return resample(np.ascontiguousarray(samples, dtype=np.float32), source_rate, sample_rate)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
