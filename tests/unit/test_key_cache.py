"""Clip content keys remembered across runs (embedviz.key_cache)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from embedviz import hashing, key_cache


def _clip(path: Path, data: bytes, age_s: float = 60.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    old = time.time() - age_s
    os.utime(path, (old, old))  # older than RACY_NS: safe to remember
    return path


def _new_process() -> None:
    """What a fresh process knows: nothing in memory, the key files on disk."""
    key_cache.forget()
    with hashing._clip_lock:
        hashing._clip_keys.clear()


@pytest.fixture
def hashed(monkeypatch) -> list[str]:
    """The paths whose bytes were hashed (content_key called) since the fixture started."""
    seen: list[str] = []
    real = key_cache.content_key

    def counting(path):
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr(key_cache, "content_key", counting)
    _new_process()
    yield seen
    _new_process()


def test_keys_are_content_keys_and_a_new_process_reads_no_unchanged_clip(tmp_path, hashed) -> None:
    clips = [_clip(tmp_path / "data" / w / f"s{i}_nohash_0.wav", f"{w}{i}".encode() * 100)
             for w in ("yes", "no") for i in range(3)]
    cache = tmp_path / "keys"
    first = key_cache.content_keys(clips, cache)
    assert first == [hashing.content_key(p) for p in clips]
    assert len(hashed) == 6
    assert len(list(cache.glob("*.parquet"))) == 2, "one key file per folder"

    _new_process()
    hashed.clear()
    assert key_cache.content_keys([str(p) for p in clips], cache) == first
    assert hashed == [], "unchanged clips are not read again"


def test_an_edited_clip_gets_a_new_key(tmp_path, hashed) -> None:
    a = _clip(tmp_path / "w" / "a.wav", b"A" * 500)
    cache = tmp_path / "keys"
    (old,) = key_cache.content_keys([a], cache)
    # Same size, new content and a new mtime: the remembered key no longer applies.
    _clip(a, b"B" * 500, age_s=30)
    _new_process()
    hashed.clear()
    (new,) = key_cache.content_keys([a], cache)
    assert new != old and new == hashing.content_key(a)
    assert hashed == [str(a)]


def test_a_just_modified_clip_is_not_remembered(tmp_path, hashed) -> None:
    fresh = _clip(tmp_path / "w" / "fresh.wav", b"F" * 100, age_s=0)  # within RACY_NS of now
    cache = tmp_path / "keys"
    key_cache.content_keys([fresh], cache)
    _new_process()
    hashed.clear()
    key_cache.content_keys([fresh], cache)
    assert hashed == [str(fresh)], "a file this new could change without changing its stat"


def test_missing_and_unreadable_paths_keep_their_reasons_and_are_not_remembered(tmp_path, hashed) -> None:
    cache = tmp_path / "keys"
    (tmp_path / "w").mkdir()
    missing, folder = tmp_path / "w" / "gone.wav", tmp_path / "w"
    keys = key_cache.content_keys([missing, folder], cache)
    assert keys[0].startswith("missing:") and keys[1].startswith("unreadable:")
    assert not any(hashing.has_content(k) for k in keys)
    assert not list(cache.glob("*.parquet"))


def test_a_link_gets_its_targets_key(tmp_path, hashed) -> None:
    target = _clip(tmp_path / "real" / "a.wav", b"X" * 300)
    link = tmp_path / "links" / "a.wav"
    link.parent.mkdir()
    link.symlink_to(target)
    cache = tmp_path / "keys"
    assert key_cache.content_keys([link], cache) == [hashing.content_key(target)]
    _new_process()
    hashed.clear()
    assert key_cache.content_keys([target], cache) == [hashing.content_key(target)]
    assert hashed == [], "remembered under the target's folder"


def test_a_damaged_key_file_is_ignored_and_rewritten(tmp_path, hashed, caplog) -> None:
    a = _clip(tmp_path / "w" / "a.wav", b"A" * 200)
    cache = tmp_path / "keys"
    (key,) = key_cache.content_keys([a], cache)
    (file,) = cache.glob("*.parquet")
    file.write_bytes(b"not parquet")
    _new_process()
    hashed.clear()
    with caplog.at_level(logging.WARNING, logger="embedviz.key_cache"):
        assert key_cache.content_keys([a], cache) == [key]
    assert "damaged clip key file" in caplog.text
    assert hashed == [str(a)]
    _new_process()
    hashed.clear()
    assert key_cache.content_keys([a], cache) == [key]
    assert hashed == [], "the rewritten file is used"


def test_a_foreign_key_file_is_not_trusted(tmp_path, hashed) -> None:
    a = _clip(tmp_path / "one" / "a.wav", b"A" * 200)
    b = _clip(tmp_path / "two" / "a.wav", b"B" * 200)
    cache = tmp_path / "keys"
    key_cache.content_keys([a], cache)
    (file,) = cache.glob("*.parquet")
    # The file of folder "one" put where folder "two"'s belongs: same name, same stat.
    os.utime(b, ns=(os.stat(a).st_mtime_ns,) * 2)
    file.rename(key_cache._file_of(cache, os.path.realpath(b.parent)))
    _new_process()
    assert key_cache.content_keys([b], cache) == [hashing.content_key(b)]


def test_an_unwritable_cache_costs_only_the_hashing(tmp_path, hashed, caplog) -> None:
    a = _clip(tmp_path / "w" / "a.wav", b"A" * 200)
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    with caplog.at_level(logging.WARNING, logger="embedviz.key_cache"):
        assert key_cache.content_keys([a], blocked / "keys") == [hashing.content_key(a)]
    assert "cannot remember clip keys" in caplog.text


def test_many_clips_in_many_folders_keep_their_order(tmp_path, hashed) -> None:
    clips = [_clip(tmp_path / f"w{i % 3}" / f"c{i:03d}.wav", os.urandom(64)) for i in range(40)]
    got = key_cache.content_keys(clips, tmp_path / "keys")
    assert got == [hashing.digest(p.read_bytes(), hashing.CLIP_KEY_LENGTH) for p in clips]
