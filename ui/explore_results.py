"""The Explore page's results: the panels, brushing across them, and the selected clip.

``render_results`` draws every panel of the page as ONE chart: a 2D view of up to
``figures.ECHARTS_MAX_POINTS`` points in all is one ``st.echarts_chart``
(``figures.echarts_grid``: ~1.2 MB of ECharts to start in a fresh tab against ~4.7 MB of
plotly.js), 3D views and larger 2D ones one Plotly figure (``figures.grid_figure``;
``Scattergl`` keeps 100,000 points smooth to pan). A section per header (one per model,
or "Layers concatenated") holds its panels. So one compact legend under the plots hides
(click) a word in every panel at once, 2D and 3D (Plotly also isolates on double-click,
ECharts with its "all" / "invert" buttons), and all WebGL panels share one context (the
browser keeps ~16, separate charts would blank). What is marked is the same in every
panel: the clicked clip (black ring), its nearest neighbours in the chosen panel's
original space (orange), a box or lasso selection (blue: drawn in any 2D panel, brushed
into all of them) and the clips matching the highlight text (pink). Hidden words (the
app-level word filter, kept in the URL) are left out of every panel. Every layer a
model's panels show is read from the store in one pass first. The numbers come from
:mod:`ui.cached`.
"""

from __future__ import annotations

import contextlib

import streamlit as st

from embedviz.errors import EmbedvizError
from embedviz.viewstate import MAX_URL_SELECTION, ViewSettings
from ui import cached, widgets
from ui.explore_steps import BRUSH_KEY, CLIP_KEY, SPACE_KEY

#: Up to this many panels each panel's full numbers are listed under the figure; more go
#: in an expander (the subplot titles carry k-NN, silhouette and trust anyway).
MAX_LISTED_NUMBERS = 6
#: Plot-area height of a 2D panel and of a 3D scene, in pixels.
PANEL_PX, SCENE_PX = 260, 340
#: Key of the page's one Plotly figure (its selection events go to :func:`_on_select`).
CHART_KEY = "ex_panels"
#: Key prefix of the page's one ECharts chart (events: :func:`_on_echarts_select`).
ECHARTS_KEY = "ex_panels_ec"


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


def _section_columns(n_panels: int, dims: int) -> int:
    """2 or 4 panels as 2 per row (no orphan), otherwise 3; 3D scenes need more room."""
    return 2 if n_panels in (2, 4) or dims == 3 else min(n_panels, 3)


def _aligned(view: ViewSettings, status, section, reduction) -> list:
    """Each panel's coordinates rotated onto the section's first (Procrustes), or None each."""
    if view.layer_mode != "individual" or view.align != "on" or len(section) < 2:
        return [None] * len(section)
    sels = tuple(cached.LayerSelection(status[m][0], ls, view.pooling) for m, ls in section)
    try:
        if all(cached.plan(sel, reduction).ok for sel in sels):
            return list(cached.aligned_coords(sels, reduction))
    except EmbedvizError:
        pass  # each panel reports its own error
    return [None] * len(section)


def _drawable(view, status, panels, reduction, extracted: set) -> list[tuple[str, list, int]]:
    """``(header, [((model, layers), data, coords, clips)], columns)`` per section with a
    drawable panel; the others say why here (not extracted, over the projection budget,
    an error), and a section without any drawable panel is left out, header and all."""
    sections = []
    for header, section in panels:
        for name in dict.fromkeys(m for m, _ in section):
            if name in status and name not in extracted:
                st.info(f"{cached.model_label(name)}: extracting… (progress above); plots appear when done."
                        if widgets.job_running() else
                        f"{cached.model_label(name)}: not extracted yet; press **Extract** to compute "
                        f"{status[name][2]} clip(s).")
        section = [(m, ls) for m, ls in section if m in extracted]
        here = []
        for (name, layers), coords in zip(section, _aligned(view, status, section, reduction)):
            data = _panel_data(view, status, name, layers, reduction, coords)
            if data is not None:
                here.append(((name, tuple(layers)), *data))
        if here:
            sections.append((header, here, _section_columns(len(section), view.dims)))
    return sections


def _projection_notice(view, status, panels, reduction, extracted: set) -> str:
    """:func:`embedviz.reduction.projection_notice` for the panels this view projects."""
    from embedviz.reduction import projection_notice

    if reduction.method == "pca":
        return ""
    plans = []
    for _, section in panels:
        for name, layers in section:
            if name in extracted:
                try:
                    plans.append(cached.plan(cached.LayerSelection(status[name][0], layers, view.pooling), reduction))
                except EmbedvizError:
                    pass  # the panel reports its own error
    return projection_notice(reduction.method, plans)


