"""The catalogue: entries, layer names, availability, identity, local folders (no network)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embedviz import catalogue, hub
from embedviz.catalogue import (
    BASELINE_ID,
    Availability,
    ModelSpec,
    availability,
    list_local_models,
    model_identity,
    model_spec,
)
from embedviz.errors import ConfigError, ModelLoadError
from tests.tiny_models import save_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[2]

WAV2VEC2 = [
    "facebook/wav2vec2-base",
    "facebook/wav2vec2-base-960h",
    "facebook/wav2vec2-large-960h",
    "facebook/wav2vec2-large-960h-lv60",
    "facebook/wav2vec2-large-960h-lv60-self",
]
WHISPER = [
    "openai/whisper-tiny",
    "openai/whisper-base",
    "openai/whisper-small",
    "openai/whisper-medium",
    "openai/whisper-large",
    "openai/whisper-large-v2",
    "openai/whisper-large-v3",
    "openai/whisper-tiny.en",
    "openai/whisper-base.en",
    "openai/whisper-small.en",
    "openai/whisper-medium.en",
]
DAC = ["descript/dac_16khz", "descript/dac_24khz", "descript/dac_44khz"]
OTHERS = {"facebook/hubert-base-ls960": "hubert", "microsoft/wavlm-base": "wavlm"}


def _ssl_layers(n: int) -> tuple[str, ...]:
    return ("cnn",) + tuple(str(i) for i in range(n + 1))


def _numbered(n: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(n + 1))


def _dac_layers(n_codebooks: int) -> tuple[str, ...]:
    return ("block1", "block2", "block3", "block4", "z", "quantized", "latents") + tuple(
        f"codebook{i}" for i in range(1, n_codebooks + 1)
    )


EXPECTED_LAYERS = {
    "facebook/wav2vec2-base": _ssl_layers(12),
    "facebook/wav2vec2-base-960h": _ssl_layers(12),
    "facebook/wav2vec2-large-960h": _ssl_layers(24),
    "facebook/wav2vec2-large-960h-lv60": _ssl_layers(24),
    "facebook/wav2vec2-large-960h-lv60-self": _ssl_layers(24),
    "openai/whisper-tiny": _numbered(4),
    "openai/whisper-tiny.en": _numbered(4),
    "openai/whisper-base": _numbered(6),
    "openai/whisper-base.en": _numbered(6),
    "openai/whisper-small": _numbered(12),
    "openai/whisper-small.en": _numbered(12),
    "openai/whisper-medium": _numbered(24),
    "openai/whisper-medium.en": _numbered(24),
    "openai/whisper-large": _numbered(32),
    "openai/whisper-large-v2": _numbered(32),
    "openai/whisper-large-v3": _numbered(32),
    "descript/dac_16khz": _dac_layers(12),
    "descript/dac_24khz": _dac_layers(32),
    "descript/dac_44khz": _dac_layers(9),
    "facebook/hubert-base-ls960": _ssl_layers(12),
    "microsoft/wavlm-base": _ssl_layers(12),
    "baseline:mel": ("logmel", "mfcc"),
}


# ---------------------------------------------------------------------- entries


def test_catalogue_has_every_required_entry_with_layers_rate_and_size() -> None:
    cat = catalogue.CATALOGUE
    assert set(cat) == set(EXPECTED_LAYERS)
    for model_id, layers in EXPECTED_LAYERS.items():
        spec = cat[model_id]
        assert spec.id == model_id
        assert spec.layers == layers, model_id
        assert spec.label and spec.description
        if model_id == BASELINE_ID:
            assert spec.family == "baseline" and spec.n_params == 0
        else:
            assert spec.n_params > 1_000_000, model_id
    for model_id in WAV2VEC2:
        assert cat[model_id].family == "wav2vec2"
    for model_id in WHISPER:
        assert cat[model_id].family == "whisper"
    for model_id in DAC:
        assert cat[model_id].family == "dac"
    for model_id, family in OTHERS.items():
        assert cat[model_id].family == family


def test_sample_rates_and_parameter_counts_are_plausible() -> None:
    cat = catalogue.CATALOGUE
    assert cat["descript/dac_16khz"].sample_rate == 16000
    assert cat["descript/dac_24khz"].sample_rate == 24000
    assert cat["descript/dac_44khz"].sample_rate == 44100
    for model_id in WAV2VEC2 + WHISPER + list(OTHERS) + [BASELINE_ID]:
        assert cat[model_id].sample_rate == 16000, model_id
    sizes = [cat[f"openai/whisper-{s}"].n_params for s in ("tiny", "base", "small", "medium", "large")]
    assert sizes == sorted(sizes) and 30e6 < sizes[0] < 50e6 and 1.4e9 < sizes[-1] < 1.7e9
    assert 90e6 < cat["facebook/wav2vec2-base"].n_params < 100e6
    assert 300e6 < cat["facebook/wav2vec2-large-960h"].n_params < 330e6


def test_embedded_configs_give_the_same_layers_as_real_transformers_configs() -> None:
    from embedviz.models import build_config

    for model_id in catalogue.catalogue_ids():
        config = build_config(model_id)
        spec = catalogue.CATALOGUE[model_id]
        assert catalogue.layer_names_for(spec.family, config) == spec.layers, model_id
    # The architecture details that decide batching/masking match the published checkpoints.
    assert build_config("facebook/wav2vec2-large-960h").feat_extract_norm == "group"
    lv60 = build_config("facebook/wav2vec2-large-960h-lv60-self")
    assert lv60.feat_extract_norm == "layer" and lv60.do_stable_layer_norm
    assert build_config("openai/whisper-large-v3").num_mel_bins == 128
    assert build_config("openai/whisper-large-v2").num_mel_bins == 80
    assert build_config("descript/dac_44khz").hop_length == 512
    assert build_config("descript/dac_16khz").hidden_size == 1024


def test_random_init_names_resolve_to_the_architecture() -> None:
    spec = model_spec("random-init:facebook/wav2vec2-base")
    base = model_spec("facebook/wav2vec2-base")
    assert spec.id == "random-init:facebook/wav2vec2-base"
    assert spec.is_random_init and not base.is_random_init
    assert (spec.family, spec.layers, spec.sample_rate) == (base.family, base.layers, base.sample_rate)
    assert "random" in spec.label
    with pytest.raises(ModelLoadError, match="random-init"):
        model_spec("random-init:nobody/nothing")


def test_model_spec_validates_its_fields() -> None:
    good = dict(id="x", family="wav2vec2", n_params=1, sample_rate=16000, layers=("a",), description="", label="x")
    ModelSpec(**good)
    for bad in (
        {"family": "bert"},
        {"layers": ()},
        {"layers": ("a", "a")},
        {"sample_rate": 0},
        {"n_params": -1},
        {"id": ""},
        {"label": " "},
    ):
        with pytest.raises(ConfigError):
            ModelSpec(**{**good, **bad})
    with pytest.raises(ConfigError):
        Availability("maybe", "")  # type: ignore[arg-type]


def test_importing_the_catalogue_does_not_import_torch() -> None:
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "import embedviz.catalogue as c\n"
        "dt = time.perf_counter() - t\n"
        "heavy = [m for m in ('torch', 'transformers', 'huggingface_hub', 'numpy') if m in sys.modules]\n"
        "n = len(c.CATALOGUE)\n"
        "after = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print(dt, ','.join(heavy), ','.join(after), n)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=REPO_ROOT).stdout.split(" ")
    assert out[1] == "", f"import embedviz.catalogue imported {out[1]}"
    assert out[2] == "", f"listing the catalogue imported {out[2]}"
    assert int(out[3]) == len(EXPECTED_LAYERS)
    # How fast the import is belongs in a benchmark (a wall-clock bound here failed under load);
    # what makes it fast, importing none of the heavy modules, is asserted above.


# ---------------------------------------------------------------------- local folders


def test_model_spec_of_a_local_folder(tiny_model_dir: dict[str, Path]) -> None:
    from transformers import AutoConfig

    for family, folder in tiny_model_dir.items():
        spec = model_spec(str(folder))
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        assert spec.family == family.split("-")[0]
        assert spec.layers == catalogue.layer_names_for(spec.family, config)
        assert spec.sample_rate == 16000
        assert spec.n_params > 0
        assert spec.id == str(folder.resolve())


def test_unknown_model_type_names_the_folder_and_the_type(tmp_path: Path) -> None:
    folder = tmp_path / "my-bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="bert") as info:
        model_spec(str(folder))
    assert str(folder) in str(info.value)
    with pytest.raises(ModelLoadError, match="config.json"):
        model_spec(str(tmp_path))  # a folder without config.json


def test_list_local_models_finds_supported_folders_one_level_deep(tiny_model_dir: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir["wav2vec2"], root / "w2v")
    shutil.copytree(tiny_model_dir["dac"], root / "codecs" / "dac")
    shutil.copytree(tiny_model_dir["whisper"], root / "deep" / "er" / "whisper")  # too deep
    (root / "bert").mkdir()
    (root / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("{not json")
    (root / "empty").mkdir()
    found = list_local_models([root, tmp_path / "missing"])
    assert found == sorted([(root / "codecs" / "dac").resolve(), (root / "w2v").resolve()])


# ---------------------------------------------------------------------- availability


def test_availability_of_builtin_local_cached_and_offline(tiny_model_dir: dict[str, Path], cache_model) -> None:
    assert availability(BASELINE_ID).status == "builtin"
    assert availability("random-init:openai/whisper-tiny").status == "builtin"
    local = availability(str(tiny_model_dir["wav2vec2"]))
    assert local.status == "local" and local.ready
    cache_model("wav2vec2", "tiny-org/tiny-wav2vec2", commit="c" * 40)
    cached = availability("tiny-org/tiny-wav2vec2")
    assert cached.status == "cached" and cached.ready and "cccccccccc" in cached.detail
    offline = availability("nobody/not-a-model")
    assert offline.status == "offline" and not offline.ready
    assert "HF_HUB_OFFLINE" in offline.detail
    assert availability("openai/whisper-tiny").status == "offline"  # catalogue entry, not cached


def test_availability_needs_weights_not_just_a_config(cache_model, hf_cache: Path) -> None:
    snapshot = cache_model("dac", "tiny-org/half-downloaded")
    (snapshot / "model.safetensors").unlink()
    assert availability("tiny-org/half-downloaded").status == "offline"


def test_availability_without_hub_check_does_not_touch_the_network(monkeypatch: pytest.MonkeyPatch,
                                                                   hf_cache: Path) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # would fail if it were contacted

    def no_network() -> bool:
        raise AssertionError("check_hub=False must not probe the hub")

    monkeypatch.setattr(hub, "hub_reachable", no_network)
    assert availability("nobody/not-a-model", check_hub=False).status == "download"


def test_availability_never_hangs_on_a_silent_hub(monkeypatch: pytest.MonkeyPatch, hf_cache: Path) -> None:
    # A local socket that accepts connections but never answers: the probe must give up.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.setattr(hub, "_reach_memo", None)
        start = time.monotonic()
        result = availability("nobody/not-a-model")
        elapsed = time.monotonic() - start
        assert result.status == "offline"
        assert elapsed < 3.5
        start = time.monotonic()
        assert availability("nobody/other-model").status == "offline"  # memoised: instant
        assert time.monotonic() - start < 0.5
    finally:
        server.close()


def test_availability_of_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such model folder"):
        availability(str(tmp_path / "nope"))


# ---------------------------------------------------------------------- identity


def test_model_identity_of_builtin_and_hub_names(cache_model) -> None:
    assert model_identity(BASELINE_ID) == "baseline:mel:v1"
    assert model_identity("random-init:facebook/wav2vec2-base", seed=3) == "random-init:facebook/wav2vec2-base:seed3:v1"
    assert model_identity("random-init:facebook/wav2vec2-base") == "random-init:facebook/wav2vec2-base:seed0:v1"
    with pytest.raises(ConfigError):
        model_identity("random-init:facebook/wav2vec2-base", seed=-1)
    assert model_identity("openai/whisper-tiny") == "openai/whisper-tiny@main"  # not cached
    cache_model("whisper", "openai/whisper-tiny", commit="1234abcd" * 5)
    assert model_identity("openai/whisper-tiny") == "openai/whisper-tiny@" + "1234abcd" * 5


def test_local_identity_is_stable_and_follows_the_weights(tiny_model_dir: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir["wav2vec2"], folder)
    first = model_identity(str(folder))
    assert first.startswith("local:") and len(first) == len("local:") + 64
    assert model_identity(str(folder)) == first
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert model_identity(str(copy)) == first  # content, not path

    weights = folder / "model.safetensors"
    before = weights.stat()
    save_tiny_model("wav2vec2", folder, seed=99)  # same architecture, different weights
    # Keep the test independent of the file system's timestamp resolution.
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert model_identity(str(folder)) != first


def test_local_identity_does_not_rehash_unchanged_files(tiny_model_dir: dict[str, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir["dac"], folder)
    first = model_identity(str(folder))
    opened: list[Path] = []
    original = Path.open

    def spy(self: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy)
    assert model_identity(str(folder)) == first
    assert not any(p.name == "model.safetensors" for p in opened)
