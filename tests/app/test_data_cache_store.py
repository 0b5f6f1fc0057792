"""Data & cache page, store section: what is stored, and damaged parts that were set aside."""

from __future__ import annotations

import streamlit as st

from embedviz.datasets import open_dataset
from embedviz.pipeline import extract
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore
from tests.app.conftest import DATA, new_app, no_exception, page, texts

MEL = ExtractionSettings(model="baseline:mel")


def test_damaged_parts_set_aside_are_shown_with_what_happens_to_their_clips(env) -> None:
    manifest = open_dataset().sample(["yes", "no"], 4, seed=0)
    store = EmbeddingStore(env["cache"])
    extract(manifest, MEL, store=store, batch_size=4)
    entry = store.entry_for(MEL)
    at = page(new_app(), DATA)
    no_exception(at)
    assert not any("damaged" in w for w in texts(at.warning))
    assert any("float16" in c for c in texts(at.caption)), "the page says what is stored, at what precision"
    entry.parts()[0].write_bytes(b"not parquet")
    assert len(entry.stored_keys()) == 4, "found damaged: set aside, its 4 clips missing"
    st.cache_data.clear()  # as after the extract that found it (the listing is cached per store state)
    at = page(new_app(), DATA)
    no_exception(at)
    warnings = [w for w in texts(at.warning) if "damaged" in w]
    assert len(warnings) == 1 and "1 damaged store part" in warnings[0] and "recomputes them" in warnings[0]
    assert str(entry.path / "damaged") in warnings[0]
