"""Explore with 'at time' pooling on an entry stored without the time grid: the page says what to do."""

from __future__ import annotations

from embedviz.datasets import open_dataset
from embedviz.pipeline import extract
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore
from tests.app.conftest import new_app, no_exception, texts

PARAMS = {"model": "baseline:mel", "layers": "logmel", "words": "yes,no", "n": "4", "method": "pca"}


def test_time_pooling_without_the_grid_says_it_needs_a_new_extraction(env) -> None:
    manifest = open_dataset().sample(["yes", "no"], 4, seed=0)
    extract(manifest, ExtractionSettings(model="baseline:mel"), store=EmbeddingStore(env["cache"]))
    at = new_app({**PARAMS, "pool": "mean"})
    at.run(timeout=60)
    no_exception(at)
    assert not any("time grid" in e for e in texts(at.error))
    at = new_app({**PARAMS, "pool": "time:0.5"})
    at.run(timeout=60)
    no_exception(at)
    assert any("time grid" in e and "EMBEDVIZ_TIME_GRID=1" in e for e in texts(at.error)), texts(at.error)
