"""Clip content keys remembered across runs: one small Parquet file per folder.

A clip's store key is the SHA-256 of its bytes (:func:`embedviz.hashing.content_key`),
memoised in the process. A fresh process (a restarted app server, each CLI run) had to
read every sampled clip again to learn which are stored: 5,250 clips were a third of a
new view's server time, 101,500 clips 25 s of reading 3.3 GB. :func:`content_keys` keeps
each key with its file's ``(size, st_mtime_ns)`` and reuses it only while both match, the
rule the in-process memo uses. A file modified less than :data:`RACY_NS` before it was
hashed is not remembered (timestamps are coarse: an edit in the same tick that keeps the
size would keep the stat too), so it is hashed again next time.

The files live in ``<manifest cache>/clip-keys/`` (:func:`embedviz.dataset_index.index_dir`),
one per resolved folder, named by a hash of it, with the folder in the schema metadata.
Writes are atomic (a temporary file, then ``os.replace``); two writers race harmlessly
(the last one wins; the other's keys are hashed again later). A damaged or foreign file is
ignored and rewritten; a cache that cannot be written only costs the hashing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat as stat_mod
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from embedviz.hashing import content_key, digest, has_content

logger = logging.getLogger(__name__)

#: A file modified less than this before it was hashed is not remembered across runs.
RACY_NS = 2_000_000_000
#: Bump when the stored columns or their meaning change: older files are ignored.
FORMAT_VERSION = 1
_META_KEY = b"embedviz_clip_keys"


def key_dir() -> Path:
    """Where the per-folder key files live: ``clip-keys`` in the manifest cache."""
    from embedviz.dataset_index import index_dir

    return index_dir() / "clip-keys"


@dataclass
class _Folder:
    """The remembered keys of one resolved folder: file name -> (size, mtime_ns, key)."""

    path: str
    keys: dict[str, tuple[int, int, str]] = field(default_factory=dict)


_lock = threading.Lock()
_folders: dict[tuple[str, str], _Folder] = {}
_warned: set[str] = set()


def _file_of(directory: Path, folder: str) -> Path:
    return directory / f"{digest(os.fsencode(folder), 32)}.parquet"


def _load(directory: Path, folder: str) -> _Folder:
    import pyarrow.parquet as pq

    path = _file_of(directory, folder)
    found = _Folder(folder)
    if not path.exists():
        return found
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}"))
        if meta.get("version") != FORMAT_VERSION or meta.get("folder") != folder:
            logger.info("ignoring clip key file %s (another folder or format)", path)
            return found
        cols = table.to_pydict()
        found.keys = {n: (int(s), int(m), str(k)) for n, s, m, k in
                      zip(cols["name"], cols["size"], cols["mtime_ns"], cols["key"])}
    except Exception as exc:  # a damaged file only costs hashing again
        logger.warning("ignoring damaged clip key file %s: %s", path, exc)
    return found


def _save(directory: Path, folder: _Folder) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _lock:  # another thread may be adding keys to this folder
        known = dict(folder.keys)
    names = sorted(known)
    table = pa.table(
        {"name": pa.array(names, pa.string()),
         "size": pa.array([known[n][0] for n in names], pa.int64()),
         "mtime_ns": pa.array([known[n][1] for n in names], pa.int64()),
         "key": pa.array([known[n][2] for n in names], pa.string())}
    ).replace_schema_metadata({_META_KEY: json.dumps({"version": FORMAT_VERSION, "folder": folder.path})})
    target = _file_of(directory, folder.path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the folder itself may be what cannot be made
            tmp.unlink(missing_ok=True)
        if str(directory) not in _warned:  # once per directory: the keys are still right
            _warned.add(str(directory))
            logger.warning("cannot remember clip keys in %s (%s); clips are hashed again in each run", directory, exc)


def _folder(directory: Path, folder: str) -> _Folder:
    with _lock:
        found = _folders.get((str(directory), folder))
    if found is None:
        loaded = _load(directory, folder)
        with _lock:
            found = _folders.setdefault((str(directory), folder), loaded)
    return found


def forget() -> None:
    """Drop what this process has loaded (the files stay): the next call reads them again."""
    with _lock:
        _folders.clear()


def content_keys(paths: Iterable[str | Path], directory: Path | None = None) -> list[str]:
    """:func:`embedviz.hashing.content_key` of each path, remembered across runs.

    A file whose ``(size, st_mtime_ns)`` match what was remembered for it is not read; the
    others are hashed and remembered. Missing and unreadable
    files get ``content_key``'s ``missing:`` / ``unreadable:`` keys and are not remembered.

    Args:
        paths: clip files (symbolic links are followed: a link gets its target's key).
        directory: where the key files live (default :func:`key_dir`).
    """
    directory = key_dir() if directory is None else Path(directory)
    paths = [os.fspath(p) for p in paths]
    keys: list[str | None] = [None] * len(paths)
    real_dirs: dict[str, str] = {}
    loaded: dict[str, _Folder] = {}  # this call's folders, so the loop takes no lock per clip
    todo: list[tuple[int, str, str, int, int]] = []  # (position, folder, name, size, mtime_ns)
    for i, p in enumerate(paths):
        try:
            st = os.lstat(p)
            if stat_mod.S_ISLNK(st.st_mode):
                real = os.path.realpath(p)
                st = os.stat(real)
                folder, name = os.path.split(real)
            else:
                parent, name = os.path.split(os.path.abspath(p))
                folder = real_dirs.get(parent)
                if folder is None:
                    folder = real_dirs[parent] = os.path.realpath(parent)
        except OSError:
            keys[i] = content_key(p)  # names why: missing or unreadable
            continue
        if not stat_mod.S_ISREG(st.st_mode):
            keys[i] = content_key(p)
            continue
        here = loaded.get(folder)
        if here is None:
            here = loaded[folder] = _folder(directory, folder)
        known = here.keys.get(name)
        if known is not None and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            keys[i] = known[2]
        else:
            todo.append((i, folder, name, st.st_size, st.st_mtime_ns))
    if todo:
        # One thread: on this 2-core machine 4 threads were no faster on 5,250 and 35,000
        # clips (bench/bench_dataset_scale.py), so the simple loop stays.
        hashed = [content_key(paths[i]) for i, *_ in todo]
        now = time.time_ns()
        touched: dict[str, _Folder] = {}
        with _lock:
            for (i, folder, name, size, mtime), key in zip(todo, hashed):
                keys[i] = key
                if has_content(key) and now - mtime >= RACY_NS:
                    loaded[folder].keys[name] = (size, mtime, key)
                    touched[folder] = loaded[folder]
        for f in touched.values():
            _save(directory, f)
    return [str(k) for k in keys]
