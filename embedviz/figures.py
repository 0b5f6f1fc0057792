"""Plotly figures for embeddings and their separability numbers.

Conventions shared by every figure:

* Styles come from :func:`word_styles`: labels are sorted and walk a fixed qualitative
  palette (Dark24, readable on white) and, once it is used up, the next marker symbol,
  so no two words of a dataset share colour AND symbol (35 Speech Commands words: 24
  circles, 11 diamonds), and the same set of words gets the same styles in every
  figure. Pass one ``colors`` mapping built from the *full* word list
  (:func:`word_colors`) to every call when figures show different subsets: symbols
  follow its order too.
* ``highlight`` (:class:`Highlight`: clip ids, words or speakers) emphasises some points
  in every figure while the others dim; the app's search box and selection use it.
* Scatter points carry ``customdata = [clip_id, word, speaker]`` (all as ``str``);
  ``customdata[0]`` is always the clip id. The app reads it back from Plotly selection events
  (``point["customdata"][0]``).
* One trace per colour group with a ``legendgroup`` per label, so clicking a legend
  entry hides that word everywhere, also across the panels of :func:`grid_figure`.

plotly is imported inside the functions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from embedviz.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import plotly.graph_objects as go
    from numpy.typing import ArrayLike

    from embedviz.reduction import ReductionSettings

ColorBy = Literal["word", "speaker"]

#: Readable names for metric columns of :func:`embedviz.metrics.metrics_table`.
METRIC_LABELS: dict[str, str] = {
    "knn_accuracy": "k-NN word accuracy",
    "speaker_disjoint_knn": "speaker-disjoint k-NN accuracy",
    "silhouette": "silhouette (cosine)",
    "probe_accuracy": "linear probe accuracy",
    "chance": "chance",
}
#: Metrics whose natural range is [0, 1].
_UNIT_METRICS = {"knn_accuracy", "speaker_disjoint_knn", "probe_accuracy", "chance"}


def _palette() -> list[str]:
    from plotly.colors import qualitative

    # Dark24 alone: readable on white and without near twins. Light24 (used before)
    # repeats Dark24's hues in pale tones, which made 'no' and 'zero' the same magenta;
    # past 24 labels the marker symbol changes instead (see SYMBOLS).
    return list(qualitative.Dark24)


#: Marker symbols, one per pass through the palette (all exist in SVG, WebGL and 3D).
SYMBOLS: tuple[str, ...] = ("circle", "diamond", "square", "x", "cross")


@dataclass(frozen=True)
class WordStyle:
    """How one label is drawn: a colour and a marker symbol."""

    color: str
    symbol: str


def word_styles(labels: Iterable[Any]) -> dict[str, WordStyle]:
    """Colour and symbol per distinct label; no two labels share both.

    Sorted labels walk the palette; each further pass uses the next symbol. With more
    labels than colours x symbols (120) styles repeat (speakers, say): colour by word
    to tell classes apart. Deterministic for a given set of labels.
    """
    palette = _palette()
    distinct = sorted({str(label) for label in labels})
    return {
        label: WordStyle(palette[i % len(palette)], SYMBOLS[(i // len(palette)) % len(SYMBOLS)])
        for i, label in enumerate(distinct)
    }


def word_colors(labels: Iterable[Any]) -> dict[str, str]:
    """Colour per distinct label (:func:`word_styles`; its symbols tell apart labels that
    share a colour). Deterministic for a given set of labels, so figures built from the
    same words agree."""
    return {label: style.color for label, style in word_styles(labels).items()}


@dataclass(frozen=True)
class Highlight:
    """Points to emphasise (the rest dim): clip ids, words and/or speakers (any match).

    Empty (the default): nothing is highlighted and every point is drawn normally.
    """

    clip_ids: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    speakers: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.clip_ids or self.words or self.speakers)

    def mask(self, clip_ids: np.ndarray, words: np.ndarray, speakers: np.ndarray) -> np.ndarray:
        """True for the points to emphasise."""
        out = np.zeros(len(clip_ids), dtype=bool)
        for values, wanted in ((clip_ids, self.clip_ids), (words, self.words), (speakers, self.speakers)):
            if wanted:
                out |= np.isin(values, [str(v) for v in wanted])
        return out


#: Opacity of points that are not highlighted while a highlight is active.
DIM_OPACITY = 0.08


def title_for(model: str, layer: str, pooling: str, reduction: "str | ReductionSettings") -> str:
    """Figure title naming model, layer, pooling and reduction, e.g.
    ``"wav2vec2-base · layer 6 · mean pooling · t-SNE 2D (perplexity 30, seed 0)"``."""
    red = reduction if isinstance(reduction, str) else reduction.describe()
    layer_label = f"layer {layer}"
    return f"{model} · {layer_label} · {pooling} pooling · {red}"


def _marker_style(n: int, three_d: bool) -> dict[str, Any]:
    """Marker size/opacity that keep 100 points visible and 5000 points uncluttered."""
    if n <= 200:
        size, opacity = 9.0, 0.9
    elif n <= 1000:
        size, opacity = 7.0, 0.8
    elif n <= 3000:
        size, opacity = 5.0, 0.7
    else:
        size, opacity = 4.0, 0.6
    if three_d:
        size *= 0.6
    return {"size": size, "opacity": opacity, "line": {"width": 0}}


def _coords(coords: ArrayLike, n_expected: int | None = None) -> np.ndarray:
    arr = np.asarray(coords, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise ConfigError(f"coords must have shape (n, 2) or (n, 3), got {arr.shape}")
    if n_expected is not None and arr.shape[0] != n_expected:
        raise ConfigError(f"coords has {arr.shape[0]} rows but {n_expected} clips were given")
    return arr


def _column(values: Sequence[Any] | ArrayLike, n: int, name: str) -> np.ndarray:
    if _is_text(values):
        # Already strings: converted in C. A Python loop over a pandas 3 (Arrow-backed) text
        # column costs ~3 ms per 5,000 clips and three columns per panel on every view.
        arr = np.asarray(values.to_numpy(dtype=object) if hasattr(values, "to_numpy") else values.astype(object))
    else:
        arr = np.asarray([str(v) for v in values], dtype=object)
    if arr.shape[0] != n:
        raise ConfigError(f"{name} has {arr.shape[0]} entries but there are {n} points")
    return arr


def _is_text(values: Any) -> bool:
    """Whether ``values`` is a numpy unicode array or a pandas text column without missing values."""
    dtype = getattr(values, "dtype", None)
    if isinstance(values, np.ndarray):
        return dtype.kind == "U"
    import pandas as pd

    return isinstance(dtype, pd.StringDtype) and isinstance(values, (pd.Series, pd.Index)) and not values.isna().any()


#: 2D clouds at least this large are drawn with WebGL (``Scattergl``); smaller ones with SVG.
#: Browsers keep only about 16 live WebGL contexts per page and Plotly's Scattergl takes two
#: per chart, so separate WebGL charts blank their oldest past ~8 (grid_figure shares one).
#: WebGL also has a fixed start-up cost: in headless Chromium (software WebGL) SVG drew 525
#: points in 0.46 s vs 0.94 s and 2,000 in 0.29 s vs 2.2 s; WebGL won from ~5,000 points
#: (1.3 s vs 0.8 s). SVG is smooth to pan and zoom at a few thousand markers.
WEBGL_MIN_POINTS = 3000

_HOVER = "clip %{customdata[0]}<br>word %{customdata[1]}<br>speaker %{customdata[2]}<extra></extra>"


def _scatter_traces(
    coords: np.ndarray,
    clip_ids: np.ndarray,
    words: np.ndarray,
    speakers: np.ndarray,
    color_by: str,
    colors: Mapping[str, str],
    shown_in_legend: set[str],
    webgl: bool | None = None,
    symbols: Mapping[str, str] | None = None,
    highlight: Highlight | None = None,
) -> list[Any]:
    import plotly.graph_objects as go

    three_d = coords.shape[1] == 3
    groups = words if color_by == "word" else speakers
    marker = _marker_style(coords.shape[0], three_d)
    custom = np.column_stack([clip_ids, words, speakers])
    emphasis = highlight.mask(clip_ids, words, speakers) if highlight is not None and highlight.active else None
    traces = []
    for label in sorted(set(groups.tolist())):
        idx = np.flatnonzero(groups == label)
        style = {**marker, "color": colors[label]}
        if symbols and label in symbols:
            # Scatter3d knows fewer symbols; circle/diamond/square/x/cross are common to all.
            style["symbol"] = symbols[label]
        if emphasis is not None:
            hit = emphasis[idx]
            style["opacity"] = None
            style["size"] = np.where(hit, marker["size"] * 1.6, marker["size"]).tolist()
            # Per-point alpha via rgba colours: Scattergl and Scatter3d take arrays here.
            style["color"] = [_rgba(colors[label], marker["opacity"] if h else DIM_OPACITY) for h in hit]
        common = dict(
            name=label,
            legendgroup=label,
            showlegend=label not in shown_in_legend,
            mode="markers",
            customdata=custom[idx],
            hovertemplate=_HOVER,
            marker={k: v for k, v in style.items() if v is not None},
        )
        shown_in_legend.add(label)
        # float32: plotly sends numpy arrays as typed arrays, so this halves the coordinate
        # bytes; a picture needs no more than float32's 7 digits.
        xyz = coords[idx].astype(np.float32)
        if three_d:
            traces.append(go.Scatter3d(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], **common))
        else:
            use_webgl = coords.shape[0] >= WEBGL_MIN_POINTS if webgl is None else webgl
            cls = go.Scattergl if use_webgl else go.Scatter
            traces.append(cls(x=xyz[:, 0], y=xyz[:, 1], **common))
    return traces


def _rgba(color: str, alpha: float) -> str:
    from plotly.colors import hex_to_rgb

    if color.startswith("#"):
        r, g, b = hex_to_rgb(color)
        return f"rgba({r},{g},{b},{alpha:.3f})"
    return color


def _resolve_colors(labels: Iterable[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    resolved = word_colors(labels)
    if colors:
        resolved.update({str(k): v for k, v in colors.items()})
    return resolved


def _resolve_symbols(labels: Iterable[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    """Symbols from the same label universe as the colours (the full word list when
    ``colors`` came from :func:`word_colors` of it), so both stay consistent."""
    universe = set(map(str, labels)) | set(map(str, colors or {}))
    return {label: style.symbol for label, style in word_styles(universe).items()}


#: Text width of one legend entry in :func:`compact_legend` (a Speech Commands word at 10 px).
LEGEND_ENTRY_PX = 56
#: What one entry takes across, marker and padding included (measured in Chromium: 9 entries
#: in a 764 px row, ~85 px each).
LEGEND_ENTRY_SPAN_PX = LEGEND_ENTRY_PX + 30
#: Height of one row of :func:`compact_legend` entries.
LEGEND_ROW_PX = 19


def compact_legend(n_labels: int, width_px: int, title: str = "") -> tuple[dict[str, Any], int]:
    """A legend for many labels: fixed-width entries in rows under the plot.

    Plotly's default legend is one column beside the plot: 35 words make it taller than
    the plot itself, and it squeezes the panel's width. Here entries of
    :data:`LEGEND_ENTRY_SPAN_PX` wrap into as many columns as ``width_px`` holds (35 words
    under a 760 px figure: 4-5 rows). Returns the ``layout.legend`` dict and the height in pixels the
    rows take, to add to the figure's height and bottom margin so the plot keeps its size.
    Clicking an entry still hides its word, double-clicking isolates it (every trace of a
    word shares its ``legendgroup``, across all subplots of a :func:`grid_figure`).
    """
    if n_labels < 0 or width_px < 1:
        raise ConfigError(f"compact_legend needs n_labels >= 0 and width_px >= 1, got {n_labels}, {width_px}")
    per_row = max(1, int(width_px) // LEGEND_ENTRY_SPAN_PX)
    rows = math.ceil(n_labels / per_row) + (1 if title else 0)
    legend = {
        "orientation": "h",
        "x": 0.0,
        "xanchor": "left",
        "y": 0.0,
        "yanchor": "bottom",
        "yref": "container",  # in the figure's bottom margin, whatever the axes (see the returned height)
        "entrywidth": LEGEND_ENTRY_PX,
        "entrywidthmode": "pixels",
        "itemsizing": "constant",
        "tracegroupgap": 0,
        "font": {"size": 10},
        "title": {"text": title, "side": "top left"},
    }
    return legend, rows * LEGEND_ROW_PX + 6


def _check_color_by(color_by: str) -> None:
    if color_by not in ("word", "speaker"):
        raise ConfigError(f"color_by must be 'word' or 'speaker', got {color_by!r}")


def scatter_figure(
    coords: ArrayLike,
    clip_ids: Sequence[Any],
    words: Sequence[Any],
    speakers: Sequence[Any],
    *,
    color_by: ColorBy = "word",
    title: str = "",
    colors: Mapping[str, str] | None = None,
    webgl: bool | None = None,
    highlight: Highlight | None = None,
) -> "go.Figure":
    """Scatter of a 2D or 3D (``Scatter3d``) projection.

    ``highlight`` emphasises its clips / words / speakers and dims the rest.

    2D uses WebGL (``Scattergl``) from :data:`WEBGL_MIN_POINTS` points on and SVG
    (``Scatter``) below, so a page of many small panels stays within the browser's
    WebGL context limit; ``webgl`` True/False forces one or the other (a page with many
    large panels should pass False).

    One trace per word (or speaker, with ``color_by="speaker"``); hover shows clip, word
    and speaker; ``customdata[i] == [clip_id, word, speaker]``. Labels missing from
    ``colors`` get :func:`word_colors` colours.
    """
    import plotly.graph_objects as go

    _check_color_by(color_by)
    arr = _coords(coords)
    n = arr.shape[0]
    ids = _column(clip_ids, n, "clip_ids")
    w = _column(words, n, "words")
    s = _column(speakers, n, "speakers")
    groups = w if color_by == "word" else s
    palette = _resolve_colors(groups, colors)
    symbols = _resolve_symbols(groups, colors)
    fig = go.Figure(_scatter_traces(arr, ids, w, s, color_by, palette, set(), webgl, symbols, highlight))
    fig.update_layout(
        title={"text": title},
        legend={"title": {"text": color_by}, "itemsizing": "constant"},
        template="plotly_white",
        clickmode="event+select",
        # Keeps zoom and legend toggles across Plotly.react updates of one plot; in Streamlit a
        # changed figure is a new chart, so they last only while the figure stays the same.
        uirevision="embedviz",
        margin={"l": 40, "r": 20, "t": 60, "b": 40},
    )
    if arr.shape[1] == 3:
        fig.update_layout(scene={"xaxis_title": "dim 1", "yaxis_title": "dim 2", "zaxis_title": "dim 3"})
    else:
        fig.update_xaxes(title_text="dim 1")
        # Equal units on both axes: distances in the picture are not stretched.
        fig.update_yaxes(title_text="dim 2", scaleanchor="x", scaleratio=1)
    return fig


@dataclass(frozen=True)
class Panel:
    """One small multiple: a projection of some clips with a title and a metrics line.

    ``title`` may hold ``<br>`` line breaks; ``subtitle`` is drawn smaller under it.
    """

    title: str
    coords: np.ndarray
    clip_ids: Sequence[Any]
    words: Sequence[Any]
    speakers: Sequence[Any]
    subtitle: str = ""


@dataclass(frozen=True)
class Section:
    """A run of panels under a header in a :func:`grid_figure` (e.g. one model's layers).

    A section starts a new row; ``n_cols`` panels go on each of its rows (None: the
    figure's ``n_cols``), so sections of a figure can be 2 and 3 panels wide.
    """

    header: str
    panels: Sequence[Panel]
    n_cols: int | None = None

    def __post_init__(self) -> None:
        if self.n_cols is not None:
            _check_n_cols(self.n_cols, "Section n_cols")


def _check_n_cols(value: Any, what: str = "n_cols") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{what} must be an integer >= 1, got {value!r}")


def panel_subtitle(metrics: Mapping[str, Any]) -> str:
    """``"kNN 0.83 · sil 0.21 · trust 0.95"`` from a :func:`embedviz.metrics.layer_metrics`
    dict (``trustworthiness`` when it has one); undefined numbers are left out."""
    parts = []
    for key, short in (("knn_accuracy", "kNN"), ("speaker_disjoint_knn", "spk-kNN"), ("silhouette", "sil"),
                       ("trustworthiness", "trust")):
        value = metrics.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            parts.append(f"{short} {value:.2f}")
    return " · ".join(parts)


#: Pixel heights of a :func:`grid_figure`'s bands: a section header, a title line above a
#: panel, the gap under a row of panels, the figure title.
GRID_HEADER_PX, GRID_TITLE_LINE_PX, GRID_ROW_GAP_PX, GRID_FIGURE_TITLE_PX = 34, 15, 14, 40


def _grid_sections(panels: Sequence[Panel] | Sequence[Section], n_cols: int) -> list[tuple[str, list[Panel], int]]:
    _check_n_cols(n_cols)
    if all(isinstance(p, Panel) for p in panels):
        sections = [Section("", list(panels))]
    elif all(isinstance(s, Section) for s in panels):
        sections = list(panels)
    else:
        raise ConfigError("grid_figure takes panels or sections, not a mix")
    out = [(s.header, list(s.panels), int(min(s.n_cols or n_cols, len(s.panels)))) for s in sections if s.panels]
    if not out:
        raise ConfigError("grid_figure needs at least one panel")
    return out


def _title_lines(panel: Panel) -> int:
    return panel.title.count("<br>") + 1 + (panel.subtitle.count("<br>") + 1 if panel.subtitle else 0)


#: Horizontal gap between the panels of a grid row, as a fraction of the plot width.
GRID_COL_GAP = 0.03


@dataclass(frozen=True)
class GridLayout:
    """Where the panels of a grid go (shared by :func:`grid_figure` and :func:`echarts_grid`).

    ``cells[k] = (x0, x1, top_px, bottom_px)``: panel ``k``'s plot area, x as fractions of
    the plot width, y in pixels from the top of the grid; ``titles[k] = (x_centre, top_px)``
    of its title lines; ``headers = [(text, top_px)]``; ``plot_px`` the grid's height.
    """

    cells: tuple[tuple[float, float, float, float], ...]
    titles: tuple[tuple[float, float], ...]
    headers: tuple[tuple[str, float], ...]
    plot_px: float


def _grid_layout(sections: Sequence[tuple[str, list[Panel], int]], panel_height: int) -> GridLayout:
    """Lay the cells out top-down in pixels: a header band per section, then rows of
    panels, each under a band tall enough for the row's longest title."""
    cells: list[tuple[float, float, float, float]] = []
    titles: list[tuple[float, float]] = []
    headers: list[tuple[str, float]] = []
    y = 0.0
    for header, ps, cols in sections:
        if header:
            headers.append((header, y))
            y += GRID_HEADER_PX
        for start in range(0, len(ps), cols):
            row = ps[start:start + cols]
            band = GRID_TITLE_LINE_PX * max(_title_lines(p) for p in row) + 4
            width = (1.0 - GRID_COL_GAP * (cols - 1)) / cols
            for c in range(len(row)):
                x0 = c * (width + GRID_COL_GAP)
                cells.append((x0, x0 + width, y + band, y + band + panel_height))
                titles.append((x0 + width / 2, y))
            y += band + panel_height + GRID_ROW_GAP_PX
    return GridLayout(tuple(cells), tuple(titles), tuple(headers), y - GRID_ROW_GAP_PX)


@dataclass(frozen=True)
class _PreparedGrid:
    """A grid's panels checked once: ``prepared[k] = (coords, clip_ids, words, speakers)``
    of panel ``k`` (over all sections), the colours and symbols of every label drawn."""

    sections: list[tuple[str, list[Panel], int]]
    flat: list[Panel]
    prepared: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    palette: dict[str, str]
    symbols: dict[str, str]
    three_d: bool


def _prepare_grid(
    panels: Sequence[Panel] | Sequence[Section], n_cols: int, color_by: str, colors: Mapping[str, str] | None,
    figure: str,
) -> _PreparedGrid:
    _check_color_by(color_by)
    sections = _grid_sections(panels, n_cols)
    flat = [p for _, ps, _ in sections for p in ps]
    prepared = []
    for p in flat:
        arr = _coords(p.coords)
        n = arr.shape[0]
        prepared.append(
            (arr, _column(p.clip_ids, n, "clip_ids"), _column(p.words, n, "words"), _column(p.speakers, n, "speakers"))
        )
    dims = {arr.shape[1] for arr, *_ in prepared}
    if len(dims) > 1:
        raise ConfigError(f"{figure} panels must all be 2D or all 3D")
    all_labels: list[str] = []
    for _, _, w, s in prepared:
        all_labels.extend((w if color_by == "word" else s).tolist())
    return _PreparedGrid(sections, flat, prepared, _resolve_colors(all_labels, colors),
                         _resolve_symbols(all_labels, colors), dims == {3})


def grid_figure(
    panels: Sequence[Panel] | Sequence[Section],
    n_cols: int = 3,
    *,
    color_by: ColorBy = "word",
    colors: Mapping[str, str] | None = None,
    title: str = "",
    highlight: Highlight | None = None,
    webgl: bool | None = None,
    width_px: int = 1100,
    panel_height: int = 300,
    show_legend: bool = True,
    extra_legend_entries: int = 0,
) -> "go.Figure":
    """Small multiples (e.g. layers x models) with shared colours and ONE legend.

    ``panels``: :class:`Panel` s, ``n_cols`` to a row, or :class:`Section` s, each under
    its header (an annotation) from a new row, with its own number of columns. All
    panels must be 2D, or all 3D (then each cell is its own 3D scene). Every trace of a
    label shares its ``legendgroup`` across panels, so clicking a legend entry hides that
    label in every panel and double-clicking isolates it. plotly.js draws all WebGL 2D
    subplots of a figure on ONE canvas, so a grid of any number of 20,000-point panels
    uses a single WebGL context (separate charts take about two each and the browser
    blanks the oldest past ~16: measured, 13 separate 20,000-point charts in Chromium
    lose their first 5); ``webgl`` None draws Scattergl once the figure holds
    :data:`WEBGL_MIN_POINTS` points, SVG below. 3D scenes take a context each.

    Sizes are in pixels, so a panel keeps its height whatever the number of rows: each
    2D panel's plot area is ``panel_height`` tall (equal units on both axes), under its
    title lines; the legend is :func:`compact_legend` rows under the grid, sized for
    ``width_px`` (the width the figure is drawn at; ``show_legend`` False: none, e.g.
    for hundreds of speakers that hover names instead; ``extra_legend_entries``: entries
    the caller adds, e.g. a user's clip, so the rows fit them too). Panel ``k`` (counted over all
    sections) has axes ``x{k+1}`` / ``y{k+1}`` (3D: ``scene{k+1}``; the first is
    ``x`` / ``scene``): :func:`panel_of_traces` maps traces back, :func:`add_to_panel`
    adds overlays. Each panel's title annotation is named ``"panel title"``, in panel
    order; section headers are named ``"section header"``.
    """
    grid = _prepare_grid(panels, n_cols, color_by, colors, "grid_figure")
    sections, flat, prepared, palette, symbols = grid.sections, grid.flat, grid.prepared, grid.palette, grid.symbols
    three_d = grid.three_d
    use_webgl = webgl if webgl is not None else sum(a.shape[0] for a, *_ in prepared) >= WEBGL_MIN_POINTS

    layout = _grid_layout(sections, panel_height)
    cells, titles, headers, plot_px = layout.cells, layout.titles, layout.headers, layout.plot_px

    def frac(px: float) -> float:
        return max(0.0, min(1.0, 1.0 - px / plot_px))

    import plotly.graph_objects as go

    fig = go.Figure()
    shown: set[str] = set()
    # Every panel's axes (or scene) in one layout dict, applied once: plotly validates each
    # update_layout call, which per panel cost about 0.4 s for a few panels under load.
    axes: dict[str, Any] = {}
    for i, ((arr, ids, w, s), (x0, x1, top, bottom)) in enumerate(zip(prepared, cells)):
        k = "" if i == 0 else str(i + 1)
        if three_d:
            blank = {"title": {"text": ""}, "showticklabels": False}
            axes[f"scene{k}"] = {"domain": {"x": [x0, x1], "y": [frac(bottom), frac(top)]},
                                 "xaxis": blank, "yaxis": blank, "zaxis": blank}
        else:
            # Projection axes have no units worth reading in a small multiple; equal units keep distances true.
            # A light frame tells the panels apart.
            frame = {"showticklabels": False, "showline": True, "mirror": True, "linecolor": "#d4d4d8"}
            axes[f"xaxis{k}"] = {"domain": [x0, x1], "anchor": f"y{k}", **frame}
            axes[f"yaxis{k}"] = {"domain": [frac(bottom), frac(top)], "anchor": f"x{k}", **frame,
                                 "scaleanchor": f"x{k}", "scaleratio": 1}
        add_to_panel(fig, i, _scatter_traces(arr, ids, w, s, color_by, palette, shown, use_webgl, symbols, highlight))
    fig.update_layout(axes)
    annotations = [
        {"text": f"<b>{header}</b>", "name": "section header", "x": 0.0, "xanchor": "left", "y": frac(top),
         "yanchor": "top", "font": {"size": 15}}
        for header, top in headers
    ] + [
        {"text": p.title + (f"<br><span style='font-size:10px;color:#555'>{p.subtitle}</span>" if p.subtitle else ""),
         "name": "panel title", "x": xc, "xanchor": "center", "y": frac(top), "yanchor": "top", "font": {"size": 12}}
        for p, (xc, top) in zip(flat, titles)
    ]
    legend, legend_px = compact_legend(len(shown) + extra_legend_entries, width_px, title=color_by) if show_legend else ({}, 0)
    top_px = GRID_FIGURE_TITLE_PX if title else 10
    fig.update_layout(
        title={"text": title, "font": {"size": 13}},
        annotations=[{**a, "xref": "paper", "yref": "paper", "showarrow": False} for a in annotations],
        height=int(top_px + plot_px + 20 + legend_px),
        template="plotly_white",
        legend=legend,
        showlegend=show_legend,
        clickmode="event+select",
        # Keeps zoom and legend toggles across Plotly.react updates of one plot; in Streamlit a
        # changed figure is a new chart, so they last only while the figure stays the same.
        uirevision="embedviz",
        margin={"l": 10, "r": 10, "t": top_px, "b": 20 + legend_px},
    )
    return fig


def add_to_panel(fig: "go.Figure", panel: int, traces: Iterable[Any]) -> "go.Figure":
    """Add traces (rings, a user's clip, ...) to panel ``panel`` (0-based) of a
    :func:`grid_figure`: on its axes, or in its scene for 3D traces. Returns ``fig``."""
    k = "" if panel == 0 else str(panel + 1)
    for trace in traces:
        if isinstance(trace, _scene_types()):
            trace.update(scene=f"scene{k}")
        else:
            trace.update(xaxis=f"x{k}", yaxis=f"y{k}")
        fig.add_trace(trace)
    return fig


def panel_of_traces(fig: "go.Figure") -> list[int]:
    """For each trace of a :func:`grid_figure` (and traces added by :func:`add_to_panel`),
    the index of its panel, from the trace's ``xaxis`` (``"x3"`` -> 2) or ``scene``."""
    out = []
    for trace in fig.data:
        ref = getattr(trace, "scene", None) if isinstance(trace, _scene_types()) else getattr(trace, "xaxis", None)
        digits = str(ref or "").lstrip("xscene")
        out.append(int(digits) - 1 if digits else 0)
    return out


def _scene_types() -> tuple[type, ...]:
    import plotly.graph_objects as go

    return (go.Scatter3d,)


def overview_figure(
    coords: ArrayLike,
    words: Sequence[Any],
    *,
    colors: Mapping[str, str] | None = None,
    bins: int = 256,
    title: str = "",
) -> "go.Figure":
    """A rasterised 2D overview: one image, no WebGL, any number of points.

    Each pixel takes the colour of the word with the most points in it; its strength
    grows with the log of the point count. Memory is ``words x bins^2`` counts (35 words
    at 256 bins: 18 MB), whatever ``n``. Meant for the many-panel overview where a
    scatter per panel would exceed the browser's WebGL contexts; hover gives the
    majority word and the count.
    """
    import plotly.graph_objects as go
    from plotly.colors import hex_to_rgb

    arr = _coords(coords)
    if arr.shape[1] != 2:
        raise ConfigError("overview_figure draws 2D projections only")
    w = _column(words, arr.shape[0], "words")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or not 8 <= bins <= 2048:
        raise ConfigError(f"bins must be an integer in [8, 2048], got {bins!r}")
    palette = _resolve_colors(w, colors)
    names, codes = np.unique(w, return_inverse=True)
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    cells = np.clip(((arr - lo) / span * bins).astype(np.int64), 0, bins - 1)
    flat = cells[:, 1] * bins + cells[:, 0]  # row = y, column = x
    counts = np.zeros((len(names), bins * bins), dtype=np.int32)
    np.add.at(counts, (codes, flat), 1)
    total = counts.sum(axis=0)
    majority = counts.argmax(axis=0)
    rgb = np.array([hex_to_rgb(palette[str(n)]) if palette[str(n)].startswith("#") else (90, 90, 90) for n in names],
                   dtype=np.float64)
    strength = np.where(total > 0, 0.35 + 0.65 * np.log1p(total) / np.log1p(max(1, total.max())), 0.0)
    pixels = 255.0 - strength[:, None] * (255.0 - rgb[majority])  # blend towards white
    image = pixels.reshape(bins, bins, 3).astype(np.uint8)
    label = np.where(total > 0, names[majority], "").reshape(bins, bins)
    fig = go.Figure(
        go.Image(
            z=image,
            x0=float(lo[0]),
            dx=float(span[0] / bins),
            y0=float(lo[1]),
            dy=float(span[1] / bins),
            customdata=np.dstack([label, total.reshape(bins, bins).astype(str)]),
            hovertemplate="%{customdata[0]} (%{customdata[1]} points)<extra></extra>",
        )
    )
    fig.update_layout(title={"text": title}, template="plotly_white", margin={"l": 20, "r": 20, "t": 60, "b": 20})
    # go.Image reverses y by default (image convention); projections have y up.
    fig.update_yaxes(autorange=True, scaleanchor="x", scaleratio=1, showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    return fig


def _model_colors(models: Iterable[str]) -> dict[str, str]:
    from plotly.colors import qualitative

    palette = list(qualitative.Plotly)
    return {m: palette[i % len(palette)] for i, m in enumerate(sorted(set(models)))}


def _per_model(
    table: "pd.DataFrame", needed: Iterable[str], figure: str, default_model: str = "model"
) -> tuple["pd.DataFrame", list[str], dict[str, str]]:
    """A layer table checked for ``needed`` columns, with a ``model`` column (``default_model``
    when it has none), its models in order of appearance and one colour each."""
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ConfigError(f"{figure}: table lacks column(s) {missing}")
    data = table.copy()
    if "model" not in data.columns:
        data["model"] = default_model
    models = list(dict.fromkeys(data["model"].astype(str)))
    return data, models, _model_colors(models)


def layer_curve_figure(
    table: "pd.DataFrame", metric: str = "knn_accuracy", *, title: str | None = None
) -> "go.Figure":
    """Metric against relative depth (0 = first layer, 1 = last), one line per model.

    ``table`` has columns ``layer``, ``depth`` and ``metric`` (as from
    :func:`embedviz.metrics.metrics_table`) and optionally ``model`` (several models
    concatenated) and ``chance`` (drawn dashed).
    """
    import plotly.graph_objects as go

    data, models, colors = _per_model(table, ("layer", "depth", metric), "layer_curve_figure", default_model=metric)
    label = METRIC_LABELS.get(metric, metric)
    fig = go.Figure()
    chance_values = data["chance"].dropna().unique() if "chance" in data.columns else np.array([])
    shared_chance = len(chance_values) == 1
    for model in models:
        part = data[data["model"].astype(str) == model].sort_values("depth", kind="stable")
        fig.add_trace(
            go.Scatter(
                x=part["depth"],
                y=part[metric],
                mode="lines+markers",
                name=model,
                legendgroup=model,
                line={"color": colors[model]},
                customdata=np.column_stack([part["layer"].astype(str), np.full(len(part), model, dtype=object)]),
                hovertemplate=f"%{{customdata[1]}}<br>layer %{{customdata[0]}}<br>depth %{{x:.2f}}<br>{label} %{{y:.3f}}<extra></extra>",
            )
        )
        if "chance" in part.columns and not shared_chance and part["chance"].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=part["depth"],
                    y=part["chance"],
                    mode="lines",
                    name=f"chance ({model})",
                    legendgroup=model,
                    line={"color": colors[model], "dash": "dash", "width": 1},
                    hovertemplate="chance %{y:.3f}<extra></extra>",
                )
            )
    if shared_chance:
        value = float(chance_values[0])
        fig.add_trace(
            go.Scatter(
                x=[0.0, 1.0],
                y=[value, value],
                mode="lines",
                name="chance",
                line={"color": "grey", "dash": "dash", "width": 1},
                hovertemplate=f"chance {value:.3f}<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": title if title is not None else f"{label} by layer"},
        template="plotly_white",
        xaxis={"title": {"text": "relative depth (0 = first layer, 1 = last)"}, "range": [-0.03, 1.03]},
        yaxis={"title": {"text": label}},
        hovermode="closest",
    )
    if metric in _UNIT_METRICS:
        fig.update_yaxes(range=[0.0, 1.02])
    return fig


def confusion_figure(matrix: ArrayLike, labels: Sequence[Any], title: str = "") -> "go.Figure":
    """Row-normalised confusion heatmap (rows = true word, columns = predicted), annotated.

    Rows without clips show 0. Hover also gives the raw count.
    """
    import plotly.graph_objects as go

    counts = np.asarray(matrix, dtype=np.float64)
    names = [str(v) for v in labels]
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(names):
        raise ConfigError(f"matrix must be square with one row per label ({len(names)}), got {counts.shape}")
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig = go.Figure(
        go.Heatmap(
            z=rates,
            x=names,
            y=names,
            zmin=0.0,
            zmax=1.0,
            colorscale="Blues",
            text=np.vectorize(lambda v: f"{v:.2f}".lstrip("0") if v > 0 else "")(rates),
            texttemplate="%{text}",
            customdata=counts.astype(np.int64),
            hovertemplate="true %{y}<br>predicted %{x}<br>%{z:.2f} of row (%{customdata} clips)<extra></extra>",
            colorbar={"title": {"text": "share"}},
        )
    )
    side = max(400, 40 + 22 * len(names))
    fig.update_layout(
        title={"text": title},
        template="plotly_white",
        xaxis={"title": {"text": "predicted"}, "tickangle": -45},
        yaxis={"title": {"text": "true"}, "autorange": "reversed"},
        width=side + 120,
        height=side,
    )
    return fig


def cka_figure(df: "pd.DataFrame", title: str = "") -> "go.Figure":
    """Heatmap of a :func:`embedviz.metrics.cka_matrix` table on a fixed 0..1 colour scale."""
    import plotly.graph_objects as go

    values = df.to_numpy(dtype=np.float64)
    x = [str(c) for c in df.columns]
    y = [str(i) for i in df.index]
    annotate = len(x) <= 30
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=x,
            y=y,
            zmin=0.0,
            zmax=1.0,
            colorscale="Viridis",
            texttemplate="%{z:.2f}" if annotate else None,
            hovertemplate="%{y} vs %{x}<br>CKA %{z:.3f}<extra></extra>",
            colorbar={"title": {"text": "linear CKA"}},
        )
    )
    side = max(400, 40 + 28 * len(x))
    fig.update_layout(
        title={"text": title},
        template="plotly_white",
        yaxis={"autorange": "reversed"},
        width=side + 120,
        height=side,
    )
    return fig


