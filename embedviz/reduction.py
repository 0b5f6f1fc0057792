"""Dimensionality reduction for pictures: PCA, t-SNE, UMAP, layer concatenation, Procrustes.

Everything here only *draws* embeddings. Numbers that say how well a layer separates
words are computed in the original space by :mod:`embedviz.metrics`, never on these
coordinates.

Heavy libraries (scikit-learn, openTSNE, umap-learn) are imported inside the functions
that use them, so ``import embedviz.reduction`` stays fast (umap alone takes seconds to
import because of numba).

t-SNE backend
-------------
t-SNE runs on **openTSNE**: ``TSNEEmbedding.transform`` places new points into an
existing map (scikit-learn's TSNE cannot), and it was faster when measured. Timings of
one fit (seconds, best of 2) on seeded clustered data, 35 clusters x 768 dims, 2-core
development machine, 2026-11-24 (``bench/bench_reduction.py``; full table in
``bench/README.md``)::

    backend                          n=1000   n=5000
    PCA (reference)                    0.13     0.54
    openTSNE Barnes-Hut, 1 thread      1.63    11.80
    openTSNE FFT, 1 thread             6.36    11.11
    scikit-learn Barnes-Hut, 1 thread  2.06    16.47
    scikit-learn Barnes-Hut, 2 threads 1.51    14.5-30 (noisy)
    UMAP (seeded, after numba warm-up) 1.24     4.01

At equal threads openTSNE is 1.3x (1k) to 1.5x (5k) faster than scikit-learn. Within
openTSNE, Barnes-Hut wins for small maps (2k: 3.7 s vs 7.2 s; 3k: 6.4 vs 8.3); on these
Gaussian clusters the two meet near 4k (8.9 vs 9.0). On stored log-mel embeddings of the
synthetic 35-word folder the crossover is near 10k, because FFT's cost grows with the
map's extent (its grid has one box per unit; these maps span ~200 units, the clusters
above far less), not only with n (2026-12-04, ``bench_reduction.py --stored``)::

    log-mel baseline, 80 dims        n=5,250  n=10,500  n=21,000
    openTSNE Barnes-Hut, 1 thread       16.4      45.4     100.1
    openTSNE FFT, 1 thread              44.7      49.7      56.9

So 2D maps use FFT from :data:`FFT_MIN_POINTS` points on, Barnes-Hut below. FFT only
exists for 2D, so 3D maps always use Barnes-Hut.

Determinism: openTSNE runs with ``n_jobs=1`` and ``random_state=seed``. Two threads were
~30% faster at 1k and gave identical coordinates in our runs, but the Annoy index build
and the parallel gradient sums carry no such guarantee, and on this 2-core machine the
multi-threaded timings were erratic. UMAP with ``random_state`` is single-threaded by
design. Same input + same seed -> bit-identical coordinates (tested).

UMAP's numba code compiles on first use in each process: ~7 s for the exact-neighbour
path (< 4096 points) and ~20 s more the first time the NN-descent path (>= 4096 points)
runs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np

from embedviz.errors import ConfigError
from embedviz.progress import ProgressCallback, ProgressReporter

if TYPE_CHECKING:  # pragma: no cover
    from numpy.typing import ArrayLike

log = logging.getLogger(__name__)

Method = Literal["pca", "tsne", "umap"]
Preprocess = Literal["none", "standardize", "sphereize"]

METHODS: tuple[str, ...] = ("pca", "tsne", "umap")
PREPROCESSING: tuple[str, ...] = ("none", "standardize", "sphereize")
METHOD_LABELS: dict[str, str] = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}

#: Smallest number of points for which a projection is attempted.
MIN_POINTS = 3
#: From this many points on, 2D t-SNE uses openTSNE's FFT gradient instead of Barnes-Hut
#: (measured crossover on stored embeddings, see the module docstring).
FFT_MIN_POINTS = 10_000
#: Past this many rows PCA uses scikit-learn's seeded randomised SVD instead of a full one.
PCA_FULL_MAX_N = 20000
#: Widest data PCA solves through its covariance matrix (see :func:`pca_solver`).
PCA_COVARIANCE_MAX_D = 1000
#: Iterations of openTSNE's two optimisation phases (its defaults).
TSNE_EARLY_ITER = 250
TSNE_ITER = 500


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ReductionSettings:
    """How to turn an ``(n, d)`` embedding matrix into a 2D or 3D picture.

    Attributes:
        method: ``"pca"``, ``"tsne"`` or ``"umap"``.
        n_components: 2 or 3.
        seed: random seed for t-SNE and UMAP (PCA is deterministic without one).
        preprocess: applied to the rows before the method, fitted on the training points
            and re-applied to points given to :meth:`Projection.transform`:
            ``"none"``; ``"standardize"`` (z-score each feature; constant features stay
            0); ``"sphereize"`` (subtract the feature means, then scale every row to unit
            L2 norm; rows that are all zero after centring stay zero). Centring first
            matters for transformer embeddings, which share a large common direction
            that otherwise makes every pair of rows look alike under cosine geometry.
            After sphereizing, Euclidean distances are monotone in cosine distance.
        perplexity: t-SNE perplexity; clipped to ``(n - 1) / 3`` for small ``n``.
        n_neighbors: UMAP neighbourhood size; clipped to ``n - 1`` for small ``n``.
        min_dist: UMAP minimum distance between embedded points, in ``[0, 1]``.
    """

    method: Method = "pca"
    n_components: Literal[2, 3] = 2
    seed: int = 0
    preprocess: Preprocess = "none"
    perplexity: float = 30.0
    n_neighbors: int = 15
    min_dist: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {self.method!r}")
        if not _is_int(self.n_components) or self.n_components not in (2, 3):
            raise ConfigError(f"n_components must be 2 or 3, got {self.n_components!r}")
        if not _is_int(self.seed) or not 0 <= int(self.seed) < 2**32:
            raise ConfigError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.preprocess not in PREPROCESSING:
            raise ConfigError(f"preprocess must be one of {PREPROCESSING}, got {self.preprocess!r}")
        if not _is_real(self.perplexity) or not math.isfinite(self.perplexity) or self.perplexity <= 0:
            raise ConfigError(f"perplexity must be a finite number > 0, got {self.perplexity!r}")
        if not _is_int(self.n_neighbors) or self.n_neighbors < 2:
            raise ConfigError(f"n_neighbors must be an integer >= 2, got {self.n_neighbors!r}")
        if not _is_real(self.min_dist) or not 0.0 <= float(self.min_dist) <= 1.0:
            raise ConfigError(f"min_dist must be a number in [0, 1], got {self.min_dist!r}")

    def canonical(self) -> ReductionSettings:
        """The same settings with the fields this method ignores reset to their defaults.

        PCA ignores seed, perplexity and the UMAP fields; t-SNE ignores the UMAP fields;
        UMAP ignores perplexity. Settings that must give the same picture compare (and
        hash, so share a cache entry) equal after this.
        """
        from dataclasses import replace

        default = ReductionSettings()
        if self.method == "pca":
            return replace(self, seed=default.seed, perplexity=default.perplexity,
                           n_neighbors=default.n_neighbors, min_dist=default.min_dist)
        if self.method == "tsne":
            return replace(self, n_neighbors=default.n_neighbors, min_dist=default.min_dist)
        return replace(self, perplexity=default.perplexity)

    def describe(self) -> str:
        """Short human label for titles, e.g. ``"t-SNE 2D (perplexity 30, seed 0)"``."""
        parts: list[str] = []
        if self.method == "tsne":
            parts += [f"perplexity {self.perplexity:g}", f"seed {self.seed}"]
        elif self.method == "umap":
            parts += [f"n_neighbors {self.n_neighbors}", f"min_dist {self.min_dist:g}", f"seed {self.seed}"]
        if self.preprocess != "none":
            parts.insert(0, self.preprocess)
        label = f"{METHOD_LABELS[self.method]} {self.n_components}D"
        return f"{label} ({', '.join(parts)})" if parts else label


@dataclass(frozen=True)
class _Preprocessor:
    """Row preprocessing fitted on training points (means and scales)."""

    kind: str
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    @classmethod
    def fit(cls, kind: str, X: np.ndarray) -> "_Preprocessor":
        if kind == "none":
            return cls(kind)
        mean = X.mean(axis=0)
        if kind == "standardize":
            std = X.std(axis=0)
            # Constant features carry no information; dividing by 1 keeps them at 0
            # instead of producing nan.
            std[std <= np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))] = 1.0
            return cls(kind, mean, std)
        return cls(kind, mean)

    def apply(self, X: np.ndarray) -> np.ndarray:
        if self.kind == "none":
            return X
        assert self.mean is not None
        out = X - self.mean
        if self.kind == "standardize":
            assert self.scale is not None
            return out / self.scale
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        # Zero rows stay zero rather than becoming nan.
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


@dataclass(frozen=True, eq=False)
class Projection:
    """A fitted 2D/3D projection of ``n`` points.

    Attributes:
        coords: ``(n, k)`` float32 coordinates, one row per input row.
        settings: the settings that produced it.
        params: the parameters actually used after clipping for small ``n`` (e.g.
            ``perplexity``, ``n_neighbors``, ``backend``) and, for PCA,
            ``explained_variance_ratio``.

    Hold a ``Projection`` in a resource cache (it keeps the fitted model); cache
    ``coords`` alone where values must be pickled.
    """

    coords: np.ndarray
    settings: ReductionSettings
    params: dict[str, Any] = field(default_factory=dict)
    _preprocessor: _Preprocessor | None = field(default=None, repr=False)
    _transform: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    @property
    def n_points(self) -> int:
        return int(self.coords.shape[0])

    def describe(self) -> str:
        """Title label with the parameters actually used (perplexity and n_neighbors are
        clipped for small samples, so the requested values would misstate the picture)."""
        from dataclasses import replace

        used = {k: self.params[k] for k in ("perplexity", "n_neighbors") if k in self.params}
        return replace(self.settings, **used).describe() if used else self.settings.describe()

    def transform(self, X_new: ArrayLike) -> np.ndarray:
        """Place new points (same width as the training data) into this projection.

        PCA projects exactly; t-SNE optimises each new point against the fixed map
        (openTSNE ``TSNEEmbedding.transform``); UMAP uses ``UMAP.transform``. Returns
        ``(m, k)`` float32.
        """
        if self._transform is None or self._preprocessor is None:
            raise ConfigError("this Projection has no fitted model to transform with")
        X = _as_matrix(X_new, "X_new", min_rows=1)
        width = self.params.get("n_features")
        if width is not None and X.shape[1] != width:
            raise ConfigError(f"X_new has {X.shape[1]} features; the projection was fitted on {width}")
        coords = self._transform(self._preprocessor.apply(X))
        return np.ascontiguousarray(coords, dtype=np.float32)


def _as_matrix(X: ArrayLike, name: str, min_rows: int = MIN_POINTS) -> np.ndarray:
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D array (points x features), got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ConfigError(
            f"{name} has {arr.shape[0]} point(s); at least {min_rows} are needed "
            f"(choose more clips or words)"
        )
    if arr.shape[1] < 1:
        raise ConfigError(f"{name} has no features (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} contains NaN or infinite values; cannot project it")
    return arr


def effective_perplexity(perplexity: float, n: int) -> float:
    """t-SNE perplexity clipped so ``3 * perplexity`` neighbours exist among ``n`` points."""
    return float(min(perplexity, (n - 1) / 3.0))


def effective_n_neighbors(n_neighbors: int, n: int) -> int:
    """UMAP ``n_neighbors`` clipped to ``n - 1`` (and at least 2)."""
    return int(max(2, min(n_neighbors, n - 1)))


def reduce(
    X: ArrayLike,
    settings: ReductionSettings | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> Projection:
    """Project the rows of ``X`` (``(n, d)``, ``n >= 3``) to ``settings.n_components`` dims.

    Args:
        X: embedding matrix, one row per clip.
        settings: method and parameters; defaults to 2D PCA.
        progress: optional callback; t-SNE reports every 50 iterations and can be stopped
            (raises :class:`~embedviz.errors.Cancelled`), PCA and UMAP report start and end.

    Raises:
        ConfigError: fewer than 3 points, a non-2-D or non-finite ``X``.
    """
    settings = settings or ReductionSettings()
    Xf = _as_matrix(X, "X")
    pre = _Preprocessor.fit(settings.preprocess, Xf)
    Xp = pre.apply(Xf)
    n, d = Xp.shape
    params: dict[str, Any] = {"n_points": n, "n_features": d}
    log.debug("reduce %s on %d x %d", settings.describe(), n, d)
    if settings.method == "pca":
        coords, fn = _fit_pca(Xp, settings, params, progress)
    elif settings.method == "tsne":
        coords, fn = _fit_tsne(Xp, settings, params, progress)
    else:
        coords, fn = _fit_umap(Xp, settings, params, progress)
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    return Projection(coords=coords, settings=settings, params=params, _preprocessor=pre, _transform=fn)


def pca_solver(n: int, d: int) -> str:
    """The scikit-learn PCA solver :func:`reduce` uses for an ``n x d`` matrix.

    Embeddings are mostly tall (more clips than dimensions, at most ~1,300 dimensions):
    there the eigenvectors of the ``d x d`` covariance ("covariance_eigh": one matrix
    product over the data, then a ``d x d`` eigenproblem) are exact to float precision for
    the leading components a plot shows, and 2-60x faster than scipy's SVD of the data
    (measured on the loaded 2-core machine: 525 x 128, 0.02-0.13 s vs 1.3-1.4 s; 5,250 x
    768, 2.1-2.7 s vs 4.7-24 s). Wide data keeps the full SVD (exact, O(n d min(n, d)))
    up to :data:`PCA_FULL_MAX_N` rows, then the seeded randomised solver (deterministic,
    a few passes over the data).
    """
    if d <= PCA_COVARIANCE_MAX_D and n >= d:
        return "covariance_eigh"
    return "full" if n <= PCA_FULL_MAX_N else "randomized"


def _fit_pca(
    X: np.ndarray, settings: ReductionSettings, params: dict[str, Any], progress: ProgressCallback | None
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    from sklearn.decomposition import PCA

    reporter = ProgressReporter(progress, total=1, stage="PCA")
    reporter.report("fitting")
    k = settings.n_components
    n, d = X.shape
    fitted_k = min(k, n, d)
    solver = pca_solver(n, d)
    pca = PCA(n_components=fitted_k, svd_solver=solver, random_state=0 if solver == "randomized" else None)
    coords = pca.fit_transform(X)
    params.update(
        backend=f"sklearn.PCA-{solver}",
        explained_variance_ratio=[float(v) for v in pca.explained_variance_ratio_],
    )
    if fitted_k < k:
        # Keeps the (n, k) shape contract when the data has fewer dimensions than asked.
        log.warning("PCA: only %d component(s) exist for %d x %d data; padding with zeros", fitted_k, n, d)
        params["padded_components"] = k - fitted_k

    def pad(Z: np.ndarray) -> np.ndarray:
        if Z.shape[1] == k:
            return Z
        return np.hstack([Z, np.zeros((Z.shape[0], k - Z.shape[1]))])

    reporter.advance(1, "done")
    return pad(coords), lambda Z: pad(pca.transform(Z))


def _fit_tsne(
    X: np.ndarray, settings: ReductionSettings, params: dict[str, Any], progress: ProgressCallback | None
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    from openTSNE import TSNE

    n = X.shape[0]
    perplexity = effective_perplexity(settings.perplexity, n)
    if perplexity < settings.perplexity:
        log.info("t-SNE: perplexity %.3g clipped to %.3g for %d points", settings.perplexity, perplexity, n)
    gradient = "fft" if settings.n_components == 2 and n >= FFT_MIN_POINTS else "bh"
    params.update(backend=f"openTSNE-{gradient}", perplexity=perplexity)

    reporter = ProgressReporter(progress, total=TSNE_EARLY_ITER + TSNE_ITER, stage="t-SNE")
    reporter.report("neighbours")
    phase_offset = {"value": 0}

    def callback(iteration: int, error: float, embedding: np.ndarray) -> bool:
        reporter.done = phase_offset["value"] + iteration
        reporter.report(f"KL {error:.3f}")  # raises Cancelled when asked to stop
        return False

    tsne = TSNE(
        n_components=settings.n_components,
        perplexity=perplexity,
        early_exaggeration_iter=TSNE_EARLY_ITER,
        n_iter=TSNE_ITER,
        initialization="pca",
        negative_gradient_method=gradient,
        n_jobs=1,
        random_state=int(settings.seed),
        callbacks=callback if progress is not None else None,
        callbacks_every_iters=50,
        verbose=False,
    )
    # openTSNE optimises in two phases; the callback sees iterations per phase.
    embedding = _run_tsne(tsne, X, phase_offset)
    # The callback belongs to this fit; transform() must not report into it.
    embedding.gradient_descent_params["callbacks"] = None
    # TSNEEmbedding.transform re-centres the map on its bounding-box centre in place;
    # doing it now keeps `coords` and later transformed points in the same frame.
    embedding -= (np.max(embedding, axis=0) + np.min(embedding, axis=0)) / 2
    reporter.done = reporter.total
    reporter.report("done")
    coords = np.array(embedding, dtype=np.float64)
    # openTSNE's transform defaults (perplexity 5, k 25) assume a large map.
    new_perplexity = float(min(5.0, (n - 1) / 3.0))
    k_init = int(min(25, n))

    def transform(Z: np.ndarray) -> np.ndarray:
        return np.asarray(embedding.transform(Z, perplexity=new_perplexity, k=k_init))

    return coords, transform


def _run_tsne(tsne: Any, X: np.ndarray, phase_offset: dict[str, int]) -> Any:
    """Fit like ``TSNE.fit`` but tell the progress callback which phase is running."""
    embedding = tsne.prepare_initial(X)
    embedding.optimize(
        n_iter=tsne.early_exaggeration_iter,
        exaggeration=tsne.early_exaggeration,
        momentum=tsne.initial_momentum,
        inplace=True,
        propagate_exception=True,
    )
    phase_offset["value"] = tsne.early_exaggeration_iter
    embedding.optimize(
        n_iter=tsne.n_iter,
        exaggeration=tsne.exaggeration,
        momentum=tsne.final_momentum,
        inplace=True,
        propagate_exception=True,
    )
    return embedding


def _fit_umap(
    X: np.ndarray, settings: ReductionSettings, params: dict[str, Any], progress: ProgressCallback | None
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    import warnings

    with warnings.catch_warnings():
        # umap announces that optional TensorFlow (ParametricUMAP) is missing.
        warnings.simplefilter("ignore", ImportWarning)
        import umap

    n = X.shape[0]
    n_neighbors = effective_n_neighbors(settings.n_neighbors, n)
    if n_neighbors < settings.n_neighbors:
        log.info("UMAP: n_neighbors %d clipped to %d for %d points", settings.n_neighbors, n_neighbors, n)
    # The spectral initialisation needs more points than dimensions + 1; tiny sets use
    # a seeded random start instead.
    init = "spectral" if n > settings.n_components + 2 else "random"
    params.update(backend="umap-learn", n_neighbors=n_neighbors, init=init)
    reporter = ProgressReporter(progress, total=1, stage="UMAP")
    reporter.report("fitting")
    model = umap.UMAP(
        n_components=settings.n_components,
        n_neighbors=n_neighbors,
        min_dist=float(settings.min_dist),
        init=init,
        random_state=int(settings.seed),
        n_jobs=1,  # random_state forces this anyway; saying so avoids umap's warning
        transform_seed=int(settings.seed),
        # The fast path on large sets: NN-descent neighbours (umap uses them from 4096
        # points on) without its memory-hungry search index.
        low_memory=True,
    )
    with warnings.catch_warnings():
        # Small or well-clustered data make umap (and the scikit-learn spectral init it
        # calls) warn about disconnected graphs; the layout is still valid and the
        # warning means nothing to a user.
        _ignore_umap_warnings(warnings)
        coords = model.fit_transform(X)
    reporter.advance(1, "done")

    def transform(Z: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            _ignore_umap_warnings(warnings)
            return np.asarray(model.transform(Z))

    return np.asarray(coords, dtype=np.float64), transform


def _ignore_umap_warnings(warnings: Any) -> None:
    warnings.filterwarnings("ignore", category=UserWarning, module="umap")
    warnings.filterwarnings("ignore", message="Graph is not fully connected", category=UserWarning)


# ------------------------------------------------------------------ cost model

#: Requests estimated above these are not started by the app: it offers a smaller
#: sample or PCA instead (:func:`plan_projection`).
MAX_SECONDS = 60.0
MAX_MEMORY_MB = 2000.0

# Fitted to timings on the 2-core development machine (1 thread; bench/bench_reduction.py,
# seeded clustered data of 2026-12-02 and stored log-mel embeddings of 2026-12-04, taking
# the slower of the two: an estimate that is low lets a request hold the server too long):
#   PCA full 20,000 x 768: 3.2 s; 100,000 x 80: 0.6 s      -> O(n d^2)
#   openTSNE FFT, log-mel 10,500 x 80: 49.7 s; 21,000: 56.9 s -> ~40 s + ~0.8 ms per point
#     (clusters: 5,000 x 80: 16.6 s; 10,000: 21.4 s: the grid, so the base, follows the map's extent)
#   openTSNE BH, log-mel 5,250 x 80: 16.4 s; 10,500: 45.4 s -> O(n log n), 4.7e-4 s per n ln n
#     (clusters: 1,000 x 768: 1.6 s; 5,000: 11.8 s)
#   UMAP 5,000 x 768 (numba warm): 4.0 s; first use in a process adds ~25-45 s (compile)
_PCA_S_PER_UNIT = 2.7e-10  # per n * d * min(n, d) (full SVD)
_PCA_RANDOMIZED_S_PER_UNIT = 6e-9  # per n * d (a few passes over the data)
_PCA_COVARIANCE_S_PER_UNIT = 1e-10  # per n * d * d (X^T X in float64, then a d x d eigh)
_TSNE_FFT_BASE_S = 40.0
_TSNE_FFT_S_PER_POINT = 0.8e-3
_TSNE_BH_S_PER_NLOGN = 4.7e-4
_TSNE_3D_FACTOR = 1.8  # log-mel, Barnes-Hut: 3D / 2D = 1.27 at 2,100 points, 1.72 at 5,250 (2026-12-04)
_UMAP_S_PER_POINT = 0.8e-3
_NN_S_PER_UNIT = 2.5e-9  # neighbour search (Annoy / NN-descent) per n * d
UMAP_FIRST_USE_S = 45.0  # measured 25-45 s; 42.8 s on 2026-12-04 (import + both neighbour paths)


def estimate_seconds(method: str, n: int, d: int, dims: int = 2) -> float:
    """Expected wall time of :func:`reduce` on ``n x d`` data to ``dims`` dimensions.

    A calibrated model (see the constants above), good to a factor of about 2 on this
    machine: meant for deciding whether to start a request and for telling the user how
    long it will take, not for benchmarks. UMAP's one-off numba compile is not included
    (:data:`UMAP_FIRST_USE_S`).
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    n, d = max(int(n), 1), max(int(d), 1)
    if method == "pca":
        solver = pca_solver(n, d)
        if solver == "covariance_eigh":
            return _PCA_COVARIANCE_S_PER_UNIT * n * d * d
        if solver == "full":
            return _PCA_S_PER_UNIT * n * d * min(n, d)
        return _PCA_RANDOMIZED_S_PER_UNIT * n * d
    nn = _NN_S_PER_UNIT * n * d
    if method == "tsne":
        if dims == 2 and n >= FFT_MIN_POINTS:
            return _TSNE_FFT_BASE_S + _TSNE_FFT_S_PER_POINT * n + nn
        base = _TSNE_BH_S_PER_NLOGN * n * math.log(max(n, 2))
        return (base * (_TSNE_3D_FACTOR if dims == 3 else 1.0)) + nn
    return _UMAP_S_PER_POINT * n * (1.5 if dims == 3 else 1.0) + nn


