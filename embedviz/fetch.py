"""Fetch the Speech Commands archive: resumable download, safe streaming extraction.

:func:`fetch_speech_commands` downloads the official archive of a version (or any
``http``/``https`` URL given), resuming a dropped connection with an HTTP ``Range``
request, both automatically (retries with backoff) and on a re-run (the ``.part`` file
next to the destination is continued). It then streams the archive through
``tarfile`` (``r|gz``: no second pass, no temporary copy) and writes only what is
asked for: the chosen word folders, the split lists, and ``_background_noise_`` only on
request. Every member passes :func:`tarfile.data_filter` plus our own checks: no
absolute paths, nothing outside the destination, no links, no devices; each refused
member is named in the result. The destination is finally registered as an allowed data
root (:func:`fetched_roots`), so the app can open it.

Where things are: the partial download is ``<dest>/.download/<archive name>.part`` (with a
``.json`` sidecar naming its URL and validator); the registry of fetched folders is
``fetched_roots.json`` in the per-user config folder (``$EMBEDVIZ_FETCHED_ROOTS_FILE``
overrides it).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable

from embedviz.errors import ConfigError, EmbedvizError
from embedviz.progress import ProgressCallback, ProgressReporter, format_eta

logger = logging.getLogger(__name__)

#: The official archives (Warden 2018, CC BY 4.0).
ARCHIVE_URLS = {
    "v0.02": "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
    "v0.01": "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
}
ALLOWED_SCHEMES = ("http", "https")
SPLIT_LISTS = ("validation_list.txt", "testing_list.txt")
#: Top-level files worth keeping with the data (licence and the dataset's own README).
TOP_LEVEL_FILES = ("LICENSE", "README.md")
BACKGROUND_NOISE = "_background_noise_"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
CHUNK = 256 * 1024
_ROOTS_ENV = "EMBEDVIZ_FETCHED_ROOTS_FILE"


class FetchError(EmbedvizError):
    """The archive could not be downloaded or extracted (names the URL or file and what to do)."""


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_speech_commands` did.

    Attributes:
        dest: the dataset folder (resolved), now an allowed data root.
        counts: clips per word folder found in ``dest`` after extraction.
        refused: ``(member name, reason)`` for every archive member not written.
        missing_words: asked-for words the archive did not contain.
        downloaded_bytes: bytes transferred in this call (0 when the archive was complete).
        archive_bytes: size of the archive.
        resumed: the download continued a partial file.
        restarted: the server ignored a ``Range`` request, so the download started over.
        extracted: files written.
    """

    dest: str
    counts: dict[str, int]
    refused: tuple[tuple[str, str], ...] = ()
    missing_words: tuple[str, ...] = ()
    downloaded_bytes: int = 0
    archive_bytes: int = 0
    resumed: bool = False
    restarted: bool = False
    extracted: int = 0

    @property
    def clips(self) -> int:
        return sum(self.counts.values())


# ---------------------------------------------------------------------- the roots registry


def fetched_roots_file() -> Path:
    """The JSON registry of folders this product fetched (``$EMBEDVIZ_FETCHED_ROOTS_FILE``)."""
    env = os.environ.get(_ROOTS_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("embedviz")) / "fetched_roots.json"


def fetched_roots() -> list[Path]:
    """Folders fetched by :func:`fetch_speech_commands` that still exist (resolved)."""
    path = fetched_roots_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        logger.warning("ignoring the fetched-roots registry %s: %s", path, exc)
        return []
    roots = data.get("roots", []) if isinstance(data, dict) else []
    found = [Path(r).resolve() for r in roots if isinstance(r, str) and r.strip()]
    return [r for r in found if r.is_dir()]


def register_fetched_root(folder: str | Path) -> Path:
    """Add ``folder`` to the registry (atomically); returns the registry file."""
    path = fetched_roots_file()
    folder = str(Path(folder).resolve())
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        roots = [r for r in data.get("roots", []) if isinstance(r, str)]
    except (OSError, ValueError, AttributeError):
        roots = []
    if folder not in roots:
        roots.append(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"roots": roots}, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------- download


