"""Your own clip on the map: embed one new clip, find its nearest stored clips, vote, place it.

The clip goes through the same steps as a stored clip: :func:`embedviz.audio.load_audio`
validates, downmixes and resamples it; one forward pass of an already-loaded
:class:`~embedviz.extractors.base.Extractor` gives every layer; the pipeline's own
row-building code (:func:`embedviz.pipeline._rows_for`, which calls
:func:`embedviz.pooling.pool_frames`) pools it, so a placed clip and a stored clip are
pooled by the same code and are directly comparable.

Against the stored vectors of one layer, :func:`nearest_stored` ranks clips by cosine
similarity (in row chunks, never an ``n x n`` matrix) and :func:`vote` gives the k-NN
word: the most frequent word among the ``k`` nearest, a tie going to the tied word whose
member is nearest (the same rule as :func:`embedviz.metrics.knn_predict`).
:func:`place_on` puts the vector on a fitted :class:`~embedviz.reduction.Projection`.

The app places a clip on each of its panels with :func:`place_in_panel`: the panel's
layers (one, or several joined like the stored ones by :func:`panel_vector`), its
neighbours and vote in that space, and its point on the panel's projection, moved like
the panel when panels are aligned (:func:`follow_alignment`). The app runs only the
user's clip through the model, once per model (:func:`clip_rows`); every pooling comes
from those rows (:func:`pool_rows`).
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from embedviz import limits as _limits
from embedviz.audio import AUDIO_EXTENSIONS, load_audio
from embedviz.errors import AudioLoadError, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from embedviz.extractors.base import Extractor
    from embedviz.reduction import Projection

logger = logging.getLogger(__name__)

#: Rows of the stored matrix compared with the clip at a time (bounds memory on big stores).
_CHUNK_ROWS = 16384


@dataclass(frozen=True)
class UploadLimits:
    """How long and how large an uploaded or recorded clip may be (defaults: :mod:`embedviz.limits`)."""

    max_seconds: float = float(_limits.DEFAULTS["EMBEDVIZ_MAX_UPLOAD_SECONDS"])
    max_bytes: int = _limits.DEFAULTS["EMBEDVIZ_MAX_UPLOAD_MB"] * 1024 * 1024

    def __post_init__(self) -> None:
        if not (0.1 <= float(self.max_seconds) <= 3600):
            raise ConfigError(f"max upload seconds must be between 0.1 and 3600, got {self.max_seconds!r}")
        if not isinstance(self.max_bytes, int) or self.max_bytes < 1024:
            raise ConfigError(f"max upload bytes must be an integer >= 1024, got {self.max_bytes!r}")


def upload_limits() -> UploadLimits:
    """The configured caps (``$EMBEDVIZ_MAX_UPLOAD_SECONDS``, ``$EMBEDVIZ_MAX_UPLOAD_MB``), read by
    :mod:`embedviz.limits`, the one place the caps are read (a bad value falls back to the default there)."""
    return UploadLimits(max_seconds=float(_limits.max_upload_seconds()), max_bytes=_limits.max_upload_bytes())


def load_clip(
    source: str | Path | bytes,
    sample_rate: int,
    *,
    name: str = "uploaded clip",
    limits: UploadLimits | None = None,
) -> np.ndarray:
    """Decode and validate a clip (a file path, or the bytes of an upload or recording).

    Longer clips than ``limits.max_seconds`` are rejected rather than cut: a user who
    uploads a 5-minute file should hear why, not get a vector of its first 30 s.

    Raises:
        AudioLoadError: too large, too long, or anything :func:`~embedviz.audio.load_audio` rejects.
    """
    from embedviz.audio import audio_info

    limits = limits or upload_limits()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > limits.max_bytes:
            raise AudioLoadError(
                name, f"{len(data) / 1e6:.1f} MB is larger than the {limits.max_bytes / 1e6:.1f} MB limit "
                "($EMBEDVIZ_MAX_UPLOAD_MB); upload a shorter clip"
            )
        suffix = Path(name).suffix.lower()
        suffix = suffix if suffix in AUDIO_EXTENSIONS else ".wav"
        with tempfile.TemporaryDirectory(prefix="embedviz-clip-") as tmp:
            path = Path(tmp) / f"clip{suffix}"
            path.write_bytes(data)
            try:
                return _load_checked(path, sample_rate, limits, audio_info)
            except AudioLoadError as exc:
                raise AudioLoadError(name, exc.reason) from exc
    path = Path(source)
    if path.is_file() and path.stat().st_size > limits.max_bytes:
        raise AudioLoadError(
            path, f"{path.stat().st_size / 1e6:.1f} MB is larger than the {limits.max_bytes / 1e6:.1f} MB limit "
            "($EMBEDVIZ_MAX_UPLOAD_MB)"
        )
    return _load_checked(path, sample_rate, limits, audio_info)


def _load_checked(path: Path, sample_rate: int, limits: UploadLimits, audio_info) -> np.ndarray:  # type: ignore[no-untyped-def]
    info = audio_info(path)
    if info.duration > limits.max_seconds:
        raise AudioLoadError(
            path, f"{info.duration:.1f} s is longer than the {limits.max_seconds:g} s limit "
            "($EMBEDVIZ_MAX_UPLOAD_SECONDS); trim it to the word"
        )
    return load_audio(path, sample_rate, max_seconds=limits.max_seconds)


def clip_rows(extractor: "Extractor", waveform: np.ndarray) -> list[dict[str, Any]]:
    """One forward pass of ``waveform`` (mono float32 at ``extractor.sample_rate``): the store
    rows of every layer, built by the pipeline's own row builder (every pooling can be taken
    from them with :func:`pool_rows`, so changing the pooling needs no new forward pass).

    Raises:
        ExtractionError: the forward pass failed.
    """
    from embedviz.pipeline import _rows_for

    clip = pd.Series({"clip_key": "own-clip", "clip_id": "own-clip", "path": "", "word": "", "speaker": ""})
    return _rows_for(extractor, [(clip, np.asarray(waveform, dtype=np.float32))])


def pool_rows(
    rows: Sequence[Mapping[str, Any]], pooling: str, layers: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Layer -> pooled vector of :func:`clip_rows` rows, pooled as the store pools its clips.

    Raises:
        ConfigError: an unknown pooling or a layer the rows do not have.
    """
    from embedviz.pooling import parse_pooling, select

    p = parse_pooling(pooling)
    names = [str(row["layer"]) for row in rows]
    wanted = list(layers) if layers else names
    unknown = [layer for layer in wanted if layer not in names]
    if unknown:
        raise ConfigError(f"the model has no layer {', '.join(unknown)}; it has {', '.join(names)}")
    out: dict[str, np.ndarray] = {}
    for row in rows:
        if row["layer"] not in wanted:
            continue
        stored = dict(row)
        stored["grid"] = np.asarray(row["grid"]).reshape(int(row["grid_steps"]), -1)
        out[str(row["layer"])] = select(stored, p)
    return out