#: Name, symbol and colour of a user's own clip in every panel (the browser tests find it by name).
OWN_CLIP_NAME = "your clip"
OWN_CLIP_COLOUR = "#111111"


def add_own_clip(fig: "go.Figure", point: Sequence[float], label: str = OWN_CLIP_NAME, hover: str = "") -> "go.Figure":
    """Add a user's own clip to a scatter figure as a large star (2D, or 3D for a 3-long point).

    An extra trace on top of the others, with a legend entry and its own hover text, so it
    is found in every panel and never mistaken for a stored clip. Returns ``fig``.
    """
    import plotly.graph_objects as go

    xyz = [float(v) for v in point]
    if len(xyz) not in (2, 3) or not all(math.isfinite(v) for v in xyz):
        raise ConfigError(f"a placed clip needs 2 or 3 finite coordinates, got {point!r}")
    marker = {"symbol": "star", "size": 20, "color": "#facc15", "line": {"width": 2, "color": OWN_CLIP_COLOUR}}
    common = {
        "mode": "markers+text", "name": label, "text": [label], "textposition": "top center",
        "textfont": {"size": 12, "color": OWN_CLIP_COLOUR}, "showlegend": True,
        "hovertemplate": (hover or label) + "<extra></extra>",
    }
    if len(xyz) == 3:
        marker = {**marker, "symbol": "diamond", "size": 9}  # Scatter3d has no star symbol
        fig.add_trace(go.Scatter3d(x=[xyz[0]], y=[xyz[1]], z=[xyz[2]], marker=marker, **common))
    else:
        fig.add_trace(go.Scatter(x=[xyz[0]], y=[xyz[1]], marker=marker, **common))
    return fig


