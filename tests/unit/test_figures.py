"""Tests for embedviz.figures: trace structure, clip ids, colours, HTML export."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from embedviz.errors import ConfigError
from embedviz.figures import (
    Panel,
    cka_figure,
    confusion_figure,
    grid_figure,
    layer_curve_figure,
    panel_subtitle,
    scatter_figure,
    title_for,
    word_colors,
    word_styles,
    write_html,
)
from embedviz.reduction import ReductionSettings

WORDS = ["yes", "no", "up", "down"]


def sample(n: int = 40, k: int = 2, seed: int = 0) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    rng = np.random.default_rng(seed)
    coords = rng.normal(size=(n, k))
    words = [WORDS[i] for i in rng.integers(0, len(WORDS), size=n)]
    speakers = [f"spk{i % 3}" for i in range(n)]
    clip_ids = [f"clip-{i:03d}" for i in range(n)]
    return coords, clip_ids, words, speakers


def points_by_clip(fig: go.Figure) -> dict[str, tuple[float, ...]]:
    """clip id -> plotted coordinates, read back from every trace's customdata."""
    out: dict[str, tuple[float, ...]] = {}
    for trace in fig.data:
        zs = trace.z if isinstance(trace, go.Scatter3d) else [None] * len(trace.x)
        for custom, x, y, z in zip(trace.customdata, trace.x, trace.y, zs):
            out[custom[0]] = (x, y) if z is None else (x, y, z)
    return out


def test_word_colors_are_stable_and_distinct() -> None:
    a = word_colors(["yes", "no", "yes", "up"])
    b = word_colors(["up", "no", "yes"])
    assert a == b
    assert set(a) == {"yes", "no", "up"}
    many = word_styles([f"w{i:02d}" for i in range(35)])
    # Speech Commands' 35 words never share colour AND symbol.
    assert len({(st.color, st.symbol) for st in many.values()}) == 35
    assert word_colors([f"w{i:02d}" for i in range(35)]) == {k: st.color for k, st in many.items()}


@pytest.mark.parametrize("k", [2, 3])
def test_scatter_has_one_trace_per_word_and_carries_clip_ids(k: int) -> None:
    coords, clip_ids, words, speakers = sample(k=k)
    fig = scatter_figure(coords, clip_ids, words, speakers, title="t")
    expected = go.Scatter3d if k == 3 else go.Scatter  # a small 2D cloud is SVG (see below)
    assert all(isinstance(t, expected) for t in fig.data)
    assert sorted(t.name for t in fig.data) == sorted(set(words))
    assert sum(len(t.x) for t in fig.data) == len(clip_ids)
    placed = points_by_clip(fig)
    assert set(placed) == set(clip_ids)
    for i, cid in enumerate(clip_ids):
        np.testing.assert_allclose(placed[cid], coords[i])
    for trace in fig.data:
        assert all(custom[1] == trace.name for custom in trace.customdata)
        assert "clip" in trace.hovertemplate and "speaker" in trace.hovertemplate
    assert fig.layout.title.text == "t"


def test_scatter_by_speaker_and_bad_inputs() -> None:
    coords, clip_ids, words, speakers = sample()
    fig = scatter_figure(coords, clip_ids, words, speakers, color_by="speaker")
    assert sorted(t.name for t in fig.data) == ["spk0", "spk1", "spk2"]
    with pytest.raises(ConfigError, match="color_by"):
        scatter_figure(coords, clip_ids, words, speakers, color_by="model")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="clip_ids"):
        scatter_figure(coords, clip_ids[:-1], words, speakers)
    with pytest.raises(ConfigError, match="shape"):
        scatter_figure(np.ones((40, 4)), clip_ids, words, speakers)


def test_marker_size_shrinks_for_many_points() -> None:
    small = scatter_figure(*sample(n=100))
    large = scatter_figure(*sample(n=5000))
    assert large.data[0].marker.size < small.data[0].marker.size
    assert large.data[0].marker.opacity < small.data[0].marker.opacity


def test_same_word_same_colour_across_figures() -> None:
    coords, clip_ids, words, speakers = sample()
    fig_a = scatter_figure(coords, clip_ids, words, speakers)
    fig_b = scatter_figure(coords[::-1], clip_ids[::-1], words[::-1], speakers[::-1])
    grid = grid_figure([Panel("a", coords, clip_ids, words, speakers), Panel("b", coords, clip_ids, words, speakers)], 2)
    colours = lambda fig: {t.name: t.marker.color for t in fig.data}  # noqa: E731
    assert colours(fig_a) == colours(fig_b) == colours(grid) == word_colors(words)
    # A shared mapping keeps colours when a figure shows only some of the words.
    full = word_colors(WORDS)
    subset = [i for i, w in enumerate(words) if w in ("up", "yes")]
    fig_c = scatter_figure(coords[subset], [clip_ids[i] for i in subset], [words[i] for i in subset],
                           [speakers[i] for i in subset], colors=full)
    assert colours(fig_c) == {w: full[w] for w in ("up", "yes")}


