"""Speech Commands style datasets: ``<root>/<word>/<speaker>_nohash_<n>.wav``.

Folders whose name starts with ``_`` (``_background_noise_``) or ``.`` are not words;
nor are folders without audio files. The speaker is the part of the file name before
``_nohash_``. ``validation_list.txt`` and ``testing_list.txt`` (lines ``word/file.wav``)
assign clips to splits when present; every other clip is ``train``.

Discovery lists folders without opening a clip, and is kept in a persistent index
(:mod:`embedviz.dataset_index`): a re-open lists only the word folders that changed.
Durations are read the first time a clip is sampled or shown, then kept in the index.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from embedviz.audio import AUDIO_EXTENSIONS, audio_info
from embedviz.dataset_index import (
    INDEX_COLUMNS,
    UNTRUSTED_MTIME,
    FolderRecord,
    StoredIndex,
    index_path,
    read_index,
    write_index,
)
from embedviz.errors import AudioLoadError, DatasetError
from embedviz.progress import ProgressCallback, ProgressReporter

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["clip_id", "path", "word", "speaker", "duration", "split"]
SPLIT_FILES = {"validation": "validation_list.txt", "testing": "testing_list.txt"}


def demo_root() -> Path:
    """The bundled demo dataset (synthesised with espeak-ng, see its README)."""
    return Path(__file__).resolve().parent / "data" / "demo"


def speaker_of(filename: str) -> str:
    """Speaker id of a Speech Commands file name (``<speaker>_nohash_<n>.wav``)."""
    stem = Path(filename).stem
    return stem.split("_nohash_", 1)[0] if "_nohash_" in stem else stem


def display_name(path: str | Path) -> str:
    """A path as text that is always printable and encodable (bad bytes shown as ``\\xNN``)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class DatasetProblem:
    """A file in a word folder that discovery could not use, and why (in words a user can act on)."""

    path: str  # printable (see display_name), never used to open the file
    reason: str


def _problem_of(entry: Path) -> str | None:
    """Why a word folder's entry that looks like a clip cannot be used, or None if it can."""
    try:
        entry.name.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8: rename the file (for example with convmv) to include it"
    if entry.is_symlink():
        try:
            os.stat(entry)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symbolic link loop: the link points (through other links) back to itself"
            return "dangling symbolic link: its target does not exist"
    if entry.is_dir():
        return "a folder named like an audio file, not an audio file"
    if not entry.is_file():
        return "not a regular file (a device, socket or pipe)"
    return None