#: Ring colours: the clicked clip, its nearest neighbours, a box/lasso selection, search hits.
SELECTED_COLOUR, NEIGHBOUR_COLOUR, BRUSH_COLOUR, FOUND_COLOUR = "#111111", "#f97316", "#2563eb", "#db2777"
#: Each ring colour's name (a ring trace or series is called so; the browser tests find rings by it).
RING_NAMES: dict[str, str] = {SELECTED_COLOUR: "selected", NEIGHBOUR_COLOUR: "neighbours",
                              BRUSH_COLOUR: "brushed", FOUND_COLOUR: "found"}
#: Name of a ring in a colour the table does not know.
OTHER_RING_NAME = "marked"


def ring_size(colour: str) -> int:
    """Diameter in pixels of a ring: the clicked clip's is the largest."""
    return 18 if colour == SELECTED_COLOUR else 14


#: Points in all at most for which the app draws a 2D view with ECharts (:func:`echarts_grid`,
#: canvas); larger views and 3D stay Plotly (``Scattergl``). Measured in headless Chromium on
#: 2 cores (bench/bench_echarts_cap.py, docs/PERFORMANCE.md "Plotly or ECharts"): ECharts shows
#: two panels 1.2-1.8 s sooner at 5,000-20,000 points, but pans slower at every size (drag
#: frames p90 100-133 ms against Plotly's 50-67 ms up to 10,000 points, 283 against 117 ms at
#: 20,000), so it takes the views up to the 5,250-clip two-panel view (10,500 points) and no more.
ECHARTS_MAX_POINTS = 12_000