def estimate_memory_mb(method: str, n: int, d: int, dims: int = 2) -> float:
    """Expected peak extra memory (MB) of :func:`reduce`: the float64 copy and its
    preprocessed copy of ``X``, plus the method's own structures (t-SNE's sparse
    affinities, ~90 neighbours per point; UMAP's graph and NN-descent candidates)."""
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    data = 2 * n * d * 8
    extra = {"pca": n * d * 8, "tsne": n * 90 * 24 + n * dims * 8 * 4, "umap": n * 15 * 60 + n * d * 4}[method]
    return (data + extra) / 1e6


@dataclass(frozen=True)
class ProjectionPlan:
    """Whether a projection may run now, what it would cost, and what to offer instead.

    Attributes:
        ok: within :data:`MAX_SECONDS` and :data:`MAX_MEMORY_MB`.
        seconds: expected time (see :func:`estimate_seconds`).
        memory_mb: expected extra memory.
        reason: why not (empty when ``ok``), in words for the user.
        suggested_n: the largest number of points this method fits in the budget
            (``n`` itself when ``ok``).
        pca_seconds: what PCA on all ``n`` points would take (the other offer).
    """

    ok: bool
    seconds: float
    memory_mb: float
    reason: str
    suggested_n: int
    pca_seconds: float

    def describe(self) -> str:
        """``"t-SNE on 100,000 points: about 2 min 10 s, 1.4 GB"``-style cost line."""
        return f"about {human_seconds(self.seconds)}, {self.memory_mb / 1000:.1f} GB" if self.memory_mb >= 1000 else (
            f"about {human_seconds(self.seconds)}, {self.memory_mb:.0f} MB")


