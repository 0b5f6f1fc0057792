"""The Explore page's results: the panels, brushing across them, and the selected clip.

``render_results`` draws one plot per panel, or, past :data:`MAX_WEBGL_PANELS` WebGL-sized 2D
panels or :data:`MAX_WORDS_PER_PANEL_LEGEND` words, one figure of subplots per section (the
browser's WebGL context limit would blank separate charts; its one compact legend hides
a word in all its panels). What is marked is the
same in every panel: the clicked clip (black ring), its nearest neighbours in the chosen
panel's original space (orange), a box or lasso selection (blue: drawn in any 2D panel,
brushed into all of them) and the clips matching the highlight text (pink). Hidden words
are left out of every panel at once (an app-level word filter: a legend click acts on
its own figure only). Every layer a model's panels show is read from the store in one
pass first. The numbers come from :mod:`ui.cached`.
"""

from __future__ import annotations

import streamlit as st

from embedviz.errors import EmbedvizError
from embedviz.viewstate import MAX_URL_SELECTION, ViewSettings
from ui import cached, widgets
from ui.explore_steps import BRUSH_KEY, CLIP_KEY, SPACE_KEY

#: Browsers keep about 16 WebGL contexts per page and a Plotly Scattergl chart takes about
#: two: up to this many panels each is its own chart; past it, each section's 2D panels are
#: one figure of subplots (one context, one shared legend; see ``_grid``) when they are
#: WebGL-sized, and separate SVG charts when they are small. 3D scenes take a context each
#: and are drawn as their own charts, so many 3D panels can still blank.
MAX_WEBGL_PANELS = 6
#: More words than this and a section's 2D panels share one figure too: 35 words make a
#: legend per panel as tall as the plot, and a legend click would hide the word in one
#: panel only; the grid's single legend hides (double-click: isolates) it in all of them.
MAX_WORDS_PER_PANEL_LEGEND = 12


def _on_select(chart_key: str, model: str, layers: tuple[str, ...]) -> None:
    """Plot selection callback: a click picks a clip (and this panel for its neighbours);
    a box or lasso selects many clips, brushed into every panel."""
    event = st.session_state.get(chart_key) or {}
    selection = event.get("selection", {}) if event else {}
    ids = [str(p["customdata"][0]) for p in selection.get("points", []) if p.get("customdata")]
    if selection.get("box") or selection.get("lasso"):
        st.session_state[BRUSH_KEY] = list(dict.fromkeys(ids))
    elif ids:
        st.session_state[CLIP_KEY] = ids[0]
        st.session_state[SPACE_KEY] = (model, layers)


def _clear_clip() -> None:
    st.session_state[CLIP_KEY] = ""


def _clear_brush() -> None:
    st.session_state[BRUSH_KEY] = []


def _marks(view: ViewSettings, sample, neighbours) -> dict[str, str]:
    marks: dict[str, str] = {}
    text = view.find.strip().lower()
    if text:
        hit = (sample["word"].str.lower() == text) | (sample["speaker"].str.lower() == text) | sample["clip_id"].str.lower().str.contains(text, regex=False)
        marks.update({c: widgets.FOUND_COLOUR for c in sample.loc[hit, "clip_id"]})
    marks.update({c: widgets.BRUSH_COLOUR for c in view.selected})
    if neighbours is not None:
        marks.update({c: widgets.NEIGHBOUR_COLOUR for c in neighbours["clip_id"]})
    if view.clip:
        marks[view.clip] = widgets.SELECTED_COLOUR
    return marks


def _panel_data(view, status, name, layers, reduction, coords):
    """A panel's data and its clips with the hidden words left out; None (with the reason
    shown) when the projection is over budget or fails."""
    label = cached.model_label(name)
    sel = cached.LayerSelection(status[name][0], layers, view.pooling)
    try:
        plan = cached.plan(sel, reduction)
        if not plan.ok:  # never start a projection that would hold the server for minutes
            st.warning(f"{label} · {'+'.join(layers)}: {plan.reason}", icon=":material/hourglass_disabled:")
            return None
        p = cached.panel(sel, reduction)
    except EmbedvizError as error:
        st.error(f"{label} · {'+'.join(layers)}: {error}")
        return None
    coords = p.coords if coords is None else coords
    clips = p.clips
    if view.hide:
        keep = (~clips["word"].isin(view.hide)).to_numpy()
        coords, clips = coords[keep], clips[keep].reset_index(drop=True)
    return p, coords, clips


