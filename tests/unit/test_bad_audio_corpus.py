"""A generated corpus of bad and odd audio, run through the real CLI and the library.

Nothing is downloaded: :func:`make_corpus` writes every kind of bad input the issue
lists into a Speech Commands shaped folder. The tests check that every unusable file is
named with its reason (discovery problems from ``SpeechCommandsDataset.problems`` and
decode-time skips from the extraction report), that every usable but odd file is
embedded with the notice the policy promises, and that the store stays valid: each
usable clip stored exactly once, and a re-run computes nothing.

The file made unreadable by its permissions needs an unprivileged reader: the tests run
as root, and root reads a ``chmod 000`` file. The CLI run therefore goes through
``setpriv`` with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped from the bounding set
(root still owns every other file, so the venv and the temp folders stay usable).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from embedviz.datasets import display_name, open_dataset
from embedviz.pipeline import extract
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore

REPO_ROOT = Path(__file__).resolve().parents[2]
MEL = ExtractionSettings(model="baseline:mel")
RATE = 16000
#: The long file name's length in bytes (ext4 allows 255).
LONG_NAME_BYTES = 250


@dataclass
class Corpus:
    """The generated folder and what must happen to each file in it."""

    root: Path
    #: display path -> a piece of the reason it must be named with (discovery or decode)
    unusable: dict[str, str] = field(default_factory=dict)
    #: clip id -> notice kinds it must get (empty set: a plain clip)
    usable: dict[str, set[str]] = field(default_factory=dict)
    #: display paths of the unusable entries that discovery must refuse without opening them
    discovered: set[str] = field(default_factory=set)
    #: the file whose permissions forbid reading it (usable when the reader is root)
    unreadable: Path | None = None


def _tone(seconds: float, rate: int, seed: int, channels: int = 1, level: float = 0.3) -> np.ndarray:
    """A distinct noisy tone per seed (distinct bytes: the store keys clips by content)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    x = level * np.sin(2 * np.pi * (200 + 37 * seed) * t) + 0.02 * rng.standard_normal(t.shape)
    x = x.astype(np.float32)
    if channels == 1:
        return x
    return np.stack([x * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)


def _wav(data: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def make_corpus(root: Path) -> Corpus:
    """Write every bad and odd kind of input into ``root/<word>/...``; return the expectations."""
    c = Corpus(root)
    good, odd, bad = root / "good", root / "odd", root / "bad"
    for folder in (good, odd, bad):
        folder.mkdir(parents=True)

    def usable(word_dir: Path, name: str, data: bytes, *kinds: str) -> Path:
        path = word_dir / name
        path.write_bytes(data)
        c.usable[f"{word_dir.name}/{name}"] = set(kinds)
        return path

    def unusable(path: Path, reason: str, at_discovery: bool = False) -> None:
        c.unusable[display_name(path)] = reason
        if at_discovery:
            c.discovered.add(display_name(path))

    # Plain clips, so there is something ordinary to embed beside the odd ones.
    for i in range(3):
        usable(good, f"spk{i}_nohash_0.wav", _wav(_tone(1.0, RATE, seed=i)))
    long_name = "long" + "x" * (LONG_NAME_BYTES - len("long_nohash_0.wav")) + "_nohash_0.wav"
    assert len(long_name.encode()) == LONG_NAME_BYTES
    usable(good, long_name, _wav(_tone(1.0, RATE, seed=10)))
    cut_off = _wav(_tone(1.0, RATE, seed=11))
    usable(good, "cutoff_nohash_0.wav", cut_off[: len(cut_off) // 2])  # data ends early: what is there is used

    # Usable but odd: the policy's notices.
    usable(odd, "stereo_nohash_0.wav", _wav(_tone(1.0, RATE, seed=20, channels=2)), "downmixed")
    usable(odd, "six_nohash_0.wav", _wav(_tone(1.0, RATE, seed=21, channels=6)), "downmixed")
    for seed, rate in enumerate((8000, 22050, 44100, 48000), start=30):
        usable(odd, f"rate{rate}_nohash_0.wav", _wav(_tone(1.0, rate, seed=seed), rate), "resampled")
    usable(odd, "long60_nohash_0.wav", _wav(_tone(60.0, RATE, seed=40)), "cut")
    usable(odd, "silence_nohash_0.wav", _wav(np.zeros(RATE, np.float32)), "silent")
    clipped = np.clip(_tone(1.0, RATE, seed=41, level=1.0) * 3.0, -1.0, 1.0)
    usable(odd, "clipped_nohash_0.wav", _wav(clipped), "clipped")

    # Unusable, found when the clip is decoded.
    (bad / "empty_nohash_0.wav").write_bytes(b"")
    unusable(bad / "empty_nohash_0.wav", "empty file")
    (bad / "truncated_nohash_0.wav").write_bytes(_wav(_tone(1.0, RATE, seed=50))[:30])
    unusable(bad / "truncated_nohash_0.wav", "cannot decode")
    (bad / "random_nohash_0.wav").write_bytes(np.random.default_rng(51).bytes(4096))
    unusable(bad / "random_nohash_0.wav", "cannot decode")
    (bad / "noframes_nohash_0.wav").write_bytes(_wav(np.zeros(0, np.float32)))
    unusable(bad / "noframes_nohash_0.wav", "zero-length")
    nan = _tone(1.0, RATE, seed=52)
    nan[100:110] = np.nan
    (bad / "nan_nohash_0.wav").write_bytes(_wav(nan, subtype="FLOAT"))
    unusable(bad / "nan_nohash_0.wav", "NaN")
    inf = _tone(1.0, RATE, seed=53)
    inf[5] = np.inf
    (bad / "inf_nohash_0.wav").write_bytes(_wav(inf, subtype="FLOAT"))
    unusable(bad / "inf_nohash_0.wav", "infinite")
    (bad / "short_nohash_0.wav").write_bytes(_wav(_tone(0.01, RATE, seed=54)))
    unusable(bad / "short_nohash_0.wav", "too short")

    # Unusable, found by discovery without opening anything.
    (bad / "folder_nohash_0.wav").mkdir()
    (bad / "folder_nohash_0.wav" / "inside_nohash_0.wav").write_bytes(_wav(_tone(1.0, RATE, seed=55)))
    unusable(bad / "folder_nohash_0.wav", "folder named like an audio file", at_discovery=True)
    os.symlink("loop_nohash_0.wav", bad / "loop_nohash_0.wav")
    unusable(bad / "loop_nohash_0.wav", "symbolic link loop", at_discovery=True)
    os.symlink(str(root / "nowhere.wav"), bad / "dangling_nohash_0.wav")
    unusable(bad / "dangling_nohash_0.wav", "dangling symbolic link", at_discovery=True)
    non_utf8 = os.fsdecode(b"bad\xff\xfe_nohash_0.wav")
    (bad / non_utf8).write_bytes(_wav(_tone(1.0, RATE, seed=56)))
    unusable(bad / non_utf8, "not valid UTF-8", at_discovery=True)
    word_non_utf8 = root / os.fsdecode(b"caf\xe9")
    word_non_utf8.mkdir()
    (word_non_utf8 / "spk0_nohash_0.wav").write_bytes(_wav(_tone(1.0, RATE, seed=57)))
    unusable(word_non_utf8, "word folder name is not valid UTF-8", at_discovery=True)
    # Discovery tells a FIFO from a file with stat() alone; nothing ever opens it (it would block).
    os.mkfifo(bad / "fifo_nohash_0.wav")
    unusable(bad / "fifo_nohash_0.wav", "not a regular file", at_discovery=True)

    # Valid audio that this user may not read (decided per reader, see the tests).
    c.unreadable = bad / "perm_nohash_0.wav"
    c.unreadable.write_bytes(_wav(_tone(1.0, RATE, seed=58)))
    c.unreadable.chmod(0)
    return c


def _unprivileged() -> list[str] | None:
    """A command prefix that runs a program without root's right to read any file, or None."""
    if os.geteuid() != 0:
        return []  # already unprivileged: chmod 000 works as it is
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]


def _readable_under(prefix: list[str], path: Path) -> bool:
    probe = subprocess.run([*prefix, sys.executable, "-c", f"open({str(path)!r}, 'rb').read(1)"],
                           capture_output=True, timeout=60)
    return probe.returncode == 0


def _expectations(corpus: Corpus, unreadable_blocked: bool) -> tuple[dict[str, str], dict[str, set[str]]]:
    unusable, usable = dict(corpus.unusable), dict(corpus.usable)
    assert corpus.unreadable is not None
    if unreadable_blocked:
        unusable[str(corpus.unreadable)] = "permission denied"
    else:
        usable[f"bad/{corpus.unreadable.name}"] = set()
    return unusable, usable


def _store_rows(store: EmbeddingStore) -> tuple[list[str], list[str], list[Path]]:
    """(clip ids, layers) of every row of every part of the one entry; and its damaged parts."""
    entries = [p for p in store.root.iterdir() if p.is_dir()]
    assert len(entries) == 1, entries
    ids: list[str] = []
    layers: list[str] = []
    for part in sorted(entries[0].glob("part-*.parquet")):
        table = pq.read_table(part, columns=["clip_id", "layer"])
        ids += table.column("clip_id").to_pylist()
        layers += table.column("layer").to_pylist()
    damaged = sorted((entries[0] / "damaged").glob("*")) if (entries[0] / "damaged").is_dir() else []
    return ids, layers, damaged


def _assert_store_holds_exactly(store: EmbeddingStore, usable: dict[str, set[str]]) -> None:
    ids, layers, damaged = _store_rows(store)
    assert not damaged
    per_layer = Counter(layers)
    assert len(set(per_layer.values())) == 1, per_layer  # every layer has the same clips
    n_layers = len(per_layer)
    counts = Counter(ids)
    assert set(counts) == set(usable), set(counts) ^ set(usable)
    assert set(counts.values()) == {n_layers}, "each usable clip is stored exactly once per layer"


def _part_files(store: EmbeddingStore) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in store.root.rglob("*.parquet")}


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    return make_corpus(tmp_path / "corpus")


def test_discovery_names_every_entry_it_cannot_use_without_opening_it(corpus: Corpus) -> None:
    ds = open_dataset(corpus.root)
    problems = {p.path: p.reason for p in ds.problems}
    assert set(problems) == corpus.discovered
    for path in corpus.discovered:
        assert corpus.unusable[path] in problems[path], (path, problems[path])
    listed = set(ds.manifest()["path"])
    assert not any(path in listed for path in problems)
    assert sorted(ds.word_names) == ["bad", "good", "odd"]


def test_library_skips_the_unusable_with_reasons_and_notices_the_odd(corpus: Corpus, tmp_path: Path) -> None:
    # In this process the reader is root, so the chmod 000 file is readable: usable.
    unusable, usable = _expectations(corpus, unreadable_blocked=not os.access(corpus.unreadable, os.R_OK))
    ds = open_dataset(corpus.root)
    manifest = ds.sample(ds.word_names, 1000)
    store = EmbeddingStore(tmp_path / "store")

    report = extract(manifest, MEL, store=store, batch_size=4)

    named = {p.path: p.reason for p in ds.problems} | {s.path: s.reason for s in report.skipped}
    assert set(named) == set(unusable), set(named) ^ set(unusable)
    for path, why in unusable.items():
        assert why in named[path], (path, named[path])
    assert report.computed == len(usable) and not report.cancelled
    got = {clip: set() for clip in usable}
    for notice in report.notices:
        got[notice.clip_id].add(notice.kind)
    assert got == usable
    _assert_store_holds_exactly(store, usable)

    before = _part_files(store)
    again = extract(manifest, MEL, store=store, batch_size=4)
    assert (again.computed, again.cached) == (0, len(usable))
    assert {s.path for s in again.skipped} == {s.path for s in report.skipped}
    assert _part_files(store) == before, "a re-run writes nothing"
    _assert_store_holds_exactly(store, usable)


def test_cli_names_every_unusable_file_and_counts_the_notices(corpus: Corpus, tmp_path: Path) -> None:
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("no way to read as an unprivileged user here (no setpriv)")
    blocked = not _readable_under(prefix, corpus.unreadable)
    assert blocked, "setpriv without CAP_DAC_* still reads a chmod 000 file"
    unusable, usable = _expectations(corpus, unreadable_blocked=True)
    store = tmp_path / "store"
    command = [*prefix, sys.executable, "-m", "embedviz", "extract", "--dataset", str(corpus.root),
               "--model", "baseline:mel", "--samples", "1000", "--cache", str(store), "--batch-size", "4"]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}

    def run() -> str:
        done = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", cwd=REPO_ROOT,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        return done.stdout

    out = run()
    lines = out.splitlines()
    for path, why in unusable.items():
        hits = [line for line in lines if line.strip().startswith(f"skipped {path}:")]
        assert len(hits) == 1, (path, out)
        assert why in hits[0], (path, hits[0])
    summary = next(line for line in lines if line.startswith("baseline:mel:"))
    n_decode_skips = sum(1 for line in lines if line.startswith("  skipped ")) - len(open_dataset(corpus.root).problems)
    assert f"{len(usable)} computed, 0 already stored, {n_decode_skips} skipped" in summary
    kinds = Counter(kind for found in usable.values() for kind in found)
    for kind, n in kinds.items():
        assert any(line.strip().startswith(f"notice {kind}: {n} clip(s)") for line in lines), (kind, out)
    assert "e.g. " in out
    _assert_store_holds_exactly(EmbeddingStore(store), usable)

    before = _part_files(EmbeddingStore(store))
    again = run()
    assert f"0 computed, {len(usable)} already stored" in again
    assert "notice " not in again, "nothing was decoded again, so nothing is noticed again"
    for path in unusable:
        assert f"skipped {path}:" in again
    assert _part_files(EmbeddingStore(store)) == before
