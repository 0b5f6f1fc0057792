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
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from embedviz.audio import AUDIO_EXTENSIONS, load_audio
from embedviz.errors import AudioLoadError, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from embedviz.extractors.base import Extractor
    from embedviz.reduction import Projection

logger = logging.getLogger(__name__)

#: Defaults of the upload limits (overridable by environment variables, see :func:`upload_limits`).
DEFAULT_MAX_UPLOAD_SECONDS = 30.0
DEFAULT_MAX_UPLOAD_MB = 20.0
#: Rows of the stored matrix compared with the clip at a time (bounds memory on big stores).
_CHUNK_ROWS = 16384


@dataclass(frozen=True)
class UploadLimits:
    """How long and how large an uploaded or recorded clip may be."""

    max_seconds: float = DEFAULT_MAX_UPLOAD_SECONDS
    max_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)

    def __post_init__(self) -> None:
        if not (0.1 <= float(self.max_seconds) <= 600):
            raise ConfigError(f"max upload seconds must be between 0.1 and 600, got {self.max_seconds!r}")
        if not isinstance(self.max_bytes, int) or self.max_bytes < 1024:
            raise ConfigError(f"max upload bytes must be an integer >= 1024, got {self.max_bytes!r}")


def upload_limits() -> UploadLimits:
    """Limits from ``$EMBEDVIZ_MAX_UPLOAD_SECONDS`` and ``$EMBEDVIZ_MAX_UPLOAD_MB`` (the one place read).

    Raises:
        ConfigError: a variable is set to something that is not a number in range.
    """

    def number(name: str, default: float) -> float:
        raw = os.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            return float(raw)
        except ValueError as exc:
            raise ConfigError(f"${name} must be a number, got {raw!r}") from exc

    seconds = number("EMBEDVIZ_MAX_UPLOAD_SECONDS", DEFAULT_MAX_UPLOAD_SECONDS)
    megabytes = number("EMBEDVIZ_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB)
    return UploadLimits(max_seconds=seconds, max_bytes=int(megabytes * 1024 * 1024))


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


def embed_clip(extractor: "Extractor", waveform: np.ndarray, pooling: str, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """One forward pass of ``waveform`` (mono float32 at ``extractor.sample_rate``): layer -> pooled vector.

    Pooled by the pipeline's own row builder, so the vectors equal what the store would hold
    for this clip.

    Raises:
        ConfigError: an unknown pooling or layer.
        ExtractionError: the forward pass failed.
    """
    from embedviz.pipeline import _rows_for
    from embedviz.pooling import parse_pooling, select

    p = parse_pooling(pooling)
    wanted = list(layers) if layers else list(extractor.layer_names)
    unknown = [layer for layer in wanted if layer not in extractor.layer_names]
    if unknown:
        raise ConfigError(
            f"{extractor.info.name} has no layer {', '.join(unknown)}; it has {', '.join(extractor.layer_names)}"
        )
    clip = pd.Series({"clip_key": "own-clip", "clip_id": "own-clip", "path": "", "word": "", "speaker": ""})
    rows = _rows_for(extractor, [(clip, np.asarray(waveform, dtype=np.float32))])
    out: dict[str, np.ndarray] = {}
    for row in rows:
        if row["layer"] not in wanted:
            continue
        stored = dict(row)
        stored["grid"] = np.asarray(row["grid"]).reshape(int(row["grid_steps"]), -1)
        out[row["layer"]] = select(stored, p)
    return out


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


def default_layer(layers: Sequence[str]) -> str:
    """The layer ``nearest`` uses when none is given: the model's last layer.

    (The catalogue records no best-known layer per model, so the last one is the honest default.)
    """
    if not layers:
        raise ConfigError("the model has no layers")
    return str(layers[-1])


__all__ = [
    "Placement",
    "UploadLimits",
    "Vote",
    "cosine_similarities",
    "default_layer",
    "embed_clip",
    "load_clip",
    "nearest_stored",
    "place_clip",
    "place_on",
    "upload_limits",
    "vote",
]