def _numbers_caption(p, n_speakers: int, view: ViewSettings, prefix: str = "") -> str:
    note = f" · {p.n_clips} of {p.n_clips + p.n_missing} clips stored" if p.n_missing else ""
    who = f" · {n_speakers} speakers (hover a point for its speaker)" if view.color_by == "speaker" else ""
    return (
        f"{prefix}k-NN accuracy **{widgets.fmt(p.knn)}**{p.sampled(p.knn_n)} · silhouette "
        f"**{widgets.fmt(p.silhouette)}**{p.sampled(p.silhouette_n)} · chance {widgets.fmt(p.chance)} · "
        f"trust {widgets.fmt(p.trust)}{p.sampled(p.trust_n)}{note}{who}"
    )


NUMBERS_HELP = (
    "Leave-one-out 5-NN word accuracy and silhouette, both with cosine distance in the "
    "original embedding space (not the picture). Trust is the projection's trustworthiness "
    "(1 = the picture's 5 nearest neighbours are neighbours in the original space too)."
)
#: Width of the results column on a wide page (3 of 4 columns; measured 764 px at 1500 px).
RESULTS_WIDTH_PX = 760


def _panel(view, status, name, layers, reduction, colors, coords, marks, width_px: int, webgl=None, own=None) -> None:
    """One plot: the projection of a model's layer (or concatenated layers) with its numbers."""
    from embedviz.figures import add_own_clip, compact_legend, scatter_figure, title_for

    data = _panel_data(view, status, name, layers, reduction, coords)
    if data is None:
        return
    p, coords, clips = data
    title = title_for(cached.model_label(name), "+".join(layers), view.pooling, p.projection or reduction)
    fig = scatter_figure(
        coords, clips["clip_id"], clips["word"], clips["speaker"], color_by=view.color_by,
        # model / layer and pooling / projection on three lines: narrow panels cut long titles.
        title="<br>".join(title.split(" · ", 1)).replace(" pooling · ", " pooling<br>", 1),
        colors=colors, webgl=webgl,
    )
    n_speakers = clips["speaker"].nunique()
    # Many speakers would bury the plot under its legend; hover names each point's speaker.
    show_legend = view.color_by == "word" or n_speakers <= 12
    legend, legend_px = compact_legend(len(fig.data) if show_legend else 0, width_px)
    fig.update_layout(
        height=360 + legend_px, title={"font": {"size": 12}}, legend=legend, showlegend=show_legend,
        margin={"l": 10, "r": 10, "t": 80, "b": 10 + legend_px},
    )
    if view.dims == 2:
        fig.update_xaxes(title_text=None)
        fig.update_yaxes(title_text=None)
    widgets.mark_clips(fig, coords, clips["clip_id"], marks)
    if own is not None:  # the user's own clip (ui.own_clip), placed on this panel's projection
        add_own_clip(fig, own)
    chart_key = f"plot::{name}::{'+'.join(layers)}"
    st.plotly_chart(
        fig, key=chart_key, on_select=lambda k=chart_key, m=name, ls=layers: _on_select(k, m, ls),
        selection_mode=("points", "box", "lasso") if view.dims == 2 else "points", config={"displaylogo": False},
    )
    st.caption(_numbers_caption(p, n_speakers, view), help=NUMBERS_HELP)


