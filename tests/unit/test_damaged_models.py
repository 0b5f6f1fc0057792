"""Partial or damaged model folders and HF cache entries: a ModelLoadError that says the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from embedviz.catalogue import model_spec
from embedviz.errors import ModelLoadError
from embedviz.models import load_extractor


@pytest.fixture
def folder(tmp_path: Path, tiny_model_dir: dict[str, Path]) -> Path:
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir["wav2vec2"], target)
    return target


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.unlink()  # a cache snapshot holds a symlink: write a fresh, shorter file
    path.write_bytes(data[: len(data) // 2])


def test_truncated_safetensors_in_a_folder(folder: Path) -> None:
    _truncate(folder / "model.safetensors")
    with pytest.raises(ModelLoadError, match="truncated or damaged safetensors") as info:
        load_extractor(str(folder), device="cpu")
    assert str(folder) in str(info.value) and "again" in str(info.value)


def test_garbage_safetensors_header(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ModelLoadError, match="damaged safetensors"):
        load_extractor(str(folder), device="cpu")


def test_missing_weights_and_missing_shard(folder: Path) -> None:
    weights = folder / "model.safetensors"
    shard = folder / "model-00001-of-00002.safetensors"
    weights.rename(shard)
    index = {"metadata": {}, "weight_map": {"a": shard.name, "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="lacks weight shard.*model-00002-of-00002"):
        load_extractor(str(folder), device="cpu")
    shard.unlink()
    (folder / "model.safetensors.index.json").unlink()
    with pytest.raises(ModelLoadError, match="lacks its weights"):
        load_extractor(str(folder), device="cpu")


def test_garbage_config_json(folder: Path) -> None:
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json.*fix or replace"):
        model_spec(str(folder))
    with pytest.raises(ModelLoadError, match="config.json"):
        load_extractor(str(folder), device="cpu")


def test_garbage_preprocessor_config(folder: Path) -> None:
    (folder / "preprocessor_config.json").write_text("[1, 2")
    with pytest.raises(ModelLoadError, match="preprocessor_config.json.*fix or replace"):
        load_extractor(str(folder), device="cpu")


def test_truncated_weights_in_the_hf_cache(cache_model) -> None:  # type: ignore[no-untyped-def]
    snapshot = cache_model("wav2vec2", "tiny-org/damaged")
    _truncate(Path(snapshot) / "model.safetensors")
    with pytest.raises(ModelLoadError, match="delete .*models--tiny-org--damaged and download") as info:
        load_extractor("tiny-org/damaged", device="cpu")
    assert "hf download tiny-org/damaged" in str(info.value)
