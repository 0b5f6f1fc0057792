"""Per-layer analysis of stored embeddings: the table and figures behind ``analyse``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from embedviz.errors import ConfigError
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore, LayerVectors, read_layers

logger = logging.getLogger(__name__)


def align_layers(mats: dict[str, LayerVectors], words: Sequence[str] | None = None) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Rows of every layer in one common clip order (clips stored for all layers).

    Returns the per-layer matrices and the clip table (clip_key, clip_id, path, word,
    speaker) that their rows follow. ``words`` keeps only those words.
    """
    layers = list(mats)
    common = set(mats[layers[0]].clip_keys)
    for layer in layers[1:]:
        common &= set(mats[layer].clip_keys)
    first = mats[layers[0]]
    clips = first.clips[first.clips["clip_key"].isin(common)]
    if words:
        unknown = sorted(set(words) - set(clips["word"]))
        if unknown:
            raise ConfigError(f"no stored clips of word(s) {', '.join(unknown)}")
        clips = clips[clips["word"].isin(list(words))]
    clips = clips.sort_values(["word", "clip_id"], kind="stable").reset_index(drop=True)
    aligned: dict[str, np.ndarray] = {}
    for layer in layers:
        index = {k: i for i, k in enumerate(mats[layer].clip_keys)}
        aligned[layer] = mats[layer].X[[index[k] for k in clips["clip_key"]]]
    return aligned, clips


def analyse_entry(
    store: EmbeddingStore,
    settings: ExtractionSettings,
    *,
    pooling: str = "mean",
    words: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    figures_dir: Path | None = None,
    reduction: str = "pca",
    k: int = 5,
    seed: int = 0,
    probe: bool = True,
) -> pd.DataFrame:
    """One row of separability metrics per stored layer; optionally writes HTML figures.

    ``probe=False`` skips the cross-validated linear probe (most of the time on big sets).

    Figures: the layer curve, a grid of per-layer projections (aligned with Procrustes),
    the k-NN confusion matrix of the best layer, and the CKA matrix between layers.
    """
    from embedviz import metrics

    mats = read_layers(store, settings, layers, pooling)
    aligned, clips = align_layers(mats, words)
    if len(clips) < 3:
        raise ConfigError(f"only {len(clips)} stored clips match; need at least 3 to analyse")
    table = metrics.metrics_table(aligned, clips["word"].to_numpy(), clips["speaker"].to_numpy(),
                                  k=k, seed=seed, model=settings.model, probe=probe)
    table.insert(2, "pooling", pooling)
    if figures_dir is not None:
        write_figures(Path(figures_dir), settings.model, aligned, clips, table, pooling=pooling,
                      reduction=reduction, seed=seed)
    return table


def write_figures(
    out_dir: Path,
    model: str,
    aligned: dict[str, np.ndarray],
    clips: pd.DataFrame,
    table: pd.DataFrame,
    *,
    pooling: str,
    reduction: str,
    seed: int = 0,
) -> list[Path]:
    """Write the analysis figures of one model as standalone HTML files."""
    from embedviz import figures, metrics
    from embedviz.reduction import ReductionSettings, align_procrustes, reduce

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    words = clips["word"].to_numpy()
    speakers = clips["speaker"].to_numpy()
    ids = clips["clip_id"].to_numpy()
    colors = figures.word_colors(words)

    fig = figures.layer_curve_figure(table.assign(model=model), metric="knn_accuracy")
    written.append(figures.write_html(fig, out_dir / "layer_curve.html"))

    rsettings = ReductionSettings(method=reduction, n_components=2, seed=seed)
    coords = align_procrustes([reduce(X, rsettings).coords for X in aligned.values()])
    panels = []
    for (layer, c), (_, row) in zip(zip(aligned, coords), table.iterrows()):
        panels.append(
            figures.Panel(
                title=f"layer {layer}",
                coords=c,
                clip_ids=ids,
                words=words,
                speakers=speakers,
                subtitle=f"kNN {row['knn_accuracy']:.2f} · sil {row['silhouette']:.2f}",
            )
        )
    grid = figures.grid_figure(panels, n_cols=min(4, len(panels)), colors=colors,
                               title=f"{model} · {pooling} pooling · {rsettings.describe()}")
    written.append(figures.write_html(grid, out_dir / "projections.html"))

    best = str(table.sort_values("knn_accuracy", ascending=False).iloc[0]["layer"])
    matrix, labels = metrics.knn_confusion(aligned[best], words)
    written.append(figures.write_html(
        figures.confusion_figure(matrix, labels, title=f"{model} · layer {best} · k-NN confusion"),
        out_dir / "confusion.html"))
    cka = metrics.cka_matrix(aligned)
    written.append(figures.write_html(figures.cka_figure(cka, title=f"{model} · linear CKA between layers"),
                                      out_dir / "cka.html"))
    logger.info("wrote %d figures to %s", len(written), out_dir)
    return written
