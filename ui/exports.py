"""Explore's Export section: downloads of what the page shows (:mod:`embedviz.export`).

The panels are the ones drawn above (:func:`shown_panels`: extracted, within the
projection budget, aligned as drawn, hidden words left out). Files are built only when a
button is pressed (Streamlit runs a download's ``data`` callable on click), from values
this run already holds, so showing the buttons costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from embedviz import export
from embedviz.errors import EmbedvizError
from embedviz.viewstate import MAX_URL_SELECTION, ViewSettings
from ui import cached
from ui.explore_steps import BRUSH_KEY

CSV, PARQUET, ZIP = "text/csv", "application/vnd.apache.parquet", "application/zip"


@dataclass(frozen=True)
class Shown:
    """One drawn panel: its selection, its data, and how it was aligned (``aligned_with``
    holds its section's selections and ``index`` its place there; empty: not aligned)."""

    model: str
    layers: tuple[str, ...]
    sel: cached.LayerSelection
    data: Any  # embedviz.views.PanelData
    aligned_with: tuple[cached.LayerSelection, ...] = ()
    index: int = 0

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.model, self.layers

    def label(self) -> str:
        return f"{cached.model_label(self.model)} · {'+'.join(self.layers)}"


def shown_panels(view: ViewSettings, status: dict, panels: list[tuple[str, list]]) -> list[Shown]:
    """The panels Explore draws (same rules as ``ui.explore_results``); those that cannot be
    drawn (not extracted, over the projection budget, an error) are left out, silently: the
    results above already say why."""
    reduction = view.reduction_settings()
    extracted = {m for m, (_, missing, total) in status.items() if missing < total}
    out: list[Shown] = []
    for _, section in panels:
        section = [(m, tuple(ls)) for m, ls in section if m in extracted]
        sels = tuple(cached.LayerSelection(status[m][0], ls, view.pooling) for m, ls in section)
        ok = []
        for (m, ls), sel in zip(section, sels, strict=True):
            try:
                ok.append(cached.plan(sel, reduction).ok)
            except EmbedvizError:
                ok.append(False)
        aligned = view.layer_mode == "individual" and view.align == "on" and len(section) > 1 and all(ok)
        for i, ((m, ls), sel) in enumerate(zip(section, sels, strict=True)):
            if not ok[i]:
                continue
            try:
                data = cached.panel(sel, reduction)
            except EmbedvizError:
                continue
            out.append(Shown(m, ls, sel, data, sels if aligned else (), i))
    return out


def shown_coords(view: ViewSettings, shown: Shown):
    """The panel's coordinates as drawn (its section's alignment applied)."""
    if not shown.aligned_with:
        return shown.data.coords
    try:
        return cached.aligned_coords(shown.aligned_with, view.reduction_settings())[shown.index]
    except EmbedvizError:
        return shown.data.coords


def _export_panel(view: ViewSettings, shown: Shown, own: Any = None) -> export.ExportPanel:
    """The panel as drawn, with the user's own clip (``ui.own_clip.OwnClip``) where it is placed."""
    point = own.export_point(shown.key) if own is not None else None
    panel = export.ExportPanel(shown.model, shown.layers, view.pooling, shown.data, shown_coords(view, shown), point)
    return panel.without_words(view.hide)


def _button(col, label: str, make: Callable[[], bytes], file_name: str, mime: str, key: str, help: str) -> None:
    col.download_button(label, data=make, file_name=file_name, mime=mime, key=key, on_click="ignore",
                        icon=":material/download:", help=help)


def render_exports(view: ViewSettings, status: dict, panels: list[tuple[str, list]]) -> None:
    """Download buttons: one panel's embeddings, every panel's coordinates, metrics and figures,
    and the box/lasso selection."""
    from ui import own_clip

    shown = shown_panels(view, status, panels)
    if not shown:
        st.caption("Extract and draw at least one panel to export it.")
        return
    hidden = f" Hidden words ({', '.join(view.hide)}) are left out." if view.hide else ""
    own = own_clip.placed(view, status, panels)
    if own is not None and not own.placed:
        own = None
    mine = (f" Your clip ({own.name}) is in the embeddings and coordinates as one more row, source "
            f"“{export.SOURCE_OWN}”, word empty and the panel's k-NN vote in predicted_word; the figures star it."
            if own is not None else "")
    st.caption("Files are made when you press a button. Figures open offline: unzip and open index.html "
               "(plotly.js is in the zip once); the camera icon of a figure's toolbar saves a PNG." + hidden + mine)
    exported = [_export_panel(view, s, own) for s in shown]
    by_key = {s.key: s for s in shown}
    labels = {s.key: s.label() for s in shown}
    stem = f"embedviz_{view.pooling.replace(':', '-')}_{view.method}{view.dims}d"

    c1, c2, c3 = st.columns(3)
    _button(c1, "Coordinates (CSV)", lambda: export.to_csv_bytes(export.coordinates_frame(exported)),
            f"{stem}_coordinates.csv", CSV, "ex_dl_coords",
            "Every panel's points as drawn: model, layers, clip, word, speaker, source, x, y "
            "(your own clip too, where it is placed).")
    _button(c2, "Metrics (CSV)", lambda: export.to_csv_bytes(export.metrics_frame(exported)),
            f"{stem}_metrics.csv", CSV, "ex_dl_metrics",
            "One row per panel: k-NN accuracy, silhouette, chance, trust, clip counts.")
    colors = _word_colors(view)
    figure_labels = {s.key: cached.model_label(s.model) for s in shown}
    _button(c3, "Figures (HTML, zip)", lambda: export.figures_zip(export.panel_figures(
        exported, figure_labels, color_by=view.color_by, colors=colors)),
        f"{stem}_figures.zip", ZIP, "ex_dl_figures",
        "One standalone HTML file per panel, with plotly.min.js once beside them.")

    st.markdown("**Embeddings** of one panel (one row per clip: clip_id, path, word, speaker, source, "
                "predicted_word, …, then e0, e1, …)")
    keys = list(by_key)
    d1, d2, d3 = st.columns([2, 1, 1])
    key = d1.selectbox("Panel", keys, format_func=labels.get, key="ex_dl_panel", label_visibility="collapsed")
    s = by_key[key]
    try:
        X, clips = cached.layer_matrix(s.sel)
    except EmbedvizError as error:
        st.error(str(error))
        return

    point = own.export_point(s.key) if own is not None else None

    def frame():
        return export.embeddings_frame(X, clips, model=s.model, layers=s.layers, pooling=view.pooling, own=point)

    name = export.safe_name(f"{s.model}_{'+'.join(s.layers)}_{view.pooling}")
    what = ("the layers joined as the panel uses them (each z-scored and scaled by 1/sqrt(width))"
            if len(s.layers) > 1 else "exactly the stored vectors")
    _button(d2, "Parquet", lambda: export.to_parquet_bytes(frame()), f"{name}.parquet", PARQUET, "ex_dl_parquet",
            f"float32: {what}")
    _button(d3, "CSV", lambda: export.to_csv_bytes(frame()), f"{name}.csv", CSV, "ex_dl_csv",
            f"Each float written so it reads back to the same float32: {what}")
    _selection(view, X, clips, s, name)


def _selection(view: ViewSettings, X, clips, s: Shown, name: str) -> None:
    ids = list(st.session_state.get(BRUSH_KEY) or view.selected)
    if not ids:
        st.caption("Drag a box or lasso in a 2D plot to select clips; the selection can then be exported here.")
        return
    if len(ids) <= MAX_URL_SELECTION:
        where = f"{len(ids)} clip(s): in the page's URL, so a copied link shows the same selection."
    else:
        where = (f"{len(ids)} clips: more than {MAX_URL_SELECTION}, so not in the URL (a link holding hundreds of clip "
                 "ids breaks browsers' and servers' URL limits); kept in this session; download it to keep it.")
    st.markdown(f"**Box/lasso selection** · {where}")

    def frame():
        return export.select_clips(
            export.embeddings_frame(X, clips, model=s.model, layers=s.layers, pooling=view.pooling), ids)

    e1, e2 = st.columns(2)
    _button(e1, "Selection (Parquet)", lambda: export.to_parquet_bytes(frame()), f"{name}_selection.parquet", PARQUET,
            "ex_dl_sel_parquet", f"The selected clips' embeddings in {s.label()}")
    _button(e2, "Selection (CSV)", lambda: export.to_csv_bytes(frame()), f"{name}_selection.csv", CSV,
            "ex_dl_sel_csv", f"The selected clips' embeddings in {s.label()}")


def _word_colors(view: ViewSettings) -> dict[str, str] | None:
    from embedviz.figures import word_colors

    if view.color_by != "word":
        return None
    try:
        return word_colors(cached.words_table(view.dataset)["word"])
    except EmbedvizError:
        return None
