"""Explore's "Your own clip": upload or record a word and see where each model puts it.

Only the user's clip goes through the models (one forward pass per chosen model, cached
by the clip's content hash; every pooling comes from that pass). On every drawn panel it
is placed on the panel's fitted projection (``Projection.transform``: PCA exactly, t-SNE
with openTSNE's transform, UMAP's transform; aligned panels move it with them), drawn as
a star labelled "your clip", and listed with its nearest stored clips and their k-NN
vote. The numbers come from :mod:`embedviz.placement`; this module caches and renders.

The page calls :func:`placed` before it draws the plots (the star goes into them) and
:func:`render_own_clip` after them; the clip comes from the widgets' session state, so
both see the same clip in the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import streamlit as st

from embedviz import limits
from embedviz.errors import ConfigError, EmbedvizError
from embedviz.hashing import digest
from embedviz.viewstate import ViewSettings
from ui import cached, widgets
from ui.exports import Shown, shown_panels

MODE_KEY, UPLOAD_KEY, RECORD_KEY, PANEL_KEY = "own_mode", "own_upload", "own_record", "own_panel"
MODES = {"upload": "Upload a file", "record": "Record"}
AUDIO_TYPES = ["wav", "flac", "ogg", "mp3"]
#: Neighbours that vote (the panels' k-NN accuracy uses 5 as well).
K = 5


@dataclass(frozen=True)
class OwnClip:
    """The user's clip and where it landed: panel ``(model, layers)`` -> PanelPlacement."""

    name: str
    data: bytes
    digest: str
    mime: str = "audio/wav"
    placed: dict[tuple[str, tuple[str, ...]], Any] = field(default_factory=dict)
    labels: dict[tuple[str, tuple[str, ...]], str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    #: Panel -> the clip's vector in the panel's space (what the embeddings export writes).
    vectors: dict[tuple[str, tuple[str, ...]], Any] = field(default_factory=dict)

    def points(self) -> dict[tuple[str, tuple[str, ...]], list[float]]:
        """Panel -> the clip's coordinates there (what the plots draw as a star)."""
        return {key: [float(v) for v in p.coords] for key, p in self.placed.items()}

    def export_point(self, key: tuple[str, tuple[str, ...]]) -> Any:
        """The clip on panel ``key`` for :mod:`embedviz.export` (None: not placed there)."""
        from embedviz.export import OwnClipPoint

        p = self.placed.get(key)
        if p is None:
            return None
        return OwnClipPoint(self.name or "own clip", p.placement.vote.predicted, self.vectors.get(key), p.coords)


def _chosen_file() -> tuple[str, bytes, str] | None:
    """``(name, bytes, MIME type)`` of the upload or recording the widgets hold (None: nothing yet).

    Raises:
        ConfigError: the file is larger than ``$EMBEDVIZ_MAX_UPLOAD_MB``.
    """
    mode = st.session_state.get(MODE_KEY) or "upload"
    file = st.session_state.get(RECORD_KEY if mode == "record" else UPLOAD_KEY)
    if file is None:
        return None
    limits.check_upload(int(file.size))
    return (file.name or "recording.wav"), file.getvalue(), (file.type or "audio/wav")


@st.cache_data(show_spinner=False, max_entries=16)
def _clip_rows(model: str, whisper_mode: str, init_seed: int, clip_digest: str, name: str, _data: bytes) -> list[dict]:
    """The clip's store rows for one model (one forward pass); keyed by the clip's content hash."""
    from embedviz.placement import clip_rows, load_clip

    extractor = cached.extractor(model, whisper_mode, init_seed)
    wave = load_clip(_data, extractor.sample_rate, name=name)
    return clip_rows(extractor, wave)


@st.cache_data(show_spinner=False, max_entries=128)
def _placement(sel: cached.LayerSelection, reduction: Any, clip_digest: str, aligned_with: tuple, index: int,
               _rows: list[dict]) -> Any:
    """The clip on one panel (:func:`embedviz.placement.place_in_panel`)."""
    from embedviz.placement import place_in_panel, pool_rows

    vectors = pool_rows(_rows, sel.pooling, sel.layers)
    blocks, clips = cached.layer_blocks(sel)
    aligned = None
    if aligned_with:
        before = cached.panel(sel, reduction).coords
        aligned = (before, cached.aligned_coords(aligned_with, reduction)[index])
    return place_in_panel(blocks, clips, cached.projection(sel, reduction), [vectors[layer] for layer in sel.layers],
                          k=K, layer="+".join(sel.layers), aligned=aligned)


@st.cache_data(show_spinner=False, max_entries=128)
def _panel_vector(sel: cached.LayerSelection, clip_digest: str, _rows: list[dict]) -> Any:
    """The clip in one panel's space (:func:`embedviz.placement.panel_vector`), for the exports."""
    from embedviz.placement import panel_vector, pool_rows

    vectors = pool_rows(_rows, sel.pooling, sel.layers)
    blocks, _ = cached.layer_blocks(sel)
    return panel_vector(blocks, [vectors[layer] for layer in sel.layers])


def placed(view: ViewSettings, status: dict, panels: list[tuple[str, list]]) -> OwnClip | None:
    """The user's clip placed on every drawn panel (None when no clip was given).

    Errors (a file that cannot be decoded, too long, a model that fails) are collected in
    ``errors`` for :func:`render_own_clip` to show; panels that cannot be placed are left out.
    """
    try:
        chosen = _chosen_file()
    except ConfigError as error:
        return OwnClip("", b"", "", errors=(str(error),))
    if chosen is None:
        return None
    name, data, mime = chosen
    clip_digest = digest(data)
    found: dict[tuple[str, tuple[str, ...]], Any] = {}
    labels: dict[tuple[str, tuple[str, ...]], str] = {}
    vectors: dict[tuple[str, tuple[str, ...]], Any] = {}
    errors: list[str] = []
    rows: dict[str, list[dict] | None] = {}
    shown: list[Shown] = shown_panels(view, status, panels)
    reduction = view.reduction_settings()
    for s in shown:
        if s.model not in rows:
            try:
                with st.spinner(f"Running {cached.model_label(s.model)} on your clip…"):
                    rows[s.model] = _clip_rows(s.model, view.whisper_mode, view.init_seed, clip_digest, name, data)
            except EmbedvizError as error:
                rows[s.model] = None
                errors.append(f"{cached.model_label(s.model)}: {error}")
        if rows[s.model] is None:
            continue
        try:
            found[s.key] = _placement(s.sel, reduction, clip_digest, s.aligned_with, s.index, rows[s.model])
            vectors[s.key] = _panel_vector(s.sel, clip_digest, rows[s.model])
            labels[s.key] = s.label()
        except EmbedvizError as error:
            errors.append(f"{s.label()}: {error}")
    return OwnClip(name, data, clip_digest, mime, found, labels, tuple(dict.fromkeys(errors)), vectors)


def _votes_table(own: OwnClip) -> pd.DataFrame:
    rows = []
    for key, p in own.placed.items():
        vote, nn = p.placement.vote, p.placement.neighbours
        rows.append({
            "panel": own.labels[key],
            "predicted word": vote.predicted,
            "share of votes": f"{round(vote.share * vote.k)} of {vote.k} ({vote.share:.0%})",
            "nearest clip": f"{nn.iloc[0]['word']} · {nn.iloc[0]['speaker']}" if len(nn) else "—",
            "similarity": f"{float(nn.iloc[0]['similarity']):.3f}" if len(nn) else "—",
        })
    return pd.DataFrame(rows)


def render_own_clip(view: ViewSettings, status: dict, panels: list[tuple[str, list]]) -> None:
    """Upload or record a clip; its k-NN vote per panel and its nearest stored clips (playable)."""
    st.caption(
        f"Say a word and see where each model puts it. Only your clip runs through the models; it is placed on "
        f"every plot above as a ★ labelled *your clip*, and its {K} nearest stored clips (cosine similarity in "
        "the layer's own space, not in the picture) vote for a word."
    )
    st.session_state.setdefault(MODE_KEY, "upload")
    mode = st.segmented_control("Your clip from", list(MODES), format_func=MODES.get, key=MODE_KEY, required=True)
    cap = f"At most {limits.max_upload_seconds()} s and {limits.max_upload_bytes() // (1024 * 1024)} MB " \
          "(EMBEDVIZ_MAX_UPLOAD_SECONDS, EMBEDVIZ_MAX_UPLOAD_MB)."
    if mode == "record":
        st.audio_input("Record a word", key=RECORD_KEY, sample_rate=16000, help=cap)
    else:
        st.file_uploader("Audio file (wav, flac, ogg, mp3)", type=AUDIO_TYPES, key=UPLOAD_KEY, help=cap,
                         max_upload_size=max(1, limits.max_upload_bytes() // (1024 * 1024)))
    own = placed(view, status, panels)
    if own is None:
        st.caption("No clip yet. " + cap)
        return
    for message in own.errors:
        st.error(message)
    if not own.data:
        return
    st.audio(own.data, format=own.mime)
    if not own.placed:
        st.info("Your clip is not placed: no panel is drawn yet (extract first), or every model failed above.")
        return
    st.markdown("**k-NN vote per panel** (the word most of its nearest stored clips say)")
    st.table(_votes_table(own).set_index("panel"))
    keys = list(own.placed)
    key = st.selectbox("Nearest stored clips in", keys, format_func=own.labels.get, key=PANEL_KEY)
    p = own.placed[key].placement
    for _, row in p.neighbours.iterrows():
        widgets.clip_card(row, caption=f"similarity {row['similarity']:.3f}")


__all__ = ["OwnClip", "placed", "render_own_clip"]