def check_url(url: str) -> str:
    """``url`` if its scheme is allowed (http/https) and it names a host, else ConfigError."""
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme.lower() not in ALLOWED_SCHEMES:
        raise ConfigError(
            f"--url must be an http or https address, got {url!r} (scheme {parsed.scheme or 'missing'!r})"
        )
    if not parsed.hostname:
        raise ConfigError(f"--url has no host: {url!r}")
    return url.strip()


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http/https addresses (urllib alone would also follow ftp)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_CheckedRedirects)

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass
class _Transfer:
    downloaded: int = 0
    resumed: bool = False
    restarted: bool = False
    total: int = 0


def download(
    url: str,
    target: Path,
    *,
    progress: ProgressCallback | None = None,
    retries: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
) -> _Transfer:
    """Download ``url`` to ``target``, resuming ``target.part`` with HTTP Range requests.

    A dropped connection is retried up to ``retries`` times in a row (waits of
    ``backoff_s``, doubling, at most 30 s); each retry asks only for the missing bytes.
    A server that answers a Range request with ``200`` sends the whole file: the partial
    file is then discarded and the download starts over (logged, and ``restarted`` set).

    Raises:
        ConfigError: the URL's scheme is not allowed.
        Cancelled: the progress callback asked to stop (the ``.part`` file is kept).
        FetchError: the server refused, or the connection failed ``retries`` times in a row.
    """
    url = check_url(url)
    part = target.with_name(target.name + ".part")
    sidecar = target.with_name(target.name + ".part.json")
    state = _Transfer()
    if target.is_file():
        state.total = target.stat().st_size
        return state
    target.parent.mkdir(parents=True, exist_ok=True)
    validator = ""
    if part.is_file():
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        if meta.get("url") != url:
            logger.info("%s belongs to another URL; starting over", part)
            part.unlink()
        else:
            validator = str(meta.get("validator", ""))
    failures = 0
    reporter = ProgressReporter(progress, total=0, stage="downloading")
    t0 = time.perf_counter()
    while True:
        have = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": "embedviz", "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
            if validator:
                headers["If-Range"] = validator
        request = urllib.request.Request(url, headers=headers)
        try:
            with _OPENER.open(request, timeout=timeout_s) as response:
                status = response.status
                length = response.headers.get("Content-Length")
                if have and status == 206:
                    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                    if not match or int(match.group(1)) != have:
                        raise FetchError(
                            f"{url}: the server answered the resume request with Content-Range "
                            f"{response.headers.get('Content-Range')!r}, not starting at byte {have}; "
                            f"delete {part} to start over"
                        )
                    state.total = int(match.group(3)) if match.group(3) != "*" else have + int(length or 0)
                    state.resumed = True
                    mode = "ab"
                elif status == 200:
                    if have:
                        logger.warning("%s ignored the Range request; downloading again from zero", url)
                        state.restarted = True
                        have = 0
                    state.total = int(length) if length else 0
                    mode = "wb"
                else:
                    raise FetchError(f"{url}: unexpected HTTP status {status}")
                validator = response.headers.get("ETag") or response.headers.get("Last-Modified") or ""
                sidecar.write_text(json.dumps({"url": url, "validator": validator}), encoding="utf-8")
                reporter.total = state.total
                with open(part, mode) as out:
                    done = have
                    last = 0.0
                    while True:
                        chunk = response.read(CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        done += len(chunk)
                        state.downloaded += len(chunk)
                        failures = 0
                        now = time.perf_counter()
                        if now - last >= 0.1 or (state.total and done >= state.total):
                            last = now
                            rate = state.downloaded / max(now - t0, 1e-6)
                            eta = (state.total - done) / rate if state.total and rate > 0 else None
                            reporter.done = done
                            out.flush()
                            reporter.report(
                                f"{_mb(done)} of {_mb(state.total) if state.total else '?'}, "
                                f"{rate / 1e6:.1f} MB/s, ETA {format_eta(eta)}"
                            )
                if state.total and done < state.total:
                    raise http.client.IncompleteRead(b"", state.total - done)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:
                # Nothing left to send: the part file may already be complete.
                match = re.match(r"bytes\s+\*/(\d+)", exc.headers.get("Content-Range", "") or "")
                if match and int(match.group(1)) == have:
                    state.total = have
                    break
                part.unlink(missing_ok=True)
                logger.warning("%s: the partial file does not fit the archive any more; starting over", url)
                continue
            if 500 <= exc.code < 600 and failures < retries:
                failures += 1
                _wait(backoff_s, failures, url, exc)
                continue
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}; check the address") from exc
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError) as exc:
            if failures >= retries:
                raise FetchError(
                    f"{url}: the connection failed {failures + 1} times in a row ({exc}); "
                    f"run the same command again to resume from {_mb(part.stat().st_size if part.is_file() else 0)}"
                ) from exc
            failures += 1
            _wait(backoff_s, failures, url, exc)
    os.replace(part, target)
    sidecar.unlink(missing_ok=True)
    return state


