"""Extraction orchestration: manifest in, embeddings in the store out, nothing twice.

:func:`extract` computes only the clips the store does not have for a model and options,
loading the model only if there is something to compute. :func:`load_layers` reads stored
embeddings back for analysis, aligned with a manifest.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from embedviz.audio import load_audio
from embedviz.errors import AudioLoadError, Cancelled, ExtractionError
from embedviz.pooling import pool_frames
from embedviz.progress import ProgressCallback, ProgressReporter
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore, LayerMatrix, StoreEntry

if TYPE_CHECKING:
    from embedviz.extractors.base import Extractor

logger = logging.getLogger(__name__)

_hash_memo: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def clip_key(path: str | Path) -> str:
    """Content hash of a clip file (memoised by path, size and mtime)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return f"missing:{p}"
    memo_key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        cached = _hash_memo.get(memo_key)
    if cached:
        return cached
    digest = hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
    with _hash_lock:
        _hash_memo[memo_key] = digest
    return digest


@dataclass(frozen=True)
class SkippedClip:
    """A clip that could not be embedded, and why."""

    clip_id: str
    path: str
    reason: str


@dataclass
class ExtractionReport:
    """What one :func:`extract` call did."""

    model: str
    computed: int = 0
    cached: int = 0
    skipped: list[SkippedClip] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False
    forward_passes: int = 0
    entry: str = ""

    @property
    def total(self) -> int:
        return self.computed + self.cached + len(self.skipped)

    def summary(self) -> str:
        text = (
            f"{self.model}: {self.computed} computed, {self.cached} already stored, "
            f"{len(self.skipped)} skipped in {self.seconds:.1f} s"
        )
        if self.computed and self.seconds > 0:
            text += f" ({self.computed / self.seconds:.1f} clips/s)"
        return text + (" (cancelled)" if self.cancelled else "")


@dataclass
class Embeddings:
    """Stored vectors of one layer for a manifest: ``X[i]`` is clip ``clips.iloc[i]``."""

    X: np.ndarray
    clips: pd.DataFrame
    missing: list[str]


def _family(model: str) -> str:
    from embedviz.catalogue import model_spec

    return model_spec(model).family


def _entry_for(settings: ExtractionSettings, store: EmbeddingStore) -> tuple[str, dict, StoreEntry]:
    from embedviz.catalogue import model_identity

    family = _family(settings.model)
    key = model_identity(settings.model, seed=settings.seed)
    options = settings.numeric_options(family)
    return key, options, store.entry(key, options)


def _with_keys(manifest: pd.DataFrame) -> pd.DataFrame:
    m = manifest.reset_index(drop=True).copy()
    m["clip_key"] = [clip_key(p) for p in m["path"]]
    return m


def missing_clips(manifest: pd.DataFrame, settings: ExtractionSettings, store: EmbeddingStore) -> pd.DataFrame:
    """Rows of ``manifest`` that :func:`extract` would compute (none when all are stored)."""
    _, _, entry = _entry_for(settings, store)
    m = _with_keys(manifest)
    stored = entry.stored_keys()
    return m[~m["clip_key"].isin(stored)].drop(columns=["clip_key"]).reset_index(drop=True)


