"""The embedding store: Parquet files keyed by model, numeric options and clip.

Layout::

    <root>/<entry>/meta.json            model, model key, options, layers, format version
    <root>/<entry>/part-<id>.parquet    one file per extraction batch

An *entry* is one (model identity, options that change the numbers) pair; its id is a
stable hash of both. Each row of a part is one (clip, layer) with every pooling of that
forward pass (see :mod:`embedviz.pooling`), so changing layer or pooling never needs the
model again. Clips are keyed by a hash of their content, so a renamed or copied file is
still found, and an edited one is not mistaken for the old.

Writes are atomic (temporary file, then ``os.replace``): a crash loses at most the batch
in flight, and the next run resumes from the finished parts. Entries written by another
format version are detected from ``meta.json`` and rebuilt, never misread.
"""

from __future__ import annotations

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

from embedviz.errors import ConfigError, StoreError
from embedviz.pooling import STORED_VECTORS, Pooling, parse_pooling
from embedviz.settings import ExtractionSettings, stable_hash

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_META = "meta.json"
_FORMAT_KEY = b"embedviz_format"
_DAMAGED = "damaged"
# Clip keys of each part file, read once per process: a part never changes after its atomic
# write, so (path, size, mtime) identifies its contents. Without this every view re-read the
# clip_key column of every part (20 s for 15,000 parts) to find its few hundred clips.
_PART_KEYS: dict[tuple[str, int, int], frozenset[str]] = {}
_PART_KEYS_LOCK = threading.Lock()


def _schema():  # pyarrow is imported lazily: the app lists entries before any extraction
    import pyarrow as pa

    vec = pa.list_(pa.float32())
    return pa.schema(
        [
            ("clip_key", pa.string()),
            ("clip_id", pa.string()),
            ("path", pa.string()),
            ("word", pa.string()),
            ("speaker", pa.string()),
            ("layer", pa.string()),
            ("n_frames", pa.int32()),
            *[(name, vec) for name in STORED_VECTORS],
            ("grid", pa.list_(pa.float16())),
            ("grid_steps", pa.int32()),
        ],
        metadata={_FORMAT_KEY: str(FORMAT_VERSION).encode()},
    )


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


