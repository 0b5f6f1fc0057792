"""The committed demo dataset (embedviz/data/demo) meets its spec.

See ``scripts/make_demo_dataset.py`` for how it is generated.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = REPO_ROOT / "embedviz" / "data" / "demo"
SCRIPT = REPO_ROOT / "scripts" / "make_demo_dataset.py"

WORDS = {
    "yes", "no", "up", "down", "left", "right",
    "cat", "dog", "zero", "one", "two", "three",
}
REQUIRED_WORDS = {"yes", "no", "cat", "dog", "zero", "one"}
NAME_RE = re.compile(r"^(?P<speaker>[0-9a-f]{8})_nohash_(?P<n>\d+)\.wav$")
LINE_RE = re.compile(r"^(?P<word>[a-z]+)/(?P<speaker>[0-9a-f]{8})_nohash_\d+\.wav$")
MIN_CLIPS_PER_WORD = 24
MIN_SPEAKERS_PER_WORD = 12
MAX_TOTAL_BYTES = 15 * 1024 * 1024
SAMPLE_RATE = 16000
MIN_PEAK_DBFS = -20.0


def _wavs() -> list[Path]:
    return sorted(DEMO.glob("*/*.wav"))


def _speaker(path: Path) -> str:
    match = NAME_RE.match(path.name)
    assert match, path
    return match["speaker"]


def _split(name: str) -> list[str]:
    return (DEMO / name).read_text(encoding="utf-8").splitlines()


def test_demo_dataset_exists() -> None:
    assert DEMO.is_dir()
    assert _wavs(), "no clips in the demo dataset"


def test_words_are_exactly_the_twelve() -> None:
    words = {p.name for p in DEMO.iterdir() if p.is_dir()}
    assert words == WORDS
    assert REQUIRED_WORDS <= words


def test_only_wavs_inside_word_folders() -> None:
    for word_dir in (p for p in DEMO.iterdir() if p.is_dir()):
        for path in word_dir.iterdir():
            assert path.is_file() and path.suffix == ".wav", path


def test_file_names_follow_speech_commands_pattern() -> None:
    takes: dict[tuple[str, str], list[int]] = defaultdict(list)
    for path in _wavs():
        match = NAME_RE.match(path.name)
        assert match, f"bad name {path.relative_to(DEMO)}"
        takes[(path.parent.name, match["speaker"])].append(int(match["n"]))
    for key, numbers in takes.items():
        assert sorted(numbers) == list(range(len(numbers))), f"{key}: n not 0,1,2..: {numbers}"


def test_clip_and_speaker_counts_per_word() -> None:
    for word in WORDS:
        clips = sorted((DEMO / word).glob("*.wav"))
        speakers = {_speaker(p) for p in clips}
        assert len(clips) >= MIN_CLIPS_PER_WORD, (word, len(clips))
        assert len(speakers) >= MIN_SPEAKERS_PER_WORD, (word, len(speakers))


@pytest.mark.parametrize("path", _wavs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_clip_format_and_energy(path: Path) -> None:
    info = sf.info(path)
    assert info.format == "WAV"
    assert info.subtype == "PCM_16"
    assert info.samplerate == SAMPLE_RATE
    assert info.channels == 1
    assert info.frames == SAMPLE_RATE  # exactly 1.0 s
    data, rate = sf.read(path, dtype="float64")
    assert rate == SAMPLE_RATE
    assert data.shape == (SAMPLE_RATE,)
    peak = float(np.max(np.abs(data)))
    assert peak > 0.0
    assert 20.0 * np.log10(peak) > MIN_PEAK_DBFS, f"peak {peak:.4f} too quiet"
    assert peak < 1.0, "clipped"
    # Edges carry the low noise floor: not digitally silent, but far below speech.
    for edge in (data[:160], data[-160:]):
        assert np.any(edge != 0.0)
        assert np.max(np.abs(edge)) < 0.01


def test_total_size_under_limit() -> None:
    total = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert 0 < total < MAX_TOTAL_BYTES, total


def test_split_lists_refer_to_existing_files() -> None:
    for name in ("validation_list.txt", "testing_list.txt"):
        lines = _split(name)
        assert lines, f"{name} is empty"
        assert len(lines) == len(set(lines)), f"{name} has duplicates"
        for line in lines:
            assert LINE_RE.match(line), f"{name}: bad line {line!r}"
            assert (DEMO / line).is_file(), f"{name}: {line} does not exist"


def test_splits_hold_whole_disjoint_speakers() -> None:
    all_speakers = {_speaker(p) for p in _wavs()}
    by_split: dict[str, set[str]] = {}
    for name in ("validation_list.txt", "testing_list.txt"):
        lines = _split(name)
        speakers = {LINE_RE.match(line)["speaker"] for line in lines}  # type: ignore[index]
        by_split[name] = speakers
        # Whole speakers: every clip of a listed speaker is in this list.
        expected = {
            f"{p.parent.name}/{p.name}" for p in _wavs() if _speaker(p) in speakers
        }
        assert set(lines) == expected, f"{name} splits a speaker's clips"
        fraction = len(speakers) / len(all_speakers)
        assert 0.05 <= fraction <= 0.2, f"{name}: {fraction:.0%} of speakers"
    assert not by_split["validation_list.txt"] & by_split["testing_list.txt"]


def test_speakers_csv_matches_clips() -> None:
    rows = (DEMO / "speakers.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "speaker,language,variant,gender,speed,pitch"
    listed = [row.split(",")[0] for row in rows[1:]]
    assert len(listed) == len(set(listed))
    assert set(listed) == {_speaker(p) for p in _wavs()}


def test_readme_present() -> None:
    text = (DEMO / "README.md").read_text(encoding="utf-8")
    assert "espeak-ng" in text.lower()


def _espeak_matches_readme() -> bool:
    if shutil.which("espeak-ng") is None:
        return False
    version = subprocess.run(
        ["espeak-ng", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip().splitlines()
    readme = (DEMO / "README.md").read_text(encoding="utf-8")
    if not version:
        return False
    name = version[0].split("Data at:")[0].strip()  # as the script records it
    return f"`{name}`" in readme


@pytest.mark.skipif(
    not _espeak_matches_readme(),
    reason="espeak-ng missing or a different version from the one that made the data",
)
def test_generator_reproduces_committed_data_byte_for_byte() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--out", str(DEMO)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
