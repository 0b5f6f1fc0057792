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