def human_seconds(seconds: float) -> str:
    """``"under a second"``, ``"42 s"`` or ``"2 min 5 s"``: a duration in words for the user."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def plan_projection(
    n: int,
    d: int,
    settings: ReductionSettings,
    *,
    max_seconds: float = MAX_SECONDS,
    max_memory_mb: float = MAX_MEMORY_MB,
) -> ProjectionPlan:
    """What projecting ``n x d`` with ``settings`` would cost, and whether to start it.

    A page calls this before :func:`reduce`; when ``ok`` is False it shows ``reason`` and
    offers ``suggested_n`` points (a smaller sample) or PCA (``pca_seconds``).
    """
    method, dims = settings.method, int(settings.n_components)
    seconds = estimate_seconds(method, n, d, dims)
    memory = estimate_memory_mb(method, n, d, dims)
    pca_seconds = estimate_seconds("pca", n, d, dims)
    if seconds <= max_seconds and memory <= max_memory_mb:
        return ProjectionPlan(True, seconds, memory, "", int(n), pca_seconds)

    def fits(m: int) -> bool:
        return estimate_seconds(method, m, d, dims) <= max_seconds and estimate_memory_mb(method, m, d, dims) <= max_memory_mb

    lo, hi = 0, int(n)
    while lo < hi:  # the largest m that fits (the estimates grow with m)
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    label = METHOD_LABELS[method]
    why = "time" if seconds > max_seconds else "memory"
    reason = (
        f"{label} on {n:,} points would take {human_seconds(seconds)} and {memory:,.0f} MB "
        f"(over this server's {why} budget of "
        + (f"{max_seconds:.0f} s" if why == "time" else f"{max_memory_mb:,.0f} MB")
        + f"). Use a sample of at most {lo:,} points, or PCA ({human_seconds(pca_seconds)})."
    )
    return ProjectionPlan(False, seconds, memory, reason, lo, pca_seconds)


def projection_notice(method: str, plans: Sequence[ProjectionPlan]) -> str:
    """What to tell the user while the projections of a view's panels run: the method, the
    panels, their points and the expected time in all ("" when there is nothing to wait
    for: PCA, or no panel that may run). ``plans`` are :func:`plan_projection`'s, one per panel."""
    allowed = [p for p in plans if p.ok]
    if method == "pca" or not allowed:
        return ""
    total = sum(p.seconds for p in allowed)
    points = max(p.suggested_n for p in allowed)  # suggested_n is the panel's n when ok
    compile_note = (f" (UMAP's first run on a server adds about {UMAP_FIRST_USE_S:.0f} s to compile)"
                    if method == "umap" else "")
    return (f"{METHOD_LABELS[method]} of {len(allowed)} panel{'s' if len(allowed) > 1 else ''}, up to "
            f"{points:,} points each: about {human_seconds(total)} in all{compile_note}. Computed once: "
            "colours, hidden words, clicks and later visits reuse it.")


