"""Exports of what a view shows: embeddings, projected coordinates, metrics, figures.

Everything here returns bytes (or writes a folder), so the app offers it as downloads and
scripts can write it to disk; the files need nothing from embedviz to be read again:

* :func:`embeddings_frame` / :func:`read_embeddings`: one row per clip, the metadata
  columns ``clip_id, path, word, speaker, source, predicted_word, model, layers, pooling``
  then one float column per embedding dimension (``e0``, ``e1``, ...). The same frame
  goes to Parquet (float32, exact) and CSV (shortest round-trip text of each float32, so
  reading it back gives the same numbers); a box/lasso selection is exported as its rows
  (:func:`select_clips`).
* :func:`coordinates_frame`: every panel's projected points as drawn (aligned panels
  with their alignment), long format.
* A user's own clip (:class:`OwnClipPoint`), when one is placed, is one more row of the
  embeddings and of each panel's coordinates, marked ``source = "own clip"`` (stored
  clips: ``"dataset"``), with an empty ``word`` and ``speaker`` (nobody said which word it
  is) and the panel's k-NN vote in ``predicted_word``; the figures draw it as a star.
* :func:`metrics_frame`: one row per panel with the numbers under its plot.
* :func:`figures_zip` / :func:`write_figures`: each figure as a standalone HTML file with
  ``plotly.min.js`` written **once** beside them (Plotly's ``include_plotlyjs="directory"``),
  plus an ``index.html``; the files open offline and keep Plotly's toolbar with its
  "download plot as PNG" button. (Inlining plotly.js would copy 4.8 MB into every file;
  a CDN link would not open offline.)

Pure library code (no Streamlit).
"""

from __future__ import annotations

import html
import io
import logging
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from embedviz.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from embedviz.views import PanelData

log = logging.getLogger(__name__)

#: Metadata columns of an embeddings export, in file order (then ``e0``, ``e1``, ...).
META_COLUMNS: tuple[str, ...] = (
    "clip_id", "path", "word", "speaker", "source", "predicted_word", "model", "layers", "pooling",
)
#: ``source`` of a stored clip and of the user's own clip.
SOURCE_DATASET, SOURCE_OWN = "dataset", "own clip"
#: ``clip_id`` prefix of the user's own clip (a stored clip's id is ``word/file``, never this).
OWN_CLIP_PREFIX = "own clip: "
#: Prefix of the embedding columns.
DIM_PREFIX = "e"
#: The one copy of plotly.js in a figure file set (what ``include_plotlyjs="directory"`` links to).
PLOTLY_JS = "plotly.min.js"
#: Plotly config of exported figures: the toolbar stays, with its PNG button, without the logo
#: and without "Share chart..." (it uploads to Plotly's cloud; these files are for offline use).
FIGURE_CONFIG: dict[str, object] = {
    "displaylogo": False, "showSendToCloud": False, "toImageButtonOptions": {"format": "png", "scale": 2},
}


def _dim_columns(d: int) -> list[str]:
    return [f"{DIM_PREFIX}{i}" for i in range(d)]


@dataclass(frozen=True)
class OwnClipPoint:
    """The user's own clip as placed on one panel (:mod:`embedviz.placement`), for the exports.

    ``name``: the uploaded file's name (or ``recording.wav``); ``predicted_word``: the
    panel's k-NN vote; ``vector``: the clip in the panel's space (one layer's pooled
    vector, or the layers joined as the panel joins the stored ones:
    :func:`embedviz.placement.panel_vector`); ``coords``: its point in the panel's
    picture (2 or 3 numbers, aligned as drawn). Either may be None (not exported then).
    """

    name: str
    predicted_word: str = ""
    vector: np.ndarray | None = None
    coords: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("an own clip needs a name (the uploaded file's name)")
        for what, value in (("vector", self.vector), ("coords", self.coords)):
            if value is not None and (np.ndim(value) != 1 or not np.isfinite(np.asarray(value, np.float64)).all()):
                raise ConfigError(f"an own clip's {what} must be one row of finite numbers, got shape {np.shape(value)}")
        if self.coords is not None and len(self.coords) not in (2, 3):
            raise ConfigError(f"an own clip's coords need 2 or 3 numbers, got {len(self.coords)}")

    @property
    def clip_id(self) -> str:
        """Its ``clip_id`` in the exports (never a stored clip's ``word/file`` id)."""
        return OWN_CLIP_PREFIX + self.name

    def meta(self) -> dict[str, str]:
        """Its metadata columns: no word or speaker (unknown), the vote in ``predicted_word``."""
        return {"clip_id": self.clip_id, "path": self.name, "word": "", "speaker": "", "source": SOURCE_OWN,
                "predicted_word": self.predicted_word}