def test_grid_shows_each_word_once_in_the_legend() -> None:
    panels = []
    for layer in range(5):
        coords, clip_ids, words, speakers = sample(seed=layer)
        panels.append(Panel(f"layer {layer}", coords, clip_ids, words, speakers, subtitle="kNN 0.83 · sil 0.21"))
    fig = grid_figure(panels, n_cols=3, title="grid")
    legend_names = [t.name for t in fig.data if t.showlegend]
    assert sorted(legend_names) == sorted(WORDS)
    assert all(t.legendgroup == t.name for t in fig.data)
    titles = [a.text for a in fig.layout.annotations]
    assert any("layer 4" in t and "kNN 0.83" in t for t in titles)
    # 5 panels on 3 columns: 2 rows of subplots, one pair of axes per panel.
    layout = fig.layout.to_plotly_json()
    assert "xaxis5" in layout and "xaxis6" not in layout
    assert {t.xaxis for t in fig.data} == {"x", "x2", "x3", "x4", "x5"}
    rows = sorted({tuple(layout[f"yaxis{k}"]["domain"]) for k in ("", "2", "3", "4", "5")}, reverse=True)
    assert len(rows) == 2 and rows[0][0] > rows[1][1]  # the second row lies below the first
    assert layout["xaxis4"]["domain"] == layout["xaxis"]["domain"]  # panel 4 starts the second row
    # Equal units on both axes of every panel: distances in a picture are not stretched.
    assert all(layout[f"yaxis{k}"]["scaleanchor"] == f"x{k}" for k in ("", "2", "3", "4", "5"))


def test_panel_subtitle_names_the_numbers_it_has() -> None:
    from embedviz.figures import panel_subtitle

    assert panel_subtitle({"knn_accuracy": 0.834, "silhouette": 0.21, "trustworthiness": 0.951}) == (
        "kNN 0.83 · sil 0.21 · trust 0.95")
    assert panel_subtitle({"knn_accuracy": 0.5, "trustworthiness": float("nan")}) == "kNN 0.50"


def test_grid_sections_start_new_rows_under_their_headers() -> None:
    from embedviz.figures import Section, add_to_panel, panel_of_traces

    def panels(prefix: str, n: int) -> list[Panel]:
        return [Panel(f"{prefix}{i}", *sample(seed=i)) for i in range(n)]

    fig = grid_figure([Section("Model A", panels("a", 2), n_cols=2), Section("Model B", panels("b", 3), n_cols=3)],
                      panel_height=250)
    layout = fig.layout.to_plotly_json()
    headers = [a for a in layout["annotations"] if a["name"] == "section header"]
    titles = [a for a in layout["annotations"] if a["name"] == "panel title"]
    assert [h["text"] for h in headers] == ["<b>Model A</b>", "<b>Model B</b>"]
    assert [t["text"] for t in titles] == ["a0", "a1", "b0", "b1", "b2"]  # panel order
    # Model A: 2 wide; Model B: 3 wide, on its own row under its header, below Model A's panels.
    width = lambda k: layout[f"xaxis{k}"]["domain"][1] - layout[f"xaxis{k}"]["domain"][0]  # noqa: E731
    assert width("") > width("3") and abs(width("3") - width("5")) < 1e-9
    assert layout["yaxis2"]["domain"][0] > headers[1]["y"] >= layout["yaxis3"]["domain"][1]
    # Heights in pixels: each panel's plot area is panel_height tall whatever the rows.
    plot_px = layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]
    assert abs((layout["yaxis"]["domain"][1] - layout["yaxis"]["domain"][0]) * plot_px - 250) < 1
    # One legend entry per word for all sections; overlays land on the panel asked for.
    assert sorted(t.name for t in fig.data if t.showlegend) == sorted(WORDS)
    n = len(fig.data)
    add_to_panel(fig, 3, [go.Scatter(x=[0.0], y=[0.0], name="ring")])
    assert fig.data[n].xaxis == "x4" and fig.data[n].yaxis == "y4" and panel_of_traces(fig)[n] == 3
    with pytest.raises(ConfigError, match="not a mix"):
        grid_figure([Section("A", panels("a", 1)), *panels("b", 1)], 2)
    with pytest.raises(ConfigError):
        Section("A", panels("a", 1), n_cols=0)
    with pytest.raises(ConfigError, match="at least one panel"):
        grid_figure([Section("A", [])], 2)
    # 8 entries fill a 760 px row: one more (a user's clip, added later) needs a second row.
    words8 = [f"w{i}" for i in range(8)]
    eight = [Panel("p", np.zeros((8, 2)), [f"c{i}" for i in range(8)], words8, ["s"] * 8)]
    assert (grid_figure(eight, 1, width_px=760, extra_legend_entries=1).layout.margin.b
            == grid_figure(eight, 1, width_px=760).layout.margin.b + 19)
    hidden = grid_figure(panels("a", 2), 2, show_legend=False)
    assert hidden.layout.showlegend is False and hidden.layout.height < fig.layout.height


