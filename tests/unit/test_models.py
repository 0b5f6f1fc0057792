"""load_extractor: folders, HF cache, random init, baselines; safety and error messages."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from embedviz import catalogue
from embedviz.errors import ConfigError, ModelLoadError
from embedviz import hub
from embedviz.extractors.registry import families
from embedviz.models import load_extractor, resolve_device

REPO_ROOT = Path(__file__).resolve().parents[2]


def _clips(*lengths: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def _family(key: str) -> str:
    return key.split("-")[0]


# ---------------------------------------------------------------------- devices


def test_resolve_device() -> None:
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") != "cuda"
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")


def test_bad_options_are_config_errors(tiny_model_dir: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="whisper_mode"):
        load_extractor(str(tiny_model_dir["whisper"]), device="cpu", whisper_mode="fast")
    with pytest.raises(ConfigError, match="seed"):
        load_extractor("random-init:openai/whisper-tiny", device="cpu", seed=-1)


# ---------------------------------------------------------------------- local folders


@pytest.mark.parametrize("key", ["wav2vec2", "wav2vec2-layer", "hubert", "wavlm", "whisper", "dac"])
def test_loaded_layers_match_the_config_and_the_catalogue(tiny_model_dir: dict[str, Path], key: str) -> None:
    from transformers import AutoConfig

    folder = tiny_model_dir[key]
    extractor = load_extractor(str(folder), device="cpu")
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        info = extractor.info
        assert info.family == _family(key)
        assert info.layer_names == catalogue.layer_names_for(info.family, config)
        assert info.layer_names == catalogue.model_spec(str(folder)).layers
        assert info.key == catalogue.model_identity(str(folder))
        assert info.name == str(folder)
        assert info.sample_rate == 16000
        assert info.n_params > 0
        assert dict(info.options).get("whisper_mode") == ("padded" if key == "whisper" else None)
        features = extractor.extract(_clips(16000, 9000))
        assert set(features.layers) == set(info.layer_names)
        for name in info.layer_names:
            assert features.layers[name].dtype == np.float32
            assert features.layers[name].shape[0] == 2
            assert (features.lengths[name] >= 1).all()
    finally:
        extractor.close()
        extractor.close()  # safe twice


def test_whisper_keeps_only_the_encoder(tiny_model_dir: dict[str, Path]) -> None:
    from transformers import WhisperModel

    full = WhisperModel.from_pretrained(tiny_model_dir["whisper"], trust_remote_code=False)
    extractor = load_extractor(str(tiny_model_dir["whisper"]), device="cpu", whisper_mode="crop")
    try:
        encoder_params = sum(p.numel() for p in full.get_encoder().parameters())
        assert extractor.info.n_params == encoder_params
        assert extractor.info.n_params < sum(p.numel() for p in full.parameters())
        assert dict(extractor.info.options)["whisper_mode"] == "crop"
    finally:
        extractor.close()


def test_trust_remote_code_is_always_false(tiny_model_dir: dict[str, Path], cache_model,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    calls: list[dict] = []
    for class_name in {f.model_class for f in families().values() if f.model_class}:
        cls = getattr(transformers, class_name)
        original = cls.from_pretrained.__func__

        def recording(klass, *args, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(kwargs)
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(recording))
    cache_model("dac", "tiny-org/tiny-dac")
    for key in ("wav2vec2", "hubert", "wavlm", "whisper", "dac"):
        load_extractor(str(tiny_model_dir[key]), device="cpu").close()
    load_extractor("tiny-org/tiny-dac", device="cpu").close()
    assert len(calls) == 6
    for kwargs in calls:
        assert kwargs["trust_remote_code"] is False


def test_no_source_file_enables_remote_code() -> None:
    pattern = re.compile(r"trust_remote_code\s*=\s*(True|1)\b")
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in (REPO_ROOT / "embedviz").rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_folder_and_cache_load_through_the_same_path_and_agree(tiny_model_dir: dict[str, Path],
                                                               cache_model) -> None:
    commit = "f" * 40
    cache_model("wav2vec2", "tiny-org/tiny-wav2vec2", commit=commit)
    assert catalogue.availability("tiny-org/tiny-wav2vec2").status == "cached"
    from_folder = load_extractor(str(tiny_model_dir["wav2vec2"]), device="cpu")
    from_cache = load_extractor("tiny-org/tiny-wav2vec2", device="cpu")
    try:
        assert from_cache.info.key == f"tiny-org/tiny-wav2vec2@{commit}"
        assert from_cache.info.key == catalogue.model_identity("tiny-org/tiny-wav2vec2")
        assert from_folder.info.key.startswith("local:")
        assert from_cache.info.layer_names == from_folder.info.layer_names
        clips = _clips(16000, 7000)
        a, b = from_folder.extract(clips), from_cache.extract(clips)
        for name in from_folder.info.layer_names:
            np.testing.assert_array_equal(a.layers[name], b.layers[name])
    finally:
        from_folder.close()
        from_cache.close()


def test_a_catalogue_id_loads_from_the_cache_offline(cache_model) -> None:
    cache_model("whisper", "openai/whisper-tiny", commit="abc" + "0" * 37)
    extractor = load_extractor("openai/whisper-tiny", device="cpu")
    try:
        assert extractor.info.key == "openai/whisper-tiny@abc" + "0" * 37
        assert extractor.info.family == "whisper"
    finally:
        extractor.close()


def test_not_cached_while_offline_says_what_to_do(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_extractor("openai/whisper-base", device="cpu")
    message = str(info.value)
    assert "openai/whisper-base" in message and "download" in message and "HF_HUB_OFFLINE" in message
    assert "local folder" in message

    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(ModelLoadError, match="local_files_only"):
        load_extractor("openai/whisper-base", device="cpu", local_files_only=True)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    with pytest.raises(ModelLoadError, match="cannot be reached"):
        load_extractor("openai/whisper-base", device="cpu")


def test_unknown_names_are_model_load_errors(tmp_path: Path, hf_cache: Path) -> None:
    with pytest.raises(ModelLoadError, match="not in the catalogue"):
        load_extractor("nobody/unknown-model", device="cpu")
    with pytest.raises(ModelLoadError, match="no such model folder"):
        load_extractor(str(tmp_path / "missing"), device="cpu")


def test_incomplete_checkpoint_is_refused(tiny_model_dir: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "broken"
    shutil.copytree(tiny_model_dir["hubert"], folder)
    tensors = load_file(folder / "model.safetensors")
    kept = {k: v for k, v in tensors.items() if not k.startswith("encoder.layers.0.")}
    assert len(kept) < len(tensors)
    save_file(kept, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="lacks .* weight") as info:
        load_extractor(str(folder), device="cpu")
    assert "encoder.layers.0." in str(info.value)


def test_pickle_weights_load_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.tiny_models import build_tiny_model, tiny_preprocessor

    import torch

    folder = tmp_path / "bin-only"
    model = build_tiny_model("wavlm")
    # transformers v5 only writes safetensors; lay out an old-style pickle checkpoint by hand.
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    tiny_preprocessor("wavlm").save_pretrained(folder)
    with caplog.at_level(logging.WARNING, logger="embedviz.models"):
        extractor = load_extractor(str(folder), device="cpu")
    extractor.close()
    assert any("safetensors" in r.getMessage() for r in caplog.records)


def test_missing_preprocessor_config_falls_back_to_family_defaults(tiny_model_dir: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    folder = tmp_path / "no-preprocessor"
    shutil.copytree(tiny_model_dir["wav2vec2-layer"], folder)
    (folder / "preprocessor_config.json").unlink()
    extractor = load_extractor(str(folder), device="cpu")
    try:
        assert extractor.info.sample_rate == 16000
        features = extractor.extract(_clips(8000))
        assert features.lengths["cnn"][0] == 24
    finally:
        extractor.close()


# ---------------------------------------------------------------------- random init and baseline


def test_random_init_is_deterministic_per_seed() -> None:
    import torch

    name = "random-init:facebook/wav2vec2-base"
    clips = _clips(8000)
    state = torch.random.get_rng_state()
    first = load_extractor(name, device="cpu", seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left alone
    try:
        assert first.info.key == "random-init:facebook/wav2vec2-base:seed0:v1"
        assert first.info.layer_names == catalogue.CATALOGUE["facebook/wav2vec2-base"].layers
        assert 90e6 < first.info.n_params < 100e6
        a = first.extract(clips)
    finally:
        first.close()
    again = load_extractor(name, device="cpu", seed=0)
    try:
        b = again.extract(clips)
    finally:
        again.close()
    other = load_extractor(name, device="cpu", seed=1)
    try:
        assert other.info.key.endswith(":seed1:v1")
        c = other.extract(clips)
    finally:
        other.close()
    for layer in ("cnn", "6", "12"):
        np.testing.assert_array_equal(a.layers[layer], b.layers[layer])
        assert not np.allclose(a.layers[layer], c.layers[layer], atol=1e-3)


def test_random_init_whisper_builds_only_the_encoder() -> None:
    extractor = load_extractor("random-init:openai/whisper-tiny", device="cpu", seed=0)
    try:
        assert extractor.info.layer_names == tuple(str(i) for i in range(5))
        assert extractor.info.n_params < 10_000_000  # encoder only (the full model has ~38M)
        assert extractor.info.key == "random-init:openai/whisper-tiny:seed0:v1"
    finally:
        extractor.close()


def test_baseline_loads_without_weights() -> None:
    extractor = load_extractor("baseline:mel", device="cpu")
    assert extractor.info.key == "baseline:mel:v1"
    assert extractor.info.layer_names == ("logmel", "mfcc")
    assert extractor.info.n_params == 0