class SpeechCommandsDataset:
    """A dataset root laid out as ``<root>/<word>/<clip>``, listed through a persistent index.

    Opening lists the root, stats each word folder and reads the index
    (:mod:`embedviz.dataset_index`); only new or changed word folders are listed, and no
    clip is opened. Durations are read the first time a clip is sampled or shown
    (:meth:`with_durations`) and kept in the index.

    Args:
        root: the dataset folder.
        index_dir: where the index lives (default :func:`embedviz.dataset_index.index_dir`).
        progress: called after each word folder listed (``stage="listing"``); may ask to stop.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        index_dir: str | Path | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.exists():
            raise DatasetError(f"dataset folder not found: {self.root}")
        if not self.root.is_dir():
            raise DatasetError(f"dataset path is not a folder: {self.root}")
        self._index_path = index_path(self.root, None if index_dir is None else Path(index_dir))
        self._lock = threading.Lock()  # the app shares one instance between sessions
        self._open(progress)
        if not len(self._table):
            raise DatasetError(
                f"no word folders with audio in {self.root}: expected <root>/<word>/<speaker>_nohash_<n>.wav"
            )

    # ------------------------------------------------------------------ discovery

    def _word_dirs(self) -> list[os.DirEntry]:
        try:
            with os.scandir(self.root) as it:
                entries = [e for e in it if not e.name.startswith(("_", "."))]
        except OSError as exc:
            raise DatasetError(f"cannot list the dataset folder {self.root}: {exc}") from exc
        dirs = []
        for entry in entries:
            try:
                if entry.is_dir():  # follows links, like Path.is_dir
                    dirs.append(entry)
            except OSError:
                continue  # a link loop or unreadable entry is not a word folder
        return sorted(dirs, key=lambda e: e.name)

    def _split_signature(self) -> dict[str, list[int] | None]:
        signature: dict[str, list[int] | None] = {}
        for name in SPLIT_FILES.values():
            try:
                st = os.stat(self.root / name)
                signature[name] = [st.st_mtime_ns, st.st_size]
            except OSError:
                signature[name] = None
        return signature

    def _open(self, progress: ProgressCallback | None) -> None:
        rules = _listing_rules()
        stored = read_index(self._index_path, self.root, rules)
        reused = {} if stored is None else dict(_word_slices(stored.clips))
        word_dirs = self._word_dirs()
        reporter = ProgressReporter(progress, total=len(word_dirs), stage="listing")
        folders: dict[str, FolderRecord] = {}
        pieces: list[pd.DataFrame] = []
        problems: list[DatasetProblem] = []
        listed: list[str] = []
        for entry in word_dirs:
            word = entry.name
            try:
                word.encode("utf-8")
            except UnicodeEncodeError:
                problems.append(
                    DatasetProblem(display_name(entry.path), "word folder name is not valid UTF-8: rename the folder")
                )
                continue
            record = None if stored is None else stored.folders.get(word)
            try:
                mtime = os.stat(entry.path).st_mtime_ns
            except OSError:
                mtime = UNTRUSTED_MTIME
            if record is not None and record.mtime_ns != UNTRUSTED_MTIME and record.mtime_ns == mtime:
                folders[word] = record
                if word in reused:
                    pieces.append(stored.clips.iloc[reused[word]])  # type: ignore[union-attr]
            else:
                record, rows = _list_folder(entry.path, word)
                folders[word] = record
                pieces.append(rows)
                listed.append(word)
            problems.extend(DatasetProblem(p, r) for p, r in folders[word].problems)
            reporter.advance(message=word)
        splits = self._split_signature()
        changed = stored is None or bool(listed) or set(folders) != set(stored.folders) or splits != stored.splits
        if stored is not None and not listed and len(pieces) == len(reused):
            clips = stored.clips  # every folder as indexed: no copy
        else:
            pieces = [piece for piece in pieces if len(piece)]
            clips = pd.concat(pieces, ignore_index=True) if pieces else _empty_clips()
        if changed:
            split_of = self._split_lists()
            clip_ids = clips["word"].astype(str) + "/" + clips["name"].astype(str)
            split = clip_ids.map(split_of).astype(str)
            clips["split"] = split.where(split.notna(), "train")
        for problem in problems:
            logger.warning("skipped %s: %s", problem.path, problem.reason)
        if listed:
            logger.info("listed %d of %d word folders of %s (the others came from the index)",
                        len(listed), len(folders), self.root)
        self._folders = folders
        self._splits = splits
        self._problems = tuple(problems)
        self._table = self._with_derived_columns(clips)
        if changed:
            self._save()

    def _with_derived_columns(self, clips: pd.DataFrame) -> pd.DataFrame:
        prefix = str(self.root).rstrip("/") + "/"
        clip_id = clips["word"].astype(str) + "/" + clips["name"].astype(str)
        table = pd.DataFrame(
            {
                "clip_id": clip_id,
                "path": prefix + clip_id,
                "word": clips["word"].astype(str),
                "speaker": clips["speaker"].astype(str),
                "duration": clips["duration"].astype("float64"),
                "split": clips["split"].astype(str),
                "_name": clips["name"].astype(str),
                "_read": clips["duration_read"].astype(bool),
            }
        )
        return table.reset_index(drop=True)

    def _save(self) -> None:
        t = self._table
        clips = pd.DataFrame(
            {"word": t["word"], "name": t["_name"], "speaker": t["speaker"], "split": t["split"],
             "duration": t["duration"], "duration_read": t["_read"]}
        )
        write_index(self._index_path, self.root, StoredIndex(self._folders, self._splits, clips, _listing_rules()))

    @property
    def problems(self) -> tuple[DatasetProblem, ...]:
        """Entries in word folders that look like clips but cannot be used, with the reason.

        Decode-time problems (undecodable, too short, NaN samples) are reported by
        extraction as skipped clips; these are the ones found without opening any file.
        They are kept in the index, so a re-open reports them without listing again.
        """
        return self._problems

    def _split_lists(self) -> dict[str, str]:
        split_of: dict[str, str] = {}
        for split, name in SPLIT_FILES.items():
            list_path = self.root / name
            if list_path.is_file():
                for line in list_path.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        split_of[line.strip()] = split
        return split_of

    # ------------------------------------------------------------------ durations

    def _read_durations(self, positions: np.ndarray, progress: ProgressCallback | None = None) -> None:
        """Read the headers of the clips at ``positions`` not read yet; keep them in the index."""
        with self._lock:
            todo = positions[~self._table["_read"].to_numpy()[positions]]
            if not len(todo):
                return
            todo = np.unique(todo)
            paths = self._table["path"].to_numpy()[todo]
            values = np.full(len(todo), np.nan)
            reporter = ProgressReporter(progress, total=len(todo), stage="durations")
            done = 0
            # Headers are small reads, mostly waiting on the disk (libsndfile drops the GIL):
            # a few threads overlap them. Chunks keep progress and stopping responsive.
            workers = 1 if len(todo) < _PARALLEL_READ_FROM else _READ_THREADS
            chunk = max(1 if workers == 1 else 16 * workers, len(todo) // 100)
            pool = ThreadPoolExecutor(workers, thread_name_prefix="embedviz-durations") if workers > 1 else None
            try:
                for start in range(0, len(todo), chunk):
                    part = paths[start : start + chunk]
                    read_part = pool.map(_duration_or_nan, part) if pool is not None else map(_duration_or_nan, part)
                    values[start : start + len(part)] = list(read_part)
                    done = start + len(part)
                    reporter.done = done
                    reporter.report()
            finally:
                if pool is not None:
                    pool.shutdown(wait=True)
                # What was read before a stop (or an error) is kept, and saved, too.
                table = self._table.copy(deep=False)
                duration = table["duration"].to_numpy(copy=True)
                read = table["_read"].to_numpy(copy=True)
                duration[todo[:done]] = values[:done]
                read[todo[:done]] = True
                table["duration"] = duration
                table["_read"] = read
                self._table = table
                if done:
                    self._save()

    def with_durations(self, clips: pd.DataFrame, progress: ProgressCallback | None = None) -> pd.DataFrame:
        """``clips`` (rows of this dataset, by ``clip_id``) with their ``duration`` filled.

        Headers are read only for the clips whose duration is not in the index yet (NaN
        stays for unreadable clips); rows of other datasets are returned unchanged.
        """
        positions = self._positions(clips["clip_id"])
        known = positions >= 0
        self._read_durations(positions[known], progress)
        out = clips.copy()
        duration = out["duration"].to_numpy(dtype="float64", copy=True) if "duration" in out else np.full(len(out), np.nan)
        duration[known] = self._table["duration"].to_numpy()[positions[known]]
        out["duration"] = duration
        return out

    def durations(self, read_all: bool = False, progress: ProgressCallback | None = None) -> pd.Series:
        """Durations (s) of the clips whose header has been read, by ``clip_id`` (NaN: unreadable).

        ``read_all`` reads every header not read yet first (once per clip: they are kept in
        the index); otherwise nothing is opened.
        """
        if read_all:
            self._read_durations(np.arange(len(self._table)), progress)
        t = self._table
        read = t["_read"].to_numpy()
        return pd.Series(t["duration"].to_numpy()[read], index=pd.Index(t["clip_id"][read], name="clip_id"),
                         name="duration")

    def __len__(self) -> int:
        """Number of usable clips."""
        return len(self._table)

    def _positions(self, clip_ids: pd.Series | Sequence[str]) -> np.ndarray:
        return self._clip_index.get_indexer(pd.Index(clip_ids))

    @cached_property
    def _clip_index(self) -> pd.Index:
        return pd.Index(self._table["clip_id"])

    # ------------------------------------------------------------------ queries

    def manifest(self, durations: bool = True, progress: ProgressCallback | None = None) -> pd.DataFrame:
        """Every clip: clip_id, path, word, speaker, duration (s, NaN if unreadable), split.

        With ``durations=False`` nothing is opened: ``duration`` is NaN where the header
        has not been read yet (see :meth:`durations`), which is immediate at any size.
        """
        if durations:
            self._read_durations(np.arange(len(self._table)), progress)
        return self._table[MANIFEST_COLUMNS].copy()

    @property
    def word_names(self) -> list[str]:
        return list(self._word_slices)

    @cached_property
    def _word_slices(self) -> dict[str, slice]:
        return dict(_word_slices(self._table))

    @cached_property
    def _words_table(self) -> pd.DataFrame:
        # From the word slices and speaker codes: no string grouping (105,000 clips: ~5 ms).
        codes = self._speaker_codes
        names = list(self._word_slices)
        clips = [s.stop - s.start for s in self._word_slices.values()]
        speakers = [len(np.unique(codes[s])) for s in self._word_slices.values()]
        return pd.DataFrame({"word": names, "clips": clips, "speakers": speakers})

    def words(self) -> pd.DataFrame:
        """One row per word: clips and distinct speakers."""
        return self._words_table.copy()

    @cached_property
    def _speaker_codes(self) -> np.ndarray:
        # Codes in sorted speaker order, so sorting codes sorts speakers by name.
        codes, _ = pd.factorize(self._table["speaker"], sort=True)
        return codes

    def sample(
        self,
        words: Iterable[str],
        n_per_word: int,
        seed: int = 0,
        splits: Sequence[str] | None = None,
        *,
        durations: bool = True,
    ) -> pd.DataFrame:
        """Up to ``n_per_word`` clips of each word, spread across speakers, reproducibly.

        Speakers are visited in a seeded random order, one clip each per round, so a
        sample of 24 clips from 24 speakers uses 24 speakers rather than 3 prolific ones.
        Each speaker's clips are taken in a seeded random order. ``durations`` fills the
        duration of the sampled clips (reading the headers not in the index yet).
        """
        words = list(dict.fromkeys(words))
        unknown = [w for w in words if w not in self._word_slices]
        if unknown:
            raise DatasetError(
                f"unknown word(s) {', '.join(unknown)} in {self.root}; available: {', '.join(self.word_names)}"
            )
        if n_per_word < 1:
            raise DatasetError(f"samples per word must be at least 1, got {n_per_word}")
        keep = None if not splits else self._table["split"].isin(list(splits)).to_numpy()
        rng = np.random.default_rng(seed)
        picked = []
        for word in words:
            rows = np.arange(self._word_slices[word].start, self._word_slices[word].stop)
            if keep is not None:
                rows = rows[keep[rows]]
            chosen = _round_robin(rows, self._speaker_codes[rows], n_per_word, rng)
            if len(chosen) < n_per_word:
                logger.info("word %r has only %d clips (asked for %d)", word, len(chosen), n_per_word)
            picked.append(chosen)
        positions = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
        if durations:
            self._read_durations(positions)
        return self._table[MANIFEST_COLUMNS].iloc[positions].reset_index(drop=True)


#: Reading this many headers or more uses a few threads.
_PARALLEL_READ_FROM = 256
_READ_THREADS = 4


def _duration_or_nan(path: str) -> float:
    try:
        return audio_info(path).duration
    except AudioLoadError as exc:
        # Keep the clip listed: extraction reports it as skipped with its reason.
        logger.warning("%s", exc)
        return float("nan")


def _round_robin(rows: np.ndarray, speakers: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The clips a seeded speaker round-robin picks from ``rows`` (manifest order), in row order.

    The same draws as shuffling the sorted speaker list, then each speaker's clip list in
    that shuffled order, then popping from the end of each list in turn: ``Generator.shuffle``
    draws identically for a list and for a 1-d array (view), so the selection is the one the
    per-clip loop it replaced made, with one shuffle call per speaker instead of a loop per clip.
    """
    if not len(rows):
        return rows
    uniq, inv = np.unique(speakers, return_inverse=True)
    order = np.argsort(inv, kind="stable")  # grouped by speaker, manifest order inside
    grouped = rows[order]
    counts = np.bincount(inv, minlength=len(uniq))
    starts = np.cumsum(counts) - counts
    speaker_order = np.arange(len(uniq))
    rng.shuffle(speaker_order)
    for s in speaker_order[counts[speaker_order] > 1]:  # a 1-clip shuffle draws nothing
        rng.shuffle(grouped[starts[s] : starts[s] + counts[s]])
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[speaker_order] = np.arange(len(uniq))
    speaker_of_slot = np.repeat(np.arange(len(uniq)), counts)
    position_in_list = np.arange(len(grouped)) - starts[speaker_of_slot]
    round_of_slot = counts[speaker_of_slot] - 1 - position_in_list  # popped from the end
    visit = round_of_slot * len(uniq) + rank[speaker_of_slot]
    first = np.argsort(visit, kind="stable")[:n]
    return np.sort(grouped[first])  # row order is clip_id order within a word


