"""embedviz.export: embeddings round trip (Parquet, CSV), coordinates, metrics, figure file sets."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedviz import export
from embedviz.datasets import open_dataset
from embedviz.errors import ConfigError
from embedviz.pipeline import extract
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore, read_layers
from embedviz.views import panel, panel_numbers, project


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory):
    """baseline:mel vectors of 4 demo clips of 3 words, as the store holds them."""
    store = EmbeddingStore(tmp_path_factory.mktemp("store"))
    settings = ExtractionSettings(model="baseline:mel")
    manifest = open_dataset(None).sample(["yes", "no", "up"], 4, seed=0)
    extract(manifest, settings, store=store)
    return read_layers(store, settings, ["logmel", "mfcc"], "mean", manifest=manifest)


def test_embeddings_round_trip_through_parquet_and_csv_exactly(stored, tmp_path: Path) -> None:
    layer = stored["mfcc"]
    frame = export.embeddings_frame(layer.X, layer.clips, model="baseline:mel", layers=("mfcc",), pooling="mean")
    n_meta = len(export.META_COLUMNS)
    assert list(frame.columns[:n_meta]) == list(export.META_COLUMNS)
    assert frame.shape == (len(layer.clips), n_meta + layer.X.shape[1])
    assert set(frame["source"]) == {export.SOURCE_DATASET} and set(frame["predicted_word"]) == {""}
    for data, read in ((export.to_parquet_bytes(frame), pd.read_parquet), (export.to_csv_bytes(frame), pd.read_csv)):
        back = read(io.BytesIO(data))
        X, meta = export.read_embeddings(back)
        # Exactly the stored float32 vectors, in the stored clip order, with their metadata.
        assert X.dtype == np.float32
        np.testing.assert_array_equal(X, np.asarray(layer.X, dtype=np.float32))
        assert list(meta["clip_id"]) == list(layer.clips["clip_id"])
        assert list(meta["word"].astype(str)) == list(layer.clips["word"])
        assert list(meta["speaker"].astype(str)) == list(layer.clips["speaker"])
        assert list(meta["path"]) == [str(p) for p in layer.clips["path"]]
        assert set(meta["layers"]) == {"mfcc"} and set(meta["pooling"]) == {"mean"}


def test_a_selection_exports_only_its_clips(stored) -> None:
    layer = stored["logmel"]
    frame = export.embeddings_frame(layer.X, layer.clips, model="baseline:mel", layers=("logmel",))
    wanted = list(layer.clips["clip_id"].iloc[[5, 1]])
    picked = export.select_clips(frame, wanted + ["nope/none_nohash_0.wav"])
    assert sorted(picked["clip_id"]) == sorted(wanted)
    X, _ = export.read_embeddings(pd.read_parquet(io.BytesIO(export.to_parquet_bytes(picked))))
    np.testing.assert_array_equal(X, layer.X[[1, 5]])  # frame order kept


def test_embeddings_frame_rejects_mismatched_rows(stored) -> None:
    layer = stored["mfcc"]
    with pytest.raises(ConfigError, match="clips but embeddings"):
        export.embeddings_frame(layer.X[:3], layer.clips)
    with pytest.raises(ConfigError, match="no embedding columns"):
        export.read_embeddings(pd.DataFrame({"clip_id": ["a"]}))


def _panels(stored) -> list[export.ExportPanel]:
    from embedviz.reduction import ReductionSettings

    out = []
    for name in ("logmel", "mfcc"):
        layer = stored[name]
        proj = project(layer.X, ReductionSettings(method="pca"))
        data = panel(layer.X, layer.clips, proj, panel_numbers(layer.X, layer.clips))
        out.append(export.ExportPanel("baseline:mel", (name,), "mean", data))
    return out


def test_coordinates_and_metrics_frames_follow_the_panels(stored) -> None:
    panels = _panels(stored)
    coords = export.coordinates_frame(panels)
    assert len(coords) == sum(len(p.data.clips) for p in panels)
    assert {"model", "layers", "clip_id", "word", "speaker", "x", "y"} <= set(coords.columns) and "z" not in coords
    first = coords[coords["layers"] == "logmel"]
    np.testing.assert_allclose(first[["x", "y"]].to_numpy(), panels[0].data.coords, rtol=1e-6)
    metrics = export.metrics_frame(panels)
    assert list(metrics["layers"]) == ["logmel", "mfcc"]
    assert metrics["knn_accuracy"].tolist() == [p.data.knn for p in panels]
    # Hidden words leave the panel's points, not its numbers.
    hidden = panels[0].without_words(["yes"])
    assert "yes" not in set(hidden.data.clips["word"]) and len(hidden.shown_coords) == len(hidden.data.clips)
    assert hidden.data.knn == panels[0].data.knn


def test_an_own_clip_is_one_marked_row_of_the_embeddings_and_of_each_panels_coordinates(stored) -> None:
    from dataclasses import replace

    layer = stored["mfcc"]
    vector = np.arange(layer.X.shape[1], dtype=np.float32) / 7
    own = export.OwnClipPoint("my yes.wav", "yes", vector, np.array([0.5, -2.0]))
    frame = export.embeddings_frame(layer.X, layer.clips, model="baseline:mel", layers=("mfcc",), own=own)
    for data, read in ((export.to_parquet_bytes(frame), pd.read_parquet), (export.to_csv_bytes(frame), pd.read_csv)):
        X, meta = export.read_embeddings(read(io.BytesIO(data)))
        assert len(meta) == len(layer.clips) + 1
        mine = meta["source"] == export.SOURCE_OWN
        assert mine.tolist() == [False] * len(layer.clips) + [True]  # last row, and only that one
        row = meta[mine].iloc[0]
        assert row["clip_id"] == "own clip: my yes.wav" and row["predicted_word"] == "yes"
        assert pd.isna(row["word"]) or row["word"] == ""  # nobody said which word it is (CSV reads "" as NaN)
        np.testing.assert_array_equal(X[-1], vector)
        np.testing.assert_array_equal(X[:-1], np.asarray(layer.X, np.float32))
        assert set(meta.loc[~mine, "source"]) == {export.SOURCE_DATASET}
    with pytest.raises(ConfigError, match="dims"):
        export.embeddings_frame(layer.X, layer.clips, own=replace(own, vector=vector[:3]))
    # Without a vector (not placed in this space) the own clip is left out of the embeddings.
    assert len(export.embeddings_frame(layer.X, layer.clips, own=replace(own, vector=None))) == len(layer.clips)

    panels = _panels(stored)
    panels = [replace(panels[0], own=own), panels[1]]  # placed on the first panel only
    coords = export.coordinates_frame([p.without_words(["no"]) for p in panels])
    mine = coords[coords["source"] == export.SOURCE_OWN]
    assert len(mine) == 1 and mine.iloc[0]["layers"] == "logmel" and mine.iloc[0]["predicted_word"] == "yes"
    assert (mine.iloc[0]["x"], mine.iloc[0]["y"]) == (0.5, -2.0)
    assert (coords["source"] == export.SOURCE_DATASET).sum() == 2 * (len(layer.clips) - 4)  # "no" hidden
    with pytest.raises(ConfigError, match="coordinates"):
        replace(panels[0], own=replace(own, coords=np.zeros(3)))
    with pytest.raises(ConfigError, match="finite"):
        export.OwnClipPoint("x.wav", "yes", np.array([np.nan]))


def test_figure_file_set_holds_plotly_js_once_and_opens_offline(stored, tmp_path: Path) -> None:
    from dataclasses import replace

    panels = _panels(stored)
    panels[0] = replace(panels[0], own=export.OwnClipPoint("mine.wav", "up", coords=np.zeros(2)))
    figures = export.panel_figures(panels, {p.key: "Log-mel / MFCC baseline" for p in panels})
    assert len(figures) == 2
    data = export.figures_zip(figures)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        pages = [n for n in names if n.endswith(".html") and n != "index.html"]
        assert len(pages) == 2 and names.count(export.PLOTLY_JS) == 1
        js = zf.read(export.PLOTLY_JS)
        assert len(js) > 1_000_000  # the full library, once
        for name in pages:
            page = zf.read(name).decode()
            assert 'src="plotly.min.js"' in page
            assert len(page) < len(js) / 10  # the library is not copied into the page
            assert "cdn.plot.ly" not in page  # opens offline
            assert '"displaylogo": false' in page and "modeBarButtonsToRemove" not in page  # toolbar (PNG) kept
            assert '"showSendToCloud": false' in page  # no upload to Plotly's cloud from an offline file
        index = zf.read("index.html").decode()
        assert all(f'href="{n}"' in index for n in pages)
        starred = [n for n in pages if "your clip" in zf.read(n).decode()]
        assert len(starred) == 1  # the own clip only where it was placed
    written = export.write_figures(figures, tmp_path / "figs")
    assert sorted(p.name for p in written) == sorted(names)
    with pytest.raises(ConfigError, match="no figures"):
        export.figures_zip({})


def test_safe_names_are_unique_and_plain() -> None:
    used: set[str] = set()
    assert export.safe_name("wav2vec2 · layer 6 / mean", used) == "wav2vec2_layer_6_mean"
    assert export.safe_name("wav2vec2 · layer 6 / mean", used) == "wav2vec2_layer_6_mean_2"
    assert export.safe_name("../../", used) == "figure"
