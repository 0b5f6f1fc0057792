"""float16 storage costs the numbers nothing that matters: k-NN and probe accuracy within 0.005.

One extraction of the demo (the mel baseline and a tiny random-init wav2vec2) is kept twice:
its float32 rows as the pipeline built them, and the same rows written to the store and
read back (float16). Every layer and every stored pooling is compared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedviz import metrics
from embedviz.datasets import open_dataset
from embedviz.errors import StoreError
from embedviz.models import load_extractor
from embedviz.pipeline import ExtractionReport, _with_keys, embed_batch
from embedviz.pooling import select
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore

POOLINGS = ["mean", "meanstd", "max", "centre", "speech"]
MAX_CHANGE = 0.005


@pytest.fixture(scope="module")
def demo():
    ds = open_dataset()
    return _with_keys(ds.sample(ds.word_names, 24, seed=0))


@pytest.mark.parametrize("model", ["baseline:mel", "tiny-wav2vec2"])
def test_float16_store_moves_knn_and_probe_accuracy_by_at_most_0_005(model, demo, tiny_model_dir, tmp_path: Path) -> None:
    name = str(tiny_model_dir["wav2vec2"]) if model == "tiny-wav2vec2" else model
    settings = ExtractionSettings(model=name)
    extractor = load_extractor(name, device="cpu")
    try:
        report = ExtractionReport(model=name)
        rows = []
        for start in range(0, len(demo), 16):
            rows += embed_batch(extractor, demo.iloc[start : start + 16], settings, report)
        layers = list(extractor.layer_names)
    finally:
        extractor.close()
    assert report.computed == len(demo) and not report.skipped
    store = EmbeddingStore(tmp_path)
    entry = store.open_for_writing("m@1", {"max_seconds": 30.0}, {"model": name, "layers": layers})
    entry.write_batch(rows)
    keys = demo["clip_key"].tolist()
    words = demo["word"].to_numpy()
    checked = 0
    for pooling in POOLINGS:
        stored = entry.read(layers, pooling, clip_keys=keys)
        for layer in layers:
            by_key = {r["clip_key"]: r for r in rows if r["layer"] == layer}
            full = np.stack([_float32(by_key[k], pooling) for k in keys])
            index = {k: i for i, k in enumerate(stored[layer].clip_keys)}
            half = stored[layer].X[[index[k] for k in keys]]
            assert half.shape == full.shape and not np.array_equal(half, full), "float16 was really stored"
            knn32, knn16 = metrics.knn_accuracy(full, words), metrics.knn_accuracy(half, words)
            assert abs(knn16 - knn32) <= MAX_CHANGE, f"{model} {layer} {pooling}: k-NN {knn32:.4f} -> {knn16:.4f}"
            if pooling == "mean":  # the probe is the slow part: one pooling is enough to see the rounding
                p32, p16 = metrics.probe_accuracy(full, words), metrics.probe_accuracy(half, words)
                assert abs(p16 - p32) <= MAX_CHANGE, f"{model} {layer} {pooling}: probe {p32:.4f} -> {p16:.4f}"
            checked += 1
    assert checked == len(POOLINGS) * len(layers)


def _float32(row: dict, pooling: str) -> np.ndarray:
    """The unrounded float32 vector of ``pooling`` from one pipeline row."""
    if pooling == "meanstd":
        return np.concatenate([row["mean"], row["std"]]).astype(np.float32)
    return np.asarray(row[pooling], dtype=np.float32)


def test_select_equals_what_the_store_returns(demo, tmp_path: Path) -> None:
    """A vector computed now (placing a user's clip) equals the stored vector of the same clip."""
    settings = ExtractionSettings(model="baseline:mel")
    extractor = load_extractor("baseline:mel", device="cpu")
    try:
        rows = embed_batch(extractor, demo.iloc[:4], settings, ExtractionReport(model="baseline:mel"))
        layers = list(extractor.layer_names)
    finally:
        extractor.close()
    entry = EmbeddingStore(tmp_path).open_for_writing("m@1", {}, {"model": "baseline:mel", "layers": layers})
    entry.write_batch(rows)
    for pooling in POOLINGS:
        got = entry.read(layers, pooling)
        for layer in layers:
            by_key = {r["clip_key"]: r for r in rows if r["layer"] == layer}
            for key, x in zip(got[layer].clip_keys, got[layer].X):
                np.testing.assert_array_equal(select(by_key[key], pooling), x)
    with pytest.raises(StoreError, match="EMBEDVIZ_TIME_GRID=1"):
        entry.read(layers, "time:0.5")
