"""SSLExtractor (Wav2Vec2 / HuBERT / WavLM) on tiny random models: frames, batching, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from embedviz.errors import ExtractionError, ModelLoadError
from embedviz.extractors.base import ModelInfo
from embedviz.extractors.ssl import SSLExtractor, layer_names_for_config, min_input_samples
from embedviz.models import load_extractor

SSL_KEYS = ["wav2vec2", "wav2vec2-layer", "hubert", "wavlm"]
# Different lengths, a repeated length (shares a group), and one shorter than the 400-sample
# receptive field (padded to one frame).
LENGTHS = (16000, 12345, 16000, 4321, 250, 8000)


def _clips(lengths: tuple[int, ...] = LENGTHS, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def _load_model(folder: Path):  # type: ignore[no-untyped-def]
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=False)
    cls = {"wav2vec2": transformers.Wav2Vec2Model, "hubert": transformers.HubertModel,
           "wavlm": transformers.WavLMModel}[config.model_type]
    return cls.from_pretrained(folder, trust_remote_code=False).eval()


@pytest.fixture(scope="module")
def extractors(tiny_model_dir: dict[str, Path]):  # type: ignore[no-untyped-def]
    loaded = {key: load_extractor(str(tiny_model_dir[key]), device="cpu") for key in SSL_KEYS}
    yield loaded
    for extractor in loaded.values():
        extractor.close()


def test_layer_names_for_config() -> None:
    class Config:
        num_hidden_layers = 3

    assert layer_names_for_config(Config()) == ("cnn", "0", "1", "2", "3")


@pytest.mark.parametrize("key", SSL_KEYS)
def test_frame_counts_follow_the_models_formula(extractors, tiny_model_dir, key: str) -> None:  # type: ignore
    import torch

    extractor = extractors[key]
    model = _load_model(tiny_model_dir[key])
    features = extractor.extract(_clips())
    padded = [max(n, min_input_samples(model.config)) for n in LENGTHS]
    expected = model._get_feat_extract_output_lengths(torch.tensor(padded)).numpy()
    assert expected.tolist() == [(n - 400) // 320 + 1 for n in padded]  # the real conv stack's formula
    config = model.config
    for name in extractor.info.layer_names:
        np.testing.assert_array_equal(features.lengths[name], expected)
        assert features.frame_rates[name] == pytest.approx(50.0)
        array = features.layers[name]
        assert array.dtype == np.float32
        assert array.shape[:2] == (len(LENGTHS), expected.max())
        width = config.conv_dim[-1] if name == "cnn" else config.hidden_size
        assert array.shape[2] == width
        for i, n in enumerate(expected):
            assert not array[i, n:].any(), "frames past the valid length must be zero"
            assert np.isfinite(array[i, :n]).all()


def test_group_norm_models_would_leak_padding(tiny_model_dir: dict[str, Path]) -> None:
    """Why equal-length grouping exists: padding a group-norm batch changes the short clip."""
    import torch

    model = _load_model(tiny_model_dir["wav2vec2"])
    assert model.config.feat_extract_norm == "group"
    short, long = _clips((8000, 16000))
    batch = np.zeros((2, 16000), dtype=np.float32)
    batch[0, :8000], batch[1] = short, long
    with torch.inference_mode():
        padded = model(torch.from_numpy(batch), output_hidden_states=True).hidden_states[-1][0, :24]
        alone = model(torch.from_numpy(short[None]), output_hidden_states=True).hidden_states[-1][0, :24]
    assert (padded - alone).abs().max().item() > 1e-3


def test_cnn_layer_is_the_normalised_feature_encoder_output(extractors, tiny_model_dir) -> None:  # type: ignore
    import torch

    for key in ("wav2vec2", "hubert"):
        model = _load_model(tiny_model_dir[key])
        clip = _clips((16000,))[0]
        normed = (clip - clip.mean()) / np.sqrt(clip.var() + 1e-7)
        with torch.inference_mode():
            conv = model.feature_extractor(torch.from_numpy(normed[None])).transpose(1, 2)
            expected = model.feature_projection.layer_norm(conv)[0].numpy()
        got = extractors[key].extract([clip]).valid("cnn", 0)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_normalisation_makes_features_gain_invariant(extractors) -> None:  # type: ignore[no-untyped-def]
    extractor = extractors["wav2vec2"]
    clip = _clips((9000,))[0]
    a = extractor.extract([clip])
    b = extractor.extract([clip * 7.5])
    np.testing.assert_allclose(a.layers["2"], b.layers["2"], atol=1e-4)


def test_concurrent_extraction_is_safe(extractors) -> None:  # type: ignore[no-untyped-def]
    extractor = extractors["wavlm"]
    clips = _clips()
    expected = extractor.extract(clips)
    results: list = []
    errors: list = []

    def run() -> None:
        try:
            results.append(extractor.extract(clips))
        except Exception as error:  # pragma: no cover - surfaced by the assert below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for result in results:
        for name in extractor.info.layer_names:
            # Equal up to float summation order (torch's intra-op threads may split work
            # differently while other threads run); a race would differ by far more.
            np.testing.assert_allclose(result.layers[name], expected.layers[name], rtol=1e-5, atol=1e-5)


def test_bad_clips_are_extraction_errors(extractors) -> None:  # type: ignore[no-untyped-def]
    extractor = extractors["hubert"]
    with pytest.raises(ExtractionError, match="mono"):
        extractor.extract([np.zeros((2, 16000), dtype=np.float32)])
    with pytest.raises(ExtractionError, match="empty"):
        extractor.extract([np.zeros(0, dtype=np.float32)])
    with pytest.raises(ExtractionError, match="NaN"):
        extractor.extract([np.full(16000, np.nan, dtype=np.float32)])
    empty = extractor.extract([])
    assert empty.layers["cnn"].shape[0] == 0


def test_closed_extractor_refuses_work(tiny_model_dir: dict[str, Path]) -> None:
    extractor = load_extractor(str(tiny_model_dir["wav2vec2"]), device="cpu")
    extractor.close()
    extractor.close()
    with pytest.raises(ExtractionError, match="closed"):
        extractor.extract(_clips((16000,)))


def test_constructor_checks_model_and_layers(tiny_model_dir: dict[str, Path]) -> None:
    model = _load_model(tiny_model_dir["wav2vec2"])
    good = ModelInfo(name="tiny", family="wav2vec2", key="k", sample_rate=16000,
                     layer_names=layer_names_for_config(model.config))
    SSLExtractor(model, info=good, device="cpu", preprocessor={}).close()
    wrong = ModelInfo(name="tiny", family="wav2vec2", key="k", sample_rate=16000, layer_names=("cnn", "0"))
    with pytest.raises(ModelLoadError, match="layers"):
        SSLExtractor(model, info=wrong, device="cpu", preprocessor={})
    with pytest.raises(ModelLoadError, match="Wav2Vec2, HuBERT or WavLM"):
        SSLExtractor(object(), info=good, device="cpu", preprocessor={})


def test_out_of_memory_becomes_an_actionable_extraction_error() -> None:
    import torch

    from embedviz.extractors.base import forward_errors

    with pytest.raises(ExtractionError, match="batch size") as info:
        with forward_errors("tiny", "cuda"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert info.value.out_of_memory is True  # type: ignore[attr-defined]
    with pytest.raises(ExtractionError, match="tiny") as info:
        with forward_errors("tiny", "cpu"):
            raise RuntimeError("shape mismatch")
    assert info.value.out_of_memory is False  # type: ignore[attr-defined]


def test_cuda_matches_cpu(tiny_model_dir: dict[str, Path]) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    clips = _clips()
    for key in ("wav2vec2", "wav2vec2-layer"):
        cpu = load_extractor(str(tiny_model_dir[key]), device="cpu")
        gpu = load_extractor(str(tiny_model_dir[key]), device="cuda")
        try:
            assert gpu.device == "cuda"
            a, b = cpu.extract(clips), gpu.extract(clips)
            for name in cpu.info.layer_names:
                np.testing.assert_array_equal(a.lengths[name], b.lengths[name])
                np.testing.assert_allclose(a.layers[name], b.layers[name], atol=1e-3)
        finally:
            cpu.close()
            gpu.close()