def _clip_meta(clips: pd.DataFrame, own: OwnClipPoint | None) -> pd.DataFrame:
    """clip_id, path, word, speaker, source, predicted_word of the stored clips (then the own clip)."""
    missing = [c for c in ("clip_id", "path", "word", "speaker") if c not in clips]
    if missing:
        raise ConfigError(f"the clip table has no column(s) {', '.join(missing)}")
    meta = pd.DataFrame(
        {
            "clip_id": clips["clip_id"].astype(str).to_numpy(),
            "path": clips["path"].astype(str).to_numpy(),
            "word": clips["word"].astype(str).to_numpy(),
            "speaker": clips["speaker"].astype(str).to_numpy(),
            "source": SOURCE_DATASET,
            "predicted_word": "",
        }
    )
    if own is None:
        return meta
    return pd.concat([meta, pd.DataFrame([own.meta()])], ignore_index=True)


def embeddings_frame(
    X: np.ndarray,
    clips: pd.DataFrame,
    *,
    model: str = "",
    layers: Sequence[str] = (),
    pooling: str = "",
    own: OwnClipPoint | None = None,
) -> pd.DataFrame:
    """The vectors ``X`` (row ``i`` = ``clips.iloc[i]``) with their clips' metadata, one column per dim.

    ``own``: the user's own clip placed on this panel, appended as the last row
    (``source = "own clip"``); without a ``vector`` it is left out.

    Raises:
        ConfigError: ``X`` is not 2-D, its rows do not match ``clips``, or the own clip's
            vector has another width.
    """
    arr = np.asarray(X)
    if arr.ndim != 2 or arr.shape[0] != len(clips):
        raise ConfigError(f"{len(clips)} clips but embeddings of shape {arr.shape}")
    if own is not None and own.vector is None:
        own = None
    if own is not None:
        vector = np.asarray(own.vector)
        if vector.shape != (arr.shape[1],):
            raise ConfigError(f"the own clip's vector has {vector.size} dims, the panel's embeddings {arr.shape[1]}")
        arr = np.vstack([arr.astype(np.float32, copy=False), vector.astype(np.float32)[None, :]])
    meta = _clip_meta(clips, own).assign(model=model, layers="+".join(layers), pooling=pooling)
    dims = pd.DataFrame(arr.astype(np.float32, copy=False), columns=_dim_columns(arr.shape[1]))
    return pd.concat([meta, dims], axis=1)