def _figure(view, status, panels, reduction, colors, marks, extracted: set, own=None) -> None:
    """Every drawable panel of the page in ONE figure, then each panel's numbers."""
    from embedviz.figures import Panel, Section, panel_subtitle, renderer_for

    # The expected time, shown only while projections run (Streamlit's spinner appears after
    # 0.5 s: a cached view never shows it).
    notice = _projection_notice(view, status, panels, reduction, extracted)
    with st.spinner(notice, show_time=True) if notice else contextlib.nullcontext():
        sections = _drawable(view, status, panels, reduction, extracted)
    drawn = [panel for _, here, _ in sections for panel in here]
    if not drawn:
        return
    # One title for the pooling and projection when every panel used the same parameters
    # (t-SNE / UMAP clip them for small samples): panel titles stay short in narrow columns.
    used = {p.projection or reduction.describe() for _, p, _, _ in drawn}
    shared = used.pop() if len(used) == 1 else ""
    figure_sections = []
    for header, here, n_cols in sections:
        figure_sections.append(Section(header, [
            # A section per model names it once in its header; "Layers concatenated" panels name theirs.
            Panel(("" if header == cached.model_label(name) else f"{cached.model_label(name)} · ")
                  + f"layer {'+'.join(layers)}" + ("" if shared else f"<br>{p.projection or reduction.describe()}"),
                  coords, clips["clip_id"], clips["word"], clips["speaker"],
                  subtitle=panel_subtitle({"knn_accuracy": p.knn, "silhouette": p.silhouette, "trustworthiness": p.trust}))
            for (name, layers), p, coords, clips in here
        ], n_cols))
    # Many speakers would bury the plots under their legend; hover names each point's speaker.
    show_legend = view.color_by == "word" or max(clips["speaker"].nunique() for *_, clips in drawn) <= 12
    title = f"{view.pooling} pooling" + (f" · {shared}" if shared else "")
    spaces = tuple(space for space, *_ in drawn)
    if renderer_for(view.dims, sum(len(clips) for *_, clips in drawn)) == "echarts":
        _echarts(figure_sections, view, colors, marks, [(own or {}).get(space) for space in spaces],
                 show_legend, title, spaces)
    else:
        _plotly(figure_sections, view, colors, marks, own, show_legend, title, drawn)
    listed = st.container() if len(drawn) <= MAX_LISTED_NUMBERS else st.expander(
        f"Numbers of all {len(drawn)} panels", expanded=False)
    with listed:
        for (name, layers), p, _, clips in drawn:
            prefix = f"{cached.model_label(name)} · {'+'.join(layers)}: "
            st.caption(_numbers_caption(p, clips["speaker"].nunique(), view, prefix), help=NUMBERS_HELP)


def _echarts(figure_sections, view, colors, marks, own_points, show_legend, title, spaces) -> None:
    """The 2D panels as one ECharts chart (``figures.echarts_grid``): a fresh tab evaluates
    ~1.2 MB of ECharts instead of ~4.7 MB of plotly.js (docs/PERFORMANCE.md)."""
    from embedviz.figures import echarts_grid

    grid = echarts_grid(
        figure_sections, color_by=view.color_by, colors=colors, width_px=RESULTS_WIDTH_PX, panel_height=PANEL_PX,
        show_legend=show_legend, marks=marks, own=own_points, title=title,
    )
    # The key follows the clips drawn, not the rings: a ring keeps the chart (and its legend
    # toggles and zoom), new data start it afresh (a kept selection would name other clips).
    key = f"{ECHARTS_KEY}_{grid.data_token}"
    st.echarts_chart(grid.option, key=key, on_select=lambda: _on_echarts_select(key, spaces, grid.series),
                     width=grid.width, height=grid.height)


def _on_echarts_select(chart_key: str, spaces: tuple, series) -> None:
    """The ECharts chart's selection callback, as :func:`_on_select`: a click picks a clip
    and its panel's space, a box or lasso selects many clips (``figures.read_selection``
    finds which point was just clicked in ECharts' union of selections)."""
    from embedviz.figures import SelectionMemory, read_selection

    memory_key = f"{chart_key}_memory"
    event, memory = read_selection(series, st.session_state.get(chart_key), st.session_state.get(memory_key, SelectionMemory()))
    for stale in [k for k in st.session_state if str(k).startswith(ECHARTS_KEY) and str(k).endswith("_memory")]:
        del st.session_state[stale]  # earlier charts' memories (other data): one is kept, not one per view
    st.session_state[memory_key] = memory
    if event.brushed is not None:
        st.session_state[BRUSH_KEY] = list(event.brushed)
    elif event.clicked is not None:
        panel, clip = event.clicked
        st.session_state[CLIP_KEY] = clip
        st.session_state[SPACE_KEY] = spaces[panel]


