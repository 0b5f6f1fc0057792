"""Persistent manifest index of a dataset root: listing once, durations when read.

Opening a Speech Commands style root used to read every clip's header (21,000 files:
25 s). The index keeps what discovery found in one Parquet file per root, in
:func:`index_dir` (``$EMBEDVIZ_MANIFEST_CACHE``, else ``<user cache>/embedviz/manifests``),
named by a hash of the resolved root:

- one row per usable clip: ``word``, ``name``, ``speaker``, ``split``, ``duration`` and
  ``duration_read`` (a duration is read lazily, the first time a clip is sampled or
  shown, then kept here; NaN with ``duration_read`` = unreadable);
- in the file's schema metadata (JSON): the root, the format version, the listing rules
  (audio extensions), each word folder's ``st_mtime_ns`` with the problems discovery
  found in it, and the split list files' ``(mtime_ns, size)``.

A folder whose mtime is unchanged is not listed again (adding, removing or renaming a
file changes its folder's mtime); a changed one is listed again alone. A file rewritten
in place under the same name does not change its folder's mtime, so its stored duration
can be stale: durations only order batches and bound a slider, and extraction decodes the
clip itself.

Writes are atomic (a temporary file, then ``os.replace``) and everything lives in one
file, so a concurrent reader sees either the old index or the new one, never a mix; two
writers race harmlessly (the last one wins, and each writes a consistent index). A
damaged, foreign or older-format index is ignored with a warning and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

logger = logging.getLogger(__name__)

#: Bump when the stored columns or their meaning change: older files are rebuilt.
FORMAT_VERSION = 1
#: The clip columns stored per root (``clip_id`` and ``path`` are derived on load).
INDEX_COLUMNS = ["word", "name", "speaker", "split", "duration", "duration_read"]
_META_KEY = b"embedviz_manifest_index"
#: mtime stored for a folder that must be listed again on the next open (see FolderRecord).
UNTRUSTED_MTIME = -1


def index_dir() -> Path:
    """Where manifest indexes live: ``$EMBEDVIZ_MANIFEST_CACHE``, else the user cache."""
    env = os.environ.get("EMBEDVIZ_MANIFEST_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("embedviz")) / "manifests"


def index_path(root: Path, directory: Path | None = None) -> Path:
    """The index file of a resolved dataset root."""
    digest = hashlib.sha256(os.fsencode(str(root))).hexdigest()[:32]
    return (index_dir() if directory is None else Path(directory)) / f"{digest}.parquet"


@dataclass(frozen=True)
class FolderRecord:
    """What the index knows about one word folder.

    Attributes:
        mtime_ns: the folder's ``st_mtime_ns`` when it was listed, or
            :data:`UNTRUSTED_MTIME` when it changed during the listing or just before it
            (timestamps are coarse: a file added in the same tick as the listing would
            leave the mtime unchanged), so the next open lists it again.
        problems: ``(printable path, reason)`` of each entry discovery could not use.
    """

    mtime_ns: int
    problems: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StoredIndex:
    """An index as read from or written to disk.

    Attributes:
        folders: word folder name -> its record (folders without clips included, so
            they are not listed again either).
        splits: split list file name -> ``[mtime_ns, size]``, or None when absent.
        clips: one row per usable clip, columns :data:`INDEX_COLUMNS`, sorted by word
            then name.
        rules: the listing rules the index was built with (a change means a rebuild).
    """

    folders: Mapping[str, FolderRecord]
    splits: Mapping[str, list[int] | None]
    clips: pd.DataFrame
    rules: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in INDEX_COLUMNS if c not in self.clips.columns]
        if missing:
            raise ValueError(f"index clips lack columns {missing}")


def _arrow_table(root: Path, index: StoredIndex):
    import pyarrow as pa

    meta = {
        "format_version": FORMAT_VERSION,
        "root": os.fsencode(str(root)).hex(),
        "rules": dict(index.rules),
        "folders": {w: [r.mtime_ns, [list(p) for p in r.problems]] for w, r in index.folders.items()},
        "splits": dict(index.splits),
    }
    clips = index.clips
    # Plain strings (zstd compresses the repeats): they load as pandas' Arrow-backed str
    # columns without a conversion, which is most of the cost of a re-open.
    schema = pa.schema(
        [
            ("word", pa.string()),
            ("name", pa.string()),
            ("speaker", pa.string()),
            ("split", pa.string()),
            ("duration", pa.float64()),
            ("duration_read", pa.bool_()),
        ],
        metadata={_META_KEY: json.dumps(meta).encode("utf-8")},
    )
    arrays = [pa.array(clips[c].astype(str), pa.string()) for c in ("word", "name", "speaker", "split")] + [
        pa.array(clips["duration"].to_numpy(dtype="float64"), pa.float64()),
        pa.array(clips["duration_read"].to_numpy(dtype=bool), pa.bool_()),
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_index(path: Path, root: Path, index: StoredIndex) -> bool:
    """Write ``index`` atomically; False (with a warning) if the folder is not writable.

    The index is an optimisation: failing to write it costs the next open a listing,
    never a wrong answer.
    """
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_arrow_table(root, index), tmp, compression="zstd")
        os.replace(tmp, path)
        return True
    except OSError as exc:
        logger.warning("cannot write the manifest index %s (%s): the next open lists the folders again", path, exc)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # nothing was written there either
        return False


def read_index(path: Path, root: Path, rules: Mapping[str, Any]) -> StoredIndex | None:
    """The index of ``root`` at ``path``; None if absent, damaged, foreign or outdated.

    Anything but "absent" is logged: the caller rebuilds and overwrites the file.
    """
    import pyarrow.parquet as pq

    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[_META_KEY].decode("utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            logger.warning(
                "manifest index %s has format %s (this is %s): rebuilding it",
                path, meta.get("format_version"), FORMAT_VERSION,
            )
            return None
        if bytes.fromhex(meta["root"]) != os.fsencode(str(root)):
            logger.warning("manifest index %s belongs to another folder: rebuilding it for %s", path, root)
            return None
        if meta.get("rules") != json.loads(json.dumps(dict(rules))):
            logger.info("manifest index %s was built with other listing rules: rebuilding it", path)
            return None
        folders = {
            str(word): FolderRecord(int(mtime), tuple((str(p), str(r)) for p, r in problems))
            for word, (mtime, problems) in meta["folders"].items()
        }
        splits = {str(k): (None if v is None else [int(x) for x in v]) for k, v in meta["splits"].items()}
        clips = table.to_pandas()
        index = StoredIndex(folders=folders, splits=splits, clips=clips[INDEX_COLUMNS], rules=dict(rules))
        if not set(clips["word"].unique()) <= set(folders):
            raise ValueError("clips of word folders the index does not record")
        return index
    except Exception as exc:  # pyarrow, JSON and shape errors alike: the file cannot be trusted
        logger.warning("manifest index %s is damaged (%s: %s): rebuilding it", path, type(exc).__name__, exc)
        return None
