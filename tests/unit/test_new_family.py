"""Adding a model family is one registration: prove it with a family the product does not ship.

Data2Vec-Audio has the same interface as Wav2Vec2 (CNN front end, transformer, hidden
states), so one :class:`FamilySpec` reusing the SSL extractor's functions must be enough
for the catalogue's folder scan, ``load_extractor`` and the pipeline to handle it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedviz.extractors import registry


@pytest.fixture()
def data2vec_family(monkeypatch: pytest.MonkeyPatch):
    from embedviz.extractors import ssl

    registry.families()  # load the shipped families first
    monkeypatch.setattr(registry, "_families", dict(registry._families))  # undone after the test
    spec = registry.register(registry.FamilySpec(
        name="data2vec_audio",
        model_types=("data2vec-audio",),
        model_class="Data2VecAudioModel",
        config_class="Data2VecAudioConfig",
        layer_names=ssl.layer_names_for_config,
        construct=ssl._construct,
        default_preprocessor=ssl.default_preprocessor,
        preferred_batch_size=4,
        config_defaults={"num_hidden_layers": 12},
    ))
    return spec


def _tiny_data2vec(folder: Path) -> Path:
    import torch
    from transformers import Data2VecAudioConfig, Data2VecAudioModel

    torch.manual_seed(0)
    config = Data2VecAudioConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
    )
    Data2VecAudioModel(config).eval().save_pretrained(folder, safe_serialization=True)
    return folder


def test_one_registration_makes_a_new_family_loadable_and_extractable(
    data2vec_family, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedviz.models import load_extractor

    folder = _tiny_data2vec(tmp_path / "models" / "tiny-data2vec")
    monkeypatch.setenv("EMBEDVIZ_MODEL_ROOTS", str(tmp_path / "models"))
    assert registry.family_for_model_type("data2vec-audio") is data2vec_family

    extractor = load_extractor(str(folder), device="cpu")
    try:
        assert extractor.info.family == "data2vec_audio"
        # The SSL layer naming: CNN features, the transformer's input, then each block.
        assert extractor.info.layer_names == ("cnn", "0", "1", "2")
        rng = np.random.default_rng(0)
        clips = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 5000)]
        batched = extractor.extract(clips)
        alone = extractor.extract(clips[1:])
        for name in extractor.info.layer_names:
            # Waveforms in, per-layer frames plus valid lengths out: the shared contract.
            assert batched.layers[name].shape[0] == 2
            assert int(batched.lengths[name][1]) == int(alone.lengths[name][0])
            np.testing.assert_allclose(batched.valid(name, 1), alone.valid(name, 0), atol=1e-4)
    finally:
        extractor.close()


def test_a_new_family_goes_through_the_pipeline_into_the_store(
    data2vec_family, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedviz.datasets import open_dataset
    from embedviz.pipeline import batch_size_for, extract
    from embedviz.settings import ExtractionSettings
    from embedviz.store import EmbeddingStore, read_layers

    folder = _tiny_data2vec(tmp_path / "models" / "tiny-data2vec")
    monkeypatch.setenv("EMBEDVIZ_MODEL_ROOTS", str(tmp_path / "models"))
    assert batch_size_for("data2vec_audio") == 4  # declared in the one FamilySpec
    clips = open_dataset().sample(["yes", "no"], 3)
    store = EmbeddingStore(tmp_path / "store")
    settings = ExtractionSettings(model=str(folder))
    report = extract(clips, settings, store=store, device="cpu")
    assert report.computed == 6 and not report.skipped
    vectors = read_layers(store, settings, ["2"], "mean", manifest=clips)
    assert vectors["2"].X.shape == (6, 32)
    assert sorted(vectors["2"].clips["clip_id"]) == sorted(clips["clip_id"])
    assert np.isfinite(vectors["2"].X).all()