#: The two chart libraries of the app's scatter views.
Renderer = Literal["echarts", "plotly"]


def renderer_for(dims: int, n_points: int) -> Renderer:
    """Which library draws a scatter view of ``n_points`` points in all, in ``dims`` dimensions:
    ECharts for 2D up to :data:`ECHARTS_MAX_POINTS`, Plotly for 3D and larger 2D views."""
    if dims not in (2, 3) or n_points < 0:
        raise ConfigError(f"renderer_for needs dims 2 or 3 and n_points >= 0, got {dims}, {n_points}")
    return "echarts" if dims == 2 and n_points <= ECHARTS_MAX_POINTS else "plotly"

#: Plotly marker symbols (:data:`SYMBOLS`, the own clip's star) as ECharts symbols, so a label
#: looks the same in both renderers. ECharts has no x, cross or star: SVG paths of Plotly's shapes.
ECHARTS_SYMBOLS: dict[str, str] = {
    "circle": "circle",
    "diamond": "diamond",
    "square": "rect",
    "x": "path://M0,2L2,0L5,3L8,0L10,2L7,5L10,8L8,10L5,7L2,10L0,8L3,5Z",
    "cross": "path://M3.5,0H6.5V3.5H10V6.5H6.5V10H3.5V6.5H0V3.5H3.5Z",
    "star": "path://M5,0L6.18,3.45L9.76,3.45L6.9,5.59L7.94,9.05L5,6.9L2.06,9.05L3.1,5.59L0.24,3.45L3.82,3.45Z",
}
#: Hover text of a stored clip (Streamlit expands ``{@column}`` of a dataset row in tooltips).
ECHARTS_TOOLTIP = "clip {@clip}<br>word {@word}<br>speaker {@speaker}"
#: Columns of each series' dataset (``dataset.source``, a pyarrow table).
ECHARTS_COLUMNS = ("x", "y", "clip", "word", "speaker")
#: Share of a panel's data extent left free around its points.
_PAD = 0.05
#: Width the legend's selector buttons take right of its entries.
_SELECTOR_PX = 100
#: Light frame of a panel (the same grey as Plotly's).
_FRAME_COLOUR = "#d4d4d8"