def _listing_rules() -> dict[str, object]:
    return {"audio_extensions": sorted(AUDIO_EXTENSIONS), "hidden_prefix": ".", "speaker_sep": "_nohash_"}


def _empty_clips() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in INDEX_COLUMNS}).astype(
        {"duration": "float64", "duration_read": bool}
    )


def _word_slices(clips: pd.DataFrame) -> list[tuple[str, slice]]:
    """``(word, rows)`` of a table sorted by word (each word's rows are contiguous)."""
    words = clips["word"].to_numpy()
    if not len(words):
        return []
    starts = np.flatnonzero(np.r_[True, words[1:] != words[:-1]])
    stops = np.r_[starts[1:], len(words)]
    return [(str(words[a]), slice(int(a), int(b))) for a, b in zip(starts, stops)]


def _list_folder(folder: str, word: str) -> tuple[FolderRecord, pd.DataFrame]:
    """List one word folder (no file is opened): its record and its clip rows, sorted by name."""
    try:
        before = os.stat(folder).st_mtime_ns
        with os.scandir(folder) as it:
            entries = [e for e in it if not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in AUDIO_EXTENSIONS]
    except OSError as exc:
        problem = (display_name(folder), f"cannot list the folder ({exc.strerror or exc}): check its permissions")
        return FolderRecord(UNTRUSTED_MTIME, (problem,)), _empty_clips()
    names: list[str] = []
    problems: list[tuple[str, str]] = []
    for entry in sorted(entries, key=lambda e: e.name):
        try:
            reason = _problem_of(entry)  # type: ignore[arg-type]  # DirEntry has the Path methods used
        except OSError as exc:
            reason = f"cannot be read ({exc.strerror or exc})"
        if reason is None:
            names.append(entry.name)
        else:
            problems.append((display_name(entry.path), reason))
    try:
        after = os.stat(folder).st_mtime_ns
    except OSError:
        after = UNTRUSTED_MTIME
    # Changed while listing, or so recently that a change in the same timestamp tick would
    # go unseen: list it again next time.
    recent = time.time_ns() - after < _RACY_NS
    mtime = after if after == before and not recent else UNTRUSTED_MTIME
    rows = pd.DataFrame(
        {
            "word": [word] * len(names),
            "name": names,
            # speaker_of without a Path per file: every name here ends in an audio extension.
            "speaker": [n[: n.rfind(".")].split("_nohash_", 1)[0] for n in names],
            "split": ["train"] * len(names),
            "duration": np.full(len(names), np.nan),
            "duration_read": np.zeros(len(names), dtype=bool),
        }
    )
    return FolderRecord(mtime, tuple(problems)), rows


#: A folder modified less than this before it was listed is listed again on the next open.
_RACY_NS = 2_000_000_000


def open_dataset(root: str | Path | None = None) -> SpeechCommandsDataset:
    """Open a dataset root (the bundled demo when ``root`` is None)."""
    return SpeechCommandsDataset(demo_root() if root is None else root)
