"""MelBaselineExtractor: shapes, frame rate, mel band placement, MFCC + deltas."""

from __future__ import annotations

import numpy as np
import pytest

from embedviz.errors import ConfigError, ExtractionError
from embedviz.extractors.base import ModelInfo
from embedviz.extractors.baseline import (
    MelBaselineExtractor,
    default_info,
    deltas,
    layer_names_for_config,
    mel_center_frequencies,
    mel_filter_bank,
)

SR = 16000


def _tone(freq: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def extractor() -> MelBaselineExtractor:
    return MelBaselineExtractor()


def test_shapes_and_frame_rate(extractor: MelBaselineExtractor) -> None:
    rng = np.random.default_rng(0)
    lengths = (16000, 8000, 161, 1)
    clips = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in lengths]
    features = extractor.extract(clips)
    assert layer_names_for_config() == extractor.info.layer_names == ("logmel", "mfcc")
    expected = np.array([n // 160 + 1 for n in lengths])  # centred 10 ms frames
    assert expected[0] == 101
    for name, width in (("logmel", 80), ("mfcc", 39)):
        assert features.frame_rates[name] == 100.0
        np.testing.assert_array_equal(features.lengths[name], expected)
        array = features.layers[name]
        assert array.dtype == np.float32
        assert array.shape == (len(lengths), expected.max(), width)
        for i, n in enumerate(expected):
            assert not array[i, n:].any()
            assert np.isfinite(array[i, :n]).all()


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0])
def test_a_pure_tone_lands_in_the_right_mel_band(extractor: MelBaselineExtractor, freq: float) -> None:
    logmel = extractor.extract([_tone(freq)]).valid("logmel", 0)
    centres = mel_center_frequencies()
    loudest = int(np.argmax(logmel[5:-5].mean(axis=0)))
    # The tone lies inside the loudest band's triangle (between its neighbours' centres) and
    # that band is the nearest one, or its neighbour where low bands are narrower than an FFT bin.
    assert centres[loudest - 1] < freq < centres[loudest + 1]
    nearest = int(np.argmin(np.abs(centres - freq)))
    assert abs(loudest - nearest) <= (1 if freq < 500 else 0)
    # Far-away bands are much quieter than the tone's band (log power, natural log).
    assert logmel[5:-5, loudest].mean() - logmel[5:-5, -1].mean() > 5.0


def test_filter_bank_covers_0_to_8000_hz() -> None:
    filters = mel_filter_bank()
    assert filters.shape == (257, 80)
    # No empty band: even the narrow low bands (narrower than an FFT bin) touch a bin.
    assert np.all(filters.max(axis=0) > 0.25)
    centres = mel_center_frequencies()
    assert np.all(np.diff(centres) > 0) and 0 < centres[0] < 100 and 7000 < centres[-1] < 8000


def test_mfcc_is_the_dct_of_logmel_plus_deltas(extractor: MelBaselineExtractor) -> None:
    from scipy.fft import dct

    rng = np.random.default_rng(1)
    features = extractor.extract([rng.standard_normal(12000).astype(np.float32)])
    logmel = features.valid("logmel", 0).astype(np.float64)
    mfcc = features.valid("mfcc", 0)
    cepstra = dct(logmel, type=2, norm="ortho", axis=1)[:, :13]
    np.testing.assert_allclose(mfcc[:, :13], cepstra, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(mfcc[:, 13:26], deltas(cepstra), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(mfcc[:, 26:], deltas(deltas(cepstra)), rtol=1e-4, atol=1e-3)


def test_deltas_of_constant_and_ramp() -> None:
    constant = np.ones((10, 3))
    np.testing.assert_allclose(deltas(constant), 0.0)
    ramp = np.arange(10, dtype=np.float64)[:, None] * 2.0
    np.testing.assert_allclose(deltas(ramp)[2:-2], 2.0)  # slope in the interior
    assert deltas(np.zeros((0, 3))).shape == (0, 3)


def test_silence_is_finite(extractor: MelBaselineExtractor) -> None:
    features = extractor.extract([np.zeros(4000, dtype=np.float32)])
    assert np.isfinite(features.layers["logmel"]).all()
    assert np.isfinite(features.layers["mfcc"]).all()


def test_bad_clips_are_extraction_errors(extractor: MelBaselineExtractor) -> None:
    with pytest.raises(ExtractionError, match="empty"):
        extractor.extract([np.zeros(0, dtype=np.float32)])
    with pytest.raises(ExtractionError, match="mono"):
        extractor.extract([np.zeros((2, 100), dtype=np.float32)])
    with pytest.raises(ExtractionError, match="NaN"):
        extractor.extract([np.array([0.0, np.inf], dtype=np.float32)])
    assert extractor.extract([]).layers["logmel"].shape[0] == 0


def test_info_is_checked() -> None:
    info = default_info()
    assert info.key == "baseline:mel:v1" and info.family == "baseline" and info.sample_rate == SR
    with pytest.raises(ConfigError, match="layers"):
        MelBaselineExtractor(info=ModelInfo(name="b", family="baseline", key="k", sample_rate=SR, layer_names=("x",)))
    with pytest.raises(ConfigError, match="Hz"):
        MelBaselineExtractor(info=ModelInfo(name="b", family="baseline", key="k", sample_rate=8000,
                                            layer_names=("logmel", "mfcc")))
    assert MelBaselineExtractor(device="cuda").device == "cpu"
