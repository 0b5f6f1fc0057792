"""The Explore page's results: the panels, brushing across them, and the selected clip.

``render_results`` draws one plot per panel. What is marked is the same in every panel:
the clicked clip (black ring), its nearest neighbours in the chosen panel's original space
(orange), a box or lasso selection (blue: drawn in any 2D panel, brushed into all of them)
and the clips matching the highlight text (pink). Hidden words are left out of every
panel at once (an app-level word filter: Plotly's legend is per figure and cannot be
shared across figures). The numbers come from :mod:`ui.cached`.
"""

from __future__ import annotations

import streamlit as st

from embedviz.errors import EmbedvizError
from embedviz.viewstate import MAX_URL_SELECTION, ViewSettings
from ui import cached, widgets
from ui.explore_steps import BRUSH_KEY, CLIP_KEY, SPACE_KEY

#: Browsers keep about 16 WebGL contexts per page and Plotly's Scattergl takes two per plot:
#: past this many plots on the page, every plot is drawn as SVG.
MAX_WEBGL_PANELS = 6


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


def _panel(view, status, name, layers, reduction, colors, coords, marks, n_panels) -> None:
    """One plot: the projection of a model's layer (or concatenated layers) with its numbers."""
    from embedviz.figures import scatter_figure, title_for

    label = cached.model_label(name)
    sel = cached.LayerSelection(status[name][0], layers, view.pooling)
    try:
        plan = cached.plan(sel, reduction)
        if not plan.ok:  # never start a projection that would hold the server for minutes
            st.warning(f"{label} · {'+'.join(layers)}: {plan.reason}", icon=":material/hourglass_disabled:")
            return
        p = cached.panel(sel, reduction)
    except EmbedvizError as error:
        st.error(f"{label} · {'+'.join(layers)}: {error}")
        return
    coords = p.coords if coords is None else coords
    clips = p.clips
    if view.hide:
        keep = (~clips["word"].isin(view.hide)).to_numpy()
        coords, clips = coords[keep], clips[keep].reset_index(drop=True)
    title = title_for(label, "+".join(layers), view.pooling, p.projection or reduction)
    fig = scatter_figure(
        coords, clips["clip_id"], clips["word"], clips["speaker"], color_by=view.color_by,
        # model / layer and pooling / projection on three lines: narrow panels cut long titles.
        title="<br>".join(title.split(" · ", 1)).replace(" pooling · ", " pooling<br>", 1),
        colors=colors, webgl=None if n_panels <= MAX_WEBGL_PANELS else False,
    )
    n_speakers = clips["speaker"].nunique()
    fig.update_layout(
        height=440, title={"font": {"size": 12}},
        legend={"orientation": "h", "yanchor": "top", "y": -0.1, "title": {"text": ""}},
        # Many speakers would bury the plot under its legend; hover names each point's speaker.
        showlegend=view.color_by == "word" or n_speakers <= 12,
        margin={"l": 10, "r": 10, "t": 80, "b": 30},
    )
    if view.dims == 2:
        fig.update_xaxes(title_text=None)
        fig.update_yaxes(title_text=None)
    widgets.mark_clips(fig, coords, clips["clip_id"], marks)
    chart_key = f"plot::{name}::{'+'.join(layers)}"
    st.plotly_chart(
        fig, key=chart_key, on_select=lambda k=chart_key, m=name, ls=layers: _on_select(k, m, ls),
        selection_mode=("points", "box", "lasso") if view.dims == 2 else "points", config={"displaylogo": False},
    )
    note = f" · {p.n_clips} of {p.n_clips + p.n_missing} clips stored" if p.n_missing else ""
    who = f" · {n_speakers} speakers (hover a point for its speaker)" if view.color_by == "speaker" else ""
    st.caption(
        f"k-NN accuracy **{widgets.fmt(p.knn)}**{p.sampled(p.knn_n)} · silhouette "
        f"**{widgets.fmt(p.silhouette)}**{p.sampled(p.silhouette_n)} · chance {widgets.fmt(p.chance)} · "
        f"trust {widgets.fmt(p.trust)}{p.sampled(p.trust_n)}{note}{who}",
        help="Leave-one-out 5-NN word accuracy and silhouette, both with cosine distance in the "
        "original embedding space (not the picture). Trust is the projection's trustworthiness "
        "(1 = the picture's 5 nearest neighbours are neighbours in the original space too).",
    )


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


def render_results(view: ViewSettings, panels: list[tuple[str, list]], status: dict, words_df) -> None:
    """The panels (left) and the selected clip with its neighbours (right)."""
    from embedviz.figures import word_colors

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
            cols = st.columns(n_cols)
            for i, (name, layers) in enumerate(section):
                with cols[i % n_cols]:
                    _panel(view, status, name, layers, reduction, colors, aligned[i], marks, n_panels)
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
