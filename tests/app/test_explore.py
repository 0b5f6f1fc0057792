"""Explore page (AppTest): widgets, URL round trip, invalid URLs, extraction, cancel, clip panel."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from embedviz.viewstate import DEFAULT_MODELS
from tests.app.conftest import charts, new_app, no_exception, texts, wait_for_job
from tests.app.explore_chart import echart, panel_titles, plotly_figure, select

MEL_PARAMS = {"model": "baseline:mel", "layers": "logmel,mfcc", "words": "yes,no", "n": "4"}


def widget(at, kind: str, key: str):
    return getattr(at, kind)(key=key)




def test_defaults_show_every_step_and_write_the_url(env) -> None:
    at = new_app()
    at.run(timeout=30)
    no_exception(at)
    assert widget(at, "multiselect", "ex_models").value == list(DEFAULT_MODELS)
    assert widget(at, "multiselect", "ex_layers::baseline:mel").value == ["logmel", "mfcc"]
    assert widget(at, "multiselect", "ex_words").value == ["yes", "no", "up", "down"]
    assert widget(at, "slider", "ex_n").value == 12
    for key in ("ex_method", "ex_dims", "ex_pre", "ex_pool", "ex_mode", "ex_color"):
        assert widget(at, "segmented_control", key) is not None
    assert [b.label for b in at.button] == ["Extract"]
    # Nothing stored yet: the page says what Extract would do, per model.
    assert any("48 clip(s) to compute, 0 already stored" in m for m in texts(at.markdown))
    assert at.query_params["model"] == list(DEFAULT_MODELS)
    assert at.query_params["words"] == "yes,no,up,down"
    assert at.query_params["n"] == "12"


def test_url_sets_widgets_and_widget_changes_update_the_url(env) -> None:
    at = new_app(
        {
            **MEL_PARAMS,
            "method": "tsne",
            "dims": "3",
            "pool": "time:0.5",
            "color": "speaker",
            "pre": "sphereize",
            "mode": "concatenate",
            "seed": "7",
        }
    )
    at.run()
    no_exception(at)
    assert not at.warning
    assert widget(at, "multiselect", "ex_models").value == ["baseline:mel"]
    assert widget(at, "multiselect", "ex_words").value == ["yes", "no"]
    assert widget(at, "slider", "ex_n").value == 4
    assert widget(at, "number_input", "ex_seed").value == 7
    assert widget(at, "segmented_control", "ex_method").value == "tsne"
    assert widget(at, "segmented_control", "ex_dims").value == 3
    assert widget(at, "segmented_control", "ex_pool").value == "time"
    assert widget(at, "slider", "ex_pool_t").value == pytest.approx(0.5)
    assert widget(at, "segmented_control", "ex_color").value == "speaker"
    assert widget(at, "segmented_control", "ex_pre").value == "sphereize"
    assert widget(at, "segmented_control", "ex_mode").value == "concatenate"

    widget(at, "multiselect", "ex_words").set_value(["yes", "no", "up"]).run()
    assert at.query_params["words"] == "yes,no,up"
    widget(at, "segmented_control", "ex_method").set_value("umap").run()
    assert at.query_params["method"] == "umap"
    widget(at, "multiselect", "ex_layers::baseline:mel").set_value(["mfcc"]).run()
    assert at.query_params["layers"] == "mfcc"
    widget(at, "segmented_control", "ex_pool").set_value("max").run()
    assert at.query_params["pool"] == "max"
    assert "ex_pool_t" not in [s.key for s in at.slider]
    widget(at, "slider", "ex_n").set_value(6).run()
    assert at.query_params["n"] == "6"
    # The URL keeps every other setting.
    assert at.query_params["dims"] == "3" and at.query_params["color"] == "speaker"
    widget(at, "segmented_control", "ex_mode").set_value("individual").run()
    assert widget(at, "toggle", "ex_align").value is True  # Procrustes alignment on by default
    widget(at, "toggle", "ex_align").set_value(False).run()
    assert at.query_params["align"] == "off"
    no_exception(at)


def test_invalid_url_values_warn_and_fall_back(env) -> None:
    at = new_app(
        {
            "model": ["evil/model", "/etc", "baseline:mel"],
            "layers": ["all", "all", "logmel,nope"],
            "words": "yes,zzz",
            "n": "lots",
            "data": "/etc/../root",
            "method": "magic",
            "dims": "7",
            "pool": "median",
            "bogus": "1",
            "clip": "yes/notsampled_nohash_0.wav",
        }
    )
    at.run()
    no_exception(at)
    warnings = " | ".join(texts(at.warning))
    for needle in (
        "evil/model",
        "'/etc'",
        "nope",
        "zzz",
        "lots",
        "/etc/../root",
        "magic",
        "median",
        "bogus",
        "notsampled",
    ):
        assert needle in warnings, needle
    assert widget(at, "multiselect", "ex_models").value == ["baseline:mel"]
    assert widget(at, "multiselect", "ex_layers::baseline:mel").value == ["logmel"]
    assert widget(at, "multiselect", "ex_words").value == ["yes"]
    assert widget(at, "slider", "ex_n").value == 12
    assert widget(at, "segmented_control", "ex_method").value == "pca"
    assert widget(at, "segmented_control", "ex_dims").value == 2
    # The URL is rewritten with the cleaned values; nothing was loaded from /etc.
    assert at.query_params["model"] == "baseline:mel"
    assert "data" not in at.query_params and "bogus" not in at.query_params


def test_extract_baseline_then_plots_come_from_the_store(env) -> None:
    at = new_app(MEL_PARAMS)
    at.run()
    extract = next(b for b in at.button if b.label == "Extract")
    assert not extract.disabled
    extract.click().run()
    wait_for_job(at)
    no_exception(at)
    assert any("Extraction finished" in s for s in texts(at.success))
    assert any("8 computed, 0 already stored" in s for s in texts(at.success))
    # The sidebar's store summary counts the new entry at once (not after its 5 s cache).
    assert any("1 entry" in m for m in texts(at.sidebar.markdown)), texts(at.sidebar.markdown)
    assert [t.split("\n")[0] for t in panel_titles(at)] == ["layer logmel", "layer mfcc"]
    assert echart(at) is not None and plotly_figure(at) is None  # a small 2D view: ECharts
    captions = " ".join(texts(at.caption))
    assert captions.count("k-NN accuracy") == 2 and "silhouette" in captions
    assert next(b for b in at.button if b.label == "Extract").disabled  # nothing left to compute
    assert any("0 clip(s) to compute, 8 already stored" in m for m in texts(at.markdown))

    # Changing pooling / projection redraws without extracting again.
    widget(at, "segmented_control", "ex_pool").set_value("speech").run()
    widget(at, "segmented_control", "ex_method").set_value("tsne").run()
    no_exception(at)
    assert "_ev_job" not in at.session_state
    assert len(panel_titles(at)) == 2

    # A fresh session opening the same URL shows the plots at once.
    again = new_app(dict(at.query_params))
    again.run()
    no_exception(again)
    assert len(panel_titles(again)) == 2


def test_extract_tiny_local_model_and_show_a_clip_with_neighbours(env, local_model: Path) -> None:
    params = {"model": str(local_model), "words": "yes,no", "n": "3"}
    at = new_app(params)
    at.run()
    no_exception(at)
    assert not at.warning, texts(at.warning)
    layers = widget(at, "multiselect", f"ex_layers::{local_model}")
    assert layers.value  # default layers spread over depth
    next(b for b in at.button if b.label == "Extract").click().run()
    wait_for_job(at)
    no_exception(at)
    assert not at.error, texts(at.error)
    assert len(panel_titles(at)) == len(layers.value)

    # A clip in the URL (as a click on a point would put there) plays with its neighbours.
    from ui import cached

    sample = cached.sample("", ("yes", "no"), 3, 0)
    clip = sample["clip_id"].iloc[0]
    at2 = new_app({**dict(at.query_params), "clip": clip})
    at2.run()
    no_exception(at2)
    assert any("Nearest neighbours" in m for m in texts(at2.markdown))
    assert len(at2.get("audio")) == 1 + min(5, len(sample) - 1)
    assert not at2.warning, texts(at2.warning)
    at2.button(key="ex_clear_clip").click().run()
    assert "clip" not in at2.query_params
    # The list beside the plots picks a clip too (keyboard-friendly; 3D clicks vary by browser).
    other = sample["clip_id"].iloc[1]
    at2.selectbox(key="ex_clip").set_value(other).run()
    assert at2.query_params["clip"] == other
    assert any("Nearest neighbours" in m for m in texts(at2.markdown))


class SlowExtractor:
    """Wraps a real extractor; each forward pass waits, so a test can cancel mid-way."""

    def __init__(self, inner, delay: float) -> None:
        self.inner, self.delay, self.calls = inner, delay, 0
        self.info = inner.info
        self.sample_rate = inner.sample_rate
        self.layer_names = inner.layer_names
        self.started = threading.Event()

    def __getattr__(self, name):  # the rest of the Extractor interface is the real one's
        return getattr(self.inner, name)

    def extract(self, waveforms):
        self.calls += 1
        self.started.set()
        time.sleep(self.delay)
        return self.inner.extract(waveforms)


def test_cancel_stops_after_the_batch_and_keeps_finished_work(env, monkeypatch) -> None:
    from embedviz.models import load_extractor
    from ui import cached

    from embedviz import pipeline

    slow = SlowExtractor(load_extractor("baseline:mel"), delay=0.8)
    monkeypatch.setattr(cached, "extractor", lambda *args, **kwargs: slow)
    # Batches of 8 whatever the baseline's measured preferred batch size is.
    monkeypatch.setitem(pipeline.PREFERRED_BATCH_SIZE, "baseline", 8)
    # 3 words x 8 clips = 24 clips = 3 batches of 8.
    at = new_app({"model": "baseline:mel", "words": "yes,no,up", "n": "8"})
    at.run()
    next(b for b in at.button if b.label == "Extract").click().run()
    assert at.session_state["_ev_job"] is not None
    assert slow.started.wait(10)
    at.run()
    cancel = at.button(key="ex_cancel")
    assert cancel.label == "Cancel"
    cancel.click().run()
    wait_for_job(at)
    no_exception(at)
    report = " ".join(texts(at.warning))
    assert "cancelled" in report
    assert slow.calls < 3
    computed = 8 * slow.calls
    assert any(f"{24 - computed} clip(s) to compute, {computed} already stored" in m for m in texts(at.markdown))

    # Extract again: only the rest is computed.
    next(b for b in at.button if b.label == "Extract").click().run()
    wait_for_job(at)
    assert any(f"{24 - computed} computed, {computed} already stored" in s for s in texts(at.success))


def test_offline_pretrained_model_says_so_and_extract_fails_cleanly(env) -> None:
    # The test session runs with HF_HUB_OFFLINE=1 and an empty HF cache (tests/conftest.py).
    at = new_app({"model": "openai/whisper-tiny", "words": "yes", "n": "2"})
    at.run()
    no_exception(at)
    assert any("cannot be loaded now" in w and "HF_HUB_OFFLINE" in w for w in texts(at.warning))
    assert widget(at, "segmented_control", "ex_whisper").value == "padded"
    next(b for b in at.button if b.label == "Extract").click().run()
    wait_for_job(at)
    no_exception(at)
    errors = " ".join(texts(at.error))
    assert "whisper-tiny" in errors.lower() or "Whisper tiny" in errors
    assert "Traceback" not in errors


def test_broken_model_folder_and_unreadable_clips_show_clear_messages(env, local_model: Path) -> None:
    import shutil

    from embedviz.datasets import demo_root

    # A dataset under the data root with one clip that cannot be decoded.
    data = env["data"] / "mini"
    for word in ("yes", "no"):
        (data / word).mkdir(parents=True)
        for clip in sorted((demo_root() / word).iterdir())[:3]:
            shutil.copy(clip, data / word / clip.name)
    (data / "yes" / "deadbeef_nohash_0.wav").write_bytes(b"RIFF....WAVEnot really audio")
    # A model folder whose weights are garbage.
    (local_model / "model.safetensors").write_bytes(b"\x00" * 64)

    at = new_app({"data": str(data), "model": ["baseline:mel", str(local_model)], "words": "yes,no", "n": "4"})
    at.run()
    no_exception(at)
    next(b for b in at.button if b.label == "Extract").click().run()
    wait_for_job(at)
    no_exception(at)
    errors = " ".join(texts(at.error))
    assert "tiny-wav2vec2" in errors and "Traceback" not in errors
    skipped = [e for e in at.expander if "skipped" in e.label]
    assert skipped and "1 clip(s) skipped" in skipped[0].label
    assert "deadbeef_nohash_0.wav" in skipped[0].dataframe[0].value.to_string()
    # The baseline still plots the 6 readable clips.
    assert len(panel_titles(at)) == 2


def test_first_paint_does_not_import_torch(tmp_path: Path) -> None:
    """Pages must not import torch / transformers until Extract runs (first paint < 3 s)."""
    import os
    import subprocess
    import sys

    app = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")
    code = (
        "import sys, time; t = time.perf_counter();"
        "from streamlit.testing.v1 import AppTest;"
        f"at = AppTest.from_file({app!r}, default_timeout=30).run();"
        "assert not at.exception, at.exception;"
        "print('torch' in sys.modules, 'transformers' in sys.modules, round(time.perf_counter() - t, 2))"
    )
    env = {**os.environ, "EMBEDVIZ_CACHE": str(tmp_path / "store")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True, env=env)
    torch_loaded, transformers_loaded, seconds = out.stdout.split()
    assert (torch_loaded, transformers_loaded) == ("False", "False"), out.stdout


def test_clearing_every_model_and_word_is_respected_in_the_session(env) -> None:
    at = new_app(MEL_PARAMS)
    at.run()
    at.multiselect(key="ex_models").set_value([]).run()
    no_exception(at)
    assert at.multiselect(key="ex_models").value == []
    assert any("Choose a model" in i for i in texts(at.info))
    at.multiselect(key="ex_words").set_value([]).run()
    at.run()
    assert at.multiselect(key="ex_models").value == [] and at.multiselect(key="ex_words").value == []
    assert "model" not in at.query_params


def test_a_projection_says_its_expected_time_while_it_runs(env, monkeypatch) -> None:
    import streamlit as st

    at = new_app(MEL_PARAMS)
    at.run()
    next(b for b in at.button if b.label == "Extract").click().run()
    wait_for_job(at)
    shown: list[str] = []
    real = st.spinner

    def spinner(text="", *args, **kwargs):
        shown.append(text)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(st, "spinner", spinner)
    widget(at, "segmented_control", "ex_method").set_value("tsne").run()
    no_exception(at)
    notices = [t for t in shown if t.startswith("t-SNE of 2 panels")]
    assert notices and "up to 8 points each: about" in notices[0] and "Computed once" in notices[0], shown
    assert len(panel_titles(at)) == 2
    shown.clear()
    widget(at, "segmented_control", "ex_method").set_value("pca").run()
    assert not [t for t in shown if "panel" in t], "PCA: nothing to wait for"


def test_a_projection_over_the_budget_is_refused_with_its_cost(env, monkeypatch) -> None:
    from embedviz import reduction

    at = new_app(MEL_PARAMS)
    at.run()
    next(b for b in at.button if b.label == "Extract").click().run()
    wait_for_job(at)
    assert len(panel_titles(at)) == 2
    # t-SNE priced far over the server's budget (as at 100,000 points): nothing is projected.
    monkeypatch.setattr(reduction, "estimate_seconds", lambda method, n, d, dims: 1e5 if method == "tsne" else 0.1)
    widget(at, "segmented_control", "ex_method").set_value("tsne").run()
    no_exception(at)
    warnings = " ".join(texts(at.warning))
    assert warnings.count("t-SNE on 8 points would take") == 2 and "or PCA" in warnings
    assert len(charts(at)) == 0 and len(charts(at, "echarts_chart")) == 0


def test_every_panel_of_the_page_is_one_figure_with_one_legend(env, local_model: Path) -> None:
    """Two models (two sections) and their layers are subplots of ONE figure: each word has
    one legend entry for all panels (a click hides it everywhere), each panel's numbers
    stay visible (a click in the browser: tests/e2e/test_legend_browser.py)."""
    at = new_app({"model": ["baseline:mel", str(local_model)], "layers": ["logmel,mfcc", "default"],
                  "words": "yes,no", "n": "3"})
    at.run()
    next(b for b in at.button if b.label == "Extract").click().run()
    wait_for_job(at)
    no_exception(at)
    tiny = at.multiselect(key=f"ex_layers::{local_model}").value
    chart = echart(at)
    option = chart.option
    assert [t["text"] for t in chart.titles("section header")] == ["Log-mel / MFCC baseline", "tiny-wav2vec2"]
    n_panels = 2 + len(tiny)
    assert len(panel_titles(at)) == n_panels and all("kNN" in t and "trust" in t for t in panel_titles(at))
    data = chart.word_series()
    assert {s["xAxisIndex"] for s in data} == set(range(n_panels)) and len(option["grid"]) == n_panels
    # ECharts toggles every series of a name: one legend entry per word hides it in every panel.
    assert option["legend"]["data"] == ["no", "yes"]
    assert sorted({s["name"] for s in data}) == ["no", "yes"] and len(data) == 2 * n_panels
    grids = option["grid"]
    assert option["legend"]["top"] > max(g["top"] + g["height"] for g in grids)  # under the plots
    assert " ".join(texts(at.caption)).count("k-NN accuracy") == n_panels  # every panel's numbers, shown
    assert not [e for e in at.expander if "Numbers" in e.label]
    # tiny-wav2vec2's panels start a row of their own, under the baseline's two.
    assert grids[2]["top"] > grids[1]["top"] + grids[1]["height"]
    assert grids[0]["top"] == grids[1]["top"] and float(grids[1]["left"][:-1]) > float(grids[0]["left"][:-1])


def test_a_click_picks_its_clip_and_panel_and_a_box_rings_its_clips_in_every_panel(env) -> None:
    """What the chart's selection callback does with ECharts' events (the union of the
    clicked points and the brushed ones): a new point in it is the clip just clicked, in
    that series' panel; a changed brush selects the clips it holds, ringed in all panels."""
    at = new_app(MEL_PARAMS)
    at.run()
    next(b for b in at.button if b.label == "Extract").click().run()
    wait_for_job(at)
    chart = echart(at)
    series = chart.option["series"]
    mfcc = next(i for i, s in enumerate(series) if s.get("xAxisIndex") == 1 and "datasetIndex" in s)
    clicked = chart.rows(series[mfcc])["clip"].iloc[1]
    select(at, [{"series_index": mfcc, "data_indices": [1]}])
    no_exception(at)
    assert at.query_params["clip"] == clicked
    assert at.query_params["nn_layers"] == "mfcc"  # the clicked panel's space
    rings = [s for s in echart(at).option["series"] if s.get("name") == "selected"]
    assert {s["xAxisIndex"] for s in rings} == {0, 1}  # the clicked clip is ringed in both panels
    # A box over the logmel panel: its clips (not the earlier click) become the selection, ringed everywhere.
    logmel = [i for i, s in enumerate(series) if s.get("xAxisIndex") == 0 and "datasetIndex" in s]
    boxed = [{"series_index": i, "data_indices": [0]} for i in logmel]
    select(at, [{"series_index": mfcc, "data_indices": [1]}, *boxed],
           [{"brush_index": 0, "brush_type": "rect", "coord_range": [[-9, 9], [-9, 9]]}])
    no_exception(at)
    expected = {chart.rows(series[i])["clip"].iloc[0] for i in logmel}
    assert set(at.session_state["ex_brush"]) == expected
    brushed = [s for s in echart(at).option["series"] if s.get("name") == "brushed"]
    assert {s["xAxisIndex"] for s in brushed} == {0, 1}
    # The same clips in both panels (a boxed clip that is also a neighbour of the clicked one is ringed orange).
    assert len(brushed[0]["data"]) == len(brushed[1]["data"]) >= 1
    assert at.query_params["clip"] == clicked  # the box did not change the clicked clip


