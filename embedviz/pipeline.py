"""Extraction orchestration: manifest in, embeddings in the store out, nothing twice.

:func:`extract` computes only the clips the store does not have for a model and options,
loading the model only if there is something to compute. :func:`embedviz.store.read_layers`
reads stored embeddings back for analysis.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from embedviz import key_cache  # clip keys remembered across runs
from embedviz.audio import NOTICE_KINDS, decode_clip
from embedviz.hashing import has_content
from embedviz.errors import AudioLoadError, Cancelled, ConfigError, ExtractionError
from embedviz.pooling import pool_batch
from embedviz.progress import ProgressCallback, ProgressReporter
from embedviz.settings import DEFAULT_MAX_SECONDS, ExtractionSettings, time_grid_requested
from embedviz.store import EmbeddingStore, StoreEntry, keys_in

if TYPE_CHECKING:
    from embedviz.extractors.base import Extractor, FrameFeatures

logger = logging.getLogger(__name__)

def clip_key(path: str | Path) -> str:
    """Content key of a clip file (:func:`embedviz.hashing.content_key`: SHA-256, memoised)."""
    from embedviz.hashing import content_key

    return content_key(path)


@dataclass(frozen=True)
class SkippedClip:
    """A clip that could not be embedded, and why."""

    clip_id: str
    path: str
    reason: str


@dataclass(frozen=True)
class ClipNotice:
    """A clip that was embedded although something about it is odd (see :mod:`embedviz.audio`)."""

    clip_id: str
    path: str
    kind: str  # a key of embedviz.audio.NOTICE_KINDS
    detail: str

    def __post_init__(self) -> None:
        if self.kind not in NOTICE_KINDS:
            raise ValueError(f"unknown notice kind {self.kind!r}")


@dataclass
class ExtractionReport:
    """What one :func:`extract` call did.

    ``skipped`` names every clip that could not be used, with its reason; ``notices``
    every clip embedded under the odd-audio policy (downmixed, resampled, cut, clipped,
    silent), for the clips computed in this call (a stored clip is not decoded again).
    """

    model: str
    computed: int = 0
    cached: int = 0
    skipped: list[SkippedClip] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False
    forward_passes: int = 0
    entry: str = ""
    notices: list[ClipNotice] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.computed + self.cached + len(self.skipped)

    def notices_by_kind(self) -> dict[str, list[ClipNotice]]:
        """The notices grouped by kind, in :data:`~embedviz.audio.NOTICE_KINDS` order."""
        grouped: dict[str, list[ClipNotice]] = {}
        for kind in NOTICE_KINDS:
            found = [n for n in self.notices if n.kind == kind]
            if found:
                grouped[kind] = found
        return grouped

    def summary(self) -> str:
        text = (
            f"{self.model}: {self.computed} computed, {self.cached} already stored, "
            f"{len(self.skipped)} skipped in {self.seconds:.1f} s"
        )
        if self.computed and self.seconds > 0:
            text += f" ({self.computed / self.seconds:.1f} clips/s)"
        return text + (" (cancelled)" if self.cancelled else "")

    def details(self, examples: int = 3) -> list[str]:
        """Lines naming every skipped clip with its reason, then each notice kind with a count
        and up to ``examples`` example files (the CLI prints them under :meth:`summary`)."""
        lines = [f"  skipped {s.path}: {s.reason}" for s in self.skipped]
        for kind, found in self.notices_by_kind().items():
            lines.append(f"  notice {kind}: {len(found)} clip(s), {NOTICE_KINDS[kind]}")
            lines += [f"    e.g. {n.path}: {n.detail}" for n in found[:examples]]
            if len(found) > examples:
                lines.append(f"    ... and {len(found) - examples} more")
        return lines


def _family(model: str) -> str:
    from embedviz.catalogue import model_spec

    return model_spec(model).family


def _with_keys(manifest: pd.DataFrame) -> pd.DataFrame:
    m = manifest.reset_index(drop=True).copy()
    m["clip_key"] = key_cache.content_keys(m["path"])
    return m


def missing_clips(manifest: pd.DataFrame, settings: ExtractionSettings, store: EmbeddingStore) -> pd.DataFrame:
    """Rows of ``manifest`` that :func:`extract` would compute (none when all are stored or unusable)."""
    entry = store.entry_for(settings)
    m = _with_keys(manifest)
    todo = m[~keys_in(m["clip_key"], entry.stored_keys())]
    todo = todo[~_unusable_mask(todo, store.unusable_clips())]
    return todo.drop(columns=["clip_key"]).reset_index(drop=True)


def unusable_clips(manifest: pd.DataFrame, store: EmbeddingStore) -> list[SkippedClip]:
    """Clips of ``manifest`` known to be unusable without loading a model: rejected by
    decoding in an earlier run (by content), or missing or unreadable now."""
    m = _with_keys(manifest)
    return _known_unusable(m, store.unusable_clips())[1]


#: Rate a file is decoded at only to learn why it cannot be used (the reason is the same at any rate).
DECODE_CHECK_RATE = 16000


def _unreadable(m: pd.DataFrame) -> np.ndarray:
    return np.array([not has_content(k) for k in m["clip_key"]], dtype=bool)


def _unusable_mask(m: pd.DataFrame, known: Mapping[str, str]) -> np.ndarray:
    return m["clip_key"].isin(list(known)).to_numpy(dtype=bool) | _unreadable(m)


def _known_unusable(m: pd.DataFrame, known: Mapping[str, str]) -> tuple[np.ndarray, list[SkippedClip]]:
    """Which rows of ``m`` (with keys) are unusable, and why, without loading a model.

    Remembered rejections are named with their reason; a file that could not be read is
    opened by the decoder, which fails at once and says why (missing, permissions, ...).
    """
    remembered = m["clip_key"].isin(list(known)).to_numpy(dtype=bool)
    unread = _unreadable(m) & ~remembered
    skipped = [SkippedClip(c.clip_id, str(c.path), f"{known[c.clip_key]} (found in an earlier run; the file is "
                           "unchanged)") for c in m[remembered].itertuples()]
    readable_now, failed = _load_batch(m[unread], DECODE_CHECK_RATE, DEFAULT_MAX_SECONDS) if unread.any() else ([], [])
    # A file that became readable since it was keyed is computed like any other.
    still_ok = m["clip_id"].isin({clip["clip_id"] for clip, _ in readable_now}).to_numpy(dtype=bool)
    return remembered | (unread & ~still_ok), skipped + failed


def _preferred_batch_sizes() -> dict[str, int]:
    from embedviz.extractors.registry import families

    return {name: spec.preferred_batch_size for name, spec in families().items()}


#: Clips per forward pass for each family when the caller gives none (``--batch-size``
#: overrides): each family declares its measured size in its ``FamilySpec``.
PREFERRED_BATCH_SIZE: dict[str, int] = _preferred_batch_sizes()
DEFAULT_BATCH_SIZE = 8
#: Families whose CPU inference measurably gains from glibc keeping freed memory instead of
#: returning large blocks to the kernel (mmap/munmap page faults were 20-46 % of the time;
#: DAC 16 kHz at batch 16: 3.1 -> 5.5 clips/s, issue 8).
MALLOC_TUNED_FAMILIES = frozenset({"dac"})
#: Batches decoded ahead of the model, and finished batches queued for the writer thread.
PREFETCH_BATCHES = 2
WRITE_QUEUE = 2

_malloc_tuned = False


def batch_size_for(family: str) -> int:
    """The measured preferred batch size of a model family (see :data:`PREFERRED_BATCH_SIZE`).

    A family registered after this module was imported is asked directly.
    """
    if family in PREFERRED_BATCH_SIZE:
        return PREFERRED_BATCH_SIZE[family]
    from embedviz.extractors.registry import families

    spec = families().get(family)
    return spec.preferred_batch_size if spec is not None else DEFAULT_BATCH_SIZE


def tune_glibc_malloc() -> bool:
    """Keep freed memory in the process (no mmap for large blocks, no trimming), on glibc only.

    Same as ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<huge>`` but set from inside the
    process with ``mallopt``. Returns True if applied (now or before). Process-wide and
    irreversible, so it is applied only for the families in :data:`MALLOC_TUNED_FAMILIES`.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return True
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # from <malloc.h>
        ok = libc.mallopt(m_mmap_max, 0) == 1 and libc.mallopt(m_trim_threshold, 2**30) == 1
    except (OSError, AttributeError):
        return False
    _malloc_tuned = bool(ok)
    if ok:
        logger.info("glibc malloc tuned: M_MMAP_MAX=0, M_TRIM_THRESHOLD=1 GiB")
    return _malloc_tuned


