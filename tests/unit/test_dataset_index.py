"""The persistent manifest index: re-opens read no header and list no unchanged folder.

Counts come from wrapping the real functions (``audio_info`` reads a header,
``_list_folder`` lists a word folder), so each test proves what was *not* done.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import embedviz.datasets as datasets
from embedviz.dataset_index import index_path, read_index
from embedviz.datasets import SpeechCommandsDataset, open_dataset
from embedviz.errors import Cancelled

LAYOUT = {
    "yes": ["aa_nohash_0.wav", "aa_nohash_1.wav", "bb_nohash_0.wav", "cc_nohash_0.wav"],
    "no": ["aa_nohash_0.wav", "dd_nohash_0.wav", "dd_nohash_1.wav"],
    "cat": ["ee_nohash_0.wav", "ff_nohash_0.wav"],
}


def write_clip(path: Path, seconds: float) -> None:
    sf.write(path, np.zeros(int(16000 * seconds), dtype=np.float32), 16000)


def settle(root: Path, age_s: float = 3600, only: tuple[str, ...] = ()) -> None:
    """Date the folders (``only`` these words, if given) in the past, as untouched for a while."""
    past = time.time() - age_s
    folders = [root / w for w in only] if only else [root, *(p for p in root.iterdir() if p.is_dir())]
    for folder in folders:
        os.utime(folder, (past, past))


def make(root: Path, layout: dict[str, list[str]] = LAYOUT) -> Path:
    for i, (word, names) in enumerate(layout.items()):
        (root / word).mkdir(parents=True, exist_ok=True)
        for j, name in enumerate(names):
            write_clip(root / word / name, 0.25 + 0.05 * i + 0.01 * j)  # every clip its own length
    settle(root)
    return root


class Calls:
    """Wraps a module function, counting calls (and their first argument)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module, name: str) -> None:
        self.args: list = []
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            self.args.append(args[0] if args else None)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    def __len__(self) -> int:
        return len(self.args)


@pytest.fixture(autouse=True)
def private_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "index"
    monkeypatch.setenv("EMBEDVIZ_MANIFEST_CACHE", str(folder))
    return folder


def test_discovery_reads_no_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make(tmp_path / "data")
    headers = Calls(monkeypatch, datasets, "audio_info")
    ds = open_dataset(root)
    assert ds.word_names == ["cat", "no", "yes"]
    assert ds.words().set_index("word").loc["yes", "clips"] == 4
    listing = ds.manifest(durations=False)
    assert len(listing) == 9 and listing["duration"].isna().all()
    assert len(headers) == 0
    # A sample reads the headers of the sampled clips only.
    picked = ds.sample(["no"], 2, seed=0)
    assert len(headers) == 2 and picked["duration"].notna().all()
    assert len(ds.durations()) == 2


def test_reopen_reads_the_index_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make(tmp_path / "data")
    first = open_dataset(root)
    full = first.manifest()  # reads every duration, and keeps them in the index
    assert full["duration"].notna().all() and full["duration"].nunique() == len(full)

    headers = Calls(monkeypatch, datasets, "audio_info")
    listings = Calls(monkeypatch, datasets, "_list_folder")
    again = open_dataset(root)
    assert again.manifest().equals(full)
    assert again.words().equals(first.words())
    assert again.sample(["yes", "cat"], 3, seed=4).equals(first.sample(["yes", "cat"], 3, seed=4))
    assert len(headers) == 0 and len(listings) == 0


