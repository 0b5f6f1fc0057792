"""Speech Commands style datasets: ``<root>/<word>/<speaker>_nohash_<n>.wav``.

Folders whose name starts with ``_`` (``_background_noise_``) or ``.`` are not words;
nor are folders without audio files. The speaker is the part of the file name before
``_nohash_``. ``validation_list.txt`` and ``testing_list.txt`` (lines ``word/file.wav``)
assign clips to splits when present; every other clip is ``train``.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from embedviz.audio import AUDIO_EXTENSIONS, audio_info
from embedviz.errors import AudioLoadError, DatasetError

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


def _is_word_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(("_", "."))


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
    """A dataset root laid out as ``<root>/<word>/<clip>``; cheap to build, lazy to scan."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.exists():
            raise DatasetError(f"dataset folder not found: {self.root}")
        if not self.root.is_dir():
            raise DatasetError(f"dataset path is not a folder: {self.root}")
        if not self._files_by_word:
            raise DatasetError(
                f"no word folders with audio in {self.root}: expected <root>/<word>/<speaker>_nohash_<n>.wav"
            )

    @cached_property
    def _discovery(self) -> tuple[dict[str, list[Path]], tuple[DatasetProblem, ...]]:
        found: dict[str, list[Path]] = {}
        problems: list[DatasetProblem] = []
        for word_dir in sorted(p for p in self.root.iterdir() if _is_word_dir(p)):
            try:
                word_dir.name.encode("utf-8")
            except UnicodeEncodeError:
                problems.append(
                    DatasetProblem(display_name(word_dir), "word folder name is not valid UTF-8: rename the folder")
                )
                continue
            files: list[Path] = []
            for f in sorted(word_dir.iterdir()):
                if f.name.startswith(".") or f.suffix.lower() not in AUDIO_EXTENSIONS:
                    continue  # hidden files and non-audio files (notes, lists) are not clips
                reason = _problem_of(f)
                if reason is None:
                    files.append(f)
                else:
                    problems.append(DatasetProblem(display_name(f), reason))
            if files:
                found[word_dir.name] = files
        for problem in problems:
            logger.warning("skipped %s: %s", problem.path, problem.reason)
        return found, tuple(problems)

    @property
    def _files_by_word(self) -> dict[str, list[Path]]:
        return self._discovery[0]

    @property
    def problems(self) -> tuple[DatasetProblem, ...]:
        """Entries in word folders that look like clips but cannot be used, with the reason.

        Decode-time problems (undecodable, too short, NaN samples) are reported by
        extraction as skipped clips; these are the ones found without opening any file.
        """
        return self._discovery[1]

    def _split_lists(self) -> dict[str, str]:
        split_of: dict[str, str] = {}
        for split, name in SPLIT_FILES.items():
            list_path = self.root / name
            if list_path.is_file():
                for line in list_path.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        split_of[line.strip()] = split
        return split_of

    @cached_property
    def _manifest(self) -> pd.DataFrame:
        split_of = self._split_lists()
        rows = []
        for word, files in self._files_by_word.items():
            for f in files:
                clip_id = f"{word}/{f.name}"
                try:
                    duration = audio_info(f).duration
                except AudioLoadError as exc:
                    # Keep the clip listed: extraction reports it as skipped with its reason.
                    logger.warning("%s", exc)
                    duration = float("nan")
                rows.append((clip_id, str(f), word, speaker_of(f.name), duration, split_of.get(clip_id, "train")))
        return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)

    def manifest(self) -> pd.DataFrame:
        """Every clip: clip_id, path, word, speaker, duration (s, NaN if unreadable), split."""
        return self._manifest.copy()

    @property
    def word_names(self) -> list[str]:
        return list(self._files_by_word)

    def words(self) -> pd.DataFrame:
        """One row per word: clips and distinct speakers."""
        m = self._manifest
        table = m.groupby("word", sort=True).agg(clips=("clip_id", "size"), speakers=("speaker", "nunique"))
        return table.reset_index()

    def sample(
        self,
        words: Iterable[str],
        n_per_word: int,
        seed: int = 0,
        splits: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Up to ``n_per_word`` clips of each word, spread across speakers, reproducibly.

        Speakers are visited in a seeded random order, one clip each per round, so a
        sample of 24 clips from 24 speakers uses 24 speakers rather than 3 prolific ones.
        """
        words = list(dict.fromkeys(words))
        unknown = [w for w in words if w not in self._files_by_word]
        if unknown:
            raise DatasetError(
                f"unknown word(s) {', '.join(unknown)} in {self.root}; available: {', '.join(self.word_names)}"
            )
        if n_per_word < 1:
            raise DatasetError(f"samples per word must be at least 1, got {n_per_word}")
        m = self._manifest
        if splits:
            m = m[m["split"].isin(list(splits))]
        rng = np.random.default_rng(seed)
        picked: list[int] = []
        for word in words:
            rows = m[m["word"] == word]
            by_speaker = {s: list(g.index) for s, g in rows.groupby("speaker", sort=True)}
            speakers = list(by_speaker)
            rng.shuffle(speakers)
            for s in speakers:
                rng.shuffle(by_speaker[s])
            chosen: list[int] = []
            while len(chosen) < n_per_word and any(by_speaker[s] for s in speakers):
                for s in speakers:
                    if by_speaker[s] and len(chosen) < n_per_word:
                        chosen.append(by_speaker[s].pop())
            if len(chosen) < n_per_word:
                logger.info("word %r has only %d clips (asked for %d)", word, len(chosen), n_per_word)
            picked.extend(sorted(chosen, key=lambda i: m.at[i, "clip_id"]))
        return m.loc[picked].reset_index(drop=True)


def open_dataset(root: str | Path | None = None) -> SpeechCommandsDataset:
    """Open a dataset root (the bundled demo when ``root`` is None)."""
    return SpeechCommandsDataset(demo_root() if root is None else root)