def test_grid_3d_uses_scenes_and_rejects_mixed_dims() -> None:
    p3 = [Panel(f"p{i}", *sample(k=3, seed=i)) for i in range(2)]
    fig = grid_figure(p3, n_cols=2)
    assert all(isinstance(t, go.Scatter3d) for t in fig.data)
    assert {t.scene for t in fig.data} == {"scene", "scene2"}
    layout = fig.layout.to_plotly_json()
    assert layout["scene"]["domain"]["x"][1] < layout["scene2"]["domain"]["x"][0]  # side by side
    from embedviz.figures import add_to_panel, panel_of_traces

    add_to_panel(fig, 1, [go.Scatter3d(x=[0.0], y=[0.0], z=[0.0], name="ring")])
    assert fig.data[-1].scene == "scene2" and panel_of_traces(fig)[-1] == 1
    with pytest.raises(ConfigError, match="2D or all 3D"):
        grid_figure([Panel("a", *sample(k=2)), Panel("b", *sample(k=3))], 2)
    with pytest.raises(ConfigError):
        grid_figure([], 2)


def test_layer_curve_one_line_per_model_and_chance() -> None:
    rows = []
    for model, n_layers in (("wav2vec2", 5), ("whisper", 3)):
        for i in range(n_layers):
            rows.append({"model": model, "layer": str(i), "depth": i / (n_layers - 1),
                         "knn_accuracy": 0.2 + 0.1 * i, "chance": 0.1})
    table = pd.DataFrame(rows)
    fig = layer_curve_figure(table)
    lines = [t for t in fig.data if t.name in ("wav2vec2", "whisper")]
    assert len(lines) == 2
    w2v = next(t for t in lines if t.name == "wav2vec2")
    np.testing.assert_allclose(w2v.x, [0, 0.25, 0.5, 0.75, 1.0])
    assert [c[0] for c in w2v.customdata] == ["0", "1", "2", "3", "4"]
    assert "markers" in w2v.mode
    chance = [t for t in fig.data if t.name == "chance"]
    assert len(chance) == 1 and chance[0].line.dash == "dash"
    assert list(chance[0].y) == [0.1, 0.1]
    no_chance = layer_curve_figure(table.drop(columns="chance"), metric="knn_accuracy")
    assert all(t.name != "chance" for t in no_chance.data)
    with pytest.raises(ConfigError, match="silhouette"):
        layer_curve_figure(table, metric="silhouette")


def test_confusion_figure_is_row_normalised() -> None:
    matrix = np.array([[8, 2, 0], [0, 0, 0], [1, 1, 2]])
    fig = confusion_figure(matrix, ["a", "b", "c"], title="conf")
    z = np.asarray(fig.data[0].z)
    np.testing.assert_allclose(z.sum(axis=1), [1.0, 0.0, 1.0])
    assert z[0, 0] == pytest.approx(0.8)
    assert fig.data[0].zmin == 0 and fig.data[0].zmax == 1
    assert np.asarray(fig.data[0].customdata)[0, 1] == 2
    with pytest.raises(ConfigError):
        confusion_figure(np.ones((2, 3)), ["a", "b"])


def test_cka_figure_fixed_scale() -> None:
    df = pd.DataFrame([[1.0, 0.4], [0.4, 1.0]], index=["0", "1"], columns=["0", "1"])
    fig = cka_figure(df, "CKA")
    assert fig.data[0].zmin == 0 and fig.data[0].zmax == 1
    assert list(fig.data[0].x) == ["0", "1"]


def test_titles_name_model_layer_pooling_and_reduction() -> None:
    title = title_for("wav2vec2-base", "6", "mean", ReductionSettings(method="tsne", perplexity=20, seed=2))
    for part in ("wav2vec2-base", "layer 6", "mean", "t-SNE", "perplexity 20", "seed 2"):
        assert part in title
    assert "UMAP" in title_for("m", "z", "max", "UMAP")
    assert panel_subtitle({"knn_accuracy": 0.834, "silhouette": 0.2104, "speaker_disjoint_knn": float("nan")}) == "kNN 0.83 · sil 0.21"