def matmul_gflops(n: int = 1024, repeats: int = 5, device: str = "cpu") -> float:
    """This machine's measured fp32 matmul throughput in GFLOP/s (best of ``repeats``)."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def autocast_cosine_distance(
    extractor: "Extractor", waveforms: Sequence[np.ndarray], dtype: str = "bfloat16"
) -> float:
    """Largest cosine distance between fp32 and ``dtype``-autocast mean-pooled vectors.

    Every layer of every clip is compared. Autocast (fp16/bf16) may be used on a device
    only where this stays within :data:`AUTOCAST_MAX_COSINE_DISTANCE`.
    """
    import torch

    kinds = {"bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in kinds:
        raise ConfigError(f"autocast dtype must be bfloat16 or float16, got {dtype!r}")
    ref = extractor.extract(list(waveforms))
    with torch.autocast(device_type=_device_type(extractor), dtype=kinds[dtype]):
        low = extractor.extract(list(waveforms))
    worst = 0.0
    for layer in extractor.layer_names:
        for i in range(len(waveforms)):
            a = ref.valid(layer, i).astype(np.float64).mean(axis=0)
            b = low.valid(layer, i).astype(np.float64).mean(axis=0)
            denom = np.linalg.norm(a) * np.linalg.norm(b)
            cos = float(a @ b / denom) if denom > 0 else 1.0
            worst = max(worst, 1.0 - cos)
    return worst


def _device_type(extractor: "Extractor") -> str:
    """torch.autocast's device type for where ``extractor`` runs."""
    return "cuda" if str(extractor.device).startswith("cuda") else "cpu"