def embed_clip(extractor: "Extractor", waveform: np.ndarray, pooling: str, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """One forward pass of ``waveform`` (mono float32 at ``extractor.sample_rate``): layer -> pooled vector.

    Pooled by the pipeline's own row builder, so the vectors equal what the store would hold
    for this clip.

    Raises:
        ConfigError: an unknown pooling or layer.
        ExtractionError: the forward pass failed.
    """
    wanted = list(layers) if layers else list(extractor.layer_names)
    unknown = [layer for layer in wanted if layer not in extractor.layer_names]
    if unknown:
        raise ConfigError(
            f"{extractor.info.name} has no layer {', '.join(unknown)}; it has {', '.join(extractor.layer_names)}"
        )
    return pool_rows(clip_rows(extractor, waveform), pooling, wanted)


def cosine_similarities(X: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Cosine similarity of ``vector`` with every row of ``X`` (rows of zeros score 0), chunked."""
    X = np.asarray(X)
    v = np.asarray(vector, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or X.shape[1] != v.shape[0]:
        raise ConfigError(f"the clip's vector has {v.shape[0]} dims; the stored vectors have shape {X.shape}")
    if not np.isfinite(v).all():
        raise ConfigError("the clip's vector contains NaN or infinite values")
    vnorm = float(np.linalg.norm(v))
    sims = np.zeros(X.shape[0], dtype=np.float64)
    if vnorm == 0:
        return sims
    v = v / vnorm
    for start in range(0, X.shape[0], _CHUNK_ROWS):
        block = np.asarray(X[start : start + _CHUNK_ROWS], dtype=np.float64)
        norms = np.linalg.norm(block, axis=1)
        dots = block @ v
        sims[start : start + block.shape[0]] = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return sims


@dataclass(frozen=True)
class Vote:
    """The k-NN vote of a placed clip: the predicted word and its share of the ``k`` votes."""

    predicted: str
    share: float
    k: int


def vote(words: Sequence[str]) -> Vote:
    """Most frequent word of ``words`` (nearest first); a tie goes to the tied word seen first."""
    if len(words) == 0:
        raise ConfigError("no neighbours to vote: the store holds no clips for this layer")
    counts: dict[str, int] = {}
    for w in words:
        counts[str(w)] = counts.get(str(w), 0) + 1
    top = max(counts.values())
    winner = next(str(w) for w in words if counts[str(w)] == top)
    return Vote(predicted=winner, share=top / len(words), k=len(words))


@dataclass(frozen=True)
class Placement:
    """Where a clip lands among stored clips of one layer."""

    layer: str
    vote: Vote
    neighbours: pd.DataFrame  # clip_id, path, word, speaker, similarity (nearest first)

    def to_json(self) -> dict[str, object]:
        """``{"predicted", "share", "neighbours": [{"path", "word", "speaker", "similarity"}]}``."""
        return {
            "predicted": self.vote.predicted,
            "share": float(self.vote.share),
            "neighbours": [
                {"path": str(r.path), "word": str(r.word), "speaker": str(r.speaker), "similarity": float(r.similarity)}
                for r in self.neighbours.itertuples(index=False)
            ],
        }


def nearest_stored(X: np.ndarray, clips: pd.DataFrame, vector: np.ndarray, k: int = 5, *, layer: str = "") -> Placement:
    """The ``k`` stored clips most cosine-similar to ``vector`` and their vote.

    ``X[i]`` is the stored vector of ``clips.iloc[i]`` (columns clip_id, path, word, speaker).
    Equal similarities resolve by row order, so the answer is the same every run.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    if len(clips) != np.asarray(X).shape[0]:
        raise ConfigError(f"{np.asarray(X).shape[0]} stored vectors but {len(clips)} clips")
    sims = cosine_similarities(X, vector)
    kk = min(int(k), sims.shape[0])
    if kk == 0:
        raise ConfigError("no neighbours to vote: the store holds no clips for this layer")
    part = np.argpartition(-sims, kk - 1)[:kk] if kk < sims.shape[0] else np.arange(sims.shape[0])
    order = part[np.lexsort((part, -sims[part]))]
    table = clips.iloc[order][["clip_id", "path", "word", "speaker"]].reset_index(drop=True)
    table = table.assign(similarity=sims[order])
    return Placement(layer=layer, vote=vote(table["word"].astype(str).tolist()), neighbours=table)


def place_on(projection: "Projection", vector: np.ndarray) -> np.ndarray:
    """Coordinates of one vector on a fitted projection (``(k,)``; PCA exact, t-SNE/UMAP transform)."""
    coords = projection.transform(np.asarray(vector, dtype=np.float64).reshape(1, -1))
    return coords[0]


def place_clip(
    extractor: "Extractor",
    waveform: np.ndarray,
    stored: Mapping[str, tuple[np.ndarray, pd.DataFrame]],
    pooling: str,
    k: int = 5,
) -> dict[str, tuple[np.ndarray, Placement]]:
    """Embed ``waveform`` once and find its neighbours in every layer of ``stored``.

    ``stored`` maps layer -> (stored X, clips). Returns layer -> (the clip's vector, placement).
    """
    vectors = embed_clip(extractor, waveform, pooling, list(stored))
    return {
        layer: (vectors[layer], nearest_stored(X, clips, vectors[layer], k, layer=layer))
        for layer, (X, clips) in stored.items()
    }


def panel_vector(stored_blocks: Sequence[np.ndarray], vectors: Sequence[np.ndarray]) -> np.ndarray:
    """The clip's vector in a panel's space: one layer as it is, several layers joined as
    :func:`embedviz.reduction.concatenate_layers` joins the stored ones.

    Each of the clip's layer vectors is z-scored with the **stored** block's feature means and
    standard deviations and scaled by ``1/sqrt(width)``, so a stored clip's row here equals its
    row of the panel's concatenated matrix and the new clip is measured on the same scale.

    Raises:
        ConfigError: the numbers of blocks and vectors differ, or a width does not match.
    """
    if len(stored_blocks) != len(vectors) or not vectors:
        raise ConfigError(f"{len(vectors)} clip vector(s) for {len(stored_blocks)} stored layer block(s)")
    if len(vectors) == 1:
        return np.asarray(vectors[0], dtype=np.float64).reshape(-1)
    parts = []
    for i, (block, vector) in enumerate(zip(stored_blocks, vectors, strict=True)):
        arr = np.asarray(block, dtype=np.float64)
        v = np.asarray(vector, dtype=np.float64).reshape(-1)
        if arr.ndim != 2 or arr.shape[1] != v.shape[0]:
            raise ConfigError(
                f"layer {i}: the clip's vector has {v.shape[0]} dims; the stored block has shape {arr.shape}"
            )
        mean, std = arr.mean(axis=0), arr.std(axis=0)
        z = np.divide(v - mean, std, out=np.zeros_like(v), where=std > 0)
        parts.append(z / math.sqrt(arr.shape[1]))
    return np.concatenate(parts)


def follow_alignment(before: np.ndarray, after: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Move ``points`` of a panel the way its coordinates were moved from ``before`` to ``after``.

    The app rotates each panel onto the previous one (:func:`embedviz.reduction.align_procrustes`:
    centring, an orthogonal map, a shift, optionally a scale), which is an affine map. It is
    recovered here exactly by least squares on the panel's own points (``before`` -> ``after``)
    and applied to ``points`` (``(m, k)`` or ``(k,)``), so a placed clip lands on the aligned
    picture where it lands on the unaligned one.
    """
    A = np.asarray(before, dtype=np.float64)
    B = np.asarray(after, dtype=np.float64)
    if A.shape != B.shape or A.ndim != 2:
        raise ConfigError(f"aligned coordinates {B.shape} do not match the panel's {A.shape}")
    P = np.asarray(points, dtype=np.float64)
    flat = P.ndim == 1
    P = P.reshape(-1, A.shape[1])
    design = np.hstack([A, np.ones((A.shape[0], 1))])
    M, *_ = np.linalg.lstsq(design, B, rcond=None)
    moved = np.hstack([P, np.ones((P.shape[0], 1))]) @ M
    return moved[0] if flat else moved


@dataclass(frozen=True)
class PanelPlacement:
    """A clip placed on one panel: its coordinates in the picture and its stored neighbours."""

    coords: np.ndarray  # (k,) in the panel's picture (2D or 3D)
    placement: Placement


def place_in_panel(
    stored_blocks: Sequence[np.ndarray],
    clips: pd.DataFrame,
    projection: "Projection",
    vectors: Sequence[np.ndarray],
    *,
    k: int = 5,
    layer: str = "",
    aligned: tuple[np.ndarray, np.ndarray] | None = None,
) -> PanelPlacement:
    """Place a clip on one panel: its neighbours and vote in the panel's original space
    (cosine), and its point in the panel's fitted projection (``Projection.transform``).

    Args:
        stored_blocks: the panel's stored layer blocks (rows = ``clips``, as from
            :func:`embedviz.views.common_rows`).
        clips: the clips of those rows (clip_id, path, word, speaker).
        projection: the panel's fitted projection (of ``views.layer_matrix(stored_blocks)``).
        vectors: the clip's pooled vector of each layer, in the order of ``stored_blocks``.
        aligned: ``(coords before, coords after)`` when the panel is shown aligned onto
            another one; the clip's point follows the same map.
    """
    from embedviz.views import layer_matrix

    vector = panel_vector(stored_blocks, vectors)
    placement = nearest_stored(layer_matrix(list(stored_blocks)), clips, vector, k, layer=layer)
    coords = place_on(projection, vector).astype(np.float64)
    if aligned is not None:
        coords = follow_alignment(aligned[0], aligned[1], coords)
    return PanelPlacement(coords=coords, placement=placement)


def default_layer(layers: Sequence[str]) -> str:
    """The layer ``nearest`` uses when none is given: the model's last layer.

    (The catalogue records no best-known layer per model, so the last one is the honest default.)
    """
    if not layers:
        raise ConfigError("the model has no layers")
    return str(layers[-1])


__all__ = [
    "PanelPlacement",
    "Placement",
    "UploadLimits",
    "Vote",
    "clip_rows",
    "cosine_similarities",
    "default_layer",
    "embed_clip",
    "follow_alignment",
    "load_clip",
    "nearest_stored",
    "panel_vector",
    "place_clip",
    "place_in_panel",
    "place_on",
    "pool_rows",
    "upload_limits",
    "vote",
]
