"""What a view shows, computed once for the app, the CLI and the benchmarks.

A *view* is some layers of one model for a set of clips, with one pooling. This module
turns stored vectors into what the app's plots and tables show, so ``analyse``, the
benchmarks and the Streamlit pages get the same numbers from the same code:

* :func:`common_rows`: the layers' rows restricted to clips stored for all of them, in
  one order, matched by **clip key** (content hash), never by clip id;
* :func:`layer_matrix`: one layer, or several layers concatenated;
* :func:`panel_numbers` / :func:`project` / :func:`panel`: a plot's projection and its
  separability numbers (with the sample sizes of the capped ones);
* :func:`aligned_coords`: Procrustes-aligned panels;
* :func:`neighbours`, :func:`confusion`, :func:`cka_table`, :func:`analysis_table`;
* :func:`plan_projection` (re-exported from :mod:`embedviz.reduction`): what a
  projection would cost before it runs.

Every function is bounded in memory at any ``n`` (see the caps in :mod:`embedviz.metrics`
and :mod:`embedviz.reduction`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from embedviz.errors import ConfigError
from embedviz.progress import ProgressCallback
from embedviz.reduction import ProjectionPlan, plan_projection
from embedviz.store import keys_in

if TYPE_CHECKING:  # pragma: no cover
    from embedviz.reduction import Projection, ReductionSettings
    from embedviz.settings import ExtractionSettings
    from embedviz.store import EmbeddingStore, LayerVectors

log = logging.getLogger(__name__)

#: Columns of the clip table that goes with every matrix (row ``i`` of X is clip ``i``).
CLIP_COLUMNS: tuple[str, ...] = ("clip_key", "clip_id", "path", "word", "speaker")


def read_vectors(
    store: EmbeddingStore,
    settings: ExtractionSettings,
    layers: Sequence[str],
    pooling: str,
    manifest: pd.DataFrame | None = None,
) -> dict[str, LayerVectors]:
    """``embedviz.store.read_layers``: per layer, ``LayerVectors(X, clips, missing)``."""
    from embedviz.store import read_layers

    return read_layers(store, settings, layers=list(layers), pooling=pooling, manifest=manifest)


# ------------------------------------------------------------------ rows and matrices


def common_rows(vectors: Mapping[str, Any], layers: Sequence[str] | None = None) -> tuple[list[np.ndarray], pd.DataFrame]:
    """The layers' matrices restricted to clips present in all of them, in one order.

    Rows are matched by ``clip_key`` (the clip's content hash): two files with the same
    name in different folders never mix, a renamed file is still the same clip. The
    order is the first layer's (manifest order when read with a manifest).

    Args:
        vectors: layer -> an object with ``X`` and ``clips`` (a ``clip_key`` column).
        layers: which layers, in which order (default: all of ``vectors``).
    """
    names = list(vectors) if layers is None else list(layers)
    if not names:
        raise ConfigError("no layers given")
    first = vectors[names[0]].clips
    common = pd.Index(first["clip_key"])
    for layer in names[1:]:
        common = common.intersection(pd.Index(vectors[layer].clips["clip_key"]), sort=False)
    keep = keys_in(first["clip_key"], common)
    clips = first[keep].reset_index(drop=True)
    blocks = []
    for layer in names:
        v = vectors[layer]
        if len(clips) == 0:
            blocks.append(np.asarray(v.X)[:0])
            continue
        position = pd.Index(v.clips["clip_key"]).get_indexer(clips["clip_key"])
        blocks.append(np.asarray(v.X)[position])
    return blocks, clips


def layer_matrix(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """One layer's matrix, or several layers concatenated (each block z-scored and scaled
    by 1/sqrt(width) so no layer dominates; :func:`embedviz.reduction.concatenate_layers`)."""
    from embedviz.reduction import concatenate_layers

    if len(blocks) == 1:
        return blocks[0]
    if len(blocks) == 0 or blocks[0].shape[0] == 0:
        return np.zeros((0, 0), np.float32)
    return concatenate_layers(blocks)


# ------------------------------------------------------------------ panels


@dataclass(frozen=True)
class PanelData:
    """What one plot shows: projected points, their clips and the layer's numbers.

    ``*_n`` are the sample sizes behind the capped numbers (equal to ``n_clips`` for
    small views): show them next to the number when they are smaller.
    """

    coords: np.ndarray
    clips: pd.DataFrame
    knn: float
    silhouette: float
    chance: float
    n_clips: int
    n_missing: int
    trust: float = float("nan")
    projection: str = ""  # e.g. "t-SNE 2D (perplexity 5.67, seed 0)": the parameters actually used
    knn_n: int = 0
    silhouette_n: int = 0
    trust_n: int = 0

    def caption(self) -> str:
        """``"kNN 0.83 · silhouette 0.21 (5,000 of 20,000) · trust 0.95 (3,000)"``."""
        parts = [f"kNN {self.knn:.2f}" + self.sampled(self.knn_n), f"silhouette {self.silhouette:.2f}" + self.sampled(self.silhouette_n)]
        parts.append(f"chance {self.chance:.2f}")
        parts.append(f"trust {self.trust:.2f}" + self.sampled(self.trust_n))
        return " · ".join(parts)

    def sampled(self, n: int) -> str:
        """``" (on 3,000 of 21,000)"`` when a number was measured on a seeded subsample of ``n`` clips."""
        return f" (on {n:,} of {self.n_clips:,})" if 0 < n < self.n_clips else ""


def panel_numbers(X: np.ndarray, clips: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
    """Separability numbers of one matrix, in the original space: what a panel shows (k-NN
    accuracy, silhouette, chance, with their sample sizes). Neither the probe nor the
    speaker-disjoint k-NN (``nan`` here): the panels show neither, and each would cost as
    much again (Layer analysis computes them). See :func:`embedviz.metrics.layer_metrics`."""
    from embedviz.metrics import layer_metrics

    return layer_metrics(X, clips["word"].to_numpy(), None, seed=seed, probe=False)


def project(X: np.ndarray, reduction: ReductionSettings, *, progress: ProgressCallback | None = None) -> Projection:
    """The fitted projection of ``X`` (:func:`embedviz.reduction.reduce`)."""
    from embedviz.reduction import reduce

    return reduce(X, reduction, progress=progress)


def panel(
    X: np.ndarray,
    clips: pd.DataFrame,
    projection: Projection,
    numbers: Mapping[str, Any],
    *,
    n_total: int | None = None,
    seed: int = 0,
) -> PanelData:
    """A plot's data from its matrix, its fitted projection and :func:`panel_numbers`.

    Trustworthiness (how faithful the picture is) is measured here, on a seeded
    subsample above :data:`embedviz.metrics.TRUST_MAX_N` points.
    """
    from embedviz.metrics import trustworthiness_n

    trust, trust_n = trustworthiness_n(X, projection.coords, n_neighbors=5, metric="cosine", seed=seed)
    total = len(clips) if n_total is None else n_total
    return PanelData(
        coords=projection.coords,
        clips=clips,
        knn=float(numbers["knn_accuracy"]),
        silhouette=float(numbers["silhouette"]),
        chance=float(numbers["chance"]),
        n_clips=len(clips),
        n_missing=max(0, total - len(clips)),
        trust=trust,
        projection=projection.describe(),
        knn_n=int(numbers.get("knn_n", len(clips))),
        silhouette_n=int(numbers.get("silhouette_n", len(clips))),
        trust_n=trust_n,
    )


def aligned_coords(panels: Sequence[PanelData]) -> list[np.ndarray]:
    """Each panel's projection rotated onto the previous one's (orthogonal Procrustes),
    so clusters keep their place from panel to panel.

    Rows are matched by clip key: panels over the same clips in another order are
    aligned on them; panels over different clip sets have nothing to align on and come
    back as they are.
    """
    from embedviz.reduction import align_procrustes

    if not panels:
        return []
    keys = [p.clips["clip_key"] if "clip_key" in p.clips else p.clips["clip_id"] for p in panels]
    reference = pd.Index(keys[0])
    if any(len(k) != len(reference) or not keys_in(reference, k).all() for k in keys[1:]):
        return [p.coords for p in panels]
    # Every panel in the first panel's row order, aligned, then put back in its own order.
    orders = [pd.Index(k).get_indexer(reference) for k in keys]
    aligned = align_procrustes([p.coords[o] for p, o in zip(panels, orders)])
    out = []
    for coords, order in zip(aligned, orders):
        back = np.empty_like(coords)
        back[order] = coords
        out.append(back)
    return out


def neighbours(X: np.ndarray, clips: pd.DataFrame, clip_id: str, k: int = 5) -> pd.DataFrame:
    """The ``k`` nearest other clips to ``clip_id`` by cosine distance in the original
    embedding space (not the picture), with a ``distance`` column. Empty if the clip is
    not among ``clips``. One row of distances: O(n d) time and memory."""
    from embedviz.metrics import nearest_neighbours

    hits = np.flatnonzero(clips["clip_id"].to_numpy() == clip_id)
    if len(hits) == 0 or len(clips) < 2:
        return clips.iloc[0:0].assign(distance=[])
    order, distances = nearest_neighbours(X, int(hits[0]), k=k)
    return clips.iloc[order].assign(distance=distances).reset_index(drop=True)


def confusion(X: np.ndarray, clips: pd.DataFrame, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """5-NN word confusion (:func:`embedviz.metrics.knn_confusion`, query-capped)."""
    from embedviz.metrics import knn_confusion

    return knn_confusion(X, clips["word"].to_numpy(), seed=seed)


def analysis_table(
    blocks: Mapping[str, np.ndarray],
    clips: pd.DataFrame,
    *,
    model: str | None = None,
    seed: int = 0,
    k: int = 5,
    probe: bool = True,
    only: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """:func:`embedviz.metrics.metrics_table` over aligned layer blocks, or just the layers
    in ``only`` (empty when no clips)."""
    from embedviz.metrics import metrics_table

    if len(clips) == 0:
        return pd.DataFrame()
    return metrics_table(
        blocks, clips["word"].to_numpy(), clips["speaker"].to_numpy(), k=k, seed=seed, model=model,
        probe=probe, only=only, progress=progress,
    )


def measures_table(
    blocks: Mapping[str, np.ndarray],
    clips: pd.DataFrame,
    *,
    model: str | None = None,
    seed: int = 0,
    only: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """:func:`embedviz.measures.measures_table` (PWCCA, cluster NMI, ABX per layer, on at
    most :data:`embedviz.measures.MEASURES_MAX_N` clips) over aligned layer blocks, or just
    the layers in ``only``; empty when no clips."""
    from embedviz.measures import measures_table as table

    if len(clips) == 0:
        return pd.DataFrame()
    order = measure_order(clips)
    ordered = {layer: np.asarray(block)[order] for layer, block in blocks.items()}
    return table(ordered, clips["word"].to_numpy()[order], clips["speaker"].to_numpy()[order], model=model,
                 seed=seed, only=only, progress=progress)


def measure_order(clips: pd.DataFrame) -> np.ndarray:
    """Rows in clip-key order: the measures' seeded folds, k-means and triplets depend on
    row order, so the app (manifest order) and ``analyse`` (word order) sort the same
    clips the same way first and get the same numbers."""
    keys = clips["clip_key"] if "clip_key" in clips else clips["clip_id"]
    return np.argsort(keys.astype(str).to_numpy(), kind="stable")


def cka_table(models: Sequence[tuple[str, Sequence[str], Sequence[np.ndarray], pd.DataFrame]]) -> pd.DataFrame:
    """Linear CKA between layers: of one model (square), or rows of model A x columns of B.

    ``models`` holds one or two ``(model, layers, blocks, clips)`` (blocks aligned with
    ``clips``, as from :func:`common_rows`). Only clips present for every model are used,
    matched by clip key. ``attrs["n"]`` is the number of clips the values use (capped, see
    :func:`embedviz.metrics.cka_matrix`).
    """
    from embedviz.metrics import cka_matrix

    if not models:
        return pd.DataFrame()
    common = pd.Index(models[0][3]["clip_key"])
    for _, _, _, clips in models[1:]:
        common = common.intersection(pd.Index(clips["clip_key"]), sort=False)
    if len(common) < 2:
        return pd.DataFrame()
    named: dict[str, np.ndarray] = {}
    per_model: list[tuple[str, list[str]]] = []
    for index, (model, layers, blocks, clips) in enumerate(models):
        position = pd.Index(clips["clip_key"]).get_indexer(common)
        names = []
        for layer, block in zip(layers, blocks, strict=True):
            name = f"{layer}" if len(models) == 1 else f"{'AB'[index]}:{layer}"
            named[name] = np.asarray(block)[position]
            names.append(name)
        per_model.append((model, names))
    full = cka_matrix(named)
    if len(per_model) == 1:
        return full
    rows, cols = per_model[0][1], per_model[1][1]
    out = full.loc[rows, cols].copy()
    out.index = pd.Index([r.split(":", 1)[1] for r in rows], name=per_model[0][0])
    out.columns = pd.Index([c.split(":", 1)[1] for c in cols], name=per_model[1][0])
    out.attrs["n"] = full.attrs.get("n", len(common))
    return out


__all__ = [
    "CLIP_COLUMNS",
    "PanelData",
    "ProjectionPlan",
    "aligned_coords",
    "analysis_table",
    "cka_table",
    "common_rows",
    "confusion",
    "layer_matrix",
    "measure_order",
    "measures_table",
    "neighbours",
    "panel",
    "panel_numbers",
    "plan_projection",
    "project",
    "read_vectors",
]
