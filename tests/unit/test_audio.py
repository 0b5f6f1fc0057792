"""Decoding, validation, downmix and resampling of clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from embedviz.audio import MIN_SECONDS, NOTICE_KINDS, AudioNotice, audio_info, decode_clip, load_audio
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
        (lambda p: sf.write(p, np.full(16000, np.inf, np.float32), 16000, subtype="FLOAT"), "infinite"),
        (lambda p: sf.write(p, tone(MIN_SECONDS / 2, 16000), 16000), "too short"),
        (lambda p: sf.write(p, np.zeros(16000, np.float32), 16000), "silent"),
    ],
    ids=["missing", "empty", "undecodable", "zero-length", "nan", "inf", "too-short", "silent"],
)
def test_bad_audio_raises_typed_error_naming_file(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioLoadError) as info:
        load_audio(path, 16000)
    assert reason in info.value.reason
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------- the odd-audio policy


def kinds(path: Path, rate: int = 16000, **kwargs) -> set[str]:
    return {n.kind for n in decode_clip(path, rate, **kwargs).notices}


def test_a_plain_clip_gets_no_notice(tmp_path: Path) -> None:
    path = tmp_path / "plain.wav"
    sf.write(path, tone(1.0, 16000), 16000)
    clip = decode_clip(path, 16000)
    assert clip.notices == () and clip.samples.shape == (16000,)


@pytest.mark.parametrize("channels", [2, 6])
def test_channels_are_averaged_with_a_notice(tmp_path: Path, channels: int) -> None:
    path = tmp_path / "multi.wav"
    x = tone(0.5, 16000)
    data = np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)
    sf.write(path, data, 16000, subtype="FLOAT")
    clip = decode_clip(path, 16000)
    np.testing.assert_allclose(clip.samples, data.mean(axis=1), atol=1e-6)
    assert [n.kind for n in clip.notices] == ["downmixed"] and f"{channels} channels" in clip.notices[0].detail


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_rates_are_resampled_with_a_notice(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "rate.wav"
    sf.write(path, tone(1.0, rate, freq=500.0), rate)
    clip = decode_clip(path, 16000)
    assert abs(len(clip.samples) - 16000) <= 1
    assert kinds(path) == {"resampled"} and f"{rate} Hz to 16000 Hz" in clip.notices[0].detail
    assert kinds(path, rate=rate) == set()  # at the model's own rate nothing happens


def test_too_long_is_cut_with_a_notice(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, tone(3.0, 16000), 16000)
    clip = decode_clip(path, 16000, max_seconds=2.0)
    assert len(clip.samples) == 32000 and kinds(path, max_seconds=2.0) == {"cut"}
    assert kinds(path, max_seconds=5.0) == set()


def test_silence_is_kept_with_a_notice_but_a_single_given_clip_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "quiet.wav"
    sf.write(path, np.full(16000, 1e-6, np.float32), 16000, subtype="FLOAT")  # -120 dBFS
    clip = decode_clip(path, 16000)
    assert kinds(path) == {"silent"} and "dBFS" in clip.notices[0].detail and len(clip.samples) == 16000
    with pytest.raises(AudioLoadError, match="silent"):
        load_audio(path, 16000)
    sf.write(path, np.full(16000, 1e-3, np.float32), 16000, subtype="FLOAT")  # -60 dBFS: quiet, not silent
    assert kinds(path) == set()


def test_clipping_is_noticed_and_kept_as_recorded(tmp_path: Path) -> None:
    full_scale_sine = tone(1.0, 16000) * 2.0  # peaks touch full scale for single samples
    path = tmp_path / "sine.wav"
    sf.write(path, full_scale_sine * 0.999, 16000, subtype="FLOAT")
    assert kinds(path) == set()
    clipped = np.clip(full_scale_sine * 3.0, -1.0, 1.0)
    sf.write(path, clipped, 16000, subtype="FLOAT")
    clip = decode_clip(path, 16000)
    assert kinds(path) == {"clipped"}
    np.testing.assert_allclose(clip.samples, clipped, atol=1e-7)  # not rescaled
    sf.write(path, tone(1.0, 16000) * 3.0, 16000, subtype="FLOAT")  # float samples beyond full scale (1.5)
    assert "beyond" in decode_clip(path, 16000).notices[0].detail


def test_notice_kinds_are_checked() -> None:
    assert set(NOTICE_KINDS) == {"downmixed", "resampled", "cut", "clipped", "silent"}
    with pytest.raises(ValueError, match="unknown notice kind"):
        AudioNotice("odd", "something")


def test_an_unreadable_file_is_named_with_the_reason(tmp_path: Path) -> None:
    """Root reads a chmod 000 file, so the read runs without CAP_DAC_OVERRIDE/READ_SEARCH."""
    import os
    import shutil
    import subprocess
    import sys

    path = tmp_path / "locked.wav"
    sf.write(path, tone(0.5, 16000), 16000)
    path.chmod(0)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
    code = (
        "import sys\nfrom embedviz.audio import load_audio\nfrom embedviz.errors import AudioLoadError\n"
        f"try:\n    load_audio({str(path)!r}, 16000)\nexcept AudioLoadError as e:\n    print(e.reason); sys.exit(3)\n"
    )
    done = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 3, done.stdout + done.stderr
    assert "permission denied" in done.stdout
