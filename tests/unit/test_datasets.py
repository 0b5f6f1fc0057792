"""Speech Commands layout discovery, word counts, seeded speaker-spread sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from embedviz.datasets import MANIFEST_COLUMNS, demo_root, open_dataset, speaker_of
from embedviz.errors import DatasetError


def make_dataset(root: Path, layout: dict[str, list[str]]) -> Path:
    rng = np.random.default_rng(0)
    for word, names in layout.items():
        (root / word).mkdir(parents=True, exist_ok=True)
        for name in names:
            sf.write(root / word / name, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    return root


def test_discovers_words_and_ignores_non_words(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {"yes": ["aa_nohash_0.wav", "bb_nohash_0.wav", "aa_nohash_1.wav"],
                                   "_background_noise_": ["noise.wav"], "no": ["cc_nohash_0.wav"]})
    (tmp_path / "empty_word").mkdir()
    (tmp_path / "README.md").write_text("not a word")
    (tmp_path / "yes" / "notes.txt").write_text("not audio")
    ds = open_dataset(root)
    assert ds.word_names == ["no", "yes"]
    words = ds.words().set_index("word")
    assert words.loc["yes", "clips"] == 3 and words.loc["yes", "speakers"] == 2
    m = ds.manifest()
    assert list(m.columns) == MANIFEST_COLUMNS
    assert set(m["speaker"]) == {"aa", "bb", "cc"}
    assert np.allclose(m["duration"], 0.5)


def test_split_lists_are_honoured(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {"yes": ["aa_nohash_0.wav", "bb_nohash_0.wav", "cc_nohash_0.wav"]})
    (root / "validation_list.txt").write_text("yes/bb_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/cc_nohash_0.wav\n")
    split = open_dataset(root).manifest().set_index("clip_id")["split"]
    assert split.to_dict() == {"yes/aa_nohash_0.wav": "train", "yes/bb_nohash_0.wav": "validation",
                               "yes/cc_nohash_0.wav": "testing"}


def test_sample_is_seeded_and_spreads_speakers(tmp_path: Path) -> None:
    # speaker aa has 6 clips, the others 1 each: a speaker-blind sample would favour aa.
    names = [f"aa_nohash_{i}.wav" for i in range(6)] + [f"s{i}_nohash_0.wav" for i in range(4)]
    ds = open_dataset(make_dataset(tmp_path, {"yes": names}))
    a = ds.sample(["yes"], 5, seed=3)
    b = ds.sample(["yes"], 5, seed=3)
    assert a.equals(b)
    assert a["speaker"].nunique() == 5
    assert any(not ds.sample(["yes"], 5, seed=s).equals(a) for s in range(5, 15))
    assert len(ds.sample(["yes"], 50)) == 10  # all there is


def test_sample_names_unknown_words(tmp_path: Path) -> None:
    ds = open_dataset(make_dataset(tmp_path, {"yes": ["aa_nohash_0.wav"]}))
    with pytest.raises(DatasetError, match="maybe"):
        ds.sample(["maybe"], 1)


@pytest.mark.parametrize("setup", ["missing", "file", "empty"])
def test_bad_roots_raise_clear_errors(tmp_path: Path, setup: str) -> None:
    target = tmp_path / "root"
    if setup == "file":
        target.write_text("x")
    elif setup == "empty":
        target.mkdir()
    with pytest.raises(DatasetError, match=str(target.name)):
        open_dataset(target)


def test_demo_is_the_default_and_has_the_required_words() -> None:
    ds = open_dataset()
    assert ds.root == demo_root()
    words = ds.words().set_index("word")
    for w in ["yes", "no", "cat", "dog", "zero", "one"]:
        assert words.loc[w, "clips"] >= 24 and words.loc[w, "speakers"] >= 12


def test_speaker_of() -> None:
    assert speaker_of("0a7c2a8d_nohash_3.wav") == "0a7c2a8d"
    assert speaker_of("odd-name.wav") == "odd-name"


def test_discovery_names_every_entry_it_cannot_use(tmp_path):
    """Folders named like clips, link loops, dangling links and non-UTF-8 names are listed, not dropped."""
    import os

    from embedviz.datasets import SpeechCommandsDataset

    word = tmp_path / "yes"
    word.mkdir()
    good = word / "aaaa1111_nohash_0.wav"
    sf.write(good, np.zeros(1600, dtype=np.float32), 16000)
    (word / "dir_nohash_0.wav").mkdir()
    os.symlink(word / "loop_b_nohash_0.wav", word / "loop_a_nohash_0.wav")
    os.symlink(word / "loop_a_nohash_0.wav", word / "loop_b_nohash_0.wav")
    os.symlink(tmp_path / "gone.wav", word / "dangling_nohash_0.wav")
    # soundfile cannot encode a non-UTF-8 name, so the clip is copied there by bytes.
    with open(os.path.join(os.fsencode(word), b"caf\xe9_nohash_0.wav"), "wb") as out:
        out.write(good.read_bytes())
    (word / "notes.txt").write_text("not a clip")

    ds = SpeechCommandsDataset(tmp_path)
    reasons = {p.path.rsplit("/", 1)[-1]: p.reason for p in ds.problems}
    assert set(reasons) == {
        "dir_nohash_0.wav",
        "loop_a_nohash_0.wav",
        "loop_b_nohash_0.wav",
        "dangling_nohash_0.wav",
        "caf\\xe9_nohash_0.wav",
    }
    assert "folder" in reasons["dir_nohash_0.wav"]
    assert "loop" in reasons["loop_a_nohash_0.wav"]
    assert "dangling" in reasons["dangling_nohash_0.wav"]
    assert "UTF-8" in reasons["caf\\xe9_nohash_0.wav"]
    # The usable clip is still there, and the manifest can be written by pyarrow.
    manifest = ds.manifest()
    assert list(manifest["clip_id"]) == ["yes/aaaa1111_nohash_0.wav"]
    manifest.to_parquet(tmp_path / "manifest.parquet")


def _reference_sample(m, words, n_per_word, seed, splits=None):
    """The per-clip speaker round-robin sample() is defined by (its implementation before the index)."""
    if splits:
        m = m[m["split"].isin(list(splits))]
    rng = np.random.default_rng(seed)
    picked = []
    for word in words:
        rows = m[m["word"] == word]
        by_speaker = {s: list(g.index) for s, g in rows.groupby("speaker", sort=True)}
        speakers = list(by_speaker)
        rng.shuffle(speakers)
        for s in speakers:
            rng.shuffle(by_speaker[s])
        chosen = []
        while len(chosen) < n_per_word and any(by_speaker[s] for s in speakers):
            for s in speakers:
                if by_speaker[s] and len(chosen) < n_per_word:
                    chosen.append(by_speaker[s].pop())
        picked.extend(sorted(chosen, key=lambda i: m.at[i, "clip_id"]))
    return m.loc[picked].reset_index(drop=True)


def test_sample_matches_the_reference_round_robin(tmp_path: Path) -> None:
    import os
    import random

    clip = tmp_path / "clip.wav"
    sf.write(clip, np.zeros(800, dtype=np.float32), 16000)
    root = tmp_path / "data"
    r = random.Random(7)
    ids = []
    for word in ["bed", "bird", "zero"]:
        (root / word).mkdir(parents=True)
        for _ in range(r.randint(5, 40)):  # speakers with 1 to 12 clips each
            speaker = f"{r.getrandbits(32):08x}"
            for k in range(r.choice([1, 1, 2, 3, 12])):
                os.link(clip, root / word / f"{speaker}_nohash_{k}.wav")
                ids.append(f"{word}/{speaker}_nohash_{k}.wav")
    (root / "testing_list.txt").write_text("\n".join(r.sample(ids, len(ids) // 4)))
    ds = open_dataset(root)
    m = ds.manifest()
    for seed in range(4):
        for n in [1, 3, 10, 1000]:
            for splits in [None, ["testing"]]:
                words = r.sample(["bed", "bird", "zero"], 2)
                expected = _reference_sample(m, words, n, seed, splits)
                assert ds.sample(words, n, seed=seed, splits=splits).equals(expected), (seed, n, splits)
