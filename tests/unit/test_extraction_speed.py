"""The fast extraction path: prefetch, writer thread, batch table, malloc tuning, autocast, Whisper ETA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedviz import pipeline
from embedviz.datasets import open_dataset
from embedviz.errors import ConfigError, StoreError
from embedviz.models import load_extractor
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore, read_layers
from tests.tiny_models import save_tiny_model

MEL = ExtractionSettings(model="baseline:mel")


def test_batch_size_table_drives_the_default() -> None:
    assert pipeline.batch_size_for("dac") == pipeline.PREFERRED_BATCH_SIZE["dac"] > 1
    assert pipeline.batch_size_for("wav2vec2") == pipeline.PREFERRED_BATCH_SIZE["wav2vec2"] > 1
    assert pipeline.batch_size_for("unknown-family") == pipeline.DEFAULT_BATCH_SIZE


def test_default_batch_size_is_the_familys(tmp_path: Path) -> None:
    manifest = open_dataset().sample(["yes", "no"], 5, seed=0)
    report = pipeline.extract(manifest, MEL, store=EmbeddingStore(tmp_path / "s"))
    assert report.computed == 10
    assert report.forward_passes == -(-10 // pipeline.batch_size_for("baseline"))


def test_bad_batch_size_is_a_config_error(tmp_path: Path) -> None:
    manifest = open_dataset().sample(["yes"], 2, seed=0)
    for bad in (0, -2):
        with pytest.raises(ConfigError, match="batch size"):
            pipeline.extract(manifest, MEL, store=EmbeddingStore(tmp_path / "s"), batch_size=bad)


def test_a_write_error_on_the_writer_thread_reaches_the_caller(tmp_path: Path, monkeypatch) -> None:
    manifest = open_dataset().sample(["yes", "no"], 3, seed=0)
    calls = []

    def failing_write(self, rows):
        calls.append(len(rows))
        raise StoreError("disk full (test)")

    from embedviz import store as store_mod

    monkeypatch.setattr(store_mod.StoreEntry, "write_batch", failing_write)
    with pytest.raises(StoreError, match="disk full"):
        pipeline.extract(manifest, MEL, store=EmbeddingStore(tmp_path / "s"), batch_size=2)
    assert calls, "the writer never ran"


def test_prefetched_pipeline_equals_one_batch_at_a_time(tmp_path: Path) -> None:
    manifest = open_dataset().sample(["yes", "no", "cat"], 4, seed=2)
    a, b = EmbeddingStore(tmp_path / "a"), EmbeddingStore(tmp_path / "b")
    pipeline.extract(manifest, MEL, store=a, batch_size=1)
    pipeline.extract(manifest, MEL, store=b, batch_size=5)
    layers = load_extractor("baseline:mel").layer_names
    la = read_layers(a, MEL, list(layers), "meanstd", manifest=manifest)
    lb = read_layers(b, MEL, list(layers), "meanstd", manifest=manifest)
    for layer in layers:
        np.testing.assert_allclose(la[layer].X, lb[layer].X, atol=1e-6)


def test_glibc_malloc_tuning_applies_on_glibc() -> None:
    import platform

    applied = pipeline.tune_glibc_malloc()
    assert applied == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


def test_matmul_gflops_is_positive() -> None:
    assert pipeline.matmul_gflops(n=128, repeats=2) > 0


def test_bf16_autocast_on_cpu_stays_within_the_cosine_bound(tmp_path: Path) -> None:
    import torch

    if not hasattr(torch, "autocast"):
        pytest.skip("this torch has no autocast")
    ext = load_extractor(str(save_tiny_model("wav2vec2", tmp_path / "w")))
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(16000).astype(np.float32) * 0.1 for _ in range(2)]
    distance = pipeline.autocast_cosine_distance(ext, waves, "bfloat16")
    assert 0.0 <= distance < 1.0
    assert pipeline.autocast_allowed(ext, waves, "bfloat16") == (distance <= pipeline.AUTOCAST_MAX_COSINE_DISTANCE)
    with pytest.raises(ConfigError):
        pipeline.autocast_cosine_distance(ext, waves, "int8")


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_autocast_within_bound(tmp_path: Path, dtype: str) -> None:
    ext = load_extractor(str(save_tiny_model("wav2vec2", tmp_path / "w")), device="cuda")
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(16000).astype(np.float32) * 0.1 for _ in range(4)]
    assert pipeline.autocast_cosine_distance(ext, waves, dtype) <= pipeline.AUTOCAST_MAX_COSINE_DISTANCE


def test_whisper_crop_eta_is_far_below_padded() -> None:
    from transformers import WhisperConfig

    from embedviz.extractors.whisper import estimate_seconds_per_clip

    config = WhisperConfig(d_model=512, encoder_layers=6, encoder_ffn_dim=2048, num_mel_bins=80)
    padded = estimate_seconds_per_clip(config, "padded", 1.0, gflops=100.0)
    crop = estimate_seconds_per_clip(config, "crop", 1.0, gflops=100.0)
    assert padded / crop > 20
    assert estimate_seconds_per_clip(config, "crop", 30.0, 100.0) == pytest.approx(padded)
    with pytest.raises(ConfigError):
        estimate_seconds_per_clip(config, "crop", 1.0, gflops=0)


def test_whisper_mode_etas_show_both_modes_for_whisper_models_only() -> None:
    from embedviz.extractors.whisper import mode_etas

    etas = mode_etas("random-init:openai/whisper-base", 10, 1.0, gflops=100.0)
    assert set(etas) == {"padded", "crop"}
    assert etas["padded"] / etas["crop"] > 20  # a 1 s clip: 50 of the window's 1500 frames
    assert mode_etas("random-init:openai/whisper-base", 20, 1.0, gflops=100.0)["crop"] == pytest.approx(2 * etas["crop"])
    full = etas
    half = mode_etas("random-init:openai/whisper-base", 10, 1.0, gflops=100.0, efficiency=0.5)
    assert half["padded"] == pytest.approx(2 * full["padded"])
    with pytest.raises(ConfigError, match="not a Whisper"):
        mode_etas("random-init:facebook/wav2vec2-base", 10, 1.0, gflops=100.0)
    with pytest.raises(ConfigError):
        mode_etas("random-init:openai/whisper-base", -1, 1.0, gflops=100.0)


def test_whisper_config_for_a_local_folder(tmp_path: Path) -> None:
    from embedviz.extractors.whisper import whisper_config_for

    folder = save_tiny_model("whisper", tmp_path / "w")
    assert whisper_config_for(str(folder)).model_type == "whisper"
    with pytest.raises(ConfigError, match="not a Whisper"):
        whisper_config_for(str(save_tiny_model("wav2vec2", tmp_path / "v")))


def test_whisper_crop_mode_prefers_its_own_batch_size(tmp_path: Path) -> None:
    from embedviz.extractors.whisper import CROP_BATCH_SIZE

    folder = str(save_tiny_model("whisper", tmp_path / "w"))
    assert load_extractor(folder, whisper_mode="crop").batch_size_hint == CROP_BATCH_SIZE
    assert load_extractor(folder, whisper_mode="padded").batch_size_hint is None
    manifest = open_dataset().sample(["yes", "no"], CROP_BATCH_SIZE // 2 + 1, seed=0)
    report = pipeline.extract(manifest, ExtractionSettings(model=folder, whisper_mode="crop"),
                              store=EmbeddingStore(tmp_path / "s"))
    assert report.computed == len(manifest)
    assert report.forward_passes == -(-len(manifest) // CROP_BATCH_SIZE)


def _tiny_waves(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal(16000).astype(np.float32) * 0.1 for _ in range(n)]


def test_autocast_is_off_on_cpu_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBEDVIZ_AUTOCAST", raising=False)
    ext = load_extractor(str(save_tiny_model("wav2vec2", tmp_path / "w")))
    assert pipeline.autocast_dtype(ext, _tiny_waves(2)) is None  # auto: fp32 on the CPU
    monkeypatch.setenv("EMBEDVIZ_AUTOCAST", "fp8")
    other = load_extractor(str(save_tiny_model("wav2vec2", tmp_path / "w2")))
    with pytest.raises(ConfigError, match="EMBEDVIZ_AUTOCAST"):
        pipeline.autocast_dtype(other, _tiny_waves(2))


def test_autocast_is_used_only_within_the_cosine_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    waves = _tiny_waves(3)
    folder = save_tiny_model("wav2vec2", tmp_path / "w")
    monkeypatch.setenv("EMBEDVIZ_AUTOCAST", "bfloat16")  # asked for on the CPU: still checked
    monkeypatch.setattr(pipeline, "AUTOCAST_MAX_COSINE_DISTANCE", -1.0)  # nothing passes
    assert pipeline.autocast_dtype(load_extractor(str(folder)), waves) is None
    monkeypatch.setattr(pipeline, "AUTOCAST_MAX_COSINE_DISTANCE", 1.0)  # everything passes
    ext = load_extractor(str(folder))
    assert pipeline.autocast_dtype(ext, waves) == "bfloat16"
    # The forward pass of the pipeline then runs in bf16: its frames differ from fp32's, within the bound.
    ref = ext.extract(waves)
    with pipeline._precision(ext, waves):
        assert torch.is_autocast_enabled("cpu")
        low = ext.extract(waves)
    layer = ext.layer_names[-1]
    a, b = ref.valid(layer, 0).mean(axis=0), low.valid(layer, 0).mean(axis=0)
    assert not np.array_equal(a, b)
    assert 1 - float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) <= pipeline.autocast_cosine_distance(ext, waves) + 1e-6


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_extraction_picks_autocast_within_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBEDVIZ_AUTOCAST", raising=False)
    ext = load_extractor(str(save_tiny_model("wav2vec2", tmp_path / "w")), device="cuda")
    waves = _tiny_waves(4)
    dtype = pipeline.autocast_dtype(ext, waves)
    distance = pipeline.autocast_cosine_distance(ext, waves, dtype or "bfloat16")
    assert (dtype is not None) == (distance <= pipeline.AUTOCAST_MAX_COSINE_DISTANCE)
