"""Extraction orchestration: nothing twice, resume, skip bad clips, cancel, batching."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from embedviz import pipeline
from embedviz.datasets import open_dataset
from embedviz.errors import ExtractionError
from embedviz.extractors.base import Extractor, FrameFeatures
from embedviz.models import load_extractor
from embedviz.pipeline import extract, missing_clips
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore, read_layers

MEL = ExtractionSettings(model="baseline:mel")


@pytest.fixture
def manifest() -> pd.DataFrame:
    return open_dataset().sample(["yes", "no", "cat"], 4, seed=0)


@pytest.fixture
def store(tmp_path: Path) -> EmbeddingStore:
    return EmbeddingStore(tmp_path / "store")


class CountingExtractor(Extractor):
    """Wraps a real extractor; counts forward passes and can crash on a chosen call."""

    def __init__(self, inner: Extractor, crash_on: int | None = None, error: type[Exception] = RuntimeError):
        self.inner, self.info, self.calls, self.crash_on, self.error = inner, inner.info, 0, crash_on, error

    def extract(self, waveforms) -> FrameFeatures:
        self.calls += 1
        if self.crash_on is not None and self.calls == self.crash_on:
            raise self.error("simulated crash")
        return self.inner.extract(waveforms)


def part_files(store: EmbeddingStore) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in store.root.rglob("*") if p.is_file()}


def test_second_run_is_a_pure_cache_hit(manifest, store, monkeypatch) -> None:
    first = extract(manifest, MEL, store=store, batch_size=5)
    assert (first.computed, first.cached, first.skipped) == (12, 0, [])
    assert first.forward_passes == 3
    before = part_files(store)

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded on a cache hit")

    monkeypatch.setattr("embedviz.models.load_extractor", no_model)
    second = extract(manifest, MEL, store=store, batch_size=5)
    assert (second.computed, second.cached, second.forward_passes) == (0, 12, 0)
    assert part_files(store) == before, "a cache hit rewrites nothing"
    assert missing_clips(manifest, MEL, store).empty


def test_only_missing_clips_are_computed(manifest, store) -> None:
    extract(manifest.iloc[:5], MEL, store=store)
    report = extract(manifest, MEL, store=store)
    assert (report.computed, report.cached) == (7, 5)


def test_resume_after_crash_matches_a_clean_run(manifest, store, tmp_path) -> None:
    crashing = CountingExtractor(load_extractor("baseline:mel"), crash_on=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract(manifest, MEL, store=store, batch_size=2, extractor=crashing)
    assert len(missing_clips(manifest, MEL, store)) == 8  # two batches of 2 were kept
    resumed = extract(manifest, MEL, store=store, batch_size=2)
    assert (resumed.computed, resumed.cached) == (8, 4)

    clean_store = EmbeddingStore(tmp_path / "clean")
    extract(manifest, MEL, store=clean_store, batch_size=2)
    a = read_layers(store, MEL, ["mfcc"], "mean", manifest=manifest)["mfcc"]
    b = read_layers(clean_store, MEL, ["mfcc"], "mean", manifest=manifest)["mfcc"]
    np.testing.assert_allclose(a.X, b.X, atol=1e-5)


def test_cancel_keeps_finished_batches(manifest, store) -> None:
    def stop_after_first_batch(event):
        return event.stage == "extracting" and event.done >= 3

    report = extract(manifest, MEL, store=store, batch_size=3, progress=stop_after_first_batch)
    assert report.cancelled and report.computed == 3
    assert len(missing_clips(manifest, MEL, store)) == 9


def test_bad_clips_are_skipped_with_reasons(tmp_path, store) -> None:
    root = tmp_path / "data"
    shutil.copytree(open_dataset().root / "yes", root / "yes")
    (root / "yes" / "deadbeef_nohash_0.wav").write_bytes(b"garbage")
    sf.write(root / "yes" / "feedface_nohash_0.wav", np.full(400, 0.1, np.float32), 16000)  # 25 ms
    manifest = open_dataset(root).sample(["yes"], 30)
    report = extract(manifest, MEL, store=store)
    reasons = {s.clip_id: s.reason for s in report.skipped}
    assert set(reasons) == {"yes/deadbeef_nohash_0.wav", "yes/feedface_nohash_0.wav"}
    assert "cannot decode" in reasons["yes/deadbeef_nohash_0.wav"] and "too short" in reasons["yes/feedface_nohash_0.wav"]
    assert report.computed == 24
    emb = read_layers(store, MEL, ["logmel"], "mean", manifest=manifest)["logmel"]
    assert emb.X.shape[0] == 24 and sorted(emb.missing) == sorted(reasons)


def test_a_failing_forward_pass_skips_only_its_clip(manifest, store) -> None:
    class FailsOnLoud(CountingExtractor):
        def extract(self, waveforms):
            if any(np.abs(w).max() > 0.99 for w in waveforms):
                raise ExtractionError("simulated failure on a loud clip")
            return self.inner.extract(waveforms)

    loud_dir = manifest.copy()
    report = extract(loud_dir, MEL, store=store, batch_size=4, extractor=FailsOnLoud(load_extractor("baseline:mel")))
    # demo clips peak at -3 dBFS, so none fails here: all computed despite the wrapper
    assert report.computed == 12 and not report.skipped


def test_read_layers_follows_manifest_order(manifest, store) -> None:
    extract(manifest, MEL, store=store)
    shuffled = manifest.sample(frac=1.0, random_state=1).reset_index(drop=True)
    emb = read_layers(store, MEL, ["logmel", "mfcc"], "meanstd", manifest=shuffled)
    assert list(emb["mfcc"].clips["clip_id"]) == list(shuffled["clip_id"])
    assert emb["logmel"].X.shape == (12, 160) and emb["mfcc"].X.shape == (12, 78)


def test_batched_equals_one_by_one_for_a_tiny_wav2vec2(tiny_model_dir, tmp_path) -> None:
    root = tmp_path / "varlen"
    rng = np.random.default_rng(0)
    for i, seconds in enumerate([0.3, 0.55, 0.55, 0.8, 1.0, 0.42]):
        (root / "w").mkdir(parents=True, exist_ok=True)
        sf.write(root / "w" / f"s{i}_nohash_0.wav", (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
    manifest = open_dataset(root).manifest()
    settings = ExtractionSettings(model=str(tiny_model_dir["wav2vec2"]))
    one, many = EmbeddingStore(tmp_path / "one"), EmbeddingStore(tmp_path / "many")
    extract(manifest, settings, store=one, batch_size=1)
    extract(manifest, settings, store=many, batch_size=4)
    layers = list(load_extractor(settings.model).layer_names)
    a = read_layers(one, settings, layers, "mean", manifest=manifest)
    b = read_layers(many, settings, layers, "mean", manifest=manifest)
    for layer in layers:
        np.testing.assert_allclose(a[layer].X, b[layer].X, atol=1e-4)


def test_changed_clip_is_recomputed(tmp_path, store) -> None:
    root = tmp_path / "data"
    shutil.copytree(open_dataset().root / "no", root / "no")
    manifest = open_dataset(root).sample(["no"], 3)
    extract(manifest, MEL, store=store)
    x, sr = sf.read(manifest.loc[0, "path"])
    sf.write(manifest.loc[0, "path"], x * 0.5, sr)
    report = extract(open_dataset(root).sample(["no"], 3), MEL, store=store)
    assert (report.computed, report.cached) == (1, 2)


def test_clip_key_is_content_based(tmp_path) -> None:
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, np.ones(800, np.float32) * 0.1, 16000)
    shutil.copy(a, b)
    assert pipeline.clip_key(a) == pipeline.clip_key(b)


def test_clips_of_a_damaged_part_are_recomputed(manifest, store) -> None:
    first = extract(manifest, MEL, store=store, batch_size=4)
    entry = store.entry_for(MEL)
    bad = entry.parts()[0]
    bad.write_bytes(bad.read_bytes()[:100])  # truncated, as by a full disk
    assert len(missing_clips(manifest, MEL, store)) == 4
    again = extract(manifest, MEL, store=store, batch_size=4)
    assert (again.computed, again.cached) == (4, first.computed - 4)
    assert [p.name for p in entry.damaged_parts()] == [bad.name]
    got = read_layers(store, MEL, ["mfcc"], "mean", manifest=manifest)["mfcc"]
    assert got.missing == () and got.X.shape[0] == len(manifest)