def test_a_3d_view_stays_plotly_with_a_scene_per_panel(env) -> None:
    at = new_app({**MEL_PARAMS, "dims": "3"})
    at.run()
    next(b for b in at.button if b.label == "Extract").click().run()
    wait_for_job(at)
    no_exception(at)
    assert echart(at) is None
    spec = plotly_figure(at)
    assert {t["type"] for t in spec["data"] if t.get("customdata")} == {"scatter3d"}
    assert "scene2" in spec["layout"] and len(panel_titles(at)) == 2


def test_a_2d_view_past_the_echarts_cap_stays_plotly(env, monkeypatch) -> None:
    from embedviz import figures

    monkeypatch.setattr(figures, "ECHARTS_MAX_POINTS", 15)  # 2 panels x 8 clips = 16 points
    at = new_app(MEL_PARAMS)
    at.run()
    next(b for b in at.button if b.label == "Extract").click().run()
    wait_for_job(at)
    no_exception(at)
    assert echart(at) is None
    assert [t.split("\n")[0] for t in panel_titles(at)] == ["layer logmel", "layer mfcc"]
    assert plotly_figure(at)["layout"]["xaxis2"]


def test_a_view_reads_all_its_layers_in_one_store_pass(env, monkeypatch) -> None:
    """Opening a store part costs the same for one layer or all: the panels of a model
    (logmel, mfcc) are read together, once, not once per panel."""
    from embedviz import views

    at = new_app(MEL_PARAMS)
    at.run()
    next(b for b in at.button if b.label == "Extract").click().run()
    wait_for_job(at)
    calls: list[tuple[str, ...]] = []
    real = views.read_vectors

    def counting(store, settings, layers, pooling, manifest=None):
        calls.append(tuple(layers))
        return real(store, settings, layers, pooling, manifest)

    monkeypatch.setattr(views, "read_vectors", counting)
    widget(at, "segmented_control", "ex_pool").set_value("max").run()  # a new pooling: nothing cached
    no_exception(at)
    assert len(panel_titles(at)) == 2
    assert calls == [("logmel", "mfcc")]


