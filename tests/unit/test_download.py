"""Downloading a hub model: only the files it needs, with byte progress, then the normal load.

The network is replaced by a stand-in for ``huggingface_hub.snapshot_download`` that lays
out a real tiny checkpoint in the HF cache and reports its bytes through the progress bar
class it is given, as the real function does; loading and the forward pass are real.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedviz import catalogue, hub
from embedviz.errors import Cancelled, ModelLoadError
from embedviz.hub import weight_files
from embedviz.models import load_extractor
from tests.tiny_models import save_into_hf_cache

REPO = "facebook/wav2vec2-base"
COMMIT = "a" * 40


@pytest.mark.parametrize(
    "files,expected",
    [
        (["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5"], ["model.safetensors"]),
        (["model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
          "pytorch_model.bin"],
         ["model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]),
        (["config.json", "pytorch_model.bin", "flax_model.msgpack"], ["pytorch_model.bin"]),
        (["config.json", "tf_model.h5"], []),
    ],
)
def test_weight_files_prefer_safetensors(files: list[str], expected: list[str]) -> None:
    assert weight_files(files) == expected


@pytest.fixture
def online(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr("huggingface_hub.list_repo_files",
                        lambda repo, **k: ["config.json", "preprocessor_config.json", "model.safetensors",
                                           "pytorch_model.bin", "tf_model.h5"])
    return hf_cache


def fake_snapshot_download(calls: list[dict], chunks: int = 4):
    def download(repo_id: str, *, cache_dir: str, allow_patterns: list[str], tqdm_class=None, **kwargs) -> str:
        calls.append({"repo_id": repo_id, "allow_patterns": allow_patterns})
        snapshot = save_into_hf_cache("wav2vec2", Path(cache_dir), repo_id, COMMIT)
        size = (snapshot / "model.safetensors").stat().st_size
        if tqdm_class is not None:
            bar = tqdm_class(desc="Downloading bytes", total=size, initial=0, unit="B")
            for _ in range(chunks):
                bar.update(size / chunks)
            bar.close()
        return str(snapshot)

    return download


def test_download_fetches_only_needed_files_reports_bytes_and_loads(online, monkeypatch) -> None:
    calls: list[dict] = []
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download(calls))
    events = []
    extractor = load_extractor(REPO, progress=lambda e: events.append(e))
    assert calls[0]["allow_patterns"] == ["config.json", "preprocessor_config.json", "generation_config.json",
                                          "model.safetensors"]
    downloads = [e for e in events if e.stage == "downloading"]
    assert [e.done for e in downloads] == sorted(e.done for e in downloads) and downloads[-1].fraction == 1.0
    assert "MB" in downloads[-1].message
    assert extractor.info.key == f"{REPO}@{COMMIT}"
    features = extractor.extract([np.random.default_rng(0).standard_normal(16000).astype(np.float32)])
    assert features.layers["cnn"].shape[0] == 1
    assert catalogue.availability(REPO, check_hub=False).status == "cached"


def test_download_can_be_cancelled(online, monkeypatch) -> None:
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download([]))
    with pytest.raises(Cancelled):
        load_extractor(REPO, progress=lambda e: e.stage == "downloading" and e.done > 0)


def test_failed_download_is_a_clear_model_load_error(online, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise OSError("connection reset by peer")

    monkeypatch.setattr("huggingface_hub.snapshot_download", broken)
    with pytest.raises(ModelLoadError, match="download failed.*connection reset"):
        load_extractor(REPO)
    assert hub.weight_files([]) == []