@dataclass(frozen=True)
class SeriesClips:
    """What series ``i`` of an :func:`echarts_grid` option draws: panel ``panel``'s clips,
    ``clip_ids[j]`` being its data row ``j`` (a selection's ``data_indices`` index it)."""

    panel: int
    clip_ids: tuple[str, ...]


@dataclass(frozen=True)
class EChartsGrid:
    """An :func:`echarts_grid` figure: the option for ``st.echarts_chart`` (``height`` x
    ``width`` pixels) and, per series index, the clips it draws (None: a ring or a star)."""

    option: dict[str, Any]
    series: tuple[SeriesClips | None, ...]
    width: int
    height: int

    def panel_count(self) -> int:
        return len(self.option["grid"])

    @property
    def data_token(self) -> str:
        """A digest of which clips each series draws (not of rings or stars): a chart key
        built from it starts a fresh selection when the data change, since a kept selection's
        indices would point at other clips, and stays the same when only the marks change."""
        from embedviz.hashing import digest_parts

        return digest_parts((f"{s.panel}:" + "\x1f".join(s.clip_ids) for s in self.series if s is not None), 12)


def equal_unit_ranges(
    points: np.ndarray, width_px: float, height_px: float, pad: float = _PAD
) -> tuple[tuple[float, float], tuple[float, float]]:
    """x and y axis ranges that hold ``points`` (n x 2) with a unit the same number of
    pixels on both axes in a ``width_px`` x ``height_px`` plot (distances are not stretched)."""
    if width_px <= 0 or height_px <= 0:
        raise ConfigError(f"a panel needs a positive size, got {width_px} x {height_px}")
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    arr = arr[np.isfinite(arr).all(axis=1)]
    lo, hi = (arr.min(axis=0), arr.max(axis=0)) if len(arr) else (np.zeros(2), np.zeros(2))
    span = np.where(hi > lo, hi - lo, 1.0) * (1.0 + 2 * pad)
    unit = max(span[0] / width_px, span[1] / height_px)  # data units per pixel, the larger wins
    centre = (lo + hi) / 2
    half_x, half_y = unit * width_px / 2, unit * height_px / 2
    return ((float(centre[0] - half_x), float(centre[0] + half_x)),
            (float(centre[1] - half_y), float(centre[1] + half_y)))