def concatenate_layers(blocks: Sequence[ArrayLike]) -> np.ndarray:
    """Join several layers' ``(n, d_i)`` embeddings of the same clips side by side.

    Each block is z-scored per feature and then divided by ``sqrt(d_i)``, so every block
    has total variance 1 (constant features contribute 0) and no layer dominates the
    distances by its scale or by its width. Returns ``(n, sum(d_i))`` float32.

    Raises:
        ConfigError: no blocks, a block that is not 2-D, differing row counts or non-finite values.
    """
    if len(blocks) == 0:
        raise ConfigError("concatenate_layers needs at least one layer block, got none")
    arrays = [np.asarray(b, dtype=np.float64) for b in blocks]
    n = arrays[0].shape[0] if arrays[0].ndim == 2 else -1
    out: list[np.ndarray] = []
    for i, arr in enumerate(arrays):
        if arr.ndim != 2 or arr.shape[1] < 1:
            raise ConfigError(f"layer block {i} must be 2-D (clips x features), got shape {arr.shape}")
        if arr.shape[0] != n:
            raise ConfigError(f"layer block {i} has {arr.shape[0]} rows; block 0 has {n} (must be the same clips)")
        if not np.isfinite(arr).all():
            raise ConfigError(f"layer block {i} contains NaN or infinite values")
        mean = arr.mean(axis=0)
        std = arr.std(axis=0)
        z = np.divide(arr - mean, std, out=np.zeros_like(arr), where=std > 0)
        out.append(z / math.sqrt(arr.shape[1]))
    return np.hstack(out).astype(np.float32)


