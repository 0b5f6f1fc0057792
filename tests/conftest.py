"""Shared test fixtures: tiny models built once per session, an HF-cache-shaped folder.

The whole test session runs with ``HF_HUB_OFFLINE=1`` and an empty private
``HF_HUB_CACHE``, set before anything imports huggingface_hub, so no test can reach the
network or pick up models from the developer's real cache.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="embedviz-test-hf-cache-")
atexit.register(shutil.rmtree, os.environ["HF_HUB_CACHE"], ignore_errors=True)
# Nothing a test does may land in the developer's own config or cache folders.
_private = tempfile.mkdtemp(prefix="embedviz-test-home-")
atexit.register(shutil.rmtree, _private, ignore_errors=True)
os.environ["EMBEDVIZ_FETCHED_ROOTS_FILE"] = os.path.join(_private, "fetched_roots.json")
os.environ["EMBEDVIZ_MANIFEST_CACHE"] = os.path.join(_private, "manifests")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `tests` has no __init__.py; make `tests.tiny_models` importable
    sys.path.insert(0, str(REPO_ROOT))

from tests.tiny_models import FAMILIES, save_into_hf_cache, save_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """family -> folder of a tiny random model, for every family (built once per session).

    Families: ``wav2vec2`` (group norm), ``hubert``, ``wavlm``, ``whisper``, ``dac``, plus
    ``wav2vec2-layer`` (feat_extract_norm='layer', stable layer norm, attention mask,
    saved as Wav2Vec2ForCTC like the -lv60 checkpoints).
    """
    root = tmp_path_factory.mktemp("tiny-models")
    dirs = {family: save_tiny_model(family, root / family) for family in FAMILIES}
    dirs["wav2vec2-layer"] = save_tiny_model("wav2vec2", root / "wav2vec2-layer", variant="layer")
    return dirs


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF hub cache folder, active (``HF_HUB_CACHE``) for this test, offline.

    Fill it with ``tests.tiny_models.save_into_hf_cache(family, hf_cache, "org/name")`` or the
    ``cache_model`` fixture.
    """
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def cache_model(hf_cache: Path) -> Callable[..., Path]:
    """``cache_model(family, repo_id, commit='0'*40, variant='')`` puts a tiny model into ``hf_cache``."""

    def put(family: str, repo_id: str, commit: str = "0" * 40, variant: str = "") -> Path:
        return save_into_hf_cache(family, hf_cache, repo_id, commit, variant=variant)

    return put


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``serve(data, **options) -> Server``: a local archive server (``tests/archive_server.py``),
    shut down after the test; fetched roots are registered in a temporary file."""
    from tests.archive_server import Server, start_server

    monkeypatch.setenv("EMBEDVIZ_FETCHED_ROOTS_FILE", str(tmp_path / "config" / "fetched_roots.json"))
    servers = []

    def start(data: bytes, **options) -> Server:
        state = Server(data, **options)
        servers.append(start_server(state))
        return state

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
