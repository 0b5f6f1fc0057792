"""Clips that decoding rejects are remembered by content: a re-run loads no model for them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from embedviz.datasets import open_dataset
from embedviz.pipeline import extract, missing_clips, unusable_clips
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore

MEL = ExtractionSettings(model="baseline:mel")


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "yes").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(root / "yes" / f"s{i}_nohash_0.wav", rng.standard_normal(16000).astype(np.float32) * 0.1, 16000)
    (root / "yes" / "garbage_nohash_0.wav").write_bytes(b"not audio at all" * 64)
    sf.write(root / "yes" / "short_nohash_0.wav", np.ones(80, dtype=np.float32) * 0.1, 16000)  # 5 ms
    return root


def test_a_rerun_reports_rejected_clips_without_loading_the_model(folder, tmp_path, monkeypatch) -> None:
    import embedviz.models

    manifest = open_dataset(folder).manifest(durations=False)
    store = EmbeddingStore(tmp_path / "store")
    first = extract(manifest, MEL, store=store)
    assert first.computed == 3 and len(first.skipped) == 2
    assert len(missing_clips(manifest, MEL, store)) == 0  # nothing left that Extract could do

    loads = []
    real = embedviz.models.load_extractor
    monkeypatch.setattr(embedviz.models, "load_extractor", lambda *a, **k: loads.append(a) or real(*a, **k))
    again = extract(manifest, MEL, store=store)
    assert loads == [] and again.cached == 3 and again.computed == 0
    reasons = {Path(s.path).name: s.reason for s in again.skipped}
    assert set(reasons) == {"garbage_nohash_0.wav", "short_nohash_0.wav"}
    assert all("earlier run" in r for r in reasons.values())
    assert [Path(s.path).name for s in unusable_clips(manifest, store)] == sorted(reasons) or \
        {Path(s.path).name for s in unusable_clips(manifest, store)} == set(reasons)


def test_a_fixed_file_is_decoded_again(folder, tmp_path) -> None:
    manifest = open_dataset(folder).manifest(durations=False)
    store = EmbeddingStore(tmp_path / "store")
    extract(manifest, MEL, store=store)
    # The user replaces the broken file: new content, new key, so it is computed.
    sf.write(folder / "yes" / "garbage_nohash_0.wav", np.full(16000, 0.05, dtype=np.float32), 16000)
    manifest = open_dataset(folder).manifest(durations=False)
    assert list(missing_clips(manifest, MEL, store)["clip_id"]) == ["yes/garbage_nohash_0.wav"]
    report = extract(manifest, MEL, store=store)
    assert report.computed == 1 and [Path(s.path).name for s in report.skipped] == ["short_nohash_0.wav"]


def test_another_decode_policy_forgets_what_it_rejected(folder, tmp_path) -> None:
    manifest = open_dataset(folder).manifest(durations=False)
    store = EmbeddingStore(tmp_path / "store")
    extract(manifest, MEL, store=store)
    memo = tmp_path / "store" / "unusable-clips.json"
    data = json.loads(memo.read_text())
    assert len(data["clips"]) == 2
    data["decode_policy"] = -1
    memo.write_text(json.dumps(data))
    assert store.unusable_clips() == {}
    assert len(missing_clips(manifest, MEL, store)) == 2  # decoded again under today's rules
    memo.write_text("{ damaged")
    assert store.unusable_clips() == {}
