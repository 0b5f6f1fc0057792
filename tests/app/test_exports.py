"""Explore's Export section (AppTest) and the box/lasso selection in the URL.

AppTest has no media server, so a download's file cannot be fetched from it: a spy on
``download_button`` keeps each button's ``data`` callable (what Streamlit runs on a
click), and the test runs it and reads the file back.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from streamlit.delta_generator import DeltaGenerator

from embedviz import export
from embedviz.datasets import open_dataset
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore, read_layers
from embedviz.viewstate import MAX_URL_SELECTION
from tests.app.conftest import new_app, no_exception, texts, wait_for_job

PARAMS = {"model": "baseline:mel", "layers": "logmel,mfcc", "words": "yes,no,up", "n": "20"}


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    """label -> the kwargs of the last ``download_button`` drawn with that label."""
    seen: dict[str, dict] = {}
    original = DeltaGenerator.download_button

    def spy(self, label, data, *args, **kwargs):
        seen[label] = {"data": data, **kwargs}
        return original(self, label, data, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", spy)
    return seen


def _file(downloads: dict, label: str) -> tuple[str, bytes]:
    entry = downloads[label]
    data = entry["data"]() if callable(entry["data"]) else entry["data"]
    return entry["file_name"], data


def _explore(params: dict):
    at = new_app(params)
    at.run()
    at.switch_page("pages/explore.py").run()
    next(b for b in at.button if b.label == "Extract").click().run()
    return wait_for_job(at)


def _stored(env, layer: str, n: int = 20):
    sample = open_dataset(None).sample(["yes", "no", "up"], n, seed=0)
    return read_layers(EmbeddingStore(env["cache"]), ExtractionSettings(model="baseline:mel"), [layer], "mean",
                       manifest=sample)[layer]


def test_every_export_downloads_what_the_page_shows(env, downloads) -> None:
    at = _explore(PARAMS)
    no_exception(at)
    assert {"Coordinates (CSV)", "Metrics (CSV)", "Figures (HTML, zip)", "Parquet", "CSV"} <= set(downloads)

    name, data = _file(downloads, "Coordinates (CSV)")
    coords = pd.read_csv(io.BytesIO(data))
    assert name.endswith("_coordinates.csv") and len(coords) == 2 * 60
    assert sorted(set(coords["layers"])) == ["logmel", "mfcc"]
    metrics = pd.read_csv(io.BytesIO(_file(downloads, "Metrics (CSV)")[1]))
    assert list(metrics["layers"]) == ["logmel", "mfcc"] and (metrics["clips"] == 60).all()
    # The k-NN accuracy the page prints under each plot is the one exported.
    captions = [c for c in texts(at.caption) if "k-NN accuracy" in c]
    assert [f"**{v:.2f}**" in c for v, c in zip(metrics["knn_accuracy"], captions, strict=True)] == [True, True]

    with zipfile.ZipFile(io.BytesIO(_file(downloads, "Figures (HTML, zip)")[1])) as zf:
        names = zf.namelist()
        assert names.count(export.PLOTLY_JS) == 1 and len([n for n in names if n.endswith(".html")]) == 3

    # The first panel's embeddings: exactly the stored vectors, as Parquet and as CSV.
    stored = _stored(env, "logmel")
    for label, read in (("Parquet", pd.read_parquet), ("CSV", pd.read_csv)):
        name, data = _file(downloads, label)
        X, meta = export.read_embeddings(read(io.BytesIO(data)))
        assert "logmel" in name
        order = pd.Index(stored.clips["clip_id"]).get_indexer(meta["clip_id"])
        assert (order >= 0).all() and len(order) == len(stored.clips)
        np.testing.assert_array_equal(X, np.asarray(stored.X, np.float32)[order])
    at.selectbox(key="ex_dl_panel").set_value(("baseline:mel", ("mfcc",))).run()
    X, _ = export.read_embeddings(pd.read_parquet(io.BytesIO(_file(downloads, "Parquet")[1])))
    assert X.shape[1] == _stored(env, "mfcc").X.shape[1]


def test_a_small_selection_travels_in_the_url_and_exports_its_clips(env, downloads) -> None:
    at = _explore(PARAMS)
    ids = list(open_dataset(None).sample(["yes", "no", "up"], 20, seed=0)["clip_id"])
    at.session_state["ex_brush"] = ids[:3]  # what a box/lasso in a plot sets
    at.run()
    no_exception(at)
    assert at.query_params["sel"] == ids[:3]
    assert any("3 clip(s): in the page's URL" in m for m in texts(at.markdown))
    frame = pd.read_csv(io.BytesIO(_file(downloads, "Selection (CSV)")[1]))
    assert sorted(frame["clip_id"]) == sorted(ids[:3])
    X, _ = export.read_embeddings(pd.read_parquet(io.BytesIO(_file(downloads, "Selection (Parquet)")[1])))
    stored = _stored(env, "logmel")
    rows = pd.Index(stored.clips["clip_id"]).get_indexer(frame["clip_id"])
    np.testing.assert_array_equal(X, np.asarray(stored.X, np.float32)[rows])

    # The URL alone restores the selection (a shared link).
    shared = new_app({**PARAMS, "sel": ids[:3]})
    shared.run()
    shared.switch_page("pages/explore.py").run()
    no_exception(shared)
    assert any("3 selected clip(s)" in m for m in texts(shared.markdown))


def test_a_large_selection_stays_out_of_the_url_and_says_why(env, downloads) -> None:
    at = _explore(PARAMS)
    ids = list(open_dataset(None).sample(["yes", "no", "up"], 20, seed=0)["clip_id"])
    assert len(ids) > MAX_URL_SELECTION
    at.session_state["ex_brush"] = ids
    at.run()
    no_exception(at)
    assert "sel" not in at.query_params
    assert any(f"more than {MAX_URL_SELECTION}, so not in the URL" in m for m in texts(at.markdown))
    frame = pd.read_csv(io.BytesIO(_file(downloads, "Selection (CSV)")[1]))
    assert len(frame) == len(ids)


def test_an_own_clip_is_a_marked_row_of_the_embeddings_and_coordinates_and_a_star_in_the_figures(
    env, downloads
) -> None:
    """Upload a stored demo clip as "your clip": PCA places it exactly, so its exported row must
    equal the stored clip's vector and (aligned) point, marked as the user's own."""
    from pathlib import Path

    at = _explore(PARAMS)
    clip = open_dataset(None).sample(["yes", "no", "up"], 20, seed=0).iloc[7]
    upload = Path(clip["path"])
    at.get("file_uploader")[0].set_value((upload.name, upload.read_bytes(), "audio/wav")).run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert any(f"Your clip ({upload.name}) is in the embeddings" in c for c in texts(at.caption))

    stored = _stored(env, "logmel")
    for label, read in (("Parquet", pd.read_parquet), ("CSV", pd.read_csv)):
        X, meta = export.read_embeddings(read(io.BytesIO(_file(downloads, label)[1])))
        mine = (meta["source"] == export.SOURCE_OWN).to_numpy()
        assert mine.sum() == 1 and len(meta) == len(stored.clips) + 1
        row = meta[mine].iloc[0]
        assert row["clip_id"] == export.OWN_CLIP_PREFIX + upload.name
        assert row["predicted_word"] == clip["word"]  # its nearest stored clip is itself
        assert pd.isna(row["word"]) or row["word"] == ""
        same = stored.clips["clip_id"].tolist().index(clip["clip_id"])
        np.testing.assert_allclose(X[mine][0], np.asarray(stored.X[same], np.float32), rtol=1e-5, atol=1e-5)

    coords = pd.read_csv(io.BytesIO(_file(downloads, "Coordinates (CSV)")[1]))
    assert len(coords) == 2 * 60 + 2  # one own row per panel
    for layers, part in coords.groupby("layers"):
        own = part[part["source"] == export.SOURCE_OWN]
        twin = part[part["clip_id"] == clip["clip_id"]]
        assert len(own) == 1 and len(twin) == 1, layers
        np.testing.assert_allclose(own[["x", "y"]].to_numpy(), twin[["x", "y"]].to_numpy(), atol=1e-3)
    assert set(coords.loc[coords["source"] == export.SOURCE_DATASET, "predicted_word"].fillna("")) == {""}

    with zipfile.ZipFile(io.BytesIO(_file(downloads, "Figures (HTML, zip)")[1])) as zf:
        pages = [n for n in zf.namelist() if n.endswith(".html") and n != "index.html"]
        assert len(pages) == 2 and all("your clip" in zf.read(n).decode() for n in pages)


def test_an_own_clip_in_a_concatenated_panel_is_exported_in_the_panels_space(env, downloads) -> None:
    """Joined layers: the own clip's row is z-scored with the stored blocks, like the stored rows,
    so an uploaded stored clip exports the same row as its stored twin."""
    from pathlib import Path

    at = _explore({**PARAMS, "mode": "concatenate"})
    clip = open_dataset(None).sample(["yes", "no", "up"], 20, seed=0).iloc[3]
    upload = Path(clip["path"])
    at.get("file_uploader")[0].set_value((upload.name, upload.read_bytes(), "audio/wav")).run()
    no_exception(at)
    X, meta = export.read_embeddings(pd.read_parquet(io.BytesIO(_file(downloads, "Parquet")[1])))
    assert set(meta["layers"]) == {"logmel+mfcc"}
    mine = (meta["source"] == export.SOURCE_OWN).to_numpy()
    twin = (meta["clip_id"] == clip["clip_id"]).to_numpy()
    assert mine.sum() == 1 and twin.sum() == 1
    np.testing.assert_allclose(X[mine][0], X[twin][0], atol=1e-4)