def test_a_changed_folder_is_listed_again_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make(tmp_path / "data")
    open_dataset(root).manifest()
    write_clip(root / "yes" / "gg_nohash_0.wav", 0.4)  # new file
    (root / "no" / "dd_nohash_1.wav").unlink()  # deleted file
    settle(root, age_s=60, only=("yes", "no"))  # changed, but not just now

    headers = Calls(monkeypatch, datasets, "audio_info")
    listings = Calls(monkeypatch, datasets, "_list_folder")
    ds = open_dataset(root)
    assert sorted(Path(p).name for p in listings.args) == ["no", "yes"]  # cat was not listed
    m = ds.manifest()
    assert "yes/gg_nohash_0.wav" in set(m["clip_id"]) and "no/dd_nohash_1.wav" not in set(m["clip_id"])
    assert len(m) == 9
    # Headers of the re-listed folders are read again; cat's durations came from the index.
    assert not any("/cat/" in str(p) for p in headers.args)
    assert len(headers) == len(m[m["word"] != "cat"])
    assert m.set_index("clip_id").loc["yes/gg_nohash_0.wav", "duration"] == pytest.approx(0.4)


def test_new_and_removed_word_folders_and_split_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make(tmp_path / "data")
    open_dataset(root)
    (root / "dog").mkdir()
    write_clip(root / "dog" / "hh_nohash_0.wav", 0.3)
    for f in (root / "cat").iterdir():
        f.unlink()
    (root / "cat").rmdir()
    (root / "validation_list.txt").write_text("yes/bb_nohash_0.wav\n")
    settle(root, age_s=60, only=("dog",))

    listings = Calls(monkeypatch, datasets, "_list_folder")
    ds = open_dataset(root)
    assert [Path(p).name for p in listings.args] == ["dog"]
    assert ds.word_names == ["dog", "no", "yes"]
    split = ds.manifest(durations=False).set_index("clip_id")["split"]
    assert split["yes/bb_nohash_0.wav"] == "validation" and (split.drop("yes/bb_nohash_0.wav") == "train").all()
    # A changed split list alone changes the splits without listing any folder.
    (root / "validation_list.txt").write_text("no/aa_nohash_0.wav\n")
    again = open_dataset(root)
    assert len(listings) == 1
    split = again.manifest(durations=False).set_index("clip_id")["split"]
    assert split["no/aa_nohash_0.wav"] == "validation" and split["yes/bb_nohash_0.wav"] == "train"