def test_write_html_is_standalone(tmp_path: Path) -> None:
    fig = scatter_figure(*sample())
    out = write_html(fig, tmp_path / "sub" / "fig.html")
    text = out.read_text(encoding="utf-8")
    assert re.search(r"plotly\.js v\d", text)  # the library itself is inlined
    assert not re.search(r"<script[^>]+src=", text)  # nothing is fetched from a CDN
    assert "clip-000" in text


def test_large_2d_clouds_use_webgl_small_ones_svg() -> None:
    from embedviz.figures import WEBGL_MIN_POINTS

    rng = np.random.default_rng(0)
    for n, cls in [(WEBGL_MIN_POINTS - 1, go.Scatter), (WEBGL_MIN_POINTS, go.Scattergl)]:
        ids = [f"w/c{i}.wav" for i in range(n)]
        fig = scatter_figure(rng.standard_normal((n, 2)), ids, ["a", "b"] * (n // 2) + ["a"] * (n % 2), ["s"] * n)
        assert all(type(t) is cls for t in fig.data), (n, {type(t).__name__ for t in fig.data})


def test_webgl_can_be_forced_off_or_on() -> None:
    coords, clip_ids, words, speakers = sample(k=2)
    assert all(type(t) is go.Scattergl for t in scatter_figure(coords, clip_ids, words, speakers, webgl=True).data)
    assert all(type(t) is go.Scatter for t in scatter_figure(coords, clip_ids, words, speakers, webgl=False).data)


def test_compact_legend_wraps_many_words_into_rows_under_the_plot() -> None:
    from embedviz.figures import LEGEND_ENTRY_SPAN_PX, compact_legend

    legend, px = compact_legend(35, 760)
    assert legend["orientation"] == "h" and legend["yref"] == "container"
    per_row = 760 // LEGEND_ENTRY_SPAN_PX
    rows = -(-35 // per_row)
    assert rows < 35 and px >= rows * 10  # rows, not one entry per line
    narrow, narrow_px = compact_legend(35, 300)
    assert narrow_px > px  # fewer entries fit per row: more rows
    assert compact_legend(0, 760)[1] < px
    with pytest.raises(ConfigError):
        compact_legend(3, 0)


def test_grid_legend_is_compact_and_traces_map_back_to_their_panel() -> None:
    from embedviz.figures import panel_of_traces

    many = [f"w{i:02d}" for i in range(35)]
    rng = np.random.default_rng(0)
    panels = []
    for layer in range(4):
        words = [many[i % 35] for i in range(140)]
        panels.append(Panel(f"layer {layer}", rng.normal(size=(140, 2)), [f"c{layer}-{i}" for i in range(140)],
                            words, ["s"] * 140))
    fig = grid_figure(panels, n_cols=3, width_px=760)
    assert fig.layout.legend.orientation == "h"
    # The legend's rows are added below the panels, so the plot keeps its height.
    assert fig.layout.height > 300 * 2 + 5 * 19 and fig.layout.margin.b > 5 * 19
    owner = panel_of_traces(fig)
    assert len(owner) == len(fig.data) and set(owner) == {0, 1, 2, 3}
    for trace, panel in zip(fig.data, owner):
        assert all(str(c[0]).startswith(f"c{panel}-") for c in trace.customdata)
    # One legend entry per word for the whole grid; every trace of a word shares its group.
    assert sorted(t.name for t in fig.data if t.showlegend) == many


def test_scatter_coordinates_are_sent_as_float32() -> None:
    coords, clip_ids, words, speakers = sample(n=2000)
    fig = scatter_figure(coords, clip_ids, words, speakers)
    assert all(np.asarray(t.x).dtype == np.float32 and np.asarray(t.y).dtype == np.float32 for t in fig.data)


def test_add_own_clip_draws_one_labelled_star_in_2d_and_a_marker_in_3d() -> None:
    from embedviz.figures import OWN_CLIP_NAME, add_own_clip

    rng = np.random.default_rng(0)
    for dims, kind, symbol in ((2, "scatter", "star"), (3, "scatter3d", "diamond")):
        fig = scatter_figure(rng.normal(size=(6, dims)), [f"w/{i}.wav" for i in range(6)], ["a", "b"] * 3, ["s"] * 6)
        n = len(fig.data)
        add_own_clip(fig, [0.5] * dims)
        assert len(fig.data) == n + 1
        own = fig.data[-1]
        assert own.type == kind and own.name == OWN_CLIP_NAME and own.marker.symbol == symbol
        assert list(own.text) == [OWN_CLIP_NAME] and own.customdata is None  # a click on it picks no stored clip
    with pytest.raises(ConfigError):
        add_own_clip(fig, [float("nan"), 0.0])
