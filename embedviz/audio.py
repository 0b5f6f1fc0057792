"""Audio I/O: decode anything soundfile reads, validate, downmix and resample.

The policy for clips of a dataset (documented in the README, "Odd audio"):

Rejected (the clip is skipped, named with its reason):

- a file that cannot be opened (missing, not a regular file, permission denied), is
  empty, or cannot be decoded (truncated header, not audio);
- audio with no samples, or shorter than :data:`MIN_SECONDS`: below 50 ms there is too
  little signal for a word, and padding would make the embedding mostly padding;
- audio with NaN or infinite samples. They are **not repaired**: a non-finite sample
  means a broken encoder or a damaged file, and zeroing them would invent signal that
  the embedding would then describe as if it had been recorded.

Used, with a notice (:class:`AudioNotice`, one kind per rule in :data:`NOTICE_KINDS`):

- ``downmixed``: more than one channel is averaged to mono (the mean, not one channel,
  so no talker on either side is lost);
- ``resampled``: a rate other than the model's is resampled with soxr (``HQ``), so every
  model sees audio at its native rate;
- ``cut``: clips longer than ``max_seconds`` keep their first ``max_seconds`` seconds
  (default 30 s, Whisper's encoder window);
- ``clipped``: three or more consecutive samples at full scale (|x| >= 0.999), or float
  samples beyond full scale, are kept exactly as recorded (clipping is how the clip
  sounds; rescaling would change every other sample);
- ``silent``: a peak below :data:`SILENCE_DBFS` is kept (a silent clip is data: its
  embedding is the model's answer to silence). :func:`load_audio` for a single clip a
  user gives (an upload, a recording) rejects silence instead, since that is almost
  always a muted microphone.

:func:`decode_clip` applies the policy and returns the notices; :func:`load_audio` is
the strict one-clip wrapper.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedviz.errors import AudioLoadError

logger = logging.getLogger(__name__)

MIN_SECONDS = 0.05
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
#: A clip whose loudest sample is below this level (dBFS) is silent.
SILENCE_DBFS = -80.0
#: Samples at or above this magnitude are at full scale.
FULL_SCALE = 0.999
#: This many consecutive full-scale samples mean the clip is clipped (a sine peak touches
#: full scale for one sample; a clipped waveform stays there).
CLIP_RUN = 3
PERMISSION_DENIED = "permission denied: this user may not read the file (check its permissions)"

#: Every kind of notice about a usable but odd clip, with what was done about it.
NOTICE_KINDS: dict[str, str] = {
    "downmixed": "more than one channel: averaged to mono",
    "resampled": "not at the model's sample rate: resampled with soxr (HQ)",
    "cut": "longer than the maximum length: only the beginning is used",
    "clipped": "clipped (samples at full scale): used as recorded",
    "silent": f"silent (peak below {SILENCE_DBFS:g} dBFS): kept; its embedding is the model's answer to silence",
}


@dataclass(frozen=True)
class AudioNotice:
    """Something odd about a clip that was used anyway (``kind`` is a key of :data:`NOTICE_KINDS`)."""

    kind: str
    detail: str

    def __post_init__(self) -> None:
        if self.kind not in NOTICE_KINDS:
            raise ValueError(f"unknown notice kind {self.kind!r}; expected one of {', '.join(NOTICE_KINDS)}")


@dataclass(frozen=True)
class DecodedClip:
    """Mono float32 samples at the asked rate, and what the policy did to get them."""

    samples: np.ndarray
    notices: tuple[AudioNotice, ...] = ()

    def __post_init__(self) -> None:
        if self.samples.ndim != 1:
            raise ValueError(f"decoded samples must be mono (1-D), got shape {self.samples.shape}")


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
        if path.is_symlink():
            raise AudioLoadError(path, "dangling symbolic link: its target does not exist")
        raise AudioLoadError(path, "file not found")
    if not path.is_file():
        raise AudioLoadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise AudioLoadError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioLoadError(path, PERMISSION_DENIED)


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


def _clipping(data: np.ndarray) -> str:
    """A description of the clipping in ``(frames, channels)`` samples, or "" if there is none."""
    at_full = np.abs(data) >= FULL_SCALE
    beyond = int((np.abs(data) > 1.0).sum())
    n = data.shape[0]
    # A run of CLIP_RUN full-scale samples in a row, on any channel.
    run = np.ones((max(0, n - CLIP_RUN + 1), data.shape[1]), dtype=bool)
    for k in range(CLIP_RUN):
        run &= at_full[k : k + run.shape[0]]
    if not run.any() and not beyond:
        return ""
    share = at_full.mean()
    return f"{share:.1%} of samples at full scale" + (f", {beyond} beyond it" if beyond else "")


def decode_clip(
    path: str | Path,
    sample_rate: int,
    *,
    max_seconds: float = 30.0,
    min_seconds: float = MIN_SECONDS,
) -> DecodedClip:
    """Decode ``path`` to mono float32 at ``sample_rate`` under the module's policy.

    Returns the samples and a notice for each odd thing that was handled (downmixed,
    resampled, cut, clipped, silent).

    Raises:
        AudioLoadError: missing, unreadable, empty or undecodable file; no samples;
            NaN or infinite samples; audio shorter than ``min_seconds``.
    """
    import soundfile as sf

    path = Path(path)
    _check_file(path)
    try:
        with sf.SoundFile(str(path)) as f:
            source_rate, total = int(f.samplerate), int(f.frames)
            # Only what is used is decoded: an hour-long 6-channel file costs max_seconds of memory.
            keep = min(total, int(round(max_seconds * source_rate))) if total > 0 else -1
            data = f.read(keep, dtype="float32", always_2d=True)
    except PermissionError as exc:  # the permissions changed after the check above
        raise AudioLoadError(path, PERMISSION_DENIED) from exc
    except Exception as exc:
        raise AudioLoadError(path, f"cannot decode audio ({_short(exc)})") from exc
    if data.shape[0] == 0:
        raise AudioLoadError(path, "zero-length audio (the file holds no samples)")
    finite = np.isfinite(data)
    if not finite.all():
        bad = int((~finite).sum())
        kinds = " and ".join(k for k, has in (("NaN", np.isnan(data).any()), ("infinite", np.isinf(data).any())) if has)
        raise AudioLoadError(
            path,
            f"audio contains {kinds} samples ({bad} of {data.size}): a damaged file, rejected rather than repaired",
        )
    # The header's length, unless the file ended before what was asked (a truncated data chunk).
    frames = total if keep > 0 and data.shape[0] >= keep else data.shape[0]
    duration = frames / source_rate
    if duration < min_seconds:
        raise AudioLoadError(
            path,
            f"too short: {duration * 1000:.0f} ms, the minimum is {min_seconds * 1000:.0f} ms "
            "(rejected, not padded)",
        )
    notices: list[AudioNotice] = []
    if data.shape[1] > 1:
        notices.append(AudioNotice("downmixed", f"{data.shape[1]} channels averaged to mono"))
    clipping = _clipping(data)
    if clipping:
        notices.append(AudioNotice("clipped", clipping))
    samples = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    peak = float(np.abs(samples).max())
    if peak < 10 ** (SILENCE_DBFS / 20):
        level = "every sample is zero" if peak == 0 else f"peak {20 * np.log10(peak):.0f} dBFS"
        notices.append(AudioNotice("silent", level))
    if duration > max_seconds:
        logger.info("%s: %.1f s long, using only the first %g s", path, duration, max_seconds)
        notices.append(AudioNotice("cut", f"{duration:.1f} s long, the first {max_seconds:g} s used"))
        samples = samples[: int(round(max_seconds * source_rate))]  # already so when the header knew the length
    if source_rate != sample_rate:
        notices.append(AudioNotice("resampled", f"{source_rate} Hz to {sample_rate} Hz"))
    out = resample(np.ascontiguousarray(samples, dtype=np.float32), source_rate, sample_rate)
    return DecodedClip(out, tuple(notices))


def load_audio(
    path: str | Path,
    sample_rate: int,
    *,
    max_seconds: float = 30.0,
    min_seconds: float = MIN_SECONDS,
) -> np.ndarray:
    """Decode one clip a user gives (:func:`decode_clip`'s policy, but silence is rejected).

    Raises:
        AudioLoadError: everything :func:`decode_clip` rejects, and silent audio (a
            recording of nothing is almost always a muted microphone).
    """
    clip = decode_clip(path, sample_rate, max_seconds=max_seconds, min_seconds=min_seconds)
    if any(n.kind == "silent" for n in clip.notices):
        raise AudioLoadError(path, "silent: every sample is zero or below -80 dBFS (is the microphone muted?)")
    return clip.samples


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
