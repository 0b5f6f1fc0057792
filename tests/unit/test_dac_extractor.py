"""DacExtractor on tiny random DAC models: real forward passes, no mocks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from embedviz.errors import ExtractionError, ModelLoadError  # noqa: E402
from embedviz.extractors.base import ModelInfo  # noqa: E402
from embedviz.extractors.dac import DacExtractor, layer_names_for_config  # noqa: E402

SR = 16_000
ATOL = 1e-4
# An odd ratio (5) checks the frame arithmetic of DAC's strided convs (kernel 2s, padding ceil(s/2)).
RATIOS = [2, 4, 5]
HOP = 40
ENC = 4  # encoder_hidden_size
N_CODEBOOKS, CODEBOOK_DIM = 3, 4
PREPROCESSOR: dict[str, Any] = {
    "feature_extractor_type": "DacFeatureExtractor",
    "feature_size": 1,
    "hop_length": HOP,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": True,
    "sampling_rate": SR,
}


def _save_tiny_dac(out_dir: Path) -> Path:
    # Three downsampling stages (2, 4, 5): an odd cumulative stride, unlike the shared default.
    from tests.tiny_models import save_tiny_model

    return save_tiny_model("dac", out_dir, encoder_hidden_size=ENC, downsampling_ratios=RATIOS,
                           decoder_hidden_size=16, n_codebooks=N_CODEBOOKS, codebook_size=16,
                           codebook_dim=CODEBOOK_DIM, sampling_rate=SR)


def _info(layer_names: tuple[str, ...] = ()) -> ModelInfo:
    return ModelInfo(name="tiny-dac", family="dac", key="tiny@test", sample_rate=SR, layer_names=layer_names)


def _clip(n_samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / SR
    wave = 0.3 * np.sin(2 * np.pi * (150 + 40 * seed) * t) + 0.05 * rng.standard_normal(n_samples)
    return wave.astype(np.float32)


@pytest.fixture(scope="module")
def dac_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny_dac(tmp_path_factory.mktemp("tiny-dac"))


@pytest.fixture(scope="module")
def dac_model(dac_dir: Path) -> Any:
    from transformers import DacModel

    return DacModel.from_pretrained(dac_dir).eval()


@pytest.fixture(scope="module")
def dac(dac_model: Any) -> DacExtractor:
    return DacExtractor(dac_model, info=_info(), device="cpu", preprocessor=PREPROCESSOR)


def test_layer_names_for_config_match_produced_layers(dac_model: Any, dac: DacExtractor) -> None:
    names = layer_names_for_config(dac_model.config)
    assert names == ("block1", "block2", "block3", "z", "quantized", "latents", "codebook1", "codebook2", "codebook3")
    features = dac.extract([_clip(1013, 0)])
    assert tuple(features.layers) == names == dac.layer_names
    assert tuple(features.lengths) == names and tuple(features.frame_rates) == names


@pytest.mark.parametrize("n_samples", [1013, 1040, 7, 16000])
def test_stage_shapes_and_frame_rates(dac: DacExtractor, n_samples: int) -> None:
    features = dac.extract([_clip(n_samples, 1)])
    hidden = ENC * 2 ** len(RATIOS)
    expected: dict[str, tuple[int, int, float]] = {}  # name -> (frames, width, rate)
    stride = 1
    for k, ratio in enumerate(RATIOS, start=1):
        stride *= ratio
        expected[f"block{k}"] = (math.ceil(n_samples / stride), ENC * 2**k, SR / stride)  # widths double per block
    frames = math.ceil(n_samples / HOP)
    expected["z"] = (frames, hidden, SR / HOP)
    expected["quantized"] = (frames, hidden, SR / HOP)
    expected["latents"] = (frames, N_CODEBOOKS * CODEBOOK_DIM, SR / HOP)
    for i in range(1, N_CODEBOOKS + 1):
        expected[f"codebook{i}"] = (frames, CODEBOOK_DIM, SR / HOP)
    assert set(features.layers) == set(expected)
    for name, (t, d, rate) in expected.items():
        assert features.layers[name].shape == (1, t, d), name
        assert features.layers[name].dtype == np.float32
        assert features.lengths[name].tolist() == [t], name
        assert features.frame_rates[name] == pytest.approx(rate), name


def test_codebook_vectors_are_the_chosen_codes_embedding_rows(dac_model: Any, dac: DacExtractor) -> None:
    from transformers import DacFeatureExtractor

    clip = _clip(3013, 2)
    features = dac.extract([clip])
    # The official preprocessing + DacModel.encode: same padding, same codes.
    inputs = DacFeatureExtractor(**PREPROCESSOR)(clip, sampling_rate=SR, return_tensors="pt")
    with torch.inference_mode():
        encoded = dac_model.encode(inputs["input_values"])
    codes = encoded.audio_codes[0]  # (n_codebooks, T)
    assert len(torch.unique(codes[0])) > 1  # several codes chosen, so the check below means something
    assert codes.shape == (N_CODEBOOKS, features.lengths["z"][0])
    for i, quantizer in enumerate(dac_model.quantizer.quantizers, start=1):
        rows = quantizer.codebook.weight.detach().numpy()[codes[i - 1].numpy()]
        np.testing.assert_allclose(features.valid(f"codebook{i}", 0), rows, atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        features.valid("quantized", 0), encoded.quantized_representation[0].T.numpy(), atol=1e-5, rtol=0
    )
    np.testing.assert_allclose(features.valid("latents", 0), encoded.projected_latents[0].T.numpy(), atol=1e-5, rtol=0)
    # z is what the quantizer consumed.
    with torch.inference_mode():
        z = dac_model.encoder(inputs["input_values"])
    np.testing.assert_allclose(features.valid("z", 0), z[0].T.numpy(), atol=1e-5, rtol=0)


def test_frames_past_valid_are_zero(dac: DacExtractor) -> None:
    features = dac.extract([_clip(577, 3), _clip(2400, 4)])
    for name in dac.layer_names:
        short, long = features.lengths[name].tolist()
        assert features.layers[name].shape[1] == long > short
        assert not features.layers[name][0, short:].any()
        assert np.abs(features.layers[name][0, :short]).sum(axis=-1).min() > 0


def test_bad_clips_raise_extraction_error(dac: DacExtractor) -> None:
    with pytest.raises(ExtractionError, match="empty"):
        dac.extract([np.zeros(0, dtype=np.float32)])
    with pytest.raises(ExtractionError, match="mono"):
        dac.extract([np.zeros((2, 800), dtype=np.float32)])
    with pytest.raises(ExtractionError, match="NaN"):
        dac.extract([np.full(800, np.inf, dtype=np.float32)])


def test_empty_batch_gives_empty_arrays(dac: DacExtractor) -> None:
    features = dac.extract([])
    assert features.layers["block1"].shape == (0, 0, 2 * ENC)
    assert features.layers["latents"].shape == (0, 0, N_CODEBOOKS * CODEBOOK_DIM)
    assert all(v.shape == (0,) for v in features.lengths.values())


def test_inconsistent_preprocessor_raises_model_load_error(dac_model: Any) -> None:
    with pytest.raises(ModelLoadError, match="hop_length"):
        DacExtractor(dac_model, info=_info(), device="cpu", preprocessor={**PREPROCESSOR, "hop_length": 512})
    with pytest.raises(ModelLoadError, match="sampling_rate"):
        DacExtractor(dac_model, info=_info(), device="cpu", preprocessor={**PREPROCESSOR, "sampling_rate": 44100})
    with pytest.raises(ModelLoadError, match="DacModel"):
        DacExtractor(object(), info=_info(), device="cpu", preprocessor=PREPROCESSOR)


def test_close_is_idempotent_and_blocks_extract(dac_dir: Path) -> None:
    from transformers import DacModel

    extractor = DacExtractor(DacModel.from_pretrained(dac_dir), info=_info(), device="cpu", preprocessor={})
    extractor.close()
    extractor.close()
    with pytest.raises(ExtractionError, match="closed"):
        extractor.extract([_clip(800, 0)])


def test_shared_tiny_dac_builder(tmp_path: Path) -> None:
    from transformers import DacModel

    from tests.tiny_models import save_tiny_model

    folder = save_tiny_model("dac", tmp_path)
    model = DacModel.from_pretrained(folder)
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    extractor = DacExtractor(model, info=_info(), device="cpu", preprocessor=preprocessor)
    features = extractor.extract([_clip(8000, 0), _clip(16000, 1)])
    assert tuple(features.layers) == layer_names_for_config(model.config)
    assert features.lengths["z"].tolist() == [25, 50]  # hop 320 at 16 kHz: 50 frames/s
    assert features.frame_rates["z"] == pytest.approx(50.0)


def test_concurrent_extracts_agree(dac: DacExtractor) -> None:
    # Streamlit serves sessions on threads; the instance lock keeps the forward hooks apart.
    from concurrent.futures import ThreadPoolExecutor

    clips = [_clip(1013, 5), _clip(2400, 6)]
    reference = dac.extract(clips)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: dac.extract(clips), range(4)))
    for result in results:
        for name in dac.layer_names:
            np.testing.assert_allclose(result.layers[name], reference.layers[name], atol=ATOL, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(dac_dir: Path, dac: DacExtractor) -> None:
    from transformers import DacModel

    gpu = DacExtractor(DacModel.from_pretrained(dac_dir), info=_info(), device="cuda", preprocessor=PREPROCESSOR)
    clips = [_clip(1013, 7), _clip(2400, 8)]
    a, b = dac.extract(clips), gpu.extract(clips)
    for name in ("block1", "block3", "z", "latents"):  # codes may flip on near-ties across devices
        assert b.layers[name].dtype == np.float32
        np.testing.assert_allclose(b.layers[name], a.layers[name], atol=1e-3, rtol=0)
    gpu.close()


def test_hidden_size_other_than_the_default_formula_works(tmp_path: Path) -> None:
    # A valid DacConfig may set hidden_size != encoder_hidden_size * 2**len(downsampling_ratios):
    # z and quantized are as wide as the config says (and as the tensors are).
    from embedviz.models import load_extractor
    from tests.tiny_models import save_tiny_model

    folder = save_tiny_model("dac", tmp_path / "dac-hidden", hidden_size=64)
    config = json.loads((folder / "config.json").read_text())
    assert config["hidden_size"] == 64 != config["encoder_hidden_size"] * 2 ** len(config["downsampling_ratios"])
    extractor = load_extractor(str(folder), device="cpu")
    features = extractor.extract([_clip(1013, 0), _clip(2400, 1)])
    assert features.layers["z"].shape[2] == 64
    assert features.layers["quantized"].shape[2] == 64
    assert np.abs(features.valid("z", 1)).sum() > 0
