"""The embedding store: Parquet files keyed by model, numeric options and clip.

Layout::

    <root>/<entry>/meta.json            model, model key, options, layers, format version, time grid
    <root>/<entry>/part-<id>.parquet    one file per extraction batch, merged into larger parts
    <root>/<entry>/damaged/             parts found damaged, set aside (their clips are recomputed)

An *entry* is one (model identity, options that change the numbers) pair; its id is a
stable hash of both. Each row of a part is one (clip, layer) with every stored pooling of
that forward pass (:data:`embedviz.pooling.STORED_VECTORS`: mean, std, max, centre, speech),
each once, as raw float16 bytes (:data:`VECTOR_DTYPE`; a part column whose values do not
fit float16 is kept in float32, recorded in the part's metadata). ``meanstd`` is assembled
from ``mean`` and ``std`` on read, so changing layer or pooling never needs the model
again. The time grid behind ``time:<s>`` (a frame every 0.1 s) is what made format 1
large (231 of 522 kB per wav2vec2-base clip); it is stored only for entries created with
``time_grid`` on (``$EMBEDVIZ_TIME_GRID=1``), and asking an entry without it for
``time:<s>`` raises a :class:`StoreError` that says how to get it. Clips are keyed by a
hash of their content, so a renamed or copied file is still found, and an edited one is
not mistaken for the old.

Writes are atomic (temporary file, then ``os.replace``): a crash loses at most the batch
in flight, and the next run resumes from the finished parts. Entries written by another
format version are detected from ``meta.json`` and rebuilt, never misread; a part whose own
format mark differs is set aside like a damaged one.

Reads grow with what is read. Small batch parts are merged (size-tiered: every
:data:`COMPACT_FANOUT` parts of one size tier become one part, up to
:data:`MAX_PART_CLIPS` clips per part) into parts sorted by (layer, clip key), one layer per
run of row groups, so a read opens a few files, reads one pooling's column (column
projection) of the asked layer's row groups only (row-group statistics), and skips row
groups that hold no asked clip. A merged part names the parts it replaces in its metadata:
once it exists they are ignored (and deleted by the next writer), so a crash at any point
leaves no duplicated rows, and a reader that finds a part gone re-lists and reads again.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from embedviz import key_cache
from embedviz.errors import ConfigError, StoreError
from embedviz.hashing import stable_hash
from embedviz.pooling import STORED_VECTORS, Pooling, parse_pooling
from embedviz.settings import TIME_GRID_ENV, TIME_GRID_FLAG, TIME_GRID_HOW, ExtractionSettings, time_grid_requested

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
#: dtype of stored pooled vectors and of the time grid. float16 moved k-NN and probe
#: accuracy by less than 0.005 against float32 (tests/unit/test_store_precision.py).
VECTOR_DTYPE = "float16"
_FLOAT16_MAX = float(np.finfo(np.float16).max)
#: Parts of one size tier that are merged into one (size tiers: clips < 8, < 64, < 512, ...).
COMPACT_FANOUT = 8
#: Parts with at least this many clips are not merged further; merged parts hold at most
#: MAX_PART_CLIPS clips (split by clip key).
FULL_PART_CLIPS = 4096
MAX_PART_CLIPS = 8192
#: Memory bound of one merge (the parts are read whole): parts of at least FULL_PART_BYTES are
#: full, and one merge reads at most MAX_MERGE_BYTES of parts (wide models have big clips).
FULL_PART_BYTES = 128 * 2**20
MAX_MERGE_BYTES = 256 * 2**20
#: Clips per row group in merged parts: the unit a read of some clips can skip.
ROW_GROUP_CLIPS = 256
#: Temporary files older than this are left over from a crashed write (a write takes seconds).
STALE_TMP_SECONDS = 15 * 60
_META = "meta.json"
_UNUSABLE = "unusable-clips.json"
_UNUSABLE_LOCK = threading.Lock()
_FORMAT_KEY = b"embedviz_format"
_DTYPES_KEY = b"embedviz_dtypes"
_REPLACES_KEY = b"embedviz_replaces"
_DAMAGED = "damaged"
_LOCK = ".compact.lock"
_STRING_COLUMNS = ["clip_key", "clip_id", "path", "word", "speaker", "layer"]
CLIP_COLUMNS = ["clip_id", "path", "word", "speaker"]
#: Columns of :attr:`LayerVectors.clips`, in this order.
VECTOR_CLIP_COLUMNS = ["clip_key", *CLIP_COLUMNS]


def _schema(dtypes: Mapping[str, str], replaces: Sequence[str] = ()):
    """The part schema; pyarrow is imported lazily (the app lists entries before any extraction)."""
    import pyarrow as pa

    metadata = {_FORMAT_KEY: str(FORMAT_VERSION).encode(), _DTYPES_KEY: json.dumps(dict(dtypes)).encode()}
    if replaces:
        metadata[_REPLACES_KEY] = json.dumps(list(replaces)).encode()
    return pa.schema(
        [
            *[(name, pa.string()) for name in _STRING_COLUMNS],
            ("n_frames", pa.int32()),
            # Raw little-endian bytes of one vector: no list offsets or levels to decode,
            # and one buffer per column chunk that numpy views without copying.
            *[(name, pa.binary()) for name in STORED_VECTORS],
            ("grid", pa.binary()),  # (grid_steps, width) in the grid's dtype; null without a grid
            ("grid_steps", pa.int32()),
        ],
        metadata=metadata,
    )


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _open_parquet(path: Path, metadata: Any = None):
    """Open one part (every read goes through here; the page checksums are verified)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path, metadata=metadata, page_checksum_verification=True)


