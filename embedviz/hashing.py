"""The one family of hash functions embedviz uses: SHA-256, hex digests.

Every key that names content (settings, store entries, weight files, clips, cached views)
comes from here, so there is one algorithm to reason about and one place to change it.
Nothing here imports numpy or torch.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Iterable

_BLOCK = 1 << 20


def digest(data: bytes | str, length: int | None = None) -> str:
    """SHA-256 hex digest of ``data`` (str is UTF-8 encoded), cut to ``length`` characters."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    value = hashlib.sha256(data).hexdigest()
    return value[:length] if length else value


def digest_parts(parts: Iterable[bytes | str], length: int | None = None) -> str:
    """SHA-256 hex digest of several parts, each length-prefixed so ``("ab", "c") != ("a", "bc")``."""
    h = hashlib.sha256()
    for part in parts:
        raw = part.encode("utf-8") if isinstance(part, str) else bytes(part)
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    value = h.hexdigest()
    return value[:length] if length else value


def stable_hash(payload: Any, length: int = 16) -> str:
    """Short hex digest of a JSON-serialisable payload, independent of dict order."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return digest(text, length)


_file_lock = threading.Lock()
_file_hashes: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, memoised by (resolved path, size, mtime).

    Repeated calls do not re-read multi-GB weights unless the file changes.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _file_lock:
        cached = _file_hashes.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            h.update(block)
    value = h.hexdigest()
    with _file_lock:
        _file_hashes[key] = value
    return value


_clip_lock = threading.Lock()
_clip_keys: dict[tuple[str, int, int], str] = {}
#: Hex characters of a clip's content key (128 bits: collisions are not a concern).
CLIP_KEY_LENGTH = 32
#: Prefixes of the keys :func:`content_key` gives a file whose content it could not read.
NO_CONTENT_PREFIXES = ("missing:", "unreadable:")


def has_content(key: str) -> bool:
    """False for the ``missing:`` / ``unreadable:`` keys of files that could not be read."""
    return not str(key).startswith(NO_CONTENT_PREFIXES)


def content_key(path: str | Path) -> str:
    """Content key of a clip file: SHA-256 of its bytes, cut to :data:`CLIP_KEY_LENGTH` hex.

    Memoised by (resolved path, size, mtime), so a renamed or copied file gets the same key
    and an edited one a new key. A file that does not exist gets ``missing:<path>``, one that
    cannot be read (permissions, a folder, a device) ``unreadable:<path>``: never a stored
    clip's key, and decoding it then names why.
    """
    p = Path(path)
    try:
        st = p.stat()
        memo = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        return f"missing:{p}"
    with _clip_lock:
        cached = _clip_keys.get(memo)
    if cached is not None:
        return cached
    try:
        data = p.read_bytes()
    except OSError:
        return f"unreadable:{p}"
    value = digest(data, CLIP_KEY_LENGTH)
    with _clip_lock:
        _clip_keys[memo] = value
    return value