CLIP_COLUMNS = ["clip_id", "path", "word", "speaker"]
#: Columns of :attr:`LayerVectors.clips`, in this order.
VECTOR_CLIP_COLUMNS = ["clip_key", *CLIP_COLUMNS]


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

    def parts(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return sorted(self.path.glob("part-*.parquet"))

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

    def part_keys(self) -> dict[Path, frozenset[str]]:
        """Every readable part of this entry (in write order) with the clip keys it holds."""
        import pyarrow.parquet as pq

        if not self.is_current:
            return {}
        out: dict[Path, frozenset[str]] = {}
        for part in self.parts():
            try:
                stat = part.stat()
            except OSError:  # removed meanwhile (entry deleted, part set aside by another reader)
                continue
            memo = (str(part), stat.st_size, stat.st_mtime_ns)
            with _PART_KEYS_LOCK:
                keys = _PART_KEYS.get(memo)
            if keys is None:
                try:
                    keys = frozenset(pq.read_table(part, columns=["clip_key"]).column(0).to_pylist())
                except Exception as exc:  # pyarrow raises several types for damaged files
                    self._set_aside(part, exc)
                    continue
                with _PART_KEYS_LOCK:
                    _PART_KEYS[memo] = keys
            out[part] = keys
        return out

    def stored_keys(self) -> set[str]:
        """Content keys of every clip with a finished batch in this entry."""
        return set().union(*self.part_keys().values())

    def write_batch(self, rows: Sequence[Mapping[str, Any]]) -> Path | None:
        """Write one batch of (clip, layer) rows as a new part, atomically."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not rows:
            return None
        schema = _schema()
        columns: dict[str, list[Any]] = {name: [] for name in schema.names}
        for row in rows:
            for name in schema.names:
                value = row[name]
                columns[name].append(value.tolist() if isinstance(value, np.ndarray) else value)
        table = pa.Table.from_pydict(columns, schema=schema)
        # Names sort in write order, which is how duplicates resolve to the last written.
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        final = self.path / name
        tmp = self.path / f".{name}.tmp"
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write to the embedding store at {self.path}: {exc}") from exc
        return final

    def read(
        self,
        layers: Sequence[str],
        pooling: Pooling | str,
        clip_keys: Iterable[str] | None = None,
    ) -> dict[str, LayerVectors]:
        """Stored vectors per layer for ``pooling`` (only ``clip_keys`` if given).

        Rows are in write order of their clips; a clip written twice keeps its last row.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        p = parse_pooling(pooling) if isinstance(pooling, str) else pooling
        wanted_cols = {"meanstd": ["mean", "std"], "time": ["grid", "grid_steps"]}.get(p.kind, [p.kind])
        result = {layer: _empty_vectors() for layer in layers}
        if clip_keys is not None:
            clip_keys = set(clip_keys)
            # Only the parts that hold a wanted clip: reading grows with what is asked.
            parts = [part for part, keys in self.part_keys().items() if not keys.isdisjoint(clip_keys)]
        else:
            parts = self.parts() if self.is_current else []
        if not parts or not layers:
            return result
        tables = []
        for part in parts:
            try:
                tables.append(
                    pq.read_table(
                        part,
                        columns=["clip_key", *CLIP_COLUMNS, "layer", *wanted_cols],
                        filters=[("layer", "in", list(layers))],
                    )
                )
            except Exception as exc:  # pyarrow raises several types for damaged files
                self._set_aside(part, exc)
        if not tables:
            return result
        table = pa.concat_tables(tables)
        if clip_keys is not None:
            table = table.filter(pc.is_in(table["clip_key"], value_set=pa.array(list(clip_keys), pa.string())))
        for layer in layers:
            sub = table.filter(pc.equal(table["layer"], layer))
            if sub.num_rows == 0:
                continue
            keys = sub["clip_key"].to_pylist()
            # Duplicates can come from two runs racing on one clip: keep the last written.
            last = {k: i for i, k in enumerate(keys)}
            order = sorted(last.values())
            X = _assemble(sub, p, order)
            clips = sub.select(VECTOR_CLIP_COLUMNS).to_pandas().iloc[order].reset_index(drop=True)
            result[layer] = LayerVectors(X, clips)
        return result


def _matrix(column, order: list[int]) -> np.ndarray:
    arrays = column.combine_chunks()
    n = len(arrays)
    flat = arrays.flatten().to_numpy(zero_copy_only=False)
    width = flat.shape[0] // n if n else 0
    return flat.reshape(n, width)[order].astype(np.float32)


def _assemble(table, p: Pooling, order: list[int]) -> np.ndarray:
    if p.kind == "meanstd":
        return np.concatenate([_matrix(table["mean"], order), _matrix(table["std"], order)], axis=1)
    if p.kind == "time":
        grids = table["grid"].to_pylist()
        steps = table["grid_steps"].to_pylist()
        rows = []
        for i in order:
            width = len(grids[i]) // steps[i]
            step = min(p.grid_index, steps[i] - 1)
            rows.append(np.asarray(grids[i][step * width : (step + 1) * width], dtype=np.float32))
        return np.stack(rows)
    return _matrix(table[p.kind], order)


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
        """Create the entry if needed; rebuild it if it was written by another format."""
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
                    **dict(meta),
                    "model_key": model_key,
                    "options": dict(options),
                    "format_version": FORMAT_VERSION,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                }
                _atomic_write_text(entry.path / _META, json.dumps(full, indent=2, sort_keys=True))
        except OSError as exc:
            raise StoreError(f"cannot create the embedding store folder {entry.path}: {exc}") from exc
        return StoreEntry(entry.path, self._read_meta(entry.path), model_key, dict(options))

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
        """Every entry: id, model, options, clips, layers, bytes, format, path."""
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
                        "path": str(path),
                    }
                )
        columns = ["entry", "model", "options", "clips", "layers", "bytes", "current", "path"]
        return pd.DataFrame(rows, columns=columns)

    def delete(self, entry_id: str) -> None:
        """Remove one entry (its id must be a direct child of the store root)."""
        path = (self.root / entry_id).resolve()
        if path.parent != self.root.resolve() or not path.is_dir():
            raise StoreError(f"no store entry {entry_id!r} in {self.root}")
        shutil.rmtree(path)


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
    from embedviz.pipeline import clip_key  # the content hash lives with extraction

    m = manifest.reset_index(drop=True)
    keys = [clip_key(p) for p in m["path"]]
    if not stored:
        return {layer: _empty_vectors(m["clip_id"].tolist()) for layer in wanted}
    found = entry.read(wanted, pooling, clip_keys=keys)
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