def _write_parquet(table, path: Path, layer_runs: bool) -> None:
    """Write ``table`` to ``path`` atomically; ``layer_runs``: row groups never span two layers."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with pq.ParquetWriter(
            tmp, table.schema, compression="zstd", use_dictionary=_STRING_COLUMNS, write_page_checksum=True
        ) as writer:
            if not layer_runs:
                writer.write_table(table)
            else:
                for layer in pc.unique(table["layer"]).to_pylist():  # already sorted by layer
                    sub = table.filter(pc.equal(table["layer"], layer))
                    writer.write_table(sub, row_group_size=ROW_GROUP_CLIPS)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write to the embedding store at {path.parent}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _PartIndex:
    """What a read needs to know about one part without reading its vectors."""

    keys: frozenset[str]
    clips: int
    size: int  # bytes on disk
    dtypes: Mapping[str, str]
    replaces: tuple[str, ...]
    # Per row group: (first layer, last layer, first clip key, last clip key); None: unknown.
    groups: tuple[tuple[Any, Any, Any, Any], ...]
    metadata: Any  # pyarrow FileMetaData, so reopening the file does not parse its footer again


# Index of each part, read once per process: a part never changes after its atomic write,
# so (path, size, mtime) identifies its contents. Without this every view re-read the
# clip_key column of every part (20 s for 15,000 parts) to find its few hundred clips.
_PART_INDEX: dict[tuple[str, int, int], _PartIndex] = {}
_PART_INDEX_LOCK = threading.Lock()


class _Damaged(StoreError):
    """A part's contents do not decode as stored vectors."""


class _Vanished(Exception):
    """A listed part was gone when opened: merged into a larger part meanwhile; list again."""


def keys_in(keys: pd.Series | Sequence[str], wanted: Iterable[str]) -> np.ndarray:
    """Boolean mask: which of ``keys`` (clip keys, one per row) are among ``wanted``.

    Use this, not ``Series.isin``, against a store's keys: on pandas' pyarrow string
    columns ``isin`` turns every *wanted* value into a pyarrow scalar first (3.7 s for a
    125,000-clip store, every new view); a set lookup per row costs O(len(keys)).
    """
    pool = wanted if isinstance(wanted, (set, frozenset)) else set(wanted)
    values = keys.tolist() if isinstance(keys, pd.Series | pd.Index) else list(keys)
    return np.fromiter((k in pool for k in values), dtype=bool, count=len(values))


def _stat_key(part: Path) -> tuple[str, int, int] | None:
    try:
        st = part.stat()
    except OSError:
        return None
    return (str(part), st.st_size, st.st_mtime_ns)


def _load_index(part: Path, keys: Iterable[str] | None = None) -> _PartIndex:
    """Index of ``part``; ``keys``: its clip keys when known (just written), else read from it."""
    pf = _open_parquet(part)
    md = pf.metadata
    meta = pf.schema_arrow.metadata or {}
    version = meta.get(_FORMAT_KEY, b"?").decode()
    if version != str(FORMAT_VERSION):
        raise StoreError(f"part written by format {version}, this is format {FORMAT_VERSION}")
    if keys is None:
        keys = pf.read(columns=["clip_key"], use_threads=False).column(0).to_pylist()
    names = pf.schema_arrow.names
    layer_i, key_i = names.index("layer"), names.index("clip_key")
    groups = []
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        bounds: list[Any] = []
        for ci in (layer_i, key_i):
            stats = rg.column(ci).statistics
            ok = stats is not None and stats.has_min_max
            bounds += [stats.min if ok else None, stats.max if ok else None]
        groups.append(tuple(bounds))
    unique = frozenset(keys)
    return _PartIndex(
        keys=unique,
        clips=len(unique),
        size=part.stat().st_size,
        dtypes=json.loads(meta.get(_DTYPES_KEY, b"{}")),
        replaces=tuple(json.loads(meta.get(_REPLACES_KEY, b"[]"))),
        groups=tuple(groups),
        metadata=md,
    )


def _remember(part: Path, keys: Iterable[str]) -> None:
    """Index a part this process just wrote without reading its keys back (only its footer)."""
    memo = _stat_key(part)
    if memo is None:
        return
    index = _load_index(part, keys)
    with _PART_INDEX_LOCK:
        _PART_INDEX[memo] = index


