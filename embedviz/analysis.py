"""Per-layer analysis of stored embeddings: the table and figures behind ``analyse``.

The numbers come from :mod:`embedviz.views`, the same code the app's Layer analysis page
uses. Memory is bounded at any ``n``: layers are read and measured one at a time; what
is kept across layers is small (the clip table, each layer's 2D coordinates when figures
are asked for, and a row subsample of at most :data:`embedviz.metrics.CKA_MAX_SIDE`
clips per layer for CKA).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from embedviz.errors import ConfigError
from embedviz.progress import ProgressCallback, ProgressReporter
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore

logger = logging.getLogger(__name__)


def _stored_layer_names(store: EmbeddingStore, settings: ExtractionSettings, layers: Sequence[str] | None) -> list[str]:
    """``layers``, or every layer the store entry records (its ``meta.json``)."""
    if layers:
        return list(layers)
    entry = store.entry_for(settings)
    names = list(entry.meta.get("layers", []))
    if not names or not entry.parts():
        from embedviz.errors import StoreError

        raise StoreError(
            f"nothing stored for {settings.model} in {store.root}; run "
            f"'python -m embedviz extract --model {settings.model}' first"
        )
    return names


def analysis_clips(
    store: EmbeddingStore,
    settings: ExtractionSettings,
    layers: Sequence[str],
    pooling: str,
    words: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The clips stored for every one of ``layers`` (matched by clip key), restricted to
    ``words``, sorted by word then clip id. Reads one layer at a time and keeps only
    its clip table."""
    from embedviz.views import read_vectors

    clips: pd.DataFrame | None = None
    for layer in layers:
        table = read_vectors(store, settings, [layer], pooling)[layer].clips
        clips = table if clips is None else clips[clips["clip_key"].isin(table["clip_key"])]
    if clips is None or clips.empty:
        raise ConfigError(
            f"nothing stored for {settings.model} (layers {', '.join(layers)}); run `python -m embedviz extract` first"
        )
    clips = clips.drop_duplicates("clip_key")
    if words:
        unknown = sorted(set(words) - set(clips["word"]))
        if unknown:
            raise ConfigError(f"no stored clips of word(s) {', '.join(unknown)}")
        clips = clips[clips["word"].isin(list(words))]
    return clips.sort_values(["word", "clip_id"], kind="stable").reset_index(drop=True)


def _layer_rows(store: EmbeddingStore, settings: ExtractionSettings, layer: str, pooling: str, clips: pd.DataFrame) -> np.ndarray:
    """One layer's matrix in the row order of ``clips`` (by clip key)."""
    from embedviz.views import read_vectors

    vectors = read_vectors(store, settings, [layer], pooling)[layer]
    position = pd.Index(vectors.clips["clip_key"]).get_indexer(clips["clip_key"])
    if (position < 0).any():
        raise ConfigError(f"layer {layer} lost clips between reads; run analyse again")
    return np.asarray(vectors.X)[position]


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
    measures: bool = False,
    progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """One row of separability metrics per stored layer; optionally writes HTML figures.

    Columns: ``layer``, ``model``, ``pooling``, then :data:`embedviz.metrics.METRIC_COLUMNS`
    (with the speaker-vs-word k-NN columns); with ``measures`` also
    :data:`embedviz.measures.MEASURE_COLUMNS` after them (PWCCA, cluster NMI, ABX, on at
    most :data:`embedviz.measures.MEASURES_MAX_N` clips, stated in ``measures_n``).

    ``probe=False`` skips the cross-validated linear probe (most of the time on big sets).
    ``progress`` gets one step per layer read and measured (and per figure); it can stop.

    Figures: the layer curve, a grid of per-layer projections (aligned with Procrustes),
    the k-NN confusion matrix of the best layer, and the CKA matrix between layers; with
    ``measures`` also the speaker-vs-word curves and the measures (``speaker_word.html``,
    ``measures.html``).
    """
    from embedviz import measures as measures_lib
    from embedviz import metrics, views
    from embedviz.reduction import ReductionSettings, plan_projection

    names = _stored_layer_names(store, settings, layers)
    clips = analysis_clips(store, settings, names, pooling, words)
    if len(clips) < 3:
        raise ConfigError(f"only {len(clips)} stored clips match; need at least 3 to analyse")
    steps = len(names) + (3 if figures_dir is not None else 0)
    reporter = ProgressReporter(progress, total=steps, stage="analyse")
    reporter.report(f"{len(clips):,} clips, {len(names)} layers")
    words_arr, speakers = clips["word"].to_numpy(), clips["speaker"].to_numpy()
    rsettings = ReductionSettings(method=reduction, n_components=2, seed=seed)  # type: ignore[arg-type]
    cka_rows = metrics.subsample(len(clips), metrics.CKA_MAX_SIDE, seed)
    cka_blocks: dict[str, np.ndarray] = {}
    coords: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    for i, layer in enumerate(names):
        X = _layer_rows(store, settings, layer, pooling, clips)
        row: dict[str, Any] = {"layer": str(layer), "model": settings.model,
                               "depth": i / (len(names) - 1) if len(names) > 1 else 0.0}
        row.update(metrics.layer_metrics(X, words_arr, speakers, k=k, seed=seed, probe=probe, speaker_identity=True))
        if measures:
            order = views.measure_order(clips)  # the app's row order: the same numbers
            extra = measures_lib.layer_measures(X[order], words_arr[order], speakers[order], seed=seed)
            row.update({key: value for key, value in extra.items() if key != "n_clips"})
        rows.append(row)
        if figures_dir is not None:
            cka_blocks[str(layer)] = X[cka_rows]
            plan = plan_projection(X.shape[0], X.shape[1], rsettings)
            if not plan.ok:
                raise ConfigError(plan.reason + " (analyse --reduction pca, or fewer --words)")
            coords.append(views.project(X, rsettings).coords)
        del X
        reporter.advance(1, f"layer {layer}")
    extra_columns = [c for c in measures_lib.MEASURE_COLUMNS if c != "n_clips"] if measures else []
    table = pd.DataFrame(rows, columns=["layer", "model", *metrics.METRIC_COLUMNS, *extra_columns])
    table.insert(2, "pooling", pooling)
    if figures_dir is not None:
        write_figures(Path(figures_dir), settings.model, coords, cka_blocks, clips.iloc[cka_rows].reset_index(drop=True), clips, table, pooling=pooling,
                      rsettings=rsettings, best_layer=lambda layer: _layer_rows(store, settings, layer, pooling, clips),
                      seed=seed, reporter=reporter)
    return table