def _point(value: Sequence[float] | None, what: str) -> tuple[float, float] | None:
    if value is None:
        return None
    xy = [float(v) for v in value]
    if len(xy) != 2 or not all(math.isfinite(v) for v in xy):
        raise ConfigError(f"{what} needs 2 finite coordinates, got {value!r}")
    return xy[0], xy[1]


def echarts_grid(
    panels: Sequence[Panel] | Sequence[Section],
    n_cols: int = 3,
    *,
    color_by: ColorBy = "word",
    colors: Mapping[str, str] | None = None,
    title: str = "",
    width_px: int = 1100,
    panel_height: int = 300,
    show_legend: bool = True,
    marks: Mapping[str, str] | None = None,
    own: Sequence[Sequence[float] | None] | None = None,
    own_hover: str = "",
) -> EChartsGrid:
    """The 2D panels of :func:`grid_figure` as ONE Apache ECharts option (``st.echarts_chart``).

    Same input, same look: a section header per :class:`Section`, each panel under its
    title lines and subtitle (the pixel layout of :func:`grid_figure`), :func:`word_styles`
    colours and symbols (:data:`ECHARTS_SYMBOLS`), equal units on both axes
    (:func:`equal_unit_ranges`, exact when the chart is ``width_px`` wide: across, the
    layout is in shares of the width, so a narrower column squeezes it a little rather
    than cutting off the last panel), a light frame and no tick labels, and one compact legend
    under the grid (:func:`compact_legend`'s rows; ECharts toggles every series of a
    name, so a click hides a word in every panel; its "all" / "invert" buttons stand for
    Plotly's double-click isolation, which ECharts has not). Each panel pans and zooms on
    its own (inside ``dataZoom`` on both axes, so a unit stays square); the toolbox's box
    and lasso (``brush`` rect and polygon, on every panel) and a click (``selectedMode``)
    select. Hover: clip / word / speaker.

    ``marks`` rings clips (clip id -> :data:`RING_NAMES` colour) in every panel they are
    in; ``own[k]`` is the user's clip in panel ``k`` (a star, one legend entry
    :data:`OWN_CLIP_NAME`; None: not placed there). Series ``i`` is described by
    ``.series[i]`` (:class:`SeriesClips`; read a selection with :func:`read_selection`):
    the word series come first, panel by panel, so rings and stars added later do not
    move their indices. Each word series has its own ``dataset`` (a ``pyarrow.Table`` with
    :data:`ECHARTS_COLUMNS`, which Streamlit sends as it is), so ``data_indices`` index
    its rows. No Streamlit here.
    """
    import pyarrow as pa

    grid = _prepare_grid(panels, n_cols, color_by, colors, "echarts_grid")
    if grid.three_d:
        raise ConfigError("echarts_grid draws 2D panels only (3D stays Plotly: grid_figure)")
    if isinstance(width_px, bool) or not isinstance(width_px, (int, np.integer)) or width_px < 100:
        raise ConfigError(f"width_px must be an integer >= 100, got {width_px!r}")
    if isinstance(panel_height, bool) or not isinstance(panel_height, (int, np.integer)) or panel_height < 20:
        raise ConfigError(f"panel_height must be an integer >= 20, got {panel_height!r}")
    n_panels = len(grid.flat)
    own_points = [None] * n_panels if own is None else [_point(p, "a placed clip") for p in own]
    if len(own_points) != n_panels:
        raise ConfigError(f"own has {len(own_points)} entries but there are {n_panels} panels")
    rings = {str(k): str(v) for k, v in (marks or {}).items()}

    layout = _grid_layout(grid.sections, panel_height)
    top_px = GRID_FIGURE_TITLE_PX if title else 10
    left_px, plot_w = 10, width_px - 20

    def pct(px: float) -> str:
        # Across, positions are shares of the chart's width: a column narrower than width_px
        # (the chart shrinks to it) squeezes the panels a little instead of cutting off the last.
        return f"{100 * px / width_px:.3f}%"

    has_own = any(p is not None for p in own_points)
    labels = sorted(grid.palette.keys() & {lab for _, _, w, s in grid.prepared
                                           for lab in (w if color_by == "word" else s).tolist()})
    # The legend's selector buttons ("all", "invert") sit right of its rows, in the last _SELECTOR_PX.
    legend_w = plot_w - _SELECTOR_PX
    _, legend_px = compact_legend(len(labels) + int(has_own), legend_w, title=color_by) if show_legend else ({}, 0)
    height = int(top_px + layout.plot_px + 20 + legend_px)

    titles: list[dict[str, Any]] = [{"id": "figure title", "text": title, "left": left_px, "top": 8,
                                     "textStyle": {"fontSize": 13, "fontWeight": "normal"}}]
    titles += [{"id": f"section header {i}", "text": header, "left": left_px, "top": top_px + top,
                "textStyle": {"fontSize": 15, "fontWeight": "bold"}}
               for i, (header, top) in enumerate(layout.headers)]
    grids, x_axes, y_axes, zooms = [], [], [], []
    for k, (p, (arr, *_), (x0, x1, top, bottom), (xc, title_top)) in enumerate(
            zip(grid.flat, grid.prepared, layout.cells, layout.titles)):
        w_px = (x1 - x0) * plot_w
        titles.append({"id": f"panel title {k}", "text": p.title.replace("<br>", "\n"),
                       "subtext": p.subtitle.replace("<br>", "\n"), "left": pct(left_px + xc * plot_w),
                       "textAlign": "center", "top": top_px + title_top, "itemGap": 1, "padding": 0,
                       "textStyle": {"fontSize": 12, "fontWeight": "normal", "lineHeight": GRID_TITLE_LINE_PX},
                       "subtextStyle": {"fontSize": 10, "color": "#555", "lineHeight": GRID_TITLE_LINE_PX}})
        grids.append({"left": pct(left_px + x0 * plot_w), "top": top_px + top, "width": pct(w_px), "height": panel_height,
                      "show": True, "borderColor": _FRAME_COLOUR, "borderWidth": 1, "containLabel": False})
        extent = arr if own_points[k] is None else np.vstack([arr, np.asarray([own_points[k]])])
        (xmin, xmax), (ymin, ymax) = equal_unit_ranges(extent, w_px, panel_height)
        hidden = {"axisLabel": {"show": False}, "axisTick": {"show": False}, "splitLine": {"show": False},
                  "axisLine": {"show": False}}
        x_axes.append({"type": "value", "gridIndex": k, "min": xmin, "max": xmax, **hidden})
        y_axes.append({"type": "value", "gridIndex": k, "min": ymin, "max": ymax, **hidden})
        # Two inside zooms (x, y) per panel: the wheel scales both by one factor, so a unit stays square;
        # filterMode "none" keeps points off screen in the data (a pan brings them back).
        zooms += [{"type": "inside", "xAxisIndex": [k], "filterMode": "none"},
                  {"type": "inside", "yAxisIndex": [k], "filterMode": "none"}]

    datasets: list[dict[str, Any]] = []
    series: list[dict[str, Any]] = []
    series_map: list[SeriesClips | None] = []
    for k, (arr, ids, w, s) in enumerate(grid.prepared):
        groups = w if color_by == "word" else s
        marker = _marker_style(arr.shape[0], three_d=False)
        # One Arrow table per panel, cut into its labels' rows: Streamlit sends a pyarrow
        # table as it is, where a DataFrame per series is converted again (about 10x slower).
        # float32 halves the coordinate bytes (as in the Plotly figure); a picture needs no more.
        xy = arr.astype(np.float32)
        table = pa.table([pa.array(xy[:, 0]), pa.array(xy[:, 1]), pa.array(ids, pa.string()),
                          pa.array(w, pa.string()), pa.array(s, pa.string())], names=list(ECHARTS_COLUMNS))
        labels_here, label_of = np.unique(groups, return_inverse=True)  # sorted, as the legend
        order = np.argsort(label_of, kind="stable")  # each label's rows in panel order
        starts = np.searchsorted(label_of[order], np.arange(len(labels_here) + 1))
        for j, label in enumerate(labels_here.tolist()):
            idx = order[starts[j]:starts[j + 1]]
            datasets.append({"source": table.take(idx)})
            series.append({
                "type": "scatter", "id": f"panel {k} · {label}", "name": label, "xAxisIndex": k, "yAxisIndex": k,
                "datasetIndex": len(datasets) - 1, "encode": {"x": "x", "y": "y", "tooltip": ["clip", "word", "speaker"]},
                "symbol": ECHARTS_SYMBOLS[grid.symbols.get(label, "circle")], "symbolSize": marker["size"],
                "itemStyle": {"color": grid.palette[label], "opacity": marker["opacity"]},
                "emphasis": {"scale": 1.6}, "selectedMode": "single",
                "select": {"itemStyle": {"borderColor": SELECTED_COLOUR, "borderWidth": 1.5, "opacity": 1}},
            })
            series_map.append(SeriesClips(k, tuple(ids[idx].tolist())))
    for k, (arr, ids, _, _) in enumerate(grid.prepared):
        by_colour: dict[str, list[int]] = {}
        for i, clip in enumerate(ids.tolist()):
            if clip in rings:
                by_colour.setdefault(rings[clip], []).append(i)
        for colour, rows in by_colour.items():
            # Silent: a ring takes no click or hover from the point under it.
            series.append({"type": "scatter", "id": f"panel {k} · ring {colour}", "name": RING_NAMES.get(colour, OTHER_RING_NAME),
                           "xAxisIndex": k, "yAxisIndex": k, "data": arr[rows].round(6).tolist(), "symbol": "circle",
                           "symbolSize": ring_size(colour), "silent": True, "z": 3, "tooltip": {"show": False},
                           "itemStyle": {"color": "transparent", "borderColor": colour, "borderWidth": 2.5}})
            series_map.append(None)
        if own_points[k] is not None:
            series.append({"type": "scatter", "id": f"panel {k} · {OWN_CLIP_NAME}", "name": OWN_CLIP_NAME,
                           "xAxisIndex": k, "yAxisIndex": k, "data": [list(own_points[k])],
                           "symbol": ECHARTS_SYMBOLS["star"], "symbolSize": 20, "z": 4,
                           "itemStyle": {"color": "#facc15", "borderColor": OWN_CLIP_COLOUR, "borderWidth": 2},
                           "label": {"show": True, "position": "top", "formatter": OWN_CLIP_NAME,
                                     "color": OWN_CLIP_COLOUR, "fontSize": 12},
                           "tooltip": {"formatter": own_hover or OWN_CLIP_NAME}})
            series_map.append(None)

    legend_top = top_px + layout.plot_px + 20
    option: dict[str, Any] = {
        "animation": False,
        "title": titles,
        "tooltip": {"trigger": "item", "formatter": ECHARTS_TOOLTIP},
        "grid": grids, "xAxis": x_axes, "yAxis": y_axes, "dataZoom": zooms,
        "dataset": datasets, "series": series,
        # Box and lasso on every panel; a brush targets the axes, so its areas are reported.
        # No brushLink: it links equal data indices across series, and here every series
        # holds other clips (the page rings a selection in every panel instead).
        "toolbox": {"right": 110, "top": 4, "itemSize": 14,
                    "feature": {"brush": {"type": ["rect", "polygon", "clear"],
                                          "title": {"rect": "box", "polygon": "lasso", "clear": "clear"}}}},
        "brush": {"toolbox": ["rect", "polygon", "clear"], "xAxisIndex": "all", "throttleType": "debounce",
                  "throttleDelay": 300, "brushStyle": {"borderWidth": 1, "color": "rgba(37,99,235,0.08)",
                                                       "borderColor": BRUSH_COLOUR},
                  "inBrush": {}, "outOfBrush": {}},
    }
    if show_legend:
        titles.append({"id": "legend title", "text": color_by, "left": left_px, "top": legend_top,
                       "textStyle": {"fontSize": 10, "fontWeight": "normal"}})
        option["legend"] = {
            "left": left_px, "top": legend_top + LEGEND_ROW_PX, "width": pct(legend_w), "orient": "horizontal",
            "data": labels + ([OWN_CLIP_NAME] if has_own else []),
            "itemWidth": 10, "itemHeight": 10, "itemGap": LEGEND_ENTRY_SPAN_PX - LEGEND_ENTRY_PX - 15,
            "textStyle": {"fontSize": 10, "width": LEGEND_ENTRY_PX, "overflow": "truncate"},
            "selector": [{"type": "all", "title": "all"}, {"type": "inverse", "title": "invert"}],
            "selectorPosition": "end",
        }
    else:
        option["legend"] = {"show": False}
    return EChartsGrid(option, tuple(series_map), int(width_px), height)


