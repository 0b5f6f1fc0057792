"""Every pooling, on frames whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from embedviz.errors import ConfigError
from embedviz.pooling import GRID_STEP, parse_pooling, pool_frames, select

RATE = 16000
FPS = 50.0


def ramp_frames(n: int = 50, d: int = 4) -> np.ndarray:
    # frame t holds the value t in every dimension: every pooling has an exact answer
    return np.repeat(np.arange(n, dtype=np.float32)[:, None], d, axis=1)


def test_mean_std_max_centre() -> None:
    frames = ramp_frames()
    wave = np.ones(RATE, np.float32)
    pooled = pool_frames(frames, FPS, wave, RATE)
    np.testing.assert_allclose(pooled["mean"], 24.5)
    np.testing.assert_allclose(pooled["std"], np.arange(50).std(), rtol=1e-6)
    np.testing.assert_allclose(pooled["max"], 49)
    np.testing.assert_allclose(pooled["centre"], 25)
    # select gives what the store returns: float16 precision (embedviz.pooling.STORED_DTYPE).
    np.testing.assert_allclose(select(pooled, "meanstd"), np.r_[pooled["mean"], pooled["std"]], rtol=2.0**-11)


def test_speech_mean_ignores_silent_frames() -> None:
    frames = ramp_frames()
    wave = np.zeros(RATE, np.float32)
    wave[int(0.4 * RATE) : int(0.6 * RATE)] = 0.5  # speech only in frames 20..29
    wave += 1e-5 * np.random.default_rng(0).standard_normal(RATE).astype(np.float32)
    pooled = pool_frames(frames, FPS, wave, RATE)
    np.testing.assert_allclose(pooled["speech"], np.arange(20, 30).mean(), atol=1e-5)


def test_time_pooling_picks_frame_at_time_and_clamps() -> None:
    frames = ramp_frames()
    pooled = pool_frames(frames, FPS, np.ones(RATE, np.float32), RATE)
    assert pooled["grid"].shape == (11, 4)  # 0.0, 0.1, ..., 1.0 s
    np.testing.assert_allclose(select(pooled, "time:0.3"), 15)  # 0.3 s * 50 fps
    np.testing.assert_allclose(select(pooled, "time:0"), 0)
    np.testing.assert_allclose(select(pooled, "time:5"), 49)  # past the end: last frame


def test_single_frame_is_fine() -> None:
    pooled = pool_frames(np.ones((1, 3), np.float32), FPS, np.ones(320, np.float32), RATE)
    for name in ("mean", "max", "centre", "speech"):
        np.testing.assert_allclose(pooled[name], 1.0)
    np.testing.assert_allclose(pooled["std"], 0.0)


@pytest.mark.parametrize("name,expected", [("mean", "mean"), ("center", "centre"), ("TIME:0.25", "time:0.3"),
                                           ("time:0.5", "time:0.5")])
def test_parse(name: str, expected: str) -> None:
    assert parse_pooling(name).name == expected


@pytest.mark.parametrize("bad", ["median", "time:", "time:-1", "time:abc", ""])
def test_parse_rejects_unknown(bad: str) -> None:
    with pytest.raises(ConfigError, match="pooling"):
        parse_pooling(bad)


def test_grid_step_is_tenth_of_a_second() -> None:
    assert GRID_STEP == pytest.approx(0.1)


# ---------------------------------------------------------------- the fast paths against a plain reference


def reference_speech_mask(waveform: np.ndarray, sample_rate: int, n_frames: int, frame_rate: float) -> np.ndarray:
    """The straightforward per-frame loop the vectorised speech_mask must equal."""
    from embedviz.pooling import SPEECH_RANGE_DB

    hop = sample_rate / frame_rate
    energies = np.empty(n_frames, dtype=np.float64)
    for i in range(n_frames):
        start = int(i * hop)
        chunk = waveform[start : max(start + 1, int((i + 1) * hop))]
        energies[i] = float(np.mean(chunk.astype(np.float64) ** 2)) if chunk.size else 0.0
    db = 10 * np.log10(energies + 1e-12)
    return db >= db.max() - SPEECH_RANGE_DB


def reference_pool(frames: np.ndarray, frame_rate: float, waveform: np.ndarray, sample_rate: int) -> dict:
    """Every pooling of one clip, one plain numpy call each (the definition of each pooling)."""
    f64 = frames.astype(np.float64)
    n = frames.shape[0]
    mask = reference_speech_mask(waveform, sample_rate, n, frame_rate)
    steps = int(np.floor(waveform.shape[0] / sample_rate / GRID_STEP + 1e-9)) + 1
    grid = np.minimum((np.arange(steps) * GRID_STEP * frame_rate).astype(int), n - 1)
    return {"mean": f64.mean(0), "std": f64.std(0), "max": frames.max(0), "centre": frames[n // 2],
            "speech": f64[mask].mean(0), "grid": frames[grid].astype(np.float16)}


def bursty_wave(rng: np.random.Generator, samples: int) -> np.ndarray:
    # silence, a loud burst somewhere, silence: the speech mask has both kinds of frames
    wave = 1e-4 * rng.standard_normal(samples)
    a = int(rng.integers(0, max(1, samples // 2)))
    wave[a : a + samples // 4] += rng.standard_normal(len(wave[a : a + samples // 4]))
    return wave.astype(np.float32)


@pytest.mark.parametrize("rate,fps,samples,n_frames", [
    (16000, 50.0, 16000, 50),        # wav2vec2 / Whisper
    (16000, 50.0, 16000, 60),        # more frames than the audio covers: the tail has no energy
    (16000, 8000.0, 16000, 8000),    # DAC block 1
    (16000, 15.625, 12345, 13),      # DAC z of a clip that is not a multiple of the hop
    (22050, 86.1328125, 22050, 87),  # a hop that is not an integer
    (16000, 50.0, 300, 1),           # shorter than one frame
    (8, 20.0, 8, 20),                # more frames than samples (hop < 1)
])
def test_speech_mask_equals_the_per_frame_loop(rate: int, fps: float, samples: int, n_frames: int) -> None:
    from embedviz.pooling import speech_mask

    rng = np.random.default_rng(samples + n_frames)
    for _ in range(5):
        wave = bursty_wave(rng, samples)
        expected = reference_speech_mask(wave, rate, n_frames, fps)
        np.testing.assert_array_equal(speech_mask(wave, rate, n_frames, fps), expected)
    assert not reference_speech_mask(wave, rate, n_frames, fps).all() or n_frames <= 2 or samples < 400


def test_pool_batch_equals_the_reference_clip_by_clip() -> None:
    from embedviz.pooling import pool_batch

    rng = np.random.default_rng(7)
    lengths = [50, 50, 37, 50, 1, 37]
    waves = [bursty_wave(rng, n * 320 - int(rng.integers(0, 300))) for n in lengths]
    frames = rng.standard_normal((len(lengths), 50, 24)).astype(np.float32)
    for i, n in enumerate(lengths):
        frames[i, n:] = 0.0  # padding, as extractors give it
    pooled = pool_batch(frames, lengths, 50.0, waves, 16000)
    assert len(pooled) == len(lengths)
    for i, n in enumerate(lengths):
        ref = reference_pool(frames[i, :n], 50.0, waves[i], 16000)
        single = pool_frames(frames[i, :n], 50.0, waves[i], 16000)
        for name, value in ref.items():
            for got in (pooled[i][name], single[name]):
                assert got.dtype == (np.float16 if name == "grid" else np.float32), name
                assert got.shape == value.shape, name
                np.testing.assert_allclose(got.astype(np.float64), value.astype(np.float64), rtol=1e-6, atol=1e-6,
                                           err_msg=f"clip {i}, {name}")


def test_pool_batch_rejects_mismatched_inputs() -> None:
    from embedviz.pooling import pool_batch

    frames = np.zeros((2, 5, 3), np.float32)
    waves = [np.ones(1600, np.float32)] * 2
    with pytest.raises(ValueError, match="lengths"):
        pool_batch(frames, [5], 50.0, waves, 16000)
    with pytest.raises(ValueError, match="within"):
        pool_batch(frames, [5, 6], 50.0, waves, 16000)
    with pytest.raises(ValueError, match="within"):
        pool_batch(frames, [0, 5], 50.0, waves, 16000)
