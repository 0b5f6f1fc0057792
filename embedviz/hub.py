"""The Hugging Face hub: the cache folder, what is cached, whether the hub answers, downloads.

Shared by :mod:`embedviz.catalogue` (availability, names in the cache) and
:mod:`embedviz.models` (loading). ``import embedviz.hub`` imports neither torch nor
huggingface_hub; both are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from embedviz.errors import ModelLoadError
from embedviz.progress import ProgressCallback, ProgressReporter

logger = logging.getLogger(__name__)

#: Weight files transformers can load, in order of preference.
WEIGHT_FILES: tuple[str, ...] = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

#: What a model needs from its hub repository besides weights (never tokenizers, TF or Flax files).
HUB_METADATA: tuple[str, ...] = ("config.json", "preprocessor_config.json", "generation_config.json")


def _is_true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set (read at call time)."""
    return _is_true(os.environ.get("HF_HUB_OFFLINE")) or _is_true(os.environ.get("TRANSFORMERS_OFFLINE"))


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, honouring HF_HUB_CACHE / HF_HOME (read at call time)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expanduser(os.environ[var]))
    if os.environ.get("HF_HOME"):
        return Path(os.path.expanduser(os.environ["HF_HOME"])) / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hub"


def repo_cache_folder(repo_id: str) -> Path:
    """The cache folder of ``repo_id`` (``models--org--name``), whether or not it exists."""
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def _cached_file(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hub_cache_dir()), revision=revision)
    except (ValueError, OSError) as error:  # malformed id or unreadable cache
        logger.debug("cache lookup %s/%s failed: %s", repo_id, filename, error)
        return None
    return Path(found) if isinstance(found, str) else None


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The HF-cache snapshot folder of ``repo_id`` if it holds config.json and complete weights."""
    config = _cached_file(repo_id, "config.json", revision)
    if config is None:
        return None
    snapshot = config.parent
    for weights in WEIGHT_FILES:
        found = _cached_file(repo_id, weights, revision)
        if found is None:
            continue
        if not weights.endswith(".index.json"):
            return snapshot
        try:
            shards = set(json.loads(found.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if all(_cached_file(repo_id, shard, revision) is not None for shard in shards):
            return snapshot
    return None


def cached_commit(repo_id: str, revision: str | None = None) -> str | None:
    """Commit hash of the cached snapshot of ``repo_id`` (None if not fully cached)."""
    snapshot = cached_snapshot(repo_id, revision)
    return snapshot.name if snapshot is not None else None


# ---------------------------------------------------------------------- reachability

_REACH_TTL_S = 60.0
_REACH_TIMEOUT_S = 2.0
_reach_lock = threading.Lock()
_reach_memo: tuple[float, str, bool] | None = None  # (checked at, endpoint, reachable)


def _probe(url: str, result: list[bool]) -> None:
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "embedviz"})
    try:
        with urllib.request.urlopen(request, timeout=_REACH_TIMEOUT_S):
            result.append(True)
    except urllib.error.HTTPError:
        result.append(True)  # the server answered, even if with an error status
    except (urllib.error.URLError, OSError, ValueError):
        result.append(False)


def hub_reachable() -> bool:
    """Whether the Hugging Face hub answers within ~2 s (memoised for 60 s; False when offline mode is set).

    The probe runs on a daemon thread and is abandoned after the timeout, so a slow DNS
    lookup cannot hang the caller.
    """
    global _reach_memo
    if hub_offline():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    with _reach_lock:
        now = time.monotonic()
        if _reach_memo is not None and _reach_memo[1] == endpoint and now - _reach_memo[0] < _REACH_TTL_S:
            return _reach_memo[2]
        result: list[bool] = []
        thread = threading.Thread(target=_probe, args=(endpoint + "/api/whoami-v2", result), daemon=True)
        thread.start()
        thread.join(_REACH_TIMEOUT_S + 0.5)
        reachable = bool(result and result[0])
        _reach_memo = (time.monotonic(), endpoint, reachable)
        return reachable


# ---------------------------------------------------------------------- downloads


def weight_files(repo_files: list[str]) -> list[str]:
    """The weight files from_pretrained would read: safetensors first, else PyTorch pickles.

    Prefers a single ``model.safetensors``, then a sharded safetensors index; falls back to
    ``pytorch_model.bin`` (or its shards) only when the repository has no safetensors.
    """
    names = set(repo_files)
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if single in names:
            return [single]
        if index in names:
            prefix = single.rsplit(".", 1)[0] + "-"
            return [index] + sorted(f for f in names if f.startswith(prefix) and f.endswith(single.rsplit(".", 1)[1]))
    return []


class _DownloadProgress:
    """A tqdm stand-in for huggingface_hub that turns byte counts into ProgressEvents."""

    def __init__(self, reporter: ProgressReporter, *args: Any, **kwargs: Any) -> None:
        self.reporter = reporter
        self.total = int(kwargs.get("total") or 0)
        self.n = int(kwargs.get("initial") or 0)
        self.desc = str(kwargs.get("desc") or "")
        self.bytes = kwargs.get("unit") == "B"

    def update(self, n: float = 1) -> None:
        self.n += int(n or 0)
        if self.bytes and self.total:
            self.reporter.total = self.total
            self.reporter.done = self.n
            self.reporter.report(f"{self.n / 1e6:.0f} of {self.total / 1e6:.0f} MB")

    def __getattr__(self, name: str) -> Any:  # set_description, refresh, close, ...: nothing to do
        return lambda *args, **kwargs: None

    def __enter__(self) -> "_DownloadProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __iter__(self):  # hf_thread_map may iterate a bar over its inputs
        return iter(())


def download(name: str, progress: ProgressCallback | None = None) -> None:
    """Fetch only the files model ``name`` needs into the HF cache, reporting bytes as they come.

    Raises:
        ModelLoadError: the repository has no weights.
        Cancelled: ``progress`` asked to stop.
    """
    from huggingface_hub import list_repo_files, snapshot_download

    files = list_repo_files(name)
    weights = weight_files(files)
    if not weights:
        raise ModelLoadError(f"{name}: the repository has no safetensors or PyTorch weights")
    if not any(w.endswith(".safetensors") for w in weights):
        logger.warning("%s has no safetensors weights; downloading PyTorch pickle files", name)
    reporter = ProgressReporter(progress, total=0, stage="downloading")

    def make_bar(*args: Any, **kwargs: Any) -> _DownloadProgress:
        return _DownloadProgress(reporter, *args, **kwargs)

    snapshot_download(name, cache_dir=str(hub_cache_dir()), allow_patterns=[*HUB_METADATA, *weights],
                      tqdm_class=make_bar if progress else None)  # type: ignore[arg-type]


def not_available(name: str, why: str) -> ModelLoadError:
    """The error for a hub model that is not cached and cannot be downloaded now."""
    return ModelLoadError(
        f"{name} is not in the Hugging Face cache ({hub_cache_dir()}) and needs a download, but "
        f"{why}. To make it available: download it on a machine with network access (e.g. "
        f"`hf download {name}`) and copy the cache (or set HF_HUB_CACHE to it), or save the model "
        "as a local folder and load that folder instead."
    )