def _wait(backoff_s: float, failures: int, url: str, exc: BaseException) -> None:
    delay = min(30.0, backoff_s * 2 ** (failures - 1))
    logger.warning("%s: connection dropped (%s); retry %d in %.1f s", url, exc, failures, delay)
    time.sleep(delay)


# ---------------------------------------------------------------------- extraction


class _CountingReader:
    """A read-only file wrapper that reports bytes consumed (extraction progress)."""

    def __init__(self, raw: BinaryIO, reporter: ProgressReporter) -> None:
        self.raw = raw
        self.reporter = reporter
        self._last = 0.0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.reporter.done += len(data)
        now = time.perf_counter()
        if now - self._last >= 0.1:
            self._last = now
            self.reporter.report(f"{_mb(self.reporter.done)} of {_mb(self.reporter.total)} read")
        return data


def _member_parts(name: str) -> tuple[str, ...]:
    return tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))


def _refusal(member: tarfile.TarInfo, dest: Path) -> str:
    """Why ``member`` must not be written into ``dest`` ("" when it is safe)."""
    name = member.name
    if name.startswith("/") or PurePosixPath(name).is_absolute() or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    parts = _member_parts(name)
    if ".." in parts:
        return "path leads outside the destination ('..')"
    if member.issym() or member.islnk():
        return f"link ({'symbolic' if member.issym() else 'hard'}, to {member.linkname!r}): links are not extracted"
    if not (member.isreg() or member.isdir()):
        return "not a regular file or folder (device, FIFO or other special file)"
    target = (dest / Path(*parts)).resolve() if parts else dest
    if not target.is_relative_to(dest):
        return "path leads outside the destination (through a symlink)"
    if hasattr(tarfile, "data_filter"):
        try:
            tarfile.data_filter(member, str(dest))
        except tarfile.FilterError as exc:
            return f"refused by tarfile's data filter: {exc}"
    return ""


def _wanted(parts: tuple[str, ...], words: set[str] | None, background_noise: bool, split_lists: bool) -> bool:
    if not parts:
        return False
    if len(parts) == 1:
        return (split_lists and parts[0] in SPLIT_LISTS) or parts[0] in TOP_LEVEL_FILES
    top = parts[0]
    if top == BACKGROUND_NOISE:
        return background_noise
    if top.startswith(("_", ".")):
        return False
    return words is None or top in words


def extract_archive(
    archive: Path,
    dest: Path,
    *,
    words: Iterable[str] | None = None,
    background_noise: bool = False,
    split_lists: bool = True,
    progress: ProgressCallback | None = None,
) -> tuple[int, list[tuple[str, str]], set[str]]:
    """Stream ``archive`` (tar.gz) into ``dest``; returns (files written, refused, words seen).

    Only regular files and folders are written, never outside ``dest``; every refused
    member is named with its reason (also logged).
    """
    dest = dest.resolve()
    wanted_words = set(words) if words else None
    refused: list[tuple[str, str]] = []
    seen: set[str] = set()
    written = 0
    reporter = ProgressReporter(progress, total=archive.stat().st_size, stage="extracting")
    try:
        with open(archive, "rb") as raw:
            reader = _CountingReader(raw, reporter)
            with tarfile.open(fileobj=reader, mode="r|gz") as tar:  # type: ignore[call-overload]
                for member in tar:
                    why = _refusal(member, dest)
                    if why:
                        refused.append((member.name, why))
                        logger.warning("refused archive member %r: %s", member.name, why)
                        continue
                    parts = _member_parts(member.name)
                    if len(parts) >= 2 and not parts[0].startswith(("_", ".")):
                        seen.add(parts[0])
                    if member.isdir() or not _wanted(parts, wanted_words, background_noise, split_lists):
                        continue
                    member.name = "/".join(parts)
                    if hasattr(tarfile, "data_filter"):
                        tar.extract(member, dest, filter="data")
                    else:  # Python without extraction filters: our checks above are the filter
                        tar.extract(member, dest)
                    written += 1
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise FetchError(
            f"{archive}: the archive is damaged or not a .tar.gz ({exc}); delete it and fetch again"
        ) from exc
    reporter.done = reporter.total
    reporter.report("done")
    return written, refused, seen