def read_embeddings(frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """``(X float32, clips)`` back from an :func:`embeddings_frame` (read from Parquet or CSV).

    Raises:
        ConfigError: the frame has no embedding columns.
    """
    dims = [c for c in frame.columns if re.fullmatch(rf"{DIM_PREFIX}\d+", str(c))]
    if not dims:
        raise ConfigError(f"no embedding columns ({DIM_PREFIX}0, {DIM_PREFIX}1, ...) in the file")
    dims.sort(key=lambda c: int(str(c)[len(DIM_PREFIX):]))
    X = frame[dims].to_numpy(dtype=np.float32)
    meta = frame[[c for c in frame.columns if c not in set(dims)]].reset_index(drop=True)
    return X, meta


def select_clips(frame: pd.DataFrame, clip_ids: Sequence[str]) -> pd.DataFrame:
    """The rows of ``frame`` whose ``clip_id`` is in ``clip_ids`` (the frame's order kept)."""
    wanted = set(map(str, clip_ids))
    return frame[frame["clip_id"].astype(str).isin(wanted)].reset_index(drop=True)


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as a Parquet file (float32 columns stay float32)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as UTF-8 CSV. A float32 column is written as the shortest text that reads
    back to the same float32 (pandas' default), so an embeddings CSV round-trips exactly."""
    return frame.to_csv(index=False).encode("utf-8")


# ---------------------------------------------------------------------- panels


@dataclass(frozen=True)
class ExportPanel:
    """One drawn panel: which model and layers, its :class:`~embedviz.views.PanelData`, and the
    coordinates as drawn (after alignment; ``None``: the panel's own)."""

    model: str
    layers: tuple[str, ...]
    pooling: str
    data: "PanelData"
    coords: np.ndarray | None = None
    #: The user's own clip on this panel (its ``coords`` as drawn), or None.
    own: OwnClipPoint | None = None

    def __post_init__(self) -> None:
        if not self.layers:
            raise ConfigError("an exported panel needs at least one layer")
        shown = self.shown_coords
        if shown.ndim != 2 or shown.shape[0] != len(self.data.clips):
            raise ConfigError(f"{len(self.data.clips)} clips but coordinates of shape {shown.shape}")
        if self.own is not None and self.own.coords is not None and len(self.own.coords) != shown.shape[1]:
            raise ConfigError(f"the own clip has {len(self.own.coords)} coordinates, the panel {shown.shape[1]}")

    @property
    def shown_coords(self) -> np.ndarray:
        return np.asarray(self.data.coords if self.coords is None else self.coords)

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        """``(model, layers)``: the panel's name in the app."""
        return self.model, self.layers

    def without_words(self, words: Sequence[str]) -> "ExportPanel":
        """The panel with the clips of ``words`` left out (the words hidden in every plot)."""
        from dataclasses import replace

        if not words:
            return self
        keep = ~self.data.clips["word"].astype(str).isin(set(map(str, words))).to_numpy()
        data = replace(self.data, coords=np.asarray(self.data.coords)[keep],
                       clips=self.data.clips[keep].reset_index(drop=True))
        return replace(self, data=data, coords=None if self.coords is None else np.asarray(self.coords)[keep])


def coordinates_frame(panels: Sequence[ExportPanel]) -> pd.DataFrame:
    """Every panel's points as drawn: model, layers, pooling, projection, clip_id, path, word,
    speaker, source, predicted_word, x, y (and z in 3D); one row per clip per panel, and
    the user's own clip as the last row of each panel it is placed on."""
    frames = []
    for p in panels:
        coords = p.shown_coords
        own = p.own if p.own is not None and p.own.coords is not None else None
        if own is not None:
            coords = np.vstack([coords, np.asarray(own.coords, dtype=np.float64)[None, :]])
        axes = {name: coords[:, i].astype(np.float64) for i, name in enumerate("xyz"[: coords.shape[1]])}
        meta = _clip_meta(p.data.clips, own)
        frames.append(
            pd.concat(
                [pd.DataFrame({"model": p.model, "layers": "+".join(p.layers), "pooling": p.pooling,
                               "projection": p.data.projection}, index=meta.index), meta, pd.DataFrame(axes)],
                axis=1,
            )
        )
    if not frames:
        return pd.DataFrame(columns=["model", "layers", "clip_id", "x", "y"])
    return pd.concat(frames, ignore_index=True)


def metrics_frame(panels: Sequence[ExportPanel]) -> pd.DataFrame:
    """One row per panel: the numbers under its plot and the clip counts they used."""
    rows = []
    for p in panels:
        d = p.data
        rows.append(
            {
                "model": p.model, "layers": "+".join(p.layers), "pooling": p.pooling, "projection": d.projection,
                "clips": d.n_clips, "clips_missing": d.n_missing,
                "knn_accuracy": d.knn, "knn_n": d.knn_n or d.n_clips,
                "silhouette": d.silhouette, "silhouette_n": d.silhouette_n or d.n_clips,
                "chance": d.chance, "trustworthiness": d.trust, "trustworthiness_n": d.trust_n or d.n_clips,
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- figures


def panel_figures(
    panels: Sequence[ExportPanel],
    model_labels: Mapping[tuple[str, tuple[str, ...]], str] | None = None,
    *,
    color_by: str = "word",
    colors: Mapping[str, str] | None = None,
) -> dict[str, "go.Figure"]:
    """Title -> scatter figure of each panel as drawn (with the user's own clip as a star
    where :attr:`ExportPanel.own` has its coordinates).

    ``model_labels`` maps a panel's :attr:`ExportPanel.key` to the model's display name.
    """
    from embedviz.figures import add_own_clip, scatter_figure, title_for

    out: dict[str, "go.Figure"] = {}
    for p in panels:
        label = (model_labels or {}).get(p.key, p.model)
        title = title_for(label, "+".join(p.layers), p.pooling, p.data.projection or "")
        clips = p.data.clips
        fig = scatter_figure(p.shown_coords, clips["clip_id"], clips["word"], clips["speaker"],
                             color_by=color_by, title=title, colors=colors)  # type: ignore[arg-type]
        if p.own is not None and p.own.coords is not None:
            hover = f"your clip ({p.own.name})" + (f": k-NN vote {p.own.predicted_word}" if p.own.predicted_word else "")
            add_own_clip(fig, p.own.coords, hover=hover)
        out[title] = fig
    return out


def safe_name(text: str, used: set[str] | None = None) -> str:
    """A file name stem from ``text`` (letters, digits, ``-_.``), unique within ``used``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "figure"
    stem = stem[:120]
    if used is not None:
        base, i = stem, 2
        while stem.lower() in used:
            stem, i = f"{base}_{i}", i + 1
        used.add(stem.lower())
    return stem


def figure_files(figures: Mapping[str, "go.Figure"]) -> dict[str, bytes]:
    """File name -> content of a figure file set: one HTML file per figure (linking
    ``plotly.min.js`` beside it), ``plotly.min.js`` once, and an ``index.html`` listing them.

    Raises:
        ConfigError: no figures.
    """
    from plotly.offline import get_plotlyjs

    if not figures:
        raise ConfigError("no figures to export: extract and draw at least one panel first")
    files: dict[str, bytes] = {}
    used: set[str] = {"index", "plotly.min"}
    links = []
    for title, fig in figures.items():
        name = safe_name(title, used) + ".html"
        page = fig.to_html(include_plotlyjs="directory", full_html=True, config=FIGURE_CONFIG)
        files[name] = page.encode("utf-8")
        links.append(f'<li><a href="{html.escape(name)}">{html.escape(title)}</a></li>')
    files[PLOTLY_JS] = get_plotlyjs().encode("utf-8")
    files["index.html"] = (
        "<!doctype html><html><head><meta charset='utf-8'><title>embedviz figures</title></head><body>"
        "<h1>embedviz figures</h1><p>Each page opens offline (plotly.min.js is in this folder). "
        "The camera icon in a plot's toolbar saves it as PNG.</p><ul>" + "".join(links) + "</ul></body></html>"
    ).encode("utf-8")
    return files


def figures_zip(figures: Mapping[str, "go.Figure"]) -> bytes:
    """:func:`figure_files` as a zip (unzip and open ``index.html``)."""
    return zip_files(figure_files(figures))


def write_figures(figures: Mapping[str, "go.Figure"], folder: str | Path) -> list[Path]:
    """Write :func:`figure_files` into ``folder`` (created). Returns the paths written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in figure_files(figures).items():
        path = out / name
        path.write_bytes(content)
        written.append(path)
    log.info("wrote %d figure files to %s", len(written), out)
    return written


def zip_files(files: Mapping[str, bytes]) -> bytes:
    """Several export files in one zip (name -> content)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buffer.getvalue()


__all__ = [
    "DIM_PREFIX",
    "ExportPanel",
    "FIGURE_CONFIG",
    "META_COLUMNS",
    "OWN_CLIP_PREFIX",
    "OwnClipPoint",
    "PLOTLY_JS",
    "SOURCE_DATASET",
    "SOURCE_OWN",
    "coordinates_frame",
    "embeddings_frame",
    "figure_files",
    "figures_zip",
    "metrics_frame",
    "panel_figures",
    "read_embeddings",
    "safe_name",
    "select_clips",
    "to_csv_bytes",
    "to_parquet_bytes",
    "write_figures",
    "zip_files",
]