def write_figures(
    out_dir: Path,
    model: str,
    coords: Sequence[np.ndarray],
    cka_blocks: dict[str, np.ndarray],
    cka_clips: pd.DataFrame,
    clips: pd.DataFrame,
    table: pd.DataFrame,
    *,
    pooling: str,
    rsettings: Any,
    best_layer: Any,
    seed: int = 0,
    reporter: ProgressReporter | None = None,
) -> list[Path]:
    """Write the analysis figures of one model as standalone HTML files.

    ``coords``: each layer's 2D projection (rows of ``clips``); ``cka_blocks``: each
    layer's rows for CKA (the clips of ``cka_clips``); ``best_layer(layer)`` re-reads one layer's matrix (for its
    confusion matrix), so no more than one full matrix is ever held.
    """
    from embedviz import figures, views
    from embedviz.reduction import align_procrustes

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    words = clips["word"].to_numpy()
    speakers = clips["speaker"].to_numpy()
    ids = clips["clip_id"].to_numpy()
    colors = figures.word_colors(words)

    fig = figures.layer_curve_figure(table, metric="knn_accuracy")
    written.append(figures.write_html(fig, out_dir / "layer_curve.html"))
    if "pwcca" in table.columns:  # analyse --measures: the speaker-vs-word curves and the measures too
        speaker_metric = figures.speaker_word_metric(table)
        written.append(figures.write_html(
            figures.speaker_word_figure(table, speaker_metric, title=f"{model} · word vs speaker information"),
            out_dir / "speaker_word.html"))
        written.append(figures.write_html(
            figures.measures_figure(table, title=f"{model} · layer-wise measures ({int(table['measures_n'].max()):,} clips)"),
            out_dir / "measures.html"))

    aligned = align_procrustes(list(coords))
    panels = []
    for c, (_, row) in zip(aligned, table.iterrows()):
        panels.append(
            figures.Panel(
                title=f"layer {row['layer']}",
                coords=c,
                clip_ids=ids,
                words=words,
                speakers=speakers,
                subtitle=figures.panel_subtitle(row),
            )
        )
    grid = figures.grid_figure(panels, n_cols=min(4, len(panels)), colors=colors,
                               title=f"{model} · {pooling} pooling · {rsettings.describe()}")
    written.append(figures.write_html(grid, out_dir / "projections.html"))
    if reporter is not None:
        reporter.advance(1, "projections")

    best = str(table.sort_values("knn_accuracy", ascending=False).iloc[0]["layer"])
    matrix, labels = views.confusion(best_layer(best), clips, seed=seed)
    written.append(figures.write_html(
        figures.confusion_figure(matrix, labels, title=f"{model} · layer {best} · k-NN confusion"),
        out_dir / "confusion.html"))
    if reporter is not None:
        reporter.advance(1, "confusion")
    cka = views.cka_table([(model, list(cka_blocks), list(cka_blocks.values()), cka_clips)])
    n_cka = cka.attrs.get("n", 0)
    written.append(figures.write_html(
        figures.cka_figure(cka, title=f"{model} · linear CKA between layers ({n_cka:,} clips)"),
        out_dir / "cka.html"))
    if reporter is not None:
        reporter.advance(1, "CKA")
    logger.info("wrote %d figures to %s", len(written), out_dir)
    return written