def test_a_folder_changed_just_now_is_listed_again_next_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make(tmp_path / "data")
    now = time.time()
    os.utime(root / "yes", (now, now))  # a file may land in this same timestamp tick unseen
    open_dataset(root)
    listings = Calls(monkeypatch, datasets, "_list_folder")
    open_dataset(root)
    assert [Path(p).name for p in listings.args] == ["yes"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_a_damaged_or_foreign_index_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    root = make(tmp_path / "data")
    expected = open_dataset(root).manifest()
    path = index_path(root.resolve(), Path(os.environ["EMBEDVIZ_MANIFEST_CACHE"]))
    if damage == "garbage":
        path.write_bytes(b"not parquet at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # another dataset's index under this root's name (a copied cache folder)
        other = make(tmp_path / "other", {"up": ["zz_nohash_0.wav"]})
        open_dataset(other)
        path.write_bytes(index_path(other.resolve(), path.parent).read_bytes())
    caplog.set_level(logging.WARNING, logger="embedviz.dataset_index")
    listings = Calls(monkeypatch, datasets, "_list_folder")
    ds = open_dataset(root)
    assert ds.manifest().equals(expected)
    assert len(listings) == 3  # rebuilt from the folders
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    assert read_index(path, root.resolve(), datasets._listing_rules()) is not None  # and written back
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_problems_survive_a_reopen_without_a_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make(tmp_path / "data")
    (root / "yes" / "dir_nohash_0.wav").mkdir()
    os.symlink(tmp_path / "gone.wav", root / "yes" / "dangling_nohash_0.wav")
    os.mkdir(os.path.join(os.fsencode(root), b"caf\xe9"))  # a word folder with a non-UTF-8 name
    settle(root)
    first = SpeechCommandsDataset(root)
    assert len(first.problems) == 3

    listings = Calls(monkeypatch, datasets, "_list_folder")
    again = SpeechCommandsDataset(root)
    assert again.problems == first.problems
    assert len(listings) == 0


def test_concurrent_openers_agree_and_leave_a_valid_index(tmp_path: Path) -> None:
    root = make(tmp_path / "data")
    results: list = [None] * 4
    start = threading.Barrier(len(results))

    def opener(i: int) -> None:
        start.wait()
        ds = SpeechCommandsDataset(root)
        results[i] = ds.sample(["yes", "no"], 2, seed=1)

    threads = [threading.Thread(target=opener, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None and r.equals(results[0]) for r in results)
    folder = Path(os.environ["EMBEDVIZ_MANIFEST_CACHE"])
    assert [p.suffix for p in folder.iterdir()] == [".parquet"]  # no temporary file left
    assert read_index(next(folder.iterdir()), root.resolve(), datasets._listing_rules()) is not None


def test_stopping_a_duration_read_keeps_what_was_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make(tmp_path / "data")
    ds = open_dataset(root)
    with pytest.raises(Cancelled):
        ds.durations(read_all=True, progress=lambda event: event.done >= 3)
    kept = len(ds.durations())
    assert 3 <= kept < len(ds)
    headers = Calls(monkeypatch, datasets, "audio_info")
    assert len(open_dataset(root).durations()) == kept  # saved in the index
    assert len(headers) == 0


def test_unreadable_clips_keep_nan_and_are_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make(tmp_path / "data")
    (root / "yes" / "zz_nohash_0.wav").write_bytes(b"RIFF but not really audio")
    settle(root)
    m = open_dataset(root).manifest()
    assert np.isnan(m.set_index("clip_id").loc["yes/zz_nohash_0.wav", "duration"])
    headers = Calls(monkeypatch, datasets, "audio_info")
    again = open_dataset(root).manifest()
    assert len(headers) == 0 and again.equals(m)


def test_many_durations_are_read_in_threads_each_to_its_clip(tmp_path: Path) -> None:
    lengths = [0.2, 0.3, 0.45, 0.6, 0.75]
    bases = []
    for i, seconds in enumerate(lengths):
        bases.append(tmp_path / f"base{i}.wav")
        write_clip(bases[-1], seconds)
    root = tmp_path / "data"
    expected = {}
    for w, word in enumerate(["yes", "no"]):
        (root / word).mkdir(parents=True)
        for k in range(200):  # 400 clips: past the threaded threshold
            base = (k * 7 + w) % len(lengths)
            os.link(bases[base], root / word / f"s{k:03d}_nohash_0.wav")
            expected[f"{word}/s{k:03d}_nohash_0.wav"] = lengths[base]
    settle(root)
    durations = open_dataset(root).manifest().set_index("clip_id")["duration"]
    assert durations.to_dict() == pytest.approx(expected)


def test_an_unwritable_index_folder_costs_a_listing_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = make(tmp_path / "data")
    blocker = tmp_path / "a-file"
    blocker.write_text("the index folder cannot be created under a file")
    monkeypatch.setenv("EMBEDVIZ_MANIFEST_CACHE", str(blocker / "index"))
    caplog.set_level(logging.WARNING, logger="embedviz.dataset_index")
    ds = open_dataset(root)
    assert len(ds.sample(["yes"], 2)) == 2
    assert any("cannot write the manifest index" in r.getMessage() for r in caplog.records)


def test_the_app_opens_a_dataset_without_reading_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st

    from ui import cached

    root = make(tmp_path / "data")
    headers = Calls(monkeypatch, datasets, "audio_info")
    st.cache_resource.clear()
    st.cache_data.clear()
    try:
        assert cached.dataset_words(str(root)) == ["cat", "no", "yes"]
        assert len(cached.manifest(str(root))) == 9
        assert len(headers) == 0
        assert cached.sample(str(root), ("no",), 2, 0)["duration"].notna().all()
        assert len(headers) == 2  # the sampled clips only
    finally:
        st.cache_resource.clear()
        st.cache_data.clear()