@dataclass(frozen=True)
class SelectionMemory:
    """What a chart's selection held at the previous event (kept by the caller between events)."""

    points: frozenset[tuple[int, int]] = frozenset()
    areas: str = "[]"
    clicked: frozenset[tuple[int, int]] = frozenset()


@dataclass(frozen=True)
class ChartSelection:
    """What one selection event of an :func:`echarts_grid` chart did.

    ``clicked``: ``(panel, clip id)`` of the point just clicked, else None. ``brushed``: the
    clips inside the box/lasso now (``()`` once it is cleared); None when the brush did not change.
    """

    clicked: tuple[int, str] | None = None
    brushed: tuple[str, ...] | None = None


def _selected_points(series: Sequence[SeriesClips | None], selection: Mapping[str, Any]) -> set[tuple[int, int]]:
    """(series index, data index) of every selected point of a word series, indices checked
    (a keyed chart keeps its selection while the option changes)."""
    out = set()
    for group in selection.get("selected") or []:
        i = group.get("series_index")
        if not isinstance(i, int) or not 0 <= i < len(series) or series[i] is None:
            continue
        n = len(series[i].clip_ids)
        out.update((i, j) for j in group.get("data_indices") or [] if isinstance(j, int) and 0 <= j < n)
    return out


def read_selection(
    series: Sequence[SeriesClips | None], event: Mapping[str, Any] | None, memory: SelectionMemory
) -> tuple[ChartSelection, SelectionMemory]:
    """Decode an ``st.echarts_chart`` event of an :func:`echarts_grid` chart.

    ECharts reports the UNION of the points selected by clicks (each series keeps its
    last clicked point) and by the brush, so the click is found by difference: a point in
    the union that was not in it before, while the brush areas stayed the same. A changed
    brush gives the clips it holds: the union less the points that earlier clicks selected.
    """
    selection = (event or {}).get("selection") or {}
    points = _selected_points(series, selection)
    areas = json.dumps(selection.get("areas") or [], sort_keys=True)
    clip = lambda pair: series[pair[0]].clip_ids[pair[1]]  # noqa: E731
    if areas != memory.areas:
        clicked = memory.clicked & points
        brushed = tuple(dict.fromkeys(clip(p) for p in sorted(points - clicked)))
        return ChartSelection(brushed=brushed), SelectionMemory(frozenset(points), areas, frozenset(clicked))
    new = sorted(points - memory.points)
    if not new:
        return ChartSelection(), SelectionMemory(frozenset(points), areas, memory.clicked & points)
    pick = new[0]
    return (ChartSelection(clicked=(series[pick[0]].panel, clip(pick))),
            SelectionMemory(frozenset(points), areas, frozenset((memory.clicked & points) | {pick})))


#: Readable names for the speaker-vs-word and layer-wise measure columns
#: (:data:`embedviz.metrics.SPEAKER_WORD_COLUMNS`, :data:`embedviz.measures.MEASURE_COLUMNS`).
MEASURE_LABELS: dict[str, str] = {
    "speaker_disjoint_knn": "word k-NN across speakers",
    "speaker_knn_within_word": "speaker 1-NN within words",
    "speaker_knn_across_words": "speaker 1-NN across words",
    "pwcca": "PWCCA with one-hot words",
    "cluster_nmi": "k-means cluster NMI",
    "abx_across": "word ABX across speakers",
    "abx_distractor": "word ABX, B by X's speaker",
    "abx_within": "word ABX within speaker",
}