#: The most cosine distance from fp32 that autocast may cost a pooled vector.
AUTOCAST_MAX_COSINE_DISTANCE = 1e-2


def autocast_allowed(extractor: "Extractor", waveforms: Sequence[np.ndarray], dtype: str = "bfloat16") -> bool:
    """True if ``dtype`` autocast keeps every pooled vector within the allowed cosine distance."""
    return autocast_cosine_distance(extractor, waveforms, dtype) <= AUTOCAST_MAX_COSINE_DISTANCE


#: Per loaded extractor: the autocast dtype its forward passes use (None: fp32), decided once.
_AUTOCAST: "weakref.WeakKeyDictionary[Extractor, str | None]" = weakref.WeakKeyDictionary()


def autocast_dtype(extractor: "Extractor", waveforms: Sequence[np.ndarray]) -> str | None:
    """The reduced precision ``extractor``'s forward passes run in, or None for fp32.

    Only on CUDA (on CPU bf16 is slower here and fp16 unsupported): bfloat16 where the GPU
    has it, else float16, and only if on ``waveforms`` (the first batch, at most 4 clips)
    every layer's mean-pooled vector stays within :data:`AUTOCAST_MAX_COSINE_DISTANCE` of
    fp32. ``$EMBEDVIZ_AUTOCAST=off`` keeps fp32; ``bfloat16`` / ``float16`` asks for that
    dtype on any device (still checked). Decided once per loaded extractor and logged.
    """
    if extractor in _AUTOCAST:
        return _AUTOCAST[extractor]
    wish = os.environ.get("EMBEDVIZ_AUTOCAST", "auto").strip().lower()
    if wish not in ("auto", "off", "bfloat16", "float16"):
        raise ConfigError(f"$EMBEDVIZ_AUTOCAST must be auto, off, bfloat16 or float16, got {wish!r}")
    dtype: str | None = None
    if wish in ("bfloat16", "float16"):
        dtype = wish
    elif wish == "auto" and _device_type(extractor) == "cuda":
        import torch

        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if dtype is not None and waveforms:
        distance = autocast_cosine_distance(extractor, list(waveforms)[:4], dtype)
        if distance > AUTOCAST_MAX_COSINE_DISTANCE:
            logger.info("%s autocast moves pooled vectors by cosine distance %.3g (> %g): fp32 kept",
                        dtype, distance, AUTOCAST_MAX_COSINE_DISTANCE)
            dtype = None
        else:
            logger.info("%s autocast: pooled vectors within cosine distance %.3g of fp32", dtype, distance)
    _AUTOCAST[extractor] = dtype
    return dtype


