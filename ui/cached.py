"""Cached calls into the library, keyed by plain values (strings, ints, tuples).

Every function takes hashable primitives, or small frozen dataclasses of them (Streamlit
hashes a dataclass as ``dataclasses.asdict``), so cache keys are cheap and exact: a
:class:`ClipSelection` (which clips), a :class:`ModelSelection` (one model's embeddings
of them) or a :class:`LayerSelection` (some of its layers, one pooling). Anything that
reads the embedding store is keyed by a :class:`ModelSelection`, which carries ``token``:
a fingerprint of the store entry's files (:func:`entry_token`), so a finished extraction
or a deletion (by this session or any other) changes the key and the plots follow the
store.

Models are held by :func:`extractor` (``st.cache_resource``, at most
``$EMBEDVIZ_MAX_MODELS`` models, default 2); everything else is ``st.cache_data``.
Errors are not cached (Streamlit never caches an exception), so a fixed problem goes
away on the next run.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from embedviz.errors import EmbedvizError, StoreError
from embedviz.settings import ExtractionSettings, default_cache_dir, stable_hash
from embedviz.views import PanelData, ProjectionPlan

if TYPE_CHECKING:
    from embedviz.datasets import SpeechCommandsDataset
    from embedviz.extractors.base import Extractor
    from embedviz.reduction import Projection, ReductionSettings
    from embedviz.store import EmbeddingStore
    from embedviz.viewstate import ViewSettings


def max_models() -> int:
    """How many models the app keeps loaded at once (``$EMBEDVIZ_MAX_MODELS``, default 2)."""
    try:
        return max(1, int(os.environ.get("EMBEDVIZ_MAX_MODELS", "2")))
    except ValueError:
        return 2


# ---------------------------------------------------------------------- store


def store_root() -> Path:
    return default_cache_dir()


def get_store() -> EmbeddingStore:
    from embedviz.store import EmbeddingStore

    return EmbeddingStore(store_root())


def _settings(model: str, whisper_mode: str, init_seed: int) -> ExtractionSettings:
    return ExtractionSettings(model=model, whisper_mode=whisper_mode, seed=init_seed)  # type: ignore[arg-type]


def entry_token(model: str, whisper_mode: str, init_seed: int) -> str:
    """Fingerprint of what the store holds for a model and options (names, sizes, mtimes).

    Cheap (one directory listing), uncached on purpose: it is how cached readers notice
    that an extraction, a deletion or another session changed the store.
    """
    from embedviz.catalogue import model_identity, model_spec

    settings = _settings(model, whisper_mode, init_seed)
    store = get_store()
    key = model_identity(model, seed=init_seed)
    entry = store.entry(key, settings.numeric_options(model_spec(model).family))
    try:
        files = [
            (part.name, stat.st_size, stat.st_mtime_ns)
            for part in (sorted(entry.path.iterdir()) if entry.path.is_dir() else [])
            for stat in [part.stat()]
        ]
    except OSError as error:
        raise StoreError(f"cannot read the embedding store folder {entry.path}: {error}") from error
    return stable_hash({"entry": str(entry.path), "files": files})


@st.cache_data(show_spinner=False, ttl=5)
def store_entries(root: str) -> pd.DataFrame:
    """Every store entry with its size (short TTL: other sessions may change the store)."""
    from embedviz.store import EmbeddingStore

    return EmbeddingStore(Path(root)).entries()


# ---------------------------------------------------------------------- datasets


@st.cache_resource(show_spinner=False, ttl=600, max_entries=8)
def dataset(root: str) -> SpeechCommandsDataset:
    """The dataset at ``root`` (``""`` = the bundled demo), opened through its manifest index.

    Opening lists only new or changed word folders and reads no clip; durations are read
    when clips are sampled (:func:`sample`) or asked for (:func:`clip_durations`).
    """
    from embedviz.datasets import open_dataset

    return open_dataset(root or None)


@st.cache_data(show_spinner=False, ttl=600, max_entries=8)
def words_table(root: str) -> pd.DataFrame:
    return dataset(root).words()


@st.cache_data(show_spinner=False, ttl=600, max_entries=8)
def manifest(root: str) -> pd.DataFrame:
    """Every clip of the dataset; ``duration`` only where already read (see :func:`clip_durations`)."""
    return dataset(root).manifest(durations=False)


@st.cache_data(show_spinner=False, ttl=600, max_entries=8)
def dataset_summary(root: str) -> tuple[int, int]:
    """``(clips, speakers)`` of the dataset, for the sidebar: two ints per rerun instead
    of unpickling the whole manifest (105,000 rows) from :func:`manifest` on every run."""
    m = manifest(root)
    return len(m), int(m["speaker"].nunique())


def clip_durations(root: str, read_all: bool = False, progress: Any = None) -> pd.Series:
    """Durations of the clips whose header has been read (every clip's with ``read_all``).

    Uncached: reading durations (sampling, this) fills the dataset's index as it goes.
    """
    return dataset(root).durations(read_all=read_all, progress=progress)


def dataset_words(root: str) -> list[str]:
    return words_table(root)["word"].tolist()


@st.cache_data(show_spinner=False, max_entries=64)
def sample(root: str, words: tuple[str, ...], n: int, seed: int) -> pd.DataFrame:
    """The clips a view uses: ``n`` per word, spread over speakers, reproducible."""
    if not words:
        return manifest(root).iloc[0:0]
    return dataset(root).sample(list(words), n, seed=seed)


def longest_clip(root: str, words: tuple[str, ...], n: int, seed: int) -> float:
    """Duration (s) of the longest clip of a view's sample; 1.0 when none is known."""
    longest = sample(root, tuple(words), n, seed)["duration"].max() if words else None
    return 1.0 if longest is None or pd.isna(longest) or longest <= 0 else float(longest)


@dataclass(frozen=True)
class ClipSelection:
    """Which clips a view uses: ``n`` per word of ``words`` from the dataset at ``root``."""

    root: str
    words: tuple[str, ...]
    n: int
    seed: int

    @classmethod
    def of(cls, view: ViewSettings) -> ClipSelection:
        return cls(view.dataset, tuple(view.words), view.samples, view.seed)

    def sample(self) -> pd.DataFrame:
        """The clips themselves (cached by the module's :func:`sample`)."""
        return sample(self.root, self.words, self.n, self.seed)


# ---------------------------------------------------------------------- models


@st.cache_data(show_spinner=False, max_entries=256)
def model_layers(name: str) -> tuple[str, ...]:
    from embedviz.catalogue import model_spec

    return model_spec(name).layers


@st.cache_data(show_spinner=False, max_entries=256)
def model_family(name: str) -> str:
    from embedviz.catalogue import model_spec

    return model_spec(name).family


@st.cache_data(show_spinner=False, max_entries=256)
def model_label(name: str) -> str:
    from embedviz.catalogue import model_spec

    try:
        spec = model_spec(name)
    except EmbedvizError:
        return name
    return spec.label


def human_params(n: int) -> str:
    if n <= 0:
        return "—"
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e6:
        return f"{n / 1e6:.0f}M"
    if n >= 1e3:
        return f"{n / 1e3:.0f}k"
    return str(n)


#: Plain words (no emoji): they also appear inside widget labels, where fonts vary.
STATUS_BADGES = {
    "builtin": "built in",
    "cached": "cached",
    "local": "local folder",
    "download": "needs download",
    "offline": "offline: hub unreachable",
}


@st.cache_data(show_spinner=False, ttl=60)
def model_table(model_roots: tuple[str, ...]) -> pd.DataFrame:
    """Every model the app offers, with its availability (re-checked every minute).

    Rows: baseline, catalogue models, local folders under the model roots. random-init
    controls are offered for every catalogue model but not listed (they are always
    'built in').
    """
    from embedviz.catalogue import BASELINE_ID, CATALOGUE, availability, list_local_models, model_spec

    names = [BASELINE_ID] + [i for i in CATALOGUE if i != BASELINE_ID]
    names += [str(p) for p in list_local_models([Path(r) for r in model_roots])]
    rows = []
    for name in names:
        try:
            spec = model_spec(name)
            avail = availability(name)
            status, detail = avail.status, avail.detail
        except EmbedvizError as error:
            rows.append(
                {
                    "model": name,
                    "label": name,
                    "family": "?",
                    "params": "—",
                    "sample rate": "—",
                    "layers": 0,
                    "status": "unusable",
                    "detail": str(error),
                    "ready": False,
                }
            )
            continue
        rows.append(
            {
                "model": name,
                "label": spec.label,
                "family": spec.family,
                "params": human_params(spec.n_params),
                "sample rate": f"{spec.sample_rate / 1000:g} kHz",
                "layers": len(spec.layers),
                "status": STATUS_BADGES.get(status, status),
                "detail": detail,
                "ready": status in ("builtin", "cached", "local"),
            }
        )
    return pd.DataFrame(rows)


@st.cache_resource(show_spinner=False, max_entries=max_models())
def extractor(name: str, whisper_mode: str, init_seed: int, device: str = "auto") -> Extractor:
    """A loaded model, shared by every session (forward passes are thread-safe)."""
    from embedviz.models import load_extractor

    return load_extractor(name, device=device, whisper_mode=whisper_mode, seed=init_seed)


# ---------------------------------------------------------------------- embeddings


@dataclass(frozen=True)
class ModelSelection:
    """One model's embeddings of a clip selection, as the store holds them now.

    ``token`` is the store entry's fingerprint (:func:`entry_token`): part of every cache
    key built from this object, so a finished extraction or a deletion changes the key.
    """

    clips: ClipSelection
    model: str
    whisper_mode: str
    init_seed: int
    token: str

    @classmethod
    def of(cls, view: ViewSettings, model: str) -> ModelSelection:
        """``model`` with the view's clips and options; reads the store's token now (uncached)."""
        token = entry_token(model, view.whisper_mode, view.init_seed)
        return cls(ClipSelection.of(view), model, view.whisper_mode, view.init_seed, token)

    @property
    def settings(self) -> ExtractionSettings:
        return _settings(self.model, self.whisper_mode, self.init_seed)


@dataclass(frozen=True)
class LayerSelection:
    """Stored vectors of some layers of one model for a clip selection, with one pooling."""

    source: ModelSelection
    layers: tuple[str, ...]
    pooling: str

    @property
    def clips(self) -> ClipSelection:
        return self.source.clips


@st.cache_data(show_spinner=False, max_entries=64)
def missing_count(sel: ModelSelection) -> tuple[int, int]:
    """``(clips Extract would compute, clips in the sample)`` for one model."""
    from embedviz.pipeline import missing_clips

    m = sel.clips.sample()
    if m.empty:
        return 0, 0
    todo = missing_clips(m, sel.settings, get_store())
    return len(todo), len(m)


@st.cache_data(show_spinner=False, max_entries=64)
def unusable_count(sel: ModelSelection) -> int:
    """Clips of the sample that Extract will not compute because they cannot be used
    (rejected by decoding in an earlier run, or unreadable now)."""
    from embedviz.pipeline import unusable_clips

    m = sel.clips.sample()
    return len(unusable_clips(m, get_store())) if len(m) else 0


class _StoreReads:
    """The layers read so far for one :class:`ModelSelection` and pooling (see :func:`read_together`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.vectors: dict[str, Any] = {}


@st.cache_resource(show_spinner=False, max_entries=4)
def _store_reads(source: ModelSelection, pooling: str) -> _StoreReads:
    # A resource, not cache_data: shared read-only by the panels, never pickled per hit.
    # Keyed by the selection, so its store token: a change of the store starts afresh.
    return _StoreReads()


def read_together(source: ModelSelection, layers: tuple[str, ...], pooling: str) -> dict[str, Any]:
    """Stored vectors of ``layers`` for the sample, read in ONE pass over the store.

    A store read costs about the same for one layer or thirteen (each part holding a wanted
    clip is opened once and the layers are filtered inside it), so the Explore page asks
    for every layer it will draw of a model before drawing the first panel; the panels'
    :func:`layer_embeddings` then find their layer here. Layers read before are not
    read again. Values are ``embedviz.store.LayerVectors`` (shared: do not modify them).
    """
    from embedviz.views import read_vectors

    reads = _store_reads(source, pooling)
    with reads.lock:
        todo = [layer for layer in dict.fromkeys(layers) if layer not in reads.vectors]
        if todo:
            reads.vectors.update(read_vectors(get_store(), source.settings, todo, pooling, source.clips.sample()))
        return {layer: reads.vectors[layer] for layer in layers}


def layer_embeddings(sel: LayerSelection) -> dict[str, Any]:
    """Stored vectors of ``sel.layers`` for the sample: ``embedviz.store.LayerVectors`` per
    layer (clips not stored are left out and listed in ``missing``); see :func:`read_together`."""
    return read_together(sel.source, sel.layers, sel.pooling)


@st.cache_data(show_spinner=False, max_entries=32)
def layer_blocks(sel: LayerSelection) -> tuple[list[Any], pd.DataFrame]:
    """The selection's layers restricted to clips stored for all of them, matched by clip
    key (:func:`embedviz.views.common_rows`)."""
    from embedviz.views import common_rows

    return common_rows(layer_embeddings(sel), sel.layers)


@st.cache_data(show_spinner=False, max_entries=32)
def layer_matrix(sel: LayerSelection) -> tuple[Any, pd.DataFrame]:
    """One layer's matrix, or several layers concatenated, with the clips of its rows
    (:func:`embedviz.views.layer_matrix`)."""
    from embedviz import views

    blocks, clips = layer_blocks(sel)
    return views.layer_matrix(blocks), clips


@st.cache_data(show_spinner=False, max_entries=256)
def plan(sel: LayerSelection, reduction: ReductionSettings) -> ProjectionPlan:
    """What projecting this selection would cost, before anything runs
    (:func:`embedviz.reduction.plan_projection`). ``ok`` False: do not call :func:`panel`;
    show ``reason`` and offer ``suggested_n`` points or PCA. Cached: a page asks for each
    panel's plan several times a run (notice, alignment, panel), and each uncached call
    would copy the panel's matrix out of :func:`layer_matrix`'s cache for its shape."""
    from embedviz.views import plan_projection

    X, _ = layer_matrix(sel)
    return plan_projection(int(X.shape[0]), int(X.shape[1]) if X.ndim == 2 else 0, reduction)


@st.cache_resource(show_spinner=False, max_entries=64)
def projection(sel: LayerSelection, reduction: ReductionSettings) -> Projection:
    """The fitted projection of one panel, shared by every session; use its
    ``transform`` to place new points (a user's own clip) into the same picture."""
    from embedviz.views import project

    X, _ = layer_matrix(sel)
    return project(X, reduction.canonical())


@st.cache_data(show_spinner=False, max_entries=256)
def _numbers(sel: LayerSelection) -> dict[str, Any]:
    # Separate from `panel` so switching PCA / t-SNE / UMAP does not recompute them.
    from embedviz.views import panel_numbers

    X, clips = layer_matrix(sel)
    return panel_numbers(X, clips, seed=sel.clips.seed)


@st.cache_data(show_spinner=False, max_entries=256)
def panel(sel: LayerSelection, reduction: ReductionSettings) -> PanelData:
    """Projection and separability numbers of one model x layer (or concatenated layers).

    The numbers (k-NN accuracy, silhouette) come from the original space, never from
    the 2D/3D picture; ``*_n`` fields say how many clips the capped ones used.
    """
    from embedviz import views

    X, clips = layer_matrix(sel)
    return views.panel(
        X, clips, projection(sel, reduction), _numbers(sel), n_total=len(sel.clips.sample()), seed=sel.clips.seed
    )


@st.cache_data(show_spinner=False, max_entries=64)
def aligned_coords(sels: tuple[LayerSelection, ...], reduction: ReductionSettings) -> list[Any]:
    """Each panel's projection rotated onto the previous one's (orthogonal Procrustes),
    rows matched by clip key (:func:`embedviz.views.aligned_coords`)."""
    from embedviz import views

    return views.aligned_coords([panel(s, reduction) for s in sels])


@st.cache_data(show_spinner=False, max_entries=256)
def neighbours(sel: LayerSelection, clip_id: str, k: int = 5) -> pd.DataFrame:
    """The ``k`` nearest other clips to ``clip_id`` in the original embedding space
    (:func:`embedviz.views.neighbours`). Empty if the clip is not in this panel."""
    from embedviz import views

    X, clips = layer_matrix(sel)
    return views.neighbours(X, clips, clip_id, k=k)


# ---------------------------------------------------------------------- layer analysis


@st.cache_data(show_spinner=False, max_entries=512)
def layer_metrics(sel: LayerSelection, layer: str) -> pd.DataFrame:
    """One row of :func:`embedviz.views.analysis_table`: the metrics of ``layer`` (one of
    ``sel.layers``; ``depth`` relative to all of them; clips stored for all of them).

    One layer per call, so a page can draw progress between calls (as :func:`layer_measures`).
    """
    from embedviz import views

    blocks, clips = layer_blocks(sel)
    return views.analysis_table(dict(zip(sel.layers, blocks, strict=True)), clips, seed=sel.clips.seed,
                                model=sel.source.model, only=[layer])


@st.cache_data(show_spinner=False, max_entries=32)
def confusion(sel: LayerSelection) -> tuple[Any, list[str]]:
    """5-NN word confusion of one layer (``sel.layers`` holds exactly one)."""
    from embedviz import views

    X, clips = layer_matrix(sel)
    return views.confusion(X, clips, seed=sel.clips.seed)


@st.cache_data(show_spinner=False, max_entries=32)
def cka(selections: tuple[LayerSelection, ...]) -> pd.DataFrame:
    """Linear CKA between layers: of one model (square), or rows of model A x columns of
    model B (:func:`embedviz.views.cka_table`; only clips stored for every layer)."""
    from embedviz import views

    models = []
    for sel in selections:
        blocks, clips = layer_blocks(sel)
        models.append((sel.source.model, sel.layers, blocks, clips))
    return views.cka_table(models)


@st.cache_data(show_spinner=False, max_entries=512)
def layer_measures(sel: LayerSelection, layer: str) -> pd.DataFrame:
    """One row: PWCCA with one-hot words, k-means word NMI and word ABX across speakers of
    ``layer`` (one of ``sel.layers``; ``depth`` relative to all of them), on at most
    :data:`embedviz.measures.MEASURES_MAX_N` clips (:func:`embedviz.views.measures_table`).

    One layer per call, so a page can draw progress between calls (``widgets.layer_by_layer``):
    Streamlit replays the elements a cached function touches, so the function itself must not draw.
    """
    from embedviz import views

    blocks, clips = layer_blocks(sel)
    return views.measures_table(dict(zip(sel.layers, blocks, strict=True)), clips, seed=sel.clips.seed,
                                model=sel.source.model, only=[layer])


@st.cache_resource(show_spinner=False)
def machine_gflops() -> float:
    """This machine's measured fp32 matmul GFLOP/s (once per server process)."""
    from embedviz.pipeline import matmul_gflops

    return matmul_gflops()


@st.cache_data(show_spinner=False, max_entries=32)
def whisper_etas(sel: ModelSelection, n_clips: int) -> dict[str, float] | None:
    """Estimated seconds for ``n_clips`` of the selection in each Whisper mode; None if unknown."""
    from embedviz.extractors.whisper import mode_etas

    durations = sel.clips.sample()["duration"].dropna()
    seconds = float(durations.mean()) if len(durations) else 1.0
    try:
        return mode_etas(sel.model, n_clips, max(seconds, 0.01), machine_gflops())
    except EmbedvizError:
        return None