#: Chance column of each speaker-vs-word curve.
_SPEAKER_WORD_CHANCE = {
    "speaker_disjoint_knn": "chance",
    "speaker_knn_within_word": "speaker_within_word_chance",
    "speaker_knn_across_words": "speaker_across_words_chance",
}


def _shared_value(data: "pd.DataFrame", column: str) -> float | None:
    """The column's single value over all rows (rounded), or None when it varies or is absent."""
    if column not in data.columns:
        return None
    values = np.unique(np.round(data[column].dropna().to_numpy(dtype=np.float64), 6))
    return float(values[0]) if len(values) == 1 else None


def speaker_word_metric(table: "pd.DataFrame") -> str:
    """The speaker curve to draw beside word k-NN: within words when any clip could be
    scored that way, else across words (one clip per speaker and word, as in the demo)."""
    within = table["speaker_knn_within_word"] if "speaker_knn_within_word" in table.columns else None
    if within is not None and within.notna().any():
        return "speaker_knn_within_word"
    return "speaker_knn_across_words"


def speaker_word_figure(
    table: "pd.DataFrame",
    speaker_metric: str = "speaker_knn_within_word",
    *,
    title: str | None = None,
) -> "go.Figure":
    """Where speaker and word information live: per model, word k-NN across speakers
    (solid) and speaker-identity k-NN (dashed, ``speaker_metric``: within or across words)
    against relative depth, in the model's colour, so the two curves can be seen crossing.

    ``table``: rows of :func:`embedviz.metrics.metrics_table` (``layer``, ``depth``,
    ``speaker_disjoint_knn``, the speaker column and their chance columns; optional
    ``model``). Chance levels shared by every row are drawn as grey dotted lines.
    """
    import plotly.graph_objects as go

    if speaker_metric not in ("speaker_knn_within_word", "speaker_knn_across_words"):
        raise ConfigError(f"speaker_metric must be a speaker k-NN column, got {speaker_metric!r}")
    data, models, colors = _per_model(
        table, ("layer", "depth", "speaker_disjoint_knn", speaker_metric), "speaker_word_figure"
    )
    fig = go.Figure()
    for model in models:
        part = data[data["model"].astype(str) == model].sort_values("depth", kind="stable")
        for metric, dash in (("speaker_disjoint_knn", "solid"), (speaker_metric, "dash")):
            label = MEASURE_LABELS[metric]
            chance_col = _SPEAKER_WORD_CHANCE[metric]
            chance = part[chance_col] if chance_col in part.columns else np.full(len(part), np.nan)
            fig.add_trace(
                go.Scatter(
                    x=part["depth"],
                    y=part[metric],
                    mode="lines+markers",
                    name=f"{model} · {label}",
                    legendgroup=model,
                    line={"color": colors[model], "dash": dash},
                    marker={"symbol": "circle" if dash == "solid" else "diamond"},
                    customdata=np.column_stack([part["layer"].astype(str), np.asarray(chance, dtype=np.float64)]),
                    hovertemplate=f"{model}<br>layer %{{customdata[0]}}<br>{label} %{{y:.3f}}"
                    "<br>chance %{customdata[1]:.3f}<extra></extra>",
                )
            )
    for metric, name in (("speaker_disjoint_knn", "word chance"), (speaker_metric, "speaker chance")):
        value = _shared_value(data, _SPEAKER_WORD_CHANCE[metric])
        if value is not None:
            fig.add_trace(
                go.Scatter(
                    x=[0.0, 1.0], y=[value, value], mode="lines", name=f"{name} ({value:.2f})",
                    line={"color": "grey", "dash": "dot" if metric == speaker_metric else "dashdot", "width": 1},
                    hovertemplate=f"{name} {value:.3f}<extra></extra>",
                )
            )
    fig.update_layout(
        title={"text": title if title is not None else "Word vs speaker information by layer"},
        template="plotly_white",
        xaxis={"title": {"text": "relative depth (0 = first layer, 1 = last)"}, "range": [-0.03, 1.03]},
        yaxis={"title": {"text": "accuracy"}, "range": [0.0, 1.02]},
        hovermode="closest",
        legend={"orientation": "h", "yanchor": "top", "y": -0.2},
    )
    return fig


def measures_figure(table: "pd.DataFrame", *, title: str | None = None) -> "go.Figure":
    """The layer-wise measures against relative depth, one panel each, one colour per
    model: PWCCA with one-hot words, k-means cluster NMI (its chance level dotted), and
    word ABX across speakers (solid: A and B by one speaker; dotted: B by X's speaker;
    dash-dot: within speaker, where a speaker says a word twice; 0.5 = chance).

    ``table``: rows of :func:`embedviz.measures.measures_table` (optional ``model``).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    data, models, colors = _per_model(
        table, ("layer", "depth", "pwcca", "cluster_nmi", "abx_across"), "measures_figure"
    )
    panels = (
        ("PWCCA with one-hot words", [("pwcca", "solid")]),
        ("k-means cluster NMI", [("cluster_nmi", "solid"), ("cluster_nmi_chance", "dot")]),
        ("word ABX across speakers (score)",
         [("abx_across", "solid"), ("abx_distractor", "dot"), ("abx_within", "dashdot")]),
    )
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[0] for p in panels], shared_xaxes=True)
    for col, (_, series) in enumerate(panels, start=1):
        for model in models:
            part = data[data["model"].astype(str) == model].sort_values("depth", kind="stable")
            for metric, dash in series:
                if metric not in part.columns or part[metric].isna().all():
                    continue  # e.g. within-speaker ABX when no speaker says a word twice
                label = MEASURE_LABELS.get(metric, "NMI chance" if metric.endswith("chance") else metric)
                fig.add_trace(
                    go.Scatter(
                        x=part["depth"], y=part[metric], mode="lines" if metric.endswith("chance") else "lines+markers",
                        # Solid lines are "the measure of this panel": one legend entry per model.
                        name=model if dash == "solid" else f"{model} · {label}", legendgroup=model,
                        showlegend=col == 1 or dash != "solid",
                        line={"color": colors[model], "dash": dash, "width": 1 if metric.endswith("chance") else 2},
                        customdata=part["layer"].astype(str).to_numpy()[:, None],
                        hovertemplate=f"{model}<br>layer %{{customdata[0]}}<br>{label} %{{y:.3f}}<extra></extra>",
                    ),
                    row=1, col=col,
                )
    fig.add_hline(y=0.5, line={"color": "grey", "dash": "dash", "width": 1}, row=1, col=3)
    fig.update_xaxes(title_text="relative depth", range=[-0.03, 1.03])
    fig.update_yaxes(range=[-0.05, 1.02], row=1, col=1)
    fig.update_yaxes(range=[0.0, 1.02], row=1, col=2)
    fig.update_yaxes(range=[0.0, 1.02], row=1, col=3)
    fig.update_layout(
        title={"text": title if title is not None else "Layer-wise measures"},
        template="plotly_white",
        hovermode="closest",
        legend={"orientation": "h", "yanchor": "top", "y": -0.25},
        margin={"t": 80},
    )
    return fig


def write_html(fig: "go.Figure", path: str | Path) -> Path:
    """Write a standalone HTML file with plotly.js inlined (opens offline). Returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(out), include_plotlyjs=True, full_html=True)
    return out


__all__ = [
    "BRUSH_COLOUR",
    "ChartSelection",
    "DIM_OPACITY",
    "ECHARTS_MAX_POINTS",
    "Renderer",
    "renderer_for",
    "ECHARTS_SYMBOLS",
    "EChartsGrid",
    "FOUND_COLOUR",
    "GridLayout",
    "NEIGHBOUR_COLOUR",
    "RING_NAMES",
    "SELECTED_COLOUR",
    "SelectionMemory",
    "SeriesClips",
    "echarts_grid",
    "equal_unit_ranges",
    "read_selection",
    "ring_size",
    "OWN_CLIP_NAME",
    "add_own_clip",
    "add_to_panel",
    "MEASURE_LABELS",
    "METRIC_LABELS",
    "SYMBOLS",
    "Highlight",
    "Panel",
    "Section",
    "WordStyle",
    "compact_legend",
    "panel_of_traces",
    "overview_figure",
    "word_styles",
    "cka_figure",
    "confusion_figure",
    "grid_figure",
    "layer_curve_figure",
    "measures_figure",
    "panel_subtitle",
    "scatter_figure",
    "speaker_word_figure",
    "speaker_word_metric",
    "title_for",
    "word_colors",
    "write_html",
]