def count_clips(dest: Path, words: Iterable[str] | None = None) -> dict[str, int]:
    """Audio files per word folder of ``dest`` (all word folders, or just ``words``)."""
    counts: dict[str, int] = {}
    names = sorted(words) if words else sorted(
        e.name for e in os.scandir(dest) if e.is_dir() and not e.name.startswith(("_", "."))
    )
    for word in names:
        folder = dest / word
        if not folder.is_dir():
            counts[word] = 0
            continue
        counts[word] = sum(
            1 for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(AUDIO_SUFFIXES)
        )
    return counts


def fetch_speech_commands(
    dest: str | Path,
    *,
    version: str = "v0.02",
    url: str | None = None,
    words: Iterable[str] | None = None,
    background_noise: bool = False,
    split_lists: bool = True,
    keep_archive: bool = False,
    progress: ProgressCallback | None = None,
    retries: int = 5,
    backoff_s: float = 1.0,
    register: bool = True,
) -> FetchResult:
    """Download and extract Speech Commands into ``dest``; see the module docstring.

    Progress comes in two stages, ``downloading`` (bytes of the archive, with MB, rate
    and ETA in the message) and ``extracting`` (archive bytes read). Returning True from
    ``progress`` raises :class:`~embedviz.errors.Cancelled`; a partial download is kept
    and the same call resumes it.

    Raises:
        ConfigError: unknown version, a URL whose scheme is not http/https, or ``dest``
            is a file.
        FetchError: download or extraction failed (the message says what to do).
        Cancelled: stopped by the progress callback.
    """
    if url is None:
        if version not in ARCHIVE_URLS:
            raise ConfigError(f"--version must be one of {', '.join(ARCHIVE_URLS)}, got {version!r}")
        url = ARCHIVE_URLS[version]
    url = check_url(url)  # before anything touches the disk
    word_list = sorted({w.strip() for w in words or () if w.strip()}) or None
    for word in word_list or ():
        if "/" in word or "\\" in word or word.startswith((".", "_")):
            raise ConfigError(f"--words: {word!r} is not a word folder name")
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"--dest {dest} exists and is not a folder")
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    name = Path(urllib.parse.urlsplit(url).path).name or "archive.tar.gz"
    archive = dest / ".download" / name
    transfer = download(url, archive, progress=progress, retries=retries, backoff_s=backoff_s)
    written, refused, seen = extract_archive(
        archive, dest, words=word_list, background_noise=background_noise, split_lists=split_lists,
        progress=progress,
    )
    if not keep_archive:
        shutil.rmtree(archive.parent, ignore_errors=True)
    missing = tuple(w for w in word_list or () if w not in seen)
    if missing:
        logger.warning("not in the archive: %s", ", ".join(missing))
    counts = count_clips(dest, word_list)
    if register:
        register_fetched_root(dest)
    return FetchResult(
        dest=str(dest),
        counts=counts,
        refused=tuple(refused),
        missing_words=missing,
        downloaded_bytes=transfer.downloaded,
        archive_bytes=transfer.total,
        resumed=transfer.resumed,
        restarted=transfer.restarted,
        extracted=written,
    )


__all__ = [
    "ARCHIVE_URLS",
    "FetchError",
    "FetchResult",
    "check_url",
    "count_clips",
    "download",
    "extract_archive",
    "fetch_speech_commands",
    "fetched_roots",
    "fetched_roots_file",
    "register_fetched_root",
]