def _batches(todo: pd.DataFrame, batch_size: int) -> list[pd.DataFrame]:
    # Similar lengths together: less padding, and equal-length groups for models that need them.
    ordered = todo.assign(_d=todo["duration"].fillna(0.0)).sort_values(["_d", "clip_id"], kind="stable")
    ordered = ordered.drop(columns=["_d"])
    return [ordered.iloc[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def _rows_for(
    extractor: "Extractor",
    batch: Sequence[tuple[pd.Series, np.ndarray]],
) -> list[dict]:
    """Run one forward pass and pool every layer of every clip into store rows."""
    features = extractor.extract([wave for _, wave in batch])
    rows: list[dict] = []
    for i, (clip, wave) in enumerate(batch):
        for layer in extractor.layer_names:
            frames = features.valid(layer, i)
            pooled = pool_frames(frames, features.frame_rates[layer], wave, extractor.sample_rate)
            grid = pooled.pop("grid")
            rows.append(
                {
                    "clip_key": clip["clip_key"],
                    "clip_id": clip["clip_id"],
                    "path": str(clip["path"]),
                    "word": clip["word"],
                    "speaker": clip["speaker"],
                    "layer": layer,
                    "n_frames": int(frames.shape[0]),
                    **pooled,
                    "grid": grid.reshape(-1),
                    "grid_steps": int(grid.shape[0]),
                }
            )
    return rows


def open_entry(
    store: EmbeddingStore,
    settings: ExtractionSettings,
    extractor: "Extractor",
    *,
    key: str | None = None,
    options: dict | None = None,
) -> StoreEntry:
    """The store entry ``extractor``'s results for ``settings`` go to, ready for writing.

    Shared by the local engine and :mod:`embedviz.ray_engine`, so both write the same
    keys and metadata. ``key``/``options`` default to what ``extractor`` reports.
    """
    return store.open_for_writing(
        key or extractor.info.key,
        options if options is not None else settings.numeric_options(extractor.info.family),
        {
            "model": settings.model,
            "family": extractor.info.family,
            "layers": list(extractor.layer_names),
            "sample_rate": extractor.sample_rate,
            "n_params": extractor.info.n_params,
        },
    )


def embed_batch(
    extractor: "Extractor", batch: pd.DataFrame, settings: ExtractionSettings, report: ExtractionReport
) -> list[dict]:
    """Decode, forward and pool one batch of manifest rows (with ``clip_key``) into store rows.

    Unreadable clips and clips the model fails on are added to ``report.skipped`` with
    their reason; ``report.computed`` and ``report.forward_passes`` count the rest. The
    one row-building path of every engine (local and Ray).
    """
    loaded: list[tuple[pd.Series, np.ndarray]] = []
    for _, clip in batch.iterrows():
        try:
            wave = load_audio(clip["path"], extractor.sample_rate, max_seconds=settings.max_seconds)
            loaded.append((clip, wave))
        except AudioLoadError as exc:
            report.skipped.append(SkippedClip(clip["clip_id"], str(clip["path"]), exc.reason))
    return _run_batch(extractor, loaded, report)


def extract(
    manifest: pd.DataFrame,
    settings: ExtractionSettings,
    *,
    store: EmbeddingStore,
    device: str = "auto",
    batch_size: int = 8,
    progress: ProgressCallback | None = None,
    extractor: "Extractor | None" = None,
) -> ExtractionReport:
    """Embed every clip of ``manifest`` that the store does not have yet.

    Clips that fail (unreadable audio, a forward pass that fails on them alone) are
    skipped with their reason; the rest goes on. Each finished batch is written at once,
    so a cancelled or crashed run keeps its work and the next run resumes. When nothing
    is missing the model is not even loaded.
    """
    t0 = time.perf_counter()
    report = ExtractionReport(model=settings.model)
    key, options, entry = _entry_for(settings, store)
    m = _with_keys(manifest)
    stored = entry.stored_keys()
    todo = m[~m["clip_key"].isin(stored)].drop_duplicates("clip_key")
    report.cached = int(m["clip_key"].isin(stored).sum())
    report.entry = entry.id
    if todo.empty:
        report.seconds = time.perf_counter() - t0
        return report

    owns_extractor = extractor is None
    try:
        reporter = ProgressReporter(progress, total=len(todo), stage="loading model")
        reporter.report(f"loading {settings.model}")
        if extractor is None:
            from embedviz.models import load_extractor

            extractor = load_extractor(
                settings.model, device=device, whisper_mode=settings.whisper_mode, seed=settings.seed,
                progress=progress,
            )
        if extractor.info.key != key:
            # The hub resolved a revision the cache did not know before: key by what was loaded.
            key = extractor.info.key
            entry = store.entry(key, options)
            stored = entry.stored_keys()
            report.cached = int(m["clip_key"].isin(stored).sum())
            todo = todo[~todo["clip_key"].isin(stored)]
        entry = open_entry(store, settings, extractor, key=key, options=options)
        report.entry = entry.id
        reporter = ProgressReporter(progress, total=len(todo), stage="extracting")
        reporter.report()
        for batch_df in _batches(todo, batch_size):
            entry.write_batch(embed_batch(extractor, batch_df, settings, report))
            reporter.advance(len(batch_df), f"{report.computed} computed, {len(report.skipped)} skipped")
    except Cancelled:
        report.cancelled = True
        logger.info("extraction of %s cancelled; finished batches are kept", settings.model)
    finally:
        if owns_extractor and extractor is not None:
            extractor.close()
        report.seconds = time.perf_counter() - t0
    return report


def _run_batch(
    extractor: "Extractor", loaded: list[tuple[pd.Series, np.ndarray]], report: ExtractionReport
) -> list[dict]:
    """Forward one batch; on failure split it, so one bad clip or OOM skips only itself."""
    if not loaded:
        return []
    try:
        rows = _rows_for(extractor, loaded)
        report.forward_passes += 1
        report.computed += len(loaded)
        return rows
    except ExtractionError as exc:
        if len(loaded) == 1:
            clip = loaded[0][0]
            report.skipped.append(SkippedClip(clip["clip_id"], str(clip["path"]), str(exc)))
            return []
        logger.warning("batch of %d failed (%s); retrying in halves", len(loaded), exc)
        half = len(loaded) // 2
        return _run_batch(extractor, loaded[:half], report) + _run_batch(extractor, loaded[half:], report)


def load_layers(
    manifest: pd.DataFrame,
    settings: ExtractionSettings,
    store: EmbeddingStore,
    *,
    layers: Sequence[str],
    pooling: str,
) -> dict[str, Embeddings]:
    """Stored embeddings of ``layers`` for the clips of ``manifest``, rows in manifest order.

    Clips not stored (or skipped at extraction) are left out and listed in ``missing``.
    """
    _, _, entry = _entry_for(settings, store)
    m = _with_keys(manifest)
    stored = entry.read(list(layers), pooling, clip_keys=m["clip_key"])
    result: dict[str, Embeddings] = {}
    for layer in layers:
        lm = stored[layer]
        index = {k: i for i, k in enumerate(lm.clip_keys)}
        present = m["clip_key"].map(lambda k: k in index)
        rows = m[present]
        X = lm.X[[index[k] for k in rows["clip_key"]]] if len(rows) else np.zeros((0, 0), np.float32)
        clips = rows[["clip_id", "path", "word", "speaker"]].reset_index(drop=True)
        result[layer] = Embeddings(X=X, clips=clips, missing=m.loc[~present, "clip_id"].tolist())
    return result


def stored_layers(
    store: EmbeddingStore,
    settings: ExtractionSettings,
    layers: Sequence[str] | None = None,
    pooling: str = "mean",
) -> dict[str, LayerMatrix]:
    """Every clip stored for ``settings`` (no manifest needed), per layer.

    Raises:
        StoreError: nothing is stored for this model and options.
        ConfigError: a layer the model does not have.
    """
    from embedviz.errors import ConfigError, StoreError

    _, _, entry = _entry_for(settings, store)
    if not entry.parts() or not entry.is_current:
        raise StoreError(
            f"nothing stored for {settings.model} in {store.root}; run "
            f"'python -m embedviz extract --model {settings.model}' first"
        )
    available = list(entry.meta.get("layers", []))
    layers = list(layers) if layers else available
    unknown = [layer for layer in layers if layer not in available]
    if unknown:
        raise ConfigError(f"{settings.model} has no layer {', '.join(unknown)}; it has {', '.join(available)}")
    return entry.read(layers, pooling)


def stored_layer(store: EmbeddingStore, settings: ExtractionSettings, layer: str, pooling: str = "mean") -> LayerMatrix:
    """One layer of :func:`stored_layers`."""
    return stored_layers(store, settings, [layer], pooling)[layer]