def _grid(view, status, header, section, reduction, colors, aligned, marks, own=None) -> None:
    """Every 2D panel of a section in ONE figure (subplots): one WebGL context whatever the
    number of panels (separate charts blank past the browser's ~16 contexts), and one
    legend whose clicks hide (double-click: isolate) a word in every panel."""
    import plotly.graph_objects as go

    from embedviz.figures import Panel, add_own_clip, grid_figure, panel_of_traces, panel_subtitle

    drawn = []
    for (name, layers), coords in zip(section, aligned):
        data = _panel_data(view, status, name, layers, reduction, coords)
        if data is not None:
            drawn.append(((name, layers), *data))
    if not drawn:
        return
    n_cols = 3
    panels = [
        Panel(f"{cached.model_label(name)} · {'+'.join(layers)}", coords, clips["clip_id"], clips["word"],
              clips["speaker"], subtitle=panel_subtitle({"knn_accuracy": p.knn, "silhouette": p.silhouette}))
        for (name, layers), p, coords, clips in drawn
    ]
    fig = grid_figure(panels, n_cols, color_by=view.color_by, colors=colors, width_px=RESULTS_WIDTH_PX,
                      panel_height=320)
    if view.color_by == "speaker" and max(clips["speaker"].nunique() for *_, clips in drawn) > 12:
        fig.update_layout(showlegend=False, margin={"b": 20}, height=60 + 320 * -(-len(panels) // n_cols))
    starred = False
    for i, (space, _, coords, clips) in enumerate(drawn):
        rings = go.Figure()
        widgets.mark_clips(rings, coords, clips["clip_id"], marks)
        point = (own or {}).get((space[0], tuple(space[1])))
        if point is not None:  # the user's own clip, one legend entry for the whole grid
            add_own_clip(rings, point)
            rings.data[-1].update(legendgroup="own clip", showlegend=not starred)
            starred = True
        for trace in rings.data:
            fig.add_trace(trace, row=i // n_cols + 1, col=i % n_cols + 1)
    spaces = tuple(space for space, *_ in drawn)
    owner = tuple(panel_of_traces(fig))
    chart_key = f"grid::{header}"
    st.plotly_chart(
        fig, key=chart_key, on_select=lambda: _on_grid_select(chart_key, spaces, owner),
        selection_mode=("points", "box", "lasso"), config={"displaylogo": False},
    )
    with st.expander("Numbers of every panel", expanded=False):
        for (name, layers), p, _, clips in drawn:
            prefix = f"{cached.model_label(name)} · {'+'.join(layers)}: "
            st.caption(_numbers_caption(p, clips["speaker"].nunique(), view, prefix), help=NUMBERS_HELP)


def _on_grid_select(chart_key: str, spaces: tuple, owner: tuple[int, ...]) -> None:
    """Like :func:`_on_select`, for a grid: the clicked trace's panel gives the neighbours' space."""
    event = st.session_state.get(chart_key) or {}
    selection = event.get("selection", {}) if event else {}
    points = [p for p in selection.get("points", []) if p.get("customdata")]
    if selection.get("box") or selection.get("lasso"):
        st.session_state[BRUSH_KEY] = list(dict.fromkeys(str(p["customdata"][0]) for p in points))
    elif points:
        curve = points[0].get("curve_number", 0)
        st.session_state[CLIP_KEY] = str(points[0]["customdata"][0])
        st.session_state[SPACE_KEY] = spaces[owner[curve] if 0 <= curve < len(owner) else 0]


def _neighbours(view: ViewSettings, status):
    if not view.clip or view.nn_model not in status:
        return None
    try:
        return cached.neighbours(cached.LayerSelection(status[view.nn_model][0], view.nn_layers, view.pooling), view.clip)
    except EmbedvizError as error:
        st.error(str(error))
        return None


def _read_stored_layers(view: ViewSettings, panels, status: dict, extracted: set) -> None:
    """Every layer the panels of a model will draw, read from the store in one pass (one
    read costs about the same for one layer or all of them; see ``cached.read_together``)."""
    wanted: dict[str, dict[str, None]] = {}
    for _, section in panels:
        for name, layers in section:
            if name in extracted:
                wanted.setdefault(name, {}).update(dict.fromkeys(layers))
    for name, layers in wanted.items():
        try:
            cached.read_together(status[name][0], tuple(layers), view.pooling)
        except EmbedvizError:
            pass  # each panel reports its own error


def render_results(view: ViewSettings, panels: list[tuple[str, list]], status: dict, words_df, own=None) -> None:
    """The panels (left) and the selected clip with its neighbours (right); ``own`` maps a
    panel ``(model, layers)`` to the user's own clip's point there (drawn as a star)."""
    from embedviz.figures import WEBGL_MIN_POINTS, word_colors

    reduction = view.reduction_settings()
    # Colours from the dataset's whole word list: a word keeps its colour whatever else is chosen.
    colors = word_colors(words_df["word"]) if view.color_by == "word" else None
    sample = cached.ClipSelection.of(view).sample()
    nn = _neighbours(view, status)
    marks = _marks(view, sample, nn)
    extracted = {m for m, (_, missing, total) in status.items() if missing < total}
    n_panels = sum(len(section) for _, section in panels)
    _read_stored_layers(view, panels, status, extracted)
    results, side = st.columns([3, 1], gap="medium")
    with results:
        for header, section in panels:
            st.markdown(f"#### {header}")
            for name in dict.fromkeys(m for m, _ in section):
                if name in status and name not in extracted:
                    st.info(f"{cached.model_label(name)}: extracting… (progress above); plots appear when done."
                            if widgets.job_running() else
                            f"{cached.model_label(name)}: not extracted yet; press **Extract** to compute "
                            f"{status[name][2]} clip(s).")
            section = [(m, ls) for m, ls in section if m in extracted]
            if not section:
                continue
            # 2 or 4 panels as 2 per row (no orphan), otherwise 3; 3D scenes need more room.
            n_cols = 2 if len(section) in (2, 4) or view.dims == 3 else min(len(section), 3)
            aligned = [None] * len(section)
            if view.layer_mode == "individual" and view.align == "on" and len(section) > 1:
                sels = tuple(cached.LayerSelection(status[m][0], ls, view.pooling) for m, ls in section)
                try:
                    if all(cached.plan(sel, reduction).ok for sel in sels):
                        aligned = list(cached.aligned_coords(sels, reduction))
                except EmbedvizError:
                    pass  # each panel reports its own error below
            many_words = view.color_by == "word" and len(view.words) - len(view.hide) > MAX_WORDS_PER_PANEL_LEGEND
            # Small clouds are SVG (no WebGL context), so many small panels can stay separate charts.
            many_webgl = n_panels > MAX_WEBGL_PANELS and len(sample) >= WEBGL_MIN_POINTS
            if view.dims == 2 and len(section) > 1 and (many_webgl or many_words):
                _grid(view, status, header, section, reduction, colors, aligned, marks, own)
                continue
            cols = st.columns(n_cols)
            for i, (name, layers) in enumerate(section):
                with cols[i % n_cols]:
                    _panel(view, status, name, layers, reduction, colors, aligned[i], marks, RESULTS_WIDTH_PX // n_cols,
                           webgl=None if n_panels <= MAX_WEBGL_PANELS else False,
                           own=(own or {}).get((name, tuple(layers))))
    with side:
        _clip_side(view, sample, nn)
    _selection_table(view, sample)


def _clip_side(view: ViewSettings, sample, nn) -> None:
    with st.container(border=True):
        st.markdown("#### Selected clip")
        st.selectbox(
            "Clip", [""] + list(sample["clip_id"]), key=CLIP_KEY,
            format_func=lambda c: c or "click a point, or choose a clip",
            help="Clicking a point in a plot picks its clip (in 3D plots a click may not register in "
            "every browser; choose the clip here instead).",
        )
        match = sample[sample["clip_id"] == view.clip] if view.clip else sample.iloc[0:0]
        if not view.clip:
            st.caption("Click a point in any plot to hear its clip and its 5 nearest neighbours.")
            return
        if match.empty:
            return
        widgets.clip_card(match.iloc[0])
        if nn is not None and len(nn):
            st.markdown(
                f"**Nearest neighbours** in {cached.model_label(view.nn_model)} · layer {'+'.join(view.nn_layers)} "
                f"({view.pooling} pooling, cosine distance in the original space; ringed orange in every plot)"
            )
            for _, row in nn.iterrows():
                widgets.clip_card(row, caption=f"distance {row['distance']:.3f}")
        st.button("Clear selection", on_click=_clear_clip, key="ex_clear_clip")


def _selection_table(view: ViewSettings, sample) -> None:
    ids = st.session_state.get(BRUSH_KEY) or list(view.selected)
    if not ids:
        return
    chosen = sample[sample["clip_id"].isin(ids)]
    with st.container(border=True):
        note = "" if len(ids) <= MAX_URL_SELECTION else f" (more than {MAX_URL_SELECTION}: kept in this session, not in the URL)"
        st.markdown(f"#### {len(chosen)} selected clip(s){note}")
        st.dataframe(chosen[["word", "speaker", "path"]], hide_index=True, key="ex_brush_table")
        for _, row in chosen.head(12).iterrows():
            widgets.clip_card(row)
        if len(chosen) > 12:
            st.caption(f"Players shown for the first 12 of {len(chosen)}.")
        st.button("Clear box/lasso selection", on_click=_clear_brush, key="ex_clear_brush")
