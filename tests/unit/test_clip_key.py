"""Clip keys come from the one hash module (SHA-256), by content, and follow edits."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from embedviz import hashing, pipeline


def test_clip_key_is_the_sha256_of_the_content_from_hashing(tmp_path: Path) -> None:
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"RIFF one")
    b.write_bytes(b"RIFF one")
    expected = hashlib.sha256(b"RIFF one").hexdigest()[: hashing.CLIP_KEY_LENGTH]
    assert pipeline.clip_key(a) == pipeline.clip_key(b) == hashing.content_key(a) == expected
    a.write_bytes(b"RIFF two, longer")
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))
    assert pipeline.clip_key(a) == hashlib.sha256(b"RIFF two, longer").hexdigest()[:32], "an edit changes the key"
    assert pipeline.clip_key(tmp_path / "gone.wav").startswith("missing:")


def test_a_folder_named_like_a_clip_gets_an_unreadable_key(tmp_path: Path) -> None:
    folder = tmp_path / "x_nohash_0.wav"
    folder.mkdir()
    assert pipeline.clip_key(folder) == f"unreadable:{folder}"