def _vectors(column, dtype: str) -> np.ndarray:
    """``(n, width)`` array of a binary vector column (chunk by chunk: no 2 GB offset limit)."""
    blocks = []
    for chunk in getattr(column, "chunks", [column]):
        n = len(chunk)
        if n == 0:
            continue
        if chunk.null_count:
            raise _Damaged("a stored vector is missing (null) in a part")
        buffers = chunk.buffers()
        offsets = np.frombuffer(buffers[1], dtype=np.int32, count=chunk.offset + n + 1)[chunk.offset :]
        widths = np.diff(offsets)
        if widths.size and (widths != widths[0]).any():
            raise _Damaged("stored vectors of one layer have different widths")
        data = np.frombuffer(buffers[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        blocks.append(data.view(dtype).reshape(n, -1))
    if not blocks:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(blocks).astype(np.float32) if len(blocks) > 1 else blocks[0].astype(np.float32)


def _dtype_for(values: Sequence[np.ndarray]) -> str:
    """float16, unless a finite value would overflow it (then float32: never store a wrong number)."""
    for v in values:
        finite = v[np.isfinite(v)]
        if finite.size and float(np.abs(finite).max()) > _FLOAT16_MAX:
            return "float32"
    return VECTOR_DTYPE


@dataclass(frozen=True)
class LayerVectors:
    """Stored vectors of one layer and pooling: X[i] belongs to clips.iloc[i]."""

    X: np.ndarray  # (n, d) float32
    clips: pd.DataFrame  # columns: clip_key, clip_id, path, word, speaker (row i = X[i])
    missing: tuple[str, ...] = ()  # clip_ids asked for (manifest) but not stored

    @property
    def clip_keys(self) -> list[str]:
        """Content key of each row's clip."""
        return self.clips["clip_key"].tolist()


def _empty_vectors(missing: Sequence[str] = ()) -> LayerVectors:
    return LayerVectors(np.zeros((0, 0), np.float32), pd.DataFrame(columns=VECTOR_CLIP_COLUMNS), tuple(missing))


@dataclass
class StoreEntry:
    """One model + options folder of the store.

    ``model_key`` and ``options`` are what its id hashes (known even before it exists
    when it came from :meth:`EmbeddingStore.entry`).
    """

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    model_key: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def is_current(self) -> bool:
        return self.meta.get("format_version") == FORMAT_VERSION

    @property
    def has_time_grid(self) -> bool:
        """Whether this entry stores the time grid behind ``time:<s>`` pooling."""
        return bool(self.meta.get("time_grid", False))

    def parts(self) -> list[Path]:
        """Live parts in write order (parts a merged part replaces are left out)."""
        return list(self._indexed_parts())

    def damaged_parts(self) -> list[Path]:
        """Parts found damaged and moved aside into ``<entry>/damaged/`` (for the CLI/app to show)."""
        folder = self.path / _DAMAGED
        return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []

    def _set_aside(self, part: Path, exc: Exception) -> None:
        """Move a damaged part into ``damaged/`` so its clips count as missing and are recomputed.

        Left in place it would be skipped by reads while its readable ``clip_key`` column
        could still count its clips as stored, and they would never be recomputed.
        """
        target = self.path / _DAMAGED / part.name
        try:
            target.parent.mkdir(exist_ok=True)
            os.replace(part, target)
        except OSError as move_error:  # another reader moved it first, or a read-only store
            if part.exists():
                logger.warning("damaged store part %s (%s) could not be moved aside: %s", part, exc, move_error)
            return
        logger.warning(
            "store part %s is damaged (%s); moved it to %s. Its clips will be recomputed by the next extract.",
            part, exc, target,
        )

    def _indexed_parts(self) -> dict[Path, _PartIndex]:
        """Every live, readable part (in write order) with its index.

        A part that vanishes between listing and opening was merged into a larger part
        written before it was deleted: the folder is listed again, so its clips are found.
        """
        if not self.is_current or not self.path.is_dir():
            return {}
        for _attempt in range(20):
            listed = sorted(self.path.glob("part-*.parquet"))
            out: dict[Path, _PartIndex] = {}
            vanished = False
            for part in listed:
                memo = _stat_key(part)
                if memo is None:
                    vanished = True
                    break
                with _PART_INDEX_LOCK:
                    index = _PART_INDEX.get(memo)
                if index is None:
                    try:
                        index = _load_index(part)
                    except Exception as exc:  # pyarrow raises several types for damaged files
                        if not part.exists():
                            vanished = True
                            break
                        self._set_aside(part, exc)
                        continue
                    with _PART_INDEX_LOCK:
                        _PART_INDEX[memo] = index
                out[part] = index
            if vanished:
                continue
            replaced = {name for index in out.values() for name in index.replaces}
            live = {p: i for p, i in out.items() if p.name not in replaced}
            self._forget_gone(set(listed))
            return live
        raise StoreError(f"the store entry {self.path} kept changing while it was read; try again")

    def _forget_gone(self, listed: set[Path]) -> None:
        """Drop memo entries of this entry's parts that no longer exist (merged or deleted)."""
        prefix = str(self.path) + os.sep
        with _PART_INDEX_LOCK:
            for memo in [m for m in _PART_INDEX if m[0].startswith(prefix) and Path(m[0]) not in listed]:
                del _PART_INDEX[memo]

    def part_keys(self) -> dict[Path, frozenset[str]]:
        """Every readable part of this entry (in write order) with the clip keys it holds."""
        return {part: index.keys for part, index in self._indexed_parts().items()}

    def stored_keys(self) -> set[str]:
        """Content keys of every clip with a finished batch in this entry."""
        return set().union(*self.part_keys().values())

    def write_batch(self, rows: Sequence[Mapping[str, Any]]) -> Path | None:
        """Write one batch of (clip, layer) rows as a new part, atomically; then merge small parts.

        Each row carries every pooling of :data:`STORED_VECTORS` and the time grid
        (``grid`` flattened, ``grid_steps``), as :func:`embedviz.pooling.pool_frames` gives
        them; vectors are stored in :data:`VECTOR_DTYPE`, the grid only if this entry keeps it.
        """
        import pyarrow as pa

        if not rows:
            return None
        dtypes = {name: _dtype_for([np.asarray(r[name], np.float32) for r in rows]) for name in STORED_VECTORS}
        keep_grid = self.has_time_grid
        if keep_grid:
            dtypes["grid"] = _dtype_for([np.asarray(r["grid"], np.float32) for r in rows])
        columns: dict[str, list[Any]] = {name: [r[name] for r in rows] for name in _STRING_COLUMNS}
        columns["n_frames"] = [int(r["n_frames"]) for r in rows]
        for name in STORED_VECTORS:
            columns[name] = [np.asarray(r[name]).astype(dtypes[name]).tobytes() for r in rows]
        columns["grid"] = [np.asarray(r["grid"]).astype(dtypes["grid"]).tobytes() if keep_grid else None for r in rows]
        columns["grid_steps"] = [int(r["grid_steps"]) if keep_grid else 0 for r in rows]
        table = pa.Table.from_pydict(columns, schema=_schema(dtypes))
        # Names sort in write order, which is how duplicates resolve to the last written.
        final = self.path / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        _write_parquet(table, final, layer_runs=False)
        _remember(final, columns["clip_key"])
        try:
            self.compact()
        except StoreError as exc:  # the batch is safely written; merging can wait for the next one
            logger.warning("could not merge small parts of %s: %s", self.path, exc)
        return final

    # ------------------------------------------------------------------ compaction
    def compact(self, *, force: bool = False) -> int:
        """Merge small parts into larger ones; returns how many parts were merged away.

        Size-tiered: when :data:`COMPACT_FANOUT` parts share a size tier, they become one
        part (each clip is rewritten about once per tier, ~4 times in all). ``force``
        merges every part below :data:`FULL_PART_CLIPS` clips. One merge reads at most
        :data:`MAX_MERGE_BYTES` of parts, which bounds its memory. Only one process
        merges an entry at a time (a lock file; others skip); readers are never blocked.
        """
        if not self.is_current or not self.path.is_dir():
            return 0
        try:
            import fcntl
        except ImportError:  # not POSIX: no safe way to exclude another merging process
            return 0
        lock_path = self.path / _LOCK
        try:
            handle = open(lock_path, "a+")
        except OSError:
            return 0  # read-only store
        merged = 0
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return 0  # another writer is merging this entry
            try:
                self._delete_replaced()
                if force:  # one pass over what is small now (merged parts are not merged again)
                    for group in self._forced_groups():
                        self._merge(group)
                        merged += len(group)
                while True:
                    group = self._merge_candidates()
                    if len(group) < 2:
                        break
                    self._merge(group)
                    merged += len(group)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return merged

    def _small_parts(self) -> dict[Path, _PartIndex]:
        return {p: i for p, i in self._indexed_parts().items() if i.clips < FULL_PART_CLIPS and i.size < FULL_PART_BYTES}

    def _forced_groups(self) -> list[list[Path]]:
        """Every small part, in write order, cut into groups of at most MAX_MERGE_BYTES."""
        groups: list[list[Path]] = [[]]
        total = 0
        for part, index in self._small_parts().items():
            if groups[-1] and total + index.size > MAX_MERGE_BYTES:
                groups.append([])
                total = 0
            groups[-1].append(part)
            total += index.size
        return [g for g in groups if len(g) >= 2]

    def _merge_candidates(self) -> list[Path]:
        """The next size tier's parts to merge (oldest first, at most MAX_MERGE_BYTES), or fewer than 2."""
        small = self._small_parts()
        tiers: dict[int, list[Path]] = {}
        for part, index in small.items():
            tier = int(np.floor(np.log(max(1, index.clips)) / np.log(COMPACT_FANOUT)))
            tiers.setdefault(tier, []).append(part)
        for tier in sorted(tiers):
            if len(tiers[tier]) >= COMPACT_FANOUT:
                group, total = [], 0
                for part in tiers[tier][:COMPACT_FANOUT]:
                    if group and total + small[part].size > MAX_MERGE_BYTES:
                        break
                    group.append(part)
                    total += small[part].size
                if len(group) >= 2:
                    return group
        return []

    def _delete_replaced(self) -> None:
        """Delete parts that a merged part already holds (left by a crash between write and delete)."""
        listed = sorted(self.path.glob("part-*.parquet"))
        live = self._indexed_parts()
        replaced = {name for index in live.values() for name in index.replaces}
        for part in listed:
            if part.name in replaced:
                part.unlink(missing_ok=True)

    def _merge(self, group: list[Path]) -> None:
        """Rewrite ``group`` (in write order) as parts sorted by (layer, clip key), then delete it."""
        import pyarrow as pa
        import pyarrow.compute as pc

        tables, read_ok = [], []
        for part in group:
            try:
                table = _open_parquet(part).read()
            except Exception as exc:  # pyarrow raises several types for damaged files
                if part.exists():
                    self._set_aside(part, exc)
                continue
            tables.append(table)
            read_ok.append(part)
        if not tables:
            return
        dtypes = {}
        for name in [*STORED_VECTORS, "grid"]:
            seen = {json.loads(t.schema.metadata.get(_DTYPES_KEY, b"{}")).get(name) for t in tables} - {None}
            dtypes[name] = "float32" if "float32" in seen else VECTOR_DTYPE
        unified = []
        for table in tables:
            own = json.loads(table.schema.metadata.get(_DTYPES_KEY, b"{}"))
            for name, dtype in dtypes.items():
                if own.get(name, dtype) != dtype:  # float16 part merged with float32: widen (exact)
                    widened = [None if b is None else np.frombuffer(b, own[name]).astype(dtype).tobytes()
                               for b in table[name].to_pylist()]
                    table = table.set_column(table.schema.get_field_index(name), name, pa.array(widened, pa.binary()))
            unified.append(table.replace_schema_metadata(None))
        table = pa.concat_tables(unified)
        # One row per (clip, layer): the last written wins, as in reads.
        table = table.append_column("_order", pa.array(np.arange(table.num_rows)))
        last = table.group_by(["clip_key", "layer"], use_threads=False).aggregate([("_order", "max")])
        table = table.take(pa.array(np.sort(last["_order_max"].to_numpy()))).drop_columns(["_order"])
        table = table.sort_by([("layer", "ascending"), ("clip_key", "ascending")])
        keys = sorted(set(table["clip_key"].to_pylist()))
        newest = read_ok[-1].stem
        names = [part.name for part in read_ok]
        tag = uuid.uuid4().hex[:8]
        for i in range(0, len(keys), MAX_PART_CLIPS):
            chunk = keys[i : i + MAX_PART_CLIPS]
            rows = table
            if len(keys) > MAX_PART_CLIPS:
                lo, hi = chunk[0], chunk[-1]
                rows = table.filter(pc.and_(pc.greater_equal(table["clip_key"], lo), pc.less_equal(table["clip_key"], hi)))
            # Sorts just before the newest replaced part and after every older one, so the
            # order in which duplicates resolve is kept.
            name = f"{newest}-c{tag}-{i // MAX_PART_CLIPS:03d}.parquet"
            _write_parquet(rows.replace_schema_metadata(_schema(dtypes, names).metadata), self.path / name,
                           layer_runs=True)
            _remember(self.path / name, chunk)
        for part in read_ok:  # from here the merged parts supersede them even if this is cut short
            part.unlink(missing_ok=True)
        logger.info("merged %d parts of %s (%d clips)", len(read_ok), self.path, len(keys))

    def remove_stale_temporaries(self, older_than_s: float = STALE_TMP_SECONDS) -> list[Path]:
        """Delete temporary files of writes that crashed (older than ``older_than_s``)."""
        removed = []
        now = time.time()
        for tmp in self.path.glob(".*.tmp") if self.path.is_dir() else []:
            try:
                if now - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink()
                    removed.append(tmp)
            except OSError:
                continue
        if removed:
            logger.info("removed %d temporary files left by crashed writes in %s", len(removed), self.path)
        return removed

    # ------------------------------------------------------------------ reads
    def read(
        self,
        layers: Sequence[str],
        pooling: Pooling | str,
        clip_keys: Iterable[str] | None = None,
        *,
        clip_columns: bool = True,
    ) -> dict[str, LayerVectors]:
        """Stored vectors per layer for ``pooling`` (only ``clip_keys`` if given).

        Rows are in write order of their clips; a clip written twice keeps its last row.
        ``clip_columns=False`` leaves out clip_id, path, word and speaker (the caller has
        them from its manifest): their columns are then not read at all.

        Raises:
            StoreError: ``time:<s>`` from an entry stored without the time grid.
        """
        p = parse_pooling(pooling) if isinstance(pooling, str) else pooling
        if p.kind == "time" and self.is_current and not self.has_time_grid and self.path.is_dir():
            raise StoreError(
                f"pooling {p.name} needs the time grid, which store entry {self.id} "
                f"({self.meta.get('model', '?')}) was extracted without (it costs about twice the space of "
                f"every other pooling together). To use it: delete this entry on the Data & cache page "
                f"(or the folder {self.path}), then {TIME_GRID_HOW}"
            )
        wanted = None if clip_keys is None else set(clip_keys)
        for _attempt in range(20):
            try:
                return self._read_once(list(layers), p, wanted, clip_columns)
            except _Vanished:
                continue
        raise StoreError(f"the store entry {self.path} kept changing while it was read; try again")

    def _read_once(
        self, layers: list[str], p: Pooling, wanted: set[str] | None, clip_columns: bool
    ) -> dict[str, LayerVectors]:
        import pyarrow as pa
        import pyarrow.compute as pc

        result = {layer: _empty_vectors() for layer in layers}
        if not layers:
            return result
        parts = self._indexed_parts()
        if wanted is not None:
            # Only the parts that hold a wanted clip: reading grows with what is asked.
            parts = {part: i for part, i in parts.items() if not i.keys.isdisjoint(wanted)}
        if not parts:
            return result
        vec_cols = {"meanstd": ["mean", "std"], "time": ["grid", "grid_steps"]}.get(p.kind, [p.kind])
        columns = ["clip_key", "layer", *(CLIP_COLUMNS if clip_columns else []), *vec_cols]
        sorted_wanted = sorted(wanted) if wanted is not None else None
        lo_layer, hi_layer = min(layers), max(layers)
        pieces: dict[str, list[tuple[list[str], Any, np.ndarray]]] = {layer: [] for layer in layers}
        value_set = pa.array(list(wanted), pa.string()) if wanted is not None else None
        layer_set = pa.array(layers, pa.string())
        for part, index in parts.items():
            groups = [g for g, bounds in enumerate(index.groups) if _group_wanted(bounds, lo_layer, hi_layer, layers, sorted_wanted)]
            if not groups:
                continue
            try:
                table = _open_parquet(part, index.metadata).read_row_groups(groups, columns=columns, use_threads=False)
            except Exception as exc:  # pyarrow raises several types for damaged files
                if not part.exists():
                    raise _Vanished() from exc
                self._set_aside(part, exc)
                continue
            mask = pc.is_in(table["layer"], value_set=layer_set)
            if value_set is not None:
                mask = pc.and_(mask, pc.is_in(table["clip_key"], value_set=value_set))
            table = table.filter(mask)
            if table.num_rows == 0:
                continue
            layer_col = np.asarray(table["layer"].to_numpy(zero_copy_only=False))
            for layer in layers:
                idx = np.flatnonzero(layer_col == layer)
                if idx.size == 0:
                    continue
                sub = table.take(pa.array(idx)) if idx.size != table.num_rows else table
                try:
                    X = _assemble(sub, p, index.dtypes)
                except _Damaged as exc:
                    self._set_aside(part, exc)
                    break
                meta = sub.select(VECTOR_CLIP_COLUMNS if clip_columns else ["clip_key"])
                pieces[layer].append((sub["clip_key"].to_pylist(), meta, X))
        for layer, found in pieces.items():
            if not found:
                continue
            keys = [k for ks, _, _ in found for k in ks]
            X = np.concatenate([x for _, _, x in found]) if len(found) > 1 else found[0][2]
            # Duplicates can come from two runs racing on one clip: keep the last written.
            last = {k: i for i, k in enumerate(keys)}
            order = sorted(last.values())
            meta = pa.concat_tables([m for _, m, _ in found]).to_pandas()
            clips = meta.iloc[order].reset_index(drop=True)
            for column in VECTOR_CLIP_COLUMNS:
                if column not in clips:
                    clips[column] = None
            result[layer] = LayerVectors(X[order] if len(order) != len(keys) else X, clips[VECTOR_CLIP_COLUMNS])
        return result


def _group_wanted(
    bounds: tuple[Any, Any, Any, Any], lo_layer: str, hi_layer: str, layers: list[str], keys: list[str] | None
) -> bool:
    """Whether a row group (by its statistics) may hold a wanted layer and clip."""
    first_layer, last_layer, first_key, last_key = bounds
    if first_layer is not None and last_layer is not None:
        if last_layer < lo_layer or first_layer > hi_layer:
            return False
        if first_layer == last_layer and first_layer not in layers:
            return False
    if keys is not None and first_key is not None and last_key is not None:
        i = bisect.bisect_left(keys, first_key)
        if i == len(keys) or keys[i] > last_key:
            return False
    return True


def _assemble(table, p: Pooling, dtypes: Mapping[str, str]) -> np.ndarray:
    """The ``(n, d)`` float32 vectors of ``p`` for the rows of ``table`` (one layer)."""
    if p.kind == "meanstd":  # assembled, never stored twice
        return np.concatenate(
            [_vectors(table["mean"], dtypes.get("mean", VECTOR_DTYPE)), _vectors(table["std"], dtypes.get("std", VECTOR_DTYPE))],
            axis=1,
        )
    if p.kind == "time":
        steps = np.asarray(table["grid_steps"].to_numpy(zero_copy_only=False))
        grids = table["grid"].to_pylist()
        if (steps < 1).any() or any(g is None for g in grids):
            raise StoreError("a part of this entry holds no time grid")
        dtype = dtypes.get("grid", VECTOR_DTYPE)
        rows = []
        for grid, n_steps in zip(grids, steps):
            g = np.frombuffer(grid, dtype=dtype).reshape(int(n_steps), -1)
            rows.append(g[min(p.grid_index, int(n_steps) - 1)])
        return np.stack(rows).astype(np.float32)
    return _vectors(table[p.kind], dtypes.get(p.kind, VECTOR_DTYPE))


class EmbeddingStore:
    """A folder of :class:`StoreEntry` folders."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    @staticmethod
    def entry_id(model_key: str, options: Mapping[str, Any]) -> str:
        return stable_hash({"model_key": model_key, "options": dict(options)})

    def entry(self, model_key: str, options: Mapping[str, Any]) -> StoreEntry:
        """The entry for a model identity and options (it may not exist yet)."""
        path = self.root / self.entry_id(model_key, options)
        return StoreEntry(path, self._read_meta(path), model_key, dict(options))

    def entry_for(self, settings: ExtractionSettings) -> StoreEntry:
        """The entry ``settings`` extract into and read from (it may not exist yet).

        The model identity comes from the catalogue (imported lazily: nothing is loaded).
        """
        from embedviz.catalogue import model_identity, model_spec

        key = model_identity(settings.model, seed=settings.seed)
        options = settings.numeric_options(model_spec(settings.model).family)
        return self.entry(key, options)

    def open_for_writing(
        self, model_key: str, options: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> StoreEntry:
        """Create the entry if needed; rebuild it if it was written by another format.

        A new entry keeps the time grid if ``meta["time_grid"]`` says so (the pipeline's
        :func:`~embedviz.pipeline.open_entry` always decides it); without that key,
        :func:`embedviz.settings.time_grid_requested` (``$EMBEDVIZ_TIME_GRID``) does. An existing entry keeps
        what it was created with. Temporary files of crashed writes older than
        :data:`STALE_TMP_SECONDS` and parts a merged part already holds are removed.
        """
        entry = self.entry(model_key, options)
        try:
            if entry.path.exists() and not entry.is_current:
                logger.warning(
                    "store entry %s was written by format %s (this is %s): rebuilding it",
                    entry.path,
                    entry.meta.get("format_version"),
                    FORMAT_VERSION,
                )
                shutil.rmtree(entry.path)
            entry.path.mkdir(parents=True, exist_ok=True)
            if not (entry.path / _META).exists():
                full = {
                    "time_grid": time_grid_requested(),
                    **dict(meta),
                    "model_key": model_key,
                    "options": dict(options),
                    "format_version": FORMAT_VERSION,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                }
                _atomic_write_text(entry.path / _META, json.dumps(full, indent=2, sort_keys=True))
        except OSError as exc:
            raise StoreError(f"cannot create the embedding store folder {entry.path}: {exc}") from exc
        opened = StoreEntry(entry.path, self._read_meta(entry.path), model_key, dict(options))
        opened.remove_stale_temporaries()
        try:
            opened._delete_replaced()
        except OSError as exc:  # harmless: readers ignore replaced parts
            logger.warning("could not delete merged-away parts of %s: %s", entry.path, exc)
        return opened

    @staticmethod
    def _read_meta(path: Path) -> dict[str, Any]:
        meta_path = path / _META
        if not meta_path.is_file():
            return {}
        try:
            return json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("unreadable store metadata %s (%s): the entry will be rebuilt", meta_path, exc)
            return {"format_version": None}

    def entries(self) -> pd.DataFrame:
        """Every entry: id, model, options, clips, layers, bytes, format, time grid, damaged parts, path.

        ``damaged``: parts found damaged and set aside in ``<entry>/damaged/`` (their clips
        were counted as missing, so the next extract recomputed or recomputes them).
        """
        rows = []
        if self.root.is_dir():
            for path in sorted(p for p in self.root.iterdir() if p.is_dir()):
                entry = StoreEntry(path, self._read_meta(path))
                size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                rows.append(
                    {
                        "entry": entry.id,
                        "model": entry.meta.get("model", "?"),
                        "options": json.dumps(entry.meta.get("options", {}), sort_keys=True),
                        "clips": len(entry.stored_keys()),
                        "layers": len(entry.meta.get("layers", [])),
                        "bytes": size,
                        "current": entry.is_current,
                        "time_grid": entry.has_time_grid,
                        "damaged": len(entry.damaged_parts()),
                        "path": str(path),
                    }
                )
        columns = ["entry", "model", "options", "clips", "layers", "bytes", "current", "time_grid", "damaged", "path"]
        return pd.DataFrame(rows, columns=columns)

    # ------------------------------------------------------------ unusable clips

    def unusable_clips(self) -> dict[str, str]:
        """Content keys of clips that decoding rejected in an earlier run, with the reason.

        A clip's content decides whether it decodes (for every model), so a re-run neither
        decodes it again nor loads a model for it. Kept in ``<root>/unusable-clips.json``
        under :data:`embedviz.audio.DECODE_POLICY_VERSION`; a file of another version, or one
        that cannot be read, counts as empty (the clips are simply decoded again).
        """
        from embedviz.audio import DECODE_POLICY_VERSION

        try:
            data = json.loads((self.root / _UNUSABLE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("decode_policy") != DECODE_POLICY_VERSION:
            return {}
        clips = data.get("clips")
        return {str(k): str(v) for k, v in clips.items()} if isinstance(clips, dict) else {}

    def remember_unusable(self, reasons: Mapping[str, str]) -> None:
        """Add ``clip key -> reason`` of clips decoding rejected (see :meth:`unusable_clips`).

        Best effort: a lost race between two writers only means a clip is decoded once more.
        """
        from embedviz.audio import DECODE_POLICY_VERSION

        if not reasons:
            return
        with _UNUSABLE_LOCK:
            known = self.unusable_clips()
            known.update(reasons)
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                _atomic_write_text(self.root / _UNUSABLE, json.dumps(
                    {"decode_policy": DECODE_POLICY_VERSION, "clips": known}, sort_keys=True))
            except OSError as exc:
                logger.warning("could not remember unusable clips in %s: %s", self.root, exc)

    def entry_at(self, entry_id: str) -> StoreEntry:
        """The entry with this id (as in :attr:`ExtractionReport.entry`), existing or not."""
        path = self.root / entry_id
        return StoreEntry(path, self._read_meta(path))

    def delete(self, entry_id: str) -> None:
        """Remove one entry (its id must be a direct child of the store root)."""
        path = (self.root / entry_id).resolve()
        if path.parent != self.root.resolve() or not path.is_dir():
            raise StoreError(f"no store entry {entry_id!r} in {self.root}")
        shutil.rmtree(path)


#: What an entry holds, in words (the Data & cache page and the README say the same).
STORED_DESCRIPTION = (
    "per clip and layer: the mean, std, max, centre and speech-mean vectors, each once, in float16 "
    "(mean+std is assembled from mean and std); the time grid behind 'at time' pooling only in "
    f"entries extracted with {TIME_GRID_FLAG} ({TIME_GRID_ENV}=1)"
)


def damaged_note(entry: StoreEntry, seen_before: Iterable[Path] = (), *, cancelled: bool = False) -> str:
    """A sentence on the parts of ``entry`` set aside as damaged ('' when none).

    ``seen_before``: the damaged parts that were there before this run (from
    :meth:`StoreEntry.damaged_parts`), so the note tells this run's apart from earlier ones.
    """
    before = {Path(p).name for p in seen_before}
    parts = entry.damaged_parts()
    new = [p for p in parts if p.name not in before]
    old = len(parts) - len(new)
    folder = entry.path / _DAMAGED
    notes = []
    if new:
        fate = "will be recomputed by the next extract" if cancelled else "were recomputed in this run"
        notes.append(f"{len(new)} damaged store part{'s' if len(new) != 1 else ''} set aside in {folder}; "
                     f"{'their' if len(new) != 1 else 'its'} clips {fate}")
    if old:
        notes.append(f"{old} part{'s' if old != 1 else ''} set aside earlier {'are' if old != 1 else 'is'} in "
                     f"{folder} (clips recomputed when found; delete the folder once inspected)")
    return "; ".join(notes)


def _other_options_hint(store: EmbeddingStore, entry: StoreEntry) -> str:
    """' (stored with whisper_mode=crop: add --whisper-mode crop)' when the model is stored
    with other options than asked for, else ''."""
    hints = []
    for _, row in store.entries().iterrows():
        other = StoreEntry(Path(row["path"]), store._read_meta(Path(row["path"])))
        if not other.is_current or other.meta.get("model_key") != entry.model_key or not other.parts():
            continue
        diff = {k: v for k, v in other.meta.get("options", {}).items() if entry.options.get(k) != v}
        if diff:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(diff.items()))
            flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(diff.items()))
            hints.append(f"it is stored with {shown}: ask for it with '{flags}'")
    return ("; " + "; ".join(hints)) if hints else ""


def read_layers(
    store: EmbeddingStore,
    settings: ExtractionSettings,
    layers: Sequence[str] | None = None,
    pooling: str = "mean",
    manifest: pd.DataFrame | None = None,
) -> dict[str, LayerVectors]:
    """Stored vectors per layer of one model and options, for ``pooling``.

    With a manifest: its clips in manifest order; clips not stored (or skipped at
    extraction) are left out and listed in ``missing`` (all of them when nothing is
    stored yet). Without: every stored clip. ``layers=None`` means every stored layer.

    Raises:
        StoreError: nothing stored (without a manifest); the message says when the model
            is stored with other options (e.g. whisper_mode=crop) and how to ask for them
            ('--whisper-mode crop').
        ConfigError: a layer the model does not have.
    """
    entry = store.entry_for(settings)
    stored = entry.is_current and bool(entry.parts())
    available = list(entry.meta.get("layers", [])) if stored else []
    if not stored and manifest is None:
        raise StoreError(
            f"nothing stored for {settings.model} with {json.dumps(entry.options, sort_keys=True)} in "
            f"{store.root}{_other_options_hint(store, entry)}; otherwise run "
            f"'python -m embedviz extract --model {settings.model}' first"
        )
    wanted = list(layers) if layers else available
    unknown = [layer for layer in wanted if available and layer not in available]
    if unknown:
        raise ConfigError(f"{settings.model} has no layer {', '.join(unknown)}; it has {', '.join(available)}")
    if manifest is None:
        return entry.read(wanted, pooling)
    m = manifest.reset_index(drop=True)
    keys = key_cache.content_keys(m["path"])
    if not stored:
        return {layer: _empty_vectors(m["clip_id"].tolist()) for layer in wanted}
    # The manifest has the clips' names: only keys and vectors are read from the store.
    found = entry.read(wanted, pooling, clip_keys=keys, clip_columns=False)
    result: dict[str, LayerVectors] = {}
    for layer in wanted:
        lv = found[layer]
        index = {k: i for i, k in enumerate(lv.clip_keys)}
        present = np.array([k in index for k in keys], dtype=bool)
        rows = [index[k] for k, ok in zip(keys, present) if ok]
        clips = m.loc[present, CLIP_COLUMNS].assign(clip_key=[k for k, ok in zip(keys, present) if ok])
        clips = clips[VECTOR_CLIP_COLUMNS].reset_index(drop=True)
        X = lv.X[rows] if rows else np.zeros((0, lv.X.shape[1] if lv.X.ndim == 2 else 0), np.float32)
        result[layer] = LayerVectors(X, clips, tuple(m.loc[~present, "clip_id"].tolist()))
    return result