def test_past_the_cap_the_clip_list_holds_only_what_highlight_matches(env, monkeypatch) -> None:
    from ui import explore_results

    at = new_app(MEL_PARAMS)
    at.run()
    next(b for b in at.button if b.label == "Extract").click().run()
    wait_for_job(at)
    sample_ids = list(at.selectbox(key="ex_clip").options)
    assert len(sample_ids) == 1 + 8  # under the cap: every clip of the view, and "none"
    monkeypatch.setattr(explore_results, "MAX_CLIP_OPTIONS", 3)
    capped = new_app(dict(at.query_params))
    capped.run()
    no_exception(capped)
    assert len(capped.selectbox(key="ex_clip").options) == 1  # nothing typed: no 100,000-option list
    assert "Highlight" in capped.selectbox(key="ex_clip").help
    found = new_app({**dict(at.query_params), "find": "yes"})
    found.run()
    options = list(found.selectbox(key="ex_clip").options)[1:]  # [0] is "none" (shown as a hint)
    assert options and all("yes" in o for o in options) and len(options) <= 3
    found.selectbox(key="ex_clip").set_value(options[0]).run()
    assert found.query_params["clip"] == options[0]
    assert any("Nearest neighbours" in m for m in texts(found.markdown))


def test_the_page_sends_a_hidden_empty_chart_of_the_views_renderer_before_the_figure(env) -> None:
    """The browser starts loading the chart library while the server still projects
    (``ui.widgets.preload_charts``): an empty chart of the renderer the view is drawn with,
    alone in the hidden container, and none of the other library."""
    from embedviz.figures import renderer_for
    from ui.widgets import PRELOAD_KEY

    for dims in (2, 3):
        at = new_app({"model": "baseline:mel", "words": "yes,no", "n": "3", "dims": str(dims)})
        at.run()
        no_exception(at)
        kind = renderer_for(dims, 12) + "_chart"
        (block,) = [b for b in _blocks(at.main) if str(getattr(b.proto, "id", "")).endswith(PRELOAD_KEY)]
        assert [c.type for c in block.children.values()] == [kind]
        (preload,) = [c for c in at.get(kind) if c not in charts(at, kind)]
        assert preload in block.children.values()
        other = "plotly_chart" if kind == "echarts_chart" else "echarts_chart"
        assert at.get(other) == charts(at, other), "only the view's own library is preloaded"


def _blocks(node) -> list:
    """Every block (container) under ``node``."""
    out = []
    for child in getattr(node, "children", {}).values():
        if hasattr(child, "children"):
            out.append(child)
            out.extend(_blocks(child))
    return out


def test_the_model_catalogue_table_is_sent_only_while_its_expander_is_open(env) -> None:
    """A closed expander's content is still sent and mounted by the browser, so the
    catalogue's data grid is drawn only once the user opens it (and goes when closed)."""
    at = new_app({"model": "baseline:mel", "words": "yes,no", "n": "3"})
    at.run()
    no_exception(at)
    (catalogue,) = [e for e in at.expander if e.label.startswith("Model catalogue")]
    assert not catalogue.dataframe, "the catalogue table was sent while closed"
    at.session_state["ex_catalogue"] = True  # what the browser sends when the user opens it
    at.run()
    no_exception(at)
    (catalogue,) = [e for e in at.expander if e.label.startswith("Model catalogue")]
    (table,) = catalogue.dataframe
    assert "baseline:mel" in set(table.value["model"]) and len(table.value) > 10