def _precision(extractor: "Extractor", waveforms: Sequence[np.ndarray]) -> contextlib.AbstractContextManager:
    """The context a forward pass runs in: torch autocast where :func:`autocast_dtype` allows it."""
    dtype = autocast_dtype(extractor, waveforms)
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=_device_type(extractor), dtype=getattr(torch, dtype))


def _batches(todo: pd.DataFrame, batch_size: int) -> list[pd.DataFrame]:
    # Similar lengths together: less padding, and equal-length groups for models that need them.
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    ordered = todo.assign(_d=todo["duration"].fillna(0.0)).sort_values(["_d", "clip_id"], kind="stable")
    ordered = ordered.drop(columns=["_d"])
    return [ordered.iloc[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def _pooled_rows(
    extractor: "Extractor",
    features: "FrameFeatures",
    batch: Sequence[tuple[pd.Series, np.ndarray]],
) -> list[dict]:
    """Pool every layer of every clip of one forward pass into store rows (the one row builder).

    Each layer is pooled for the whole batch at once (:func:`embedviz.pooling.pool_batch`):
    one numpy call per pooling and layer instead of one per clip.
    """
    waves = [wave for _, wave in batch]
    clips = [
        {"clip_key": c["clip_key"], "clip_id": c["clip_id"], "path": str(c["path"]), "word": c["word"],
         "speaker": c["speaker"]}
        for c, _ in batch
    ]
    per_layer = {}
    for layer in extractor.layer_names:
        lengths = np.asarray(features.lengths[layer][: len(batch)])
        pooled = pool_batch(features.layers[layer][: len(batch)], lengths, features.frame_rates[layer], waves,
                            extractor.sample_rate)
        per_layer[layer] = (lengths, pooled)
    rows: list[dict] = []
    for i, clip in enumerate(clips):  # clip-major, as before: a clip's layers are neighbours in the part
        for layer, (lengths, pooled) in per_layer.items():
            vectors = dict(pooled[i])
            grid = vectors.pop("grid")
            rows.append(
                {
                    **clip,
                    "layer": layer,
                    "n_frames": int(lengths[i]),
                    **vectors,
                    "grid": grid.reshape(-1),
                    "grid_steps": int(grid.shape[0]),
                }
            )
    return rows


def _rows_for(
    extractor: "Extractor",
    batch: Sequence[tuple[pd.Series, np.ndarray]],
) -> list[dict]:
    """Run one forward pass and pool every layer of every clip into store rows."""
    return _pooled_rows(extractor, extractor.extract([wave for _, wave in batch]), batch)


def _load_batch(
    batch_df: pd.DataFrame, sample_rate: int, max_seconds: float
) -> tuple[list[tuple[pd.Series, np.ndarray]], list[SkippedClip]]:
    """Decode and resample one batch (runs on a prefetch worker; soundfile/soxr release the GIL)."""
    loaded: list[tuple[pd.Series, np.ndarray]] = []
    skipped: list[SkippedClip] = []
    for _, clip in batch_df.iterrows():
        try:
            decoded = decode_clip(clip["path"], sample_rate, max_seconds=max_seconds)
        except AudioLoadError as exc:
            skipped.append(SkippedClip(clip["clip_id"], str(clip["path"]), exc.reason))
            continue
        # Carried on the row, so the notices reach the report only if the clip is computed.
        clip.attrs["notices"] = decoded.notices
        loaded.append((clip, decoded.samples))
    return loaded, skipped


class _Writer:
    """Pools and writes finished forward passes on a background thread (bounded queue).

    The forward pass of the next batch overlaps the pooling and Parquet write of the last
    one. Each batch is still one atomic part file; an error in the writer is raised again
    in the caller at the next :meth:`put` or at :meth:`close`.
    """

    def __init__(self, entry: StoreEntry, extractor: "Extractor", maxsize: int = WRITE_QUEUE) -> None:
        import queue

        self._entry = entry
        self._extractor = extractor
        self._queue: "queue.Queue[tuple | None]" = queue.Queue(maxsize=maxsize)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="embedviz-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain: the caller sees the error
            features, batch = item
            try:
                self._entry.write_batch(_pooled_rows(self._extractor, features, batch))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, features: "FrameFeatures", batch: Sequence[tuple[pd.Series, np.ndarray]]) -> None:
        self._raise()
        self._queue.put((features, batch))

    def close(self) -> None:
        """Wait until every queued batch is written; raise the writer's error if any."""
        self._queue.put(None)
        self._thread.join()
        self._raise()
def open_entry(
    store: EmbeddingStore,
    settings: ExtractionSettings,
    extractor: "Extractor",
    *,
    key: str | None = None,
    options: dict | None = None,
    time_grid: bool | None = None,
) -> StoreEntry:
    """The store entry ``extractor``'s results for ``settings`` go to, ready for writing.

    Shared by the local engine and :mod:`embedviz.ray_engine`, so both write the same
    keys and metadata. ``key``/``options`` default to what ``extractor`` reports.
    ``time_grid``: whether a new entry keeps the time grid (``extract --time-grid``; None:
    :func:`embedviz.settings.time_grid_requested` asks ``$EMBEDVIZ_TIME_GRID``). An existing
    entry keeps what it was created with.
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
            "time_grid": time_grid_requested(time_grid),
        },
    )


def embed_batch(
    extractor: "Extractor",
    batch: pd.DataFrame,
    settings: ExtractionSettings,
    report: ExtractionReport,
    rejected: dict[str, str] | None = None,
) -> list[dict]:
    """Decode, forward and pool one batch of manifest rows (with ``clip_key``) into store rows.

    Unreadable clips and clips the model fails on are added to ``report.skipped`` with
    their reason, and the computed clips' decode notices to ``report.notices``;
    ``report.computed`` and ``report.forward_passes`` count the rest. ``rejected``, when
    given, receives ``clip_id -> reason`` of the clips decoding rejected (those depend on
    the file alone, so the store remembers them; a failed forward pass may not). The one
    row-building path of every engine (local and Ray).
    """
    loaded, skipped = _load_batch(batch, extractor.sample_rate, settings.max_seconds)
    report.skipped.extend(skipped)
    if rejected is not None:
        rejected.update((s.clip_id, s.reason) for s in skipped)
    rows: list[dict] = []

    class _Collect:  # the same splitting forward as the local engine, collected synchronously
        def put(self, features: "FrameFeatures", done: Sequence[tuple[pd.Series, np.ndarray]]) -> None:
            rows.extend(_pooled_rows(extractor, features, done))

    _run_batch(extractor, loaded, report, _Collect())  # type: ignore[arg-type]
    return rows


def extract(
    manifest: pd.DataFrame,
    settings: ExtractionSettings,
    *,
    store: EmbeddingStore,
    device: str = "auto",
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    extractor: "Extractor | None" = None,
    time_grid: bool | None = None,
) -> ExtractionReport:
    """Embed every clip of ``manifest`` that the store does not have yet.

    Clips that fail (unreadable audio, a forward pass that fails on them alone) are
    skipped with their reason; the rest goes on. Each finished batch is written at once,
    so a cancelled or crashed run keeps its work and the next run resumes. When nothing
    is missing the model is not even loaded.

    The model is kept busy: audio of the next batches is decoded by background workers
    while a batch runs, and pooling plus the Parquet write of a finished batch run on a
    writer thread. ``batch_size`` defaults to the family's measured
    :data:`PREFERRED_BATCH_SIZE`. ``time_grid``: see :func:`open_entry`.
    """
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    report = ExtractionReport(model=settings.model)
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    entry = store.entry_for(settings)
    key, options = entry.model_key, entry.options
    m = _with_keys(manifest)
    stored = entry.stored_keys()
    is_stored = keys_in(m["clip_key"], stored)
    todo = m[~is_stored].drop_duplicates("clip_key")
    report.cached = int(is_stored.sum())
    report.entry = entry.id
    # Clips known to be unusable are reported without loading a model.
    bad, known_skips = _known_unusable(todo, store.unusable_clips())
    report.skipped.extend(known_skips)
    todo = todo[~bad]
    key_of = dict(zip(todo["clip_id"], todo["clip_key"]))
    rejected: dict[str, str] = {}  # clip key -> reason, for clips decoding rejects in this run
    if todo.empty:
        report.seconds = time.perf_counter() - t0
        return report

    owns_extractor = extractor is None
    writer: _Writer | None = None
    pool: ThreadPoolExecutor | None = None
    try:
        reporter = ProgressReporter(progress, total=len(todo), stage="loading model")
        reporter.report(f"loading {settings.model}")
        family = _family(settings.model)
        if family in MALLOC_TUNED_FAMILIES and device in ("auto", "cpu"):
            tune_glibc_malloc()
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
            report.cached = int(keys_in(m["clip_key"], stored).sum())
            todo = todo[~keys_in(todo["clip_key"], stored)]
        entry = open_entry(store, settings, extractor, key=key, options=options, time_grid=time_grid)
        report.entry = entry.id
        reporter = ProgressReporter(progress, total=len(todo), stage="extracting")
        reporter.report()
        size = batch_size if batch_size is not None else (
            extractor.batch_size_hint or batch_size_for(extractor.info.family))
        batches = _batches(todo, size)
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="embedviz-audio")
        rate, max_s = extractor.sample_rate, settings.max_seconds
        pending = [pool.submit(_load_batch, b, rate, max_s) for b in batches[:PREFETCH_BATCHES]]
        writer = _Writer(entry, extractor)
        for i, batch_df in enumerate(batches):
            loaded, skipped = pending.pop(0).result()
            if i + PREFETCH_BATCHES < len(batches):  # bounded: at most PREFETCH_BATCHES decoded ahead
                pending.append(pool.submit(_load_batch, batches[i + PREFETCH_BATCHES], rate, max_s))
            report.skipped.extend(skipped)
            rejected.update((key_of[c.clip_id], c.reason) for c in skipped if c.clip_id in key_of)
            _run_batch(extractor, loaded, report, writer)
            reporter.advance(len(batch_df), f"{report.computed} computed, {len(report.skipped)} skipped")
    except Cancelled:
        report.cancelled = True
        logger.info("extraction of %s cancelled; finished batches are kept", settings.model)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        # Decoding failures depend on the file alone; forward-pass failures (memory) may not.
        store.remember_unusable({k: r for k, r in rejected.items() if has_content(k)})
        try:
            if writer is not None:
                writer.close()  # every forward pass already run is written
        finally:
            if owns_extractor and extractor is not None:
                extractor.close()
            report.seconds = time.perf_counter() - t0
    return report


def _run_batch(
    extractor: "Extractor",
    loaded: list[tuple[pd.Series, np.ndarray]],
    report: ExtractionReport,
    writer: _Writer,
) -> None:
    """Forward one batch and queue it for writing; on failure split it, so one bad clip or OOM skips only itself."""
    if not loaded:
        return
    waves = [wave for _, wave in loaded]
    try:
        with _precision(extractor, waves):
            features = extractor.extract(waves)
    except ExtractionError as exc:
        if len(loaded) == 1:
            clip = loaded[0][0]
            report.skipped.append(SkippedClip(clip["clip_id"], str(clip["path"]), str(exc)))
            return
        logger.warning("batch of %d failed (%s); retrying in halves", len(loaded), exc)
        half = len(loaded) // 2
        _run_batch(extractor, loaded[:half], report, writer)
        _run_batch(extractor, loaded[half:], report, writer)
        return
    report.forward_passes += 1
    report.computed += len(loaded)
    report.notices.extend(
        ClipNotice(clip["clip_id"], str(clip["path"]), n.kind, n.detail)
        for clip, _ in loaded
        for n in clip.attrs.get("notices", ())
    )
    writer.put(features, loaded)