def _plotly(figure_sections, view, colors, marks, own, show_legend, title, drawn) -> None:
    """3D views and 2D views past ``figures.ECHARTS_MAX_POINTS``: one Plotly figure
    (``Scattergl`` pans 100,000 points smoothly; each 3D scene is its own WebGL context)."""
    import plotly.graph_objects as go

    from embedviz.figures import add_own_clip, add_to_panel, grid_figure, panel_of_traces

    fig = grid_figure(
        figure_sections, color_by=view.color_by, colors=colors, width_px=RESULTS_WIDTH_PX,
        panel_height=SCENE_PX if view.dims == 3 else PANEL_PX, show_legend=show_legend,
        extra_legend_entries=int(any((own or {}).get(space) is not None for space, *_ in drawn)),
        title=title,
    )
    starred = False
    for i, (space, _, coords, clips) in enumerate(drawn):
        overlay = go.Figure()
        widgets.mark_clips(overlay, coords, clips["clip_id"], marks)
        point = (own or {}).get(space)
        if point is not None:  # the user's own clip: a star in every panel, one legend entry for all
            add_own_clip(overlay, point)
            overlay.data[-1].update(legendgroup="own clip", showlegend=show_legend and not starred)
            starred = True
        add_to_panel(fig, i, overlay.data)
    spaces = tuple(space for space, *_ in drawn)
    owner = tuple(panel_of_traces(fig))
    st.plotly_chart(
        fig, key=CHART_KEY, on_select=lambda: _on_select(CHART_KEY, spaces, owner),
        selection_mode=("points", "box", "lasso") if view.dims == 2 else "points", config={"displaylogo": False},
    )


def _on_select(chart_key: str, spaces: tuple, owner: tuple[int, ...]) -> None:
    """The figure's selection callback: a click picks a clip, and the clicked trace's panel
    (``owner[curve]`` indexes ``spaces``) gives the space of its neighbours; a box or lasso
    selects many clips, brushed into every panel."""
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
    from embedviz.figures import word_colors

    reduction = view.reduction_settings()
    # Colours from the dataset's whole word list: a word keeps its colour whatever else is chosen.
    colors = word_colors(words_df["word"]) if view.color_by == "word" else None
    sample = cached.ClipSelection.of(view).sample()
    nn = _neighbours(view, status)
    marks = _marks(view, sample, nn)
    extracted = {m for m, (_, missing, total) in status.items() if missing < total}
    _read_stored_layers(view, panels, status, extracted)
    results, side = st.columns([3, 1], gap="medium")
    with results:
        _figure(view, status, panels, reduction, colors, marks, extracted, own)
    with side:
        _clip_side(view, sample, nn)
    _selection_table(view, sample)


#: The "Selected clip" list offers every clip up to this many; past it (a 100,000-point view
#: would send and build 100,000 options on every run) only the clips the Highlight text matches.
MAX_CLIP_OPTIONS = 1000


def _clip_options(view: ViewSettings, sample) -> tuple[list[str], str]:
    """The clip list's options and its help text."""
    ids = sample["clip_id"]
    tip = ("Clicking a point in a plot picks its clip (in 3D plots a click may not register in "
           "every browser; choose the clip here instead).")
    if len(ids) <= MAX_CLIP_OPTIONS:
        return [""] + list(ids), tip
    text = view.find.strip().lower()
    hit = (ids.str.lower().str.contains(text, regex=False) | (sample["speaker"].str.lower() == text)) if text else None
    found = list(ids[hit].head(MAX_CLIP_OPTIONS)) if hit is not None else []
    options = list(dict.fromkeys([""] + ([view.clip] if view.clip else []) + found))
    return options, (f"{tip} With more than {MAX_CLIP_OPTIONS:,} clips the list holds only the clips that "
                     f"the Highlight text (above the plots) matches: type a word, a speaker or part of a clip id "
                     f"there ({len(found):,} listed now).")


def _clip_side(view: ViewSettings, sample, nn) -> None:
    with st.container(border=True):
        st.markdown("#### Selected clip")
        options, tip = _clip_options(view, sample)
        st.selectbox(
            "Clip", options, key=CLIP_KEY,
            format_func=lambda c: c or "click a point, or choose a clip", help=tip,
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
