"""Tests for embedviz.figures.echarts_grid (the 2D panels as one ECharts option) and read_selection."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from embedviz.errors import ConfigError
from embedviz.figures import (
    BRUSH_COLOUR,
    ECHARTS_COLUMNS,
    ECHARTS_SYMBOLS,
    GRID_HEADER_PX,
    NEIGHBOUR_COLOUR,
    OWN_CLIP_NAME,
    RING_NAMES,
    SELECTED_COLOUR,
    Panel,
    Section,
    SelectionMemory,
    SeriesClips,
    echarts_grid,
    equal_unit_ranges,
    grid_figure,
    read_selection,
    ring_size,
    word_colors,
)
from tests.unit.test_figures import sample

WORDS35 = [f"w{i:02d}" for i in range(35)]


def panel(seed: int, n: int = 40, title: str = "layer 1", subtitle: str = "kNN 0.50") -> Panel:
    coords, ids, words, speakers = sample(n=n, seed=seed)
    return Panel(title, coords, ids, words, speakers, subtitle=subtitle)


def px(value: str | float, width: int) -> float:
    """A position across the chart in pixels (echarts_grid gives shares of the width: "12.5%")."""
    return float(value[:-1]) / 100 * width if isinstance(value, str) else float(value)


def word_series(grid) -> list[dict]:
    return [s for s in grid.option["series"] if "datasetIndex" in s]


def rows(grid, series: dict) -> pd.DataFrame:
    return grid.option["dataset"][series["datasetIndex"]]["source"].to_pandas()


def test_one_grid_axis_pair_and_series_per_word_per_panel_with_the_clips_mapped() -> None:
    panels = [panel(0), panel(1)]
    grid = echarts_grid(panels, width_px=760, panel_height=260, title="mean pooling")
    option = grid.option
    assert len(option["grid"]) == len(option["xAxis"]) == len(option["yAxis"]) == 2
    series = word_series(grid)
    assert len(series) == len(option["series"]) == len(grid.series)  # no rings, no stars
    for i, s in enumerate(option["series"]):
        k, label = s["xAxisIndex"], s["name"]
        assert s["yAxisIndex"] == k and s["type"] == "scatter" and s["selectedMode"]
        frame = rows(grid, s)
        assert list(frame.columns) == list(ECHARTS_COLUMNS) and set(frame["word"]) == {label}
        # The series map gives each data row's clip, so a selection's data_indices map back.
        assert grid.series[i] == SeriesClips(k, tuple(frame["clip"]))
        p = panels[k]
        where = {c: j for j, c in enumerate(p.clip_ids)}
        np.testing.assert_allclose(frame[["x", "y"]].to_numpy(), p.coords[[where[c] for c in frame["clip"]]], atol=1e-5)
    # Every clip of each panel, once.
    for k, p in enumerate(panels):
        drawn = [c for s, m in zip(option["series"], grid.series) if m.panel == k for c in m.clip_ids]
        assert sorted(drawn) == sorted(p.clip_ids)
    assert option["tooltip"]["formatter"] == "clip {@clip}<br>word {@word}<br>speaker {@speaker}"
    assert option["brush"]["toolbox"] == ["rect", "polygon", "clear"] and option["brush"]["xAxisIndex"] == "all"
    assert {z["type"] for z in option["dataZoom"]} == {"inside"} and len(option["dataZoom"]) == 4
    for axis in option["xAxis"] + option["yAxis"]:
        assert axis["axisLabel"] == {"show": False}  # no tick labels
    assert all(g["show"] and g["borderColor"] for g in option["grid"])  # a light frame per panel
    json.dumps({k: v for k, v in option.items() if k != "dataset"}, allow_nan=False)  # JSON-clean, as Streamlit needs


def test_colours_and_symbols_are_grid_figures_for_the_same_labels() -> None:
    """35 words: the same colour and the same symbol shape as the Plotly figure (circles, then diamonds)."""
    rng = np.random.default_rng(3)
    n = 210
    words = [WORDS35[i % 35] for i in range(n)]
    p = Panel("t", rng.normal(size=(n, 2)), [f"c{i}" for i in range(n)], words, ["s"] * n)
    colors = word_colors(WORDS35)
    plotly = grid_figure([p], colors=colors)
    grid = echarts_grid([p], colors=colors)
    plotly_style = {t.name: (t.marker.color, t.marker.symbol) for t in plotly.data}
    echarts_style = {s["name"]: (s["itemStyle"]["color"], s["symbol"]) for s in word_series(grid)}
    assert set(plotly_style) == set(echarts_style) == set(WORDS35)
    for label, (color, symbol) in plotly_style.items():
        assert echarts_style[label] == (color, ECHARTS_SYMBOLS[symbol or "circle"])
    assert {s for _, s in echarts_style.values()} == {"circle", "diamond"}
    assert grid.option["legend"]["data"] == sorted(WORDS35)


def test_equal_units_make_a_unit_the_same_pixels_on_both_axes() -> None:
    wide = np.array([[0.0, 0.0], [10.0, 1.0]])
    (x0, x1), (y0, y1) = equal_unit_ranges(wide, 300, 100)
    assert (x1 - x0) / 300 == pytest.approx((y1 - y0) / 100)
    assert x0 < 0 and x1 > 10 and y0 < 0 and y1 > 1  # every point inside, with a margin
    tall = np.array([[0.0, 0.0], [1.0, 10.0]])
    (x0, x1), (y0, y1) = equal_unit_ranges(tall, 300, 100)
    assert (x1 - x0) / 300 == pytest.approx((y1 - y0) / 100) and y1 - y0 > 10
    one = equal_unit_ranges(np.array([[2.0, 3.0]]), 200, 100)  # a single point: a finite, centred range
    assert one[0][0] < 2 < one[0][1] and one[1][0] < 3 < one[1][1]
    # In the figure: each panel's axis ranges over its grid's pixel size agree.
    grid = echarts_grid([panel(0), panel(1, n=10)], n_cols=2, width_px=760, panel_height=260)
    for g, xa, ya in zip(grid.option["grid"], grid.option["xAxis"], grid.option["yAxis"]):
        assert (xa["max"] - xa["min"]) / px(g["width"], 760) == pytest.approx((ya["max"] - ya["min"]) / g["height"], rel=1e-4)
    with pytest.raises(ConfigError):
        equal_unit_ranges(wide, 0, 100)


def test_the_pixel_layout_follows_grid_figure_sections_titles_and_legend() -> None:
    sections = [Section("Model A", [panel(0), panel(1)], n_cols=2),
                Section("Model B", [panel(2, title="layer 3<br>PCA 2D"), panel(3), panel(4)], n_cols=3)]
    grid = echarts_grid(sections, width_px=760, panel_height=200, title="mean pooling")
    option = grid.option
    ids = [t["id"] for t in option["title"]]
    assert ids[:3] == ["figure title", "section header 0", "section header 1"]
    headers = {t["id"]: t for t in option["title"]}
    assert headers["section header 0"]["text"] == "Model A" and headers["section header 1"]["text"] == "Model B"
    panel_titles = [t for t in option["title"] if t["id"].startswith("panel title")]
    assert [t["text"] for t in panel_titles][2] == "layer 3\nPCA 2D"  # Plotly's <br> as a new line
    assert all(t["subtext"] == "kNN 0.50" for t in panel_titles)
    g = option["grid"]
    assert g[0]["top"] == g[1]["top"] < g[2]["top"] == g[3]["top"] == g[4]["top"]
    assert g[2]["top"] - (g[1]["top"] + 200) > GRID_HEADER_PX  # the second header sits between the rows
    assert px(g[1]["width"], 760) > px(g[2]["width"], 760)  # 2 a row, then 3 a row
    assert px(g[0]["left"], 760) < px(g[1]["left"], 760) and px(g[2]["left"], 760) < px(g[3]["left"], 760)
    assert all(x["height"] == 200 for x in g)
    assert headers["section header 1"]["top"] > g[1]["top"] + 200
    assert max(px(x["left"], 760) + px(x["width"], 760) for x in g) <= 760
    legend = option["legend"]
    assert legend["top"] > max(x["top"] + x["height"] for x in g) and legend["top"] < grid.height
    assert legend["data"] == ["down", "no", "up", "yes"]
    assert headers["legend title"]["text"] == "word"
    # The same heights as the Plotly grid, which sizes its figure the same way (its legend rows
    # as wide as the ECharts legend's, whose selector buttons take the rest).
    assert grid.height == grid_figure(sections, width_px=640, panel_height=200, title="mean pooling").layout.height
    hidden = echarts_grid(sections, width_px=760, panel_height=200, show_legend=False)
    assert hidden.option["legend"] == {"show": False} and hidden.height < grid.height


def test_marks_ring_their_clips_in_every_panel_after_the_word_series() -> None:
    panels = [panel(0), panel(0, title="again")]
    clicked, near = panels[0].clip_ids[3], panels[0].clip_ids[5:8]
    marks = {**{c: NEIGHBOUR_COLOUR for c in near}, clicked: SELECTED_COLOUR, "not-drawn": BRUSH_COLOUR}
    plain = echarts_grid(panels)
    grid = echarts_grid(panels, marks=marks)
    n_words = len(word_series(plain))
    # Rings come after every word series: their indices do not move when marks change.
    assert grid.series[:n_words] == plain.series and all(m is None for m in grid.series[n_words:])
    rings = grid.option["series"][n_words:]
    assert {(r["name"], r["xAxisIndex"]) for r in rings} == {(RING_NAMES[SELECTED_COLOUR], 0), (RING_NAMES[SELECTED_COLOUR], 1),
                                                             (RING_NAMES[NEIGHBOUR_COLOUR], 0), (RING_NAMES[NEIGHBOUR_COLOUR], 1)}
    for r in rings:
        colour = r["itemStyle"]["borderColor"]
        assert r["silent"] and r["symbolSize"] == ring_size(colour)
        wanted = [clicked] if colour == SELECTED_COLOUR else list(near)
        where = {c: j for j, c in enumerate(panels[0].clip_ids)}
        np.testing.assert_allclose(r["data"], panels[0].coords[[where[c] for c in wanted]], atol=1e-5)
    assert "brushed" not in {r["name"] for r in rings}  # a clip not drawn gets no ring


def test_the_own_clip_is_a_star_in_its_panels_with_one_legend_entry() -> None:
    grid = echarts_grid([panel(0), panel(1), panel(2)], own=[(0.5, -0.25), None, (30.0, 40.0)])
    stars = [s for s in grid.option["series"] if s["name"] == OWN_CLIP_NAME]
    assert [s["xAxisIndex"] for s in stars] == [0, 2]
    assert stars[0]["data"] == [[0.5, -0.25]] and stars[0]["symbol"] == ECHARTS_SYMBOLS["star"]
    assert grid.option["legend"]["data"].count(OWN_CLIP_NAME) == 1
    # The panel's range holds the star, even far from the clips.
    xa, ya = grid.option["xAxis"][2], grid.option["yAxis"][2]
    assert xa["min"] < 30 < xa["max"] and ya["min"] < 40 < ya["max"]
    none = echarts_grid([panel(0)], own=[None])
    assert OWN_CLIP_NAME not in none.option["legend"]["data"]


def test_bad_input_is_a_config_error() -> None:
    p = panel(0)
    coords3, ids, words, speakers = sample(k=3)
    with pytest.raises(ConfigError, match="2D"):
        echarts_grid([Panel("3d", coords3, ids, words, speakers)])
    with pytest.raises(ConfigError, match="own"):
        echarts_grid([p, p], own=[(0.0, 0.0)])
    with pytest.raises(ConfigError, match="finite"):
        echarts_grid([p], own=[(0.0, float("nan"))])
    with pytest.raises(ConfigError, match="color_by"):
        echarts_grid([p], color_by="model")
    with pytest.raises(ConfigError):
        echarts_grid([])
    with pytest.raises(ConfigError, match="width_px"):
        echarts_grid([p], width_px=10)
    with pytest.raises(ConfigError, match="clip_ids"):
        echarts_grid([Panel("x", p.coords, p.clip_ids[:-1], p.words, p.speakers)])


def test_speaker_colouring_names_series_by_speaker() -> None:
    grid = echarts_grid([panel(0)], color_by="speaker")
    assert {s["name"] for s in word_series(grid)} == {"spk0", "spk1", "spk2"}
    assert grid.option["legend"]["data"] == ["spk0", "spk1", "spk2"]


def test_read_selection_finds_the_click_in_the_union_and_the_brush() -> None:
    series = (SeriesClips(0, ("a", "b")), SeriesClips(0, ("c",)), SeriesClips(1, ("a", "b")), SeriesClips(1, ("c",)), None)

    def event(selected, areas=()):
        return {"selection": {"selected": [{"series_index": i, "data_type": "main", "data_indices": d}
                                           for i, d in selected], "areas": list(areas)}}

    memory = SelectionMemory()
    sel, memory = read_selection(series, event([(2, [1])]), memory)
    assert sel.clicked == (1, "b") and sel.brushed is None
    # A second click in another series: ECharts now reports both; the new one is the click.
    sel, memory = read_selection(series, event([(2, [1]), (1, [0])]), memory)
    assert sel.clicked == (0, "c")
    # The same series again (single mode: its earlier point is dropped).
    sel, memory = read_selection(series, event([(2, [0]), (1, [0])]), memory)
    assert sel.clicked == (1, "a")
    # A box: the union holds the clicked points too; the brush is what was not clicked.
    box = [{"brush_index": 0, "brush_type": "rect", "coord_range": [[0, 1], [0, 1]]}]
    sel, memory = read_selection(series, event([(2, [0]), (1, [0]), (0, [0, 1])], box), memory)
    assert sel.clicked is None and sel.brushed == ("a", "b")
    # A click while the box stays: a click again.
    sel, memory = read_selection(series, event([(2, [0]), (1, [0]), (0, [0, 1]), (3, [0])], box), memory)
    assert sel.clicked == (1, "c") and sel.brushed is None
    # The brush cleared: an empty selection of clips.
    sel, memory = read_selection(series, event([(3, [0])]), memory)
    assert sel.brushed == () and sel.clicked is None
    # Stale or foreign indices (a ring, out of range) are ignored.
    sel, _ = read_selection(series, event([(4, [0]), (0, [9]), (7, [0])]), SelectionMemory())
    assert sel == type(sel)()
    sel, _ = read_selection(series, None, SelectionMemory())
    assert sel.clicked is None and sel.brushed is None


def test_the_data_token_follows_the_clips_not_the_marks() -> None:
    panels = [panel(0), panel(1)]
    a = echarts_grid(panels)
    b = echarts_grid(panels, marks={panels[0].clip_ids[0]: SELECTED_COLOUR}, own=[(0.0, 0.0), None])
    c = echarts_grid([panel(0), panel(2)])
    assert a.data_token == b.data_token != c.data_token


def test_renderer_for_takes_2d_views_up_to_the_cap_to_echarts_and_the_rest_to_plotly() -> None:
    from embedviz.figures import ECHARTS_MAX_POINTS, renderer_for

    assert renderer_for(2, 0) == "echarts"
    assert renderer_for(2, ECHARTS_MAX_POINTS) == "echarts"
    assert renderer_for(2, ECHARTS_MAX_POINTS + 1) == "plotly"
    assert renderer_for(3, 10) == "plotly"
    for dims, n in ((1, 10), (4, 10), (2, -1)):
        with pytest.raises(ConfigError, match="renderer_for"):
            renderer_for(dims, n)