def align_procrustes(coords_list: Sequence[ArrayLike], *, scale: bool = False) -> list[np.ndarray]:
    """Align a sequence of projections of the same clips so clusters stay in place.

    Panel 0 is kept as is. Each later panel is centred, rotated/reflected with
    orthogonal Procrustes (``scipy.linalg.orthogonal_procrustes``) onto the already
    aligned previous panel, and moved to that panel's centroid. By default each panel
    keeps its own scale, so within-panel distances stay as the method produced them;
    with ``scale=True`` the least-squares isotropic scale is applied as well.

    Args:
        coords_list: ``(n, k)`` arrays; row ``i`` is the same clip in every panel.

    Returns:
        Aligned ``(n, k)`` float32 arrays, in the same order.
    """
    from scipy.linalg import orthogonal_procrustes

    if len(coords_list) == 0:
        return []
    panels = [np.asarray(c, dtype=np.float64) for c in coords_list]
    shape = panels[0].shape
    for i, p in enumerate(panels):
        if p.ndim != 2 or p.shape != shape:
            raise ConfigError(f"panel {i} has shape {p.shape}; all panels must share shape {shape}")
        if not np.isfinite(p).all():
            raise ConfigError(f"panel {i} contains NaN or infinite coordinates")
    aligned = [panels[0]]
    for p in panels[1:]:
        ref = aligned[-1]
        ref_mean = ref.mean(axis=0)
        p_mean = p.mean(axis=0)
        A = ref - ref_mean
        B = p - p_mean
        if not np.any(B):
            aligned.append(np.broadcast_to(ref_mean, p.shape).copy())
            continue
        R, sigma = orthogonal_procrustes(B, A)
        s = sigma / float(np.sum(B * B)) if scale else 1.0
        aligned.append(s * (B @ R) + ref_mean)
    return [a.astype(np.float32) for a in aligned]


__all__ = [
    "FFT_MIN_POINTS",
    "MAX_MEMORY_MB",
    "MAX_SECONDS",
    "PCA_COVARIANCE_MAX_D",
    "PCA_FULL_MAX_N",
    "ProjectionPlan",
    "estimate_memory_mb",
    "estimate_seconds",
    "pca_solver",
    "plan_projection",
    "METHODS",
    "MIN_POINTS",
    "PREPROCESSING",
    "Projection",
    "ReductionSettings",
    "align_procrustes",
    "concatenate_layers",
    "effective_n_neighbors",
    "effective_perplexity",
    "reduce",
]
