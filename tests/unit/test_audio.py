"""Decoding, validation, downmix and resampling of clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from embedviz.audio import MIN_SECONDS, audio_info, load_audio
from embedviz.errors import AudioLoadError


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("fmt,ext", [("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg"), ("MP3", ".mp3")])
def test_reads_every_format_at_target_rate(tmp_path: Path, fmt: str, ext: str) -> None:
    path = tmp_path / f"clip{ext}"
    sf.write(path, tone(1.0, 22050), 22050, format=fmt)
    x = load_audio(path, 16000)
    assert x.dtype == np.float32 and x.ndim == 1
    # MP3 encoders add priming samples; lossless formats must be exact in length.
    tolerance = 0.06 if ext == ".mp3" else 0.002
    assert abs(len(x) / 16000 - 1.0) < tolerance


def test_resampling_keeps_the_tone(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(1.0, 44100, freq=1000.0), 44100)
    x = load_audio(path, 16000)
    spectrum = np.abs(np.fft.rfft(x))
    peak_hz = np.argmax(spectrum) * 16000 / len(x)
    assert abs(peak_hz - 1000.0) < 2.0


def test_multichannel_is_downmixed(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left = tone(0.5, 16000)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    sf.write(path, stereo, 16000, subtype="FLOAT")
    x = load_audio(path, 16000)
    np.testing.assert_allclose(x, left / 2, atol=1e-6)
    assert audio_info(path).channels == 2


def test_long_clip_is_cut_to_max_seconds(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, tone(3.0, 16000), 16000)
    assert len(load_audio(path, 16000, max_seconds=2.0)) == 32000


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00garbage that is not audio" * 10), "cannot decode"),
        (lambda p: sf.write(p, np.zeros((0,), np.float32), 16000), "zero-length"),
        (lambda p: sf.write(p, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT"), "NaN"),
        (lambda p: sf.write(p, tone(MIN_SECONDS / 2, 16000), 16000), "too short"),
        (lambda p: sf.write(p, np.zeros(16000, np.float32), 16000), "silent"),
    ],
    ids=["missing", "empty", "undecodable", "zero-length", "non-finite", "too-short", "silent"],
)
def test_bad_audio_raises_typed_error_naming_file(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioLoadError) as info:
        load_audio(path, 16000)
    assert reason in info.value.reason
    assert str(path) in str(info.value)
