"""WhisperExtractor on tiny random Whisper models: real forward passes, no mocks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from embedviz.errors import ConfigError, ExtractionError  # noqa: E402
from embedviz.extractors.base import ModelInfo  # noqa: E402
from embedviz.extractors.whisper import (  # noqa: E402
    CROP_APPROXIMATION_NOTE,
    WhisperExtractor,
    layer_names_for_config,
)

SR = 16_000
ATOL = 1e-4

# What openai/whisper-* checkpoints ship, extra keys included: the extractor must ignore them.
PREPROCESSOR: dict[str, Any] = {
    "chunk_length": 30,
    "feature_extractor_type": "WhisperFeatureExtractor",
    "feature_size": 80,
    "hop_length": 160,
    "n_fft": 400,
    "n_samples": 480000,
    "nb_max_frames": 3000,
    "padding_side": "right",
    "padding_value": 0.0,
    "processor_class": "WhisperProcessor",
    "return_attention_mask": False,
    "sampling_rate": 16000,
}


def _save_tiny_whisper(out_dir: Path, *, num_mel_bins: int = 80, encoder_layers: int = 2) -> Path:
    """A tiny random Whisper with the real 30 s window (1500 encoder positions)."""
    from tests.tiny_models import save_tiny_model

    return save_tiny_model("whisper", out_dir, num_mel_bins=num_mel_bins, encoder_layers=encoder_layers,
                           d_model=16, encoder_ffn_dim=32, decoder_ffn_dim=32)


def _info(layer_names: tuple[str, ...] = ()) -> ModelInfo:
    return ModelInfo(name="tiny-whisper", family="whisper", key="tiny@test", sample_rate=SR, layer_names=layer_names)


def _clip(n_samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / SR
    wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(n_samples)
    return wave.astype(np.float32)


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="module")
def whisper_model(whisper_dir: Path) -> Any:
    from transformers import WhisperModel

    return WhisperModel.from_pretrained(whisper_dir).eval()


@pytest.fixture(scope="module")
def padded(whisper_model: Any) -> WhisperExtractor:
    return WhisperExtractor(whisper_model, info=_info(), device="cpu", preprocessor=PREPROCESSOR)


@pytest.fixture(scope="module")
def crop(whisper_model: Any) -> WhisperExtractor:
    return WhisperExtractor(whisper_model, info=_info(), device="cpu", preprocessor=PREPROCESSOR, mode="crop")


def test_layer_names_for_config_match_produced_layers(whisper_model: Any, padded: WhisperExtractor) -> None:
    names = layer_names_for_config(whisper_model.config)
    assert names == ("0", "1", "2")
    features = padded.extract([_clip(8000, 0)])
    assert tuple(features.layers) == names == padded.layer_names
    assert tuple(features.lengths) == names and tuple(features.frame_rates) == names


@pytest.mark.parametrize(
    ("n_samples", "expected"),
    [(8000, 25), (16000, 50), (5920, math.ceil(5920 / 320)), (1, 1), (480_000, 1500)],
)
def test_valid_frames_cover_the_real_audio(padded: WhisperExtractor, n_samples: int, expected: int) -> None:
    features = padded.extract([_clip(n_samples, 1)])
    for name in padded.layer_names:
        assert features.lengths[name].tolist() == [expected]
        assert features.layers[name].shape == (1, expected, 16)
        assert features.layers[name].dtype == np.float32
        assert features.frame_rates[name] == pytest.approx(50.0)


def test_crop_and_padded_agree_on_shapes(padded: WhisperExtractor, crop: WhisperExtractor) -> None:
    clips = [_clip(8000, 2), _clip(5920, 3), _clip(16000, 4)]
    a, b = padded.extract(clips), crop.extract(clips)
    assert tuple(a.layers) == tuple(b.layers)
    for name in padded.layer_names:
        assert a.layers[name].shape == b.layers[name].shape
        np.testing.assert_array_equal(a.lengths[name], b.lengths[name])
        assert a.frame_rates[name] == b.frame_rates[name]


def test_crop_on_a_full_window_reproduces_transformers_forward(
    padded: WhisperExtractor, crop: WhisperExtractor
) -> None:
    # With a 30 s clip both modes see the same input, so this pins crop's hand-run encoder
    # (conv stem, positions, layers, final layer norm) to WhisperEncoder.forward.
    clip = _clip(480_000, 5)
    a, b = padded.extract([clip]), crop.extract([clip])
    for name in padded.layer_names:
        np.testing.assert_allclose(b.layers[name], a.layers[name], atol=ATOL, rtol=0)


def test_crop_differs_from_padded_on_short_clips(padded: WhisperExtractor, crop: WhisperExtractor) -> None:
    # Attention over the silent padding changes the frames: crop is an approximation, not a copy.
    clip = _clip(8000, 6)
    a, b = padded.extract([clip]), crop.extract([clip])
    # Layer 0 (no attention yet) differs only in the last frame, where the conv stem sees zeros
    # instead of the log-mel of the silent padding.
    np.testing.assert_allclose(b.layers["0"][:, :-1], a.layers["0"][:, :-1], atol=ATOL, rtol=0)
    assert not np.allclose(b.layers["0"][:, -1], a.layers["0"][:, -1], atol=ATOL)
    assert not np.allclose(b.layers["2"], a.layers["2"], atol=ATOL)


@pytest.mark.parametrize("mode", ["padded", "crop"])
def test_frames_past_valid_are_zero(padded: WhisperExtractor, crop: WhisperExtractor, mode: str) -> None:
    extractor = padded if mode == "padded" else crop
    features = extractor.extract([_clip(4000, 7), _clip(16000, 8)])
    for name in extractor.layer_names:
        assert features.lengths[name].tolist() == [13, 50]
        assert features.layers[name].shape == (2, 50, 16)
        assert not features.layers[name][0, 13:].any()
        assert np.abs(features.layers[name][0, :13]).sum(axis=-1).min() > 0


def test_padded_clip_unchanged_by_a_longer_batch_mate(padded: WhisperExtractor) -> None:
    short, long = _clip(6000, 9), _clip(3 * SR, 10)
    alone = padded.extract([short])
    together = padded.extract([long, short, long])
    for name in padded.layer_names:
        assert together.lengths[name].tolist() == [150, 19, 150]
        np.testing.assert_allclose(together.valid(name, 1), alone.valid(name, 0), atol=ATOL, rtol=0)


@pytest.mark.parametrize("mode", ["padded", "crop"])
def test_clip_longer_than_the_window_raises(padded: WhisperExtractor, crop: WhisperExtractor, mode: str) -> None:
    extractor = padded if mode == "padded" else crop
    with pytest.raises(ExtractionError, match="at most 30 s"):
        extractor.extract([_clip(8000, 0), np.zeros(480_001, dtype=np.float32)])


def test_bad_clips_raise_extraction_error(padded: WhisperExtractor) -> None:
    with pytest.raises(ExtractionError, match="empty"):
        padded.extract([np.zeros(0, dtype=np.float32)])
    with pytest.raises(ExtractionError, match="mono"):
        padded.extract([np.zeros((2, 800), dtype=np.float32)])
    with pytest.raises(ExtractionError, match="NaN"):
        padded.extract([np.full(800, np.nan, dtype=np.float32)])


def test_empty_batch_gives_empty_arrays(padded: WhisperExtractor) -> None:
    features = padded.extract([])
    for name in padded.layer_names:
        assert features.layers[name].shape == (0, 0, 16)
        assert features.lengths[name].shape == (0,)


def test_model_info_labels_the_mode(padded: WhisperExtractor, crop: WhisperExtractor) -> None:
    assert dict(padded.info.options) == {"whisper_mode": "padded"}
    assert dict(crop.info.options) == {"whisper_mode": "crop", "approximation": CROP_APPROXIMATION_NOTE}
    assert "approximation" in (WhisperExtractor.__doc__ or "")
    assert padded.sample_rate == SR


def test_unknown_mode_raises_config_error(whisper_model: Any) -> None:
    bad_mode: Any = "full"
    with pytest.raises(ConfigError, match="whisper mode"):
        WhisperExtractor(whisper_model, info=_info(), device="cpu", preprocessor=PREPROCESSOR, mode=bad_mode)


def test_bare_encoder_and_128_mel_bins(tmp_path: Path) -> None:
    from transformers import WhisperModel

    model = WhisperModel.from_pretrained(_save_tiny_whisper(tmp_path, num_mel_bins=128, encoder_layers=1))
    # The preprocessor says 80 bands; the model's num_mel_bins (128, as in large-v3) must win.
    extractor = WhisperExtractor(model.get_encoder(), info=_info(), device="cpu", preprocessor=PREPROCESSOR)
    assert extractor.layer_names == ("0", "1")
    features = extractor.extract([_clip(8000, 11)])
    assert features.layers["1"].shape == (1, 25, 16)
    # An empty preprocessor config falls back to Whisper's defaults.
    defaults = WhisperExtractor(model, info=_info(), device="cpu", preprocessor={})
    np.testing.assert_allclose(defaults.extract([_clip(8000, 11)]).layers["1"], features.layers["1"], atol=ATOL)


def test_close_is_idempotent_and_blocks_extract(whisper_dir: Path) -> None:
    from transformers import WhisperModel

    extractor = WhisperExtractor(
        WhisperModel.from_pretrained(whisper_dir), info=_info(), device="cpu", preprocessor=PREPROCESSOR
    )
    extractor.close()
    extractor.close()
    with pytest.raises(ExtractionError, match="closed"):
        extractor.extract([_clip(8000, 0)])


def test_shared_tiny_whisper_builder(tmp_path: Path) -> None:
    from transformers import WhisperModel

    from tests.tiny_models import save_tiny_model

    folder = save_tiny_model("whisper", tmp_path)
    model = WhisperModel.from_pretrained(folder)
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    extractor = WhisperExtractor(model, info=_info(), device="cpu", preprocessor=preprocessor)
    features = extractor.extract([_clip(8000, 0), _clip(16000, 1)])
    assert tuple(features.layers) == layer_names_for_config(model.config)
    for name in extractor.layer_names:
        assert features.lengths[name].tolist() == [25, 50]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["padded", "crop"])
def test_cuda_matches_cpu(whisper_dir: Path, padded: WhisperExtractor, mode: str) -> None:
    from transformers import WhisperModel

    gpu = WhisperExtractor(
        WhisperModel.from_pretrained(whisper_dir), info=_info(), device="cuda", preprocessor=PREPROCESSOR, mode=mode
    )
    cpu = padded if mode == "padded" else WhisperExtractor(
        WhisperModel.from_pretrained(whisper_dir), info=_info(), device="cpu", preprocessor=PREPROCESSOR, mode=mode
    )
    clips = [_clip(8000, 0), _clip(16000, 1)]
    a, b = cpu.extract(clips), gpu.extract(clips)
    for name in cpu.layer_names:
        assert b.layers[name].dtype == np.float32
        np.testing.assert_allclose(b.layers[name], a.layers[name], atol=1e-3, rtol=0)
    gpu.close()


def test_crop_log_mel_equals_the_full_window_slice(crop: WhisperExtractor) -> None:
    # Crop mode computes the log-mel only on the clip's length (plus padding); the frames it
    # feeds the encoder must equal those of the full 30 s window, normalisation included.
    rng = np.random.default_rng(3)
    clips = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 9000, 20011)]
    clips[1][-400:] *= 30  # loudest frame at the very end: the per-clip maximum must still match
    frames = 2 * -(-20011 // crop.samples_per_frame)
    full = crop._log_mel(clips)[:, :, :frames]
    short = crop._log_mel(clips, frames)
    assert short.shape == full.shape
    np.testing.assert_allclose(short, full, atol=1e-5)
