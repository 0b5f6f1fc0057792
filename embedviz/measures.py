"""Layer-wise measures from the speech-representation literature, for one layer at a time.

Three numbers per layer, each computed in the original (pooled) embedding space:

* :func:`pwcca_words`: projection-weighted canonical correlation (PWCCA, Morcos et al.
  2018) between the layer and one-hot word labels, as in Pasad et al.'s layer-wise
  analyses (2021, 2023, 2024), with ridge-regularised CCA whose regularisation is chosen
  on held-out data (nested cross-validation: the reported value is always measured on
  clips neither the directions nor the regularisation were fitted on).
* :func:`cluster_word_nmi`: mutual information between k-means clusters of the layer
  (k = number of words) and the words, divided by the words' entropy (the word analogue
  of HuBERT's phone-normalised mutual information, Hsu et al. 2021).
* :func:`abx_across_speakers`: word ABX discrimination. The headline condition
  (``abx_across``) asks the question of the issue: is a clip X closer to another token A
  of its word **by a different speaker** than to a token B of another word? B is by A's
  speaker, so the voice favours neither (Schatz et al. 2013; the ZeroSpeech
  "across-speaker" condition). Two secondary conditions: ``abx_within`` (ZeroSpeech's
  "within-speaker": A, B and X all by X's speaker; needs speakers who said a word twice)
  and ``abx_distractor`` (B by X's own speaker: a layer organised by voice pulls X to B).
  :data:`ABX_CONDITION_LABELS` names each one for the app and the CLI.

All of them cost more than k-NN (PWCCA runs ``2 x folds`` eigen-decompositions, k-means several fits), so
:func:`layer_measures` and :func:`measures_table` work on at most :data:`MEASURES_MAX_N`
clips: above it, a seeded subsample stratified by word (the same rows for every layer),
whose size is returned as ``measures_n``. scikit-learn and SciPy are imported lazily.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import numpy as np

from embedviz.errors import ConfigError
from embedviz.metrics import _labels, _matrix, layers_to_compute, subsample
from embedviz.progress import ProgressCallback, ProgressReporter

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from numpy.typing import ArrayLike

log = logging.getLogger(__name__)

NAN = float("nan")

#: Clips the measures use at most (a seeded, word-stratified subsample above it).
MEASURES_MAX_N = 2000
#: ABX triplets scored at most; below it every valid triplet is scored (exact).
ABX_MAX_TRIPLETS = 20000
#: Shrinkage grid for the layer's covariance in ridge CCA: ``(1 - r) Sxx + r (tr Sxx / d) I``.
PWCCA_REGULARISATION: tuple[float, ...] = (1e-3, 1e-2, 0.1, 0.3, 0.6, 0.9)
#: Outer cross-validation folds of :func:`pwcca_words` (fewer when a word has fewer clips).
PWCCA_FOLDS = 3

AbxCondition = Literal["across", "within", "distractor"]
#: ``across`` (the headline): A and B by one speaker, X by another (Schatz et al. 2013; ZeroSpeech).
#: ``within``: A, B and X by one speaker (ZeroSpeech's within-speaker condition).
#: ``distractor``: A by one speaker, X and B by another (speaker similarity pulls X to B).
ABX_CONDITIONS: tuple[str, ...] = ("across", "within", "distractor")
#: What each ABX condition is, in words (the app's and the CLI's legend). In every one,
#: A and X are two tokens of one word and B a token of another word.
ABX_CONDITION_LABELS: dict[str, str] = {
    "across": "across speakers: A and X by different speakers, B by A's speaker",
    "within": "within speaker: A, B and X all by X's speaker",
    "distractor": "across speakers, B by X's speaker (voice favours the wrong word)",
}

#: Columns of :func:`measures_table` after ``layer``, ``model`` and ``depth``.
MEASURE_COLUMNS: tuple[str, ...] = (
    "pwcca",
    "pwcca_regularisation",
    "pwcca_folds",
    "cluster_nmi",
    "cluster_nmi_chance",
    "abx_across",
    "abx_across_triplets",
    "abx_within",
    "abx_within_triplets",
    "abx_distractor",
    "abx_distractor_triplets",
    "measures_n",
    "n_clips",
)


# ---------------------------------------------------------------------- PWCCA


def _one_hot(codes: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(codes), n_classes))
    out[np.arange(len(codes)), codes] = 1.0
    return out


@dataclass(frozen=True)
class _CcaBasis:
    """What ridge CCA needs from a training set, independent of the regularisation."""

    x_mean: np.ndarray
    y_mean: np.ndarray
    s2: np.ndarray  # eigenvalues of Sxx = Xc^T Xc / n (the nonzero ones)
    vt: np.ndarray  # their eigenvectors (r x d)
    uty: np.ndarray  # U^T Uy (r x ry): left singular vectors of centred X against those of Y
    tau: float  # trace(Sxx) / d: the scale of the ridge
    y_dirs: np.ndarray  # (C x ry): maps centred Y to its whitened coordinates


def _cca_basis(X: np.ndarray, Y: np.ndarray) -> _CcaBasis | None:
    """Eigen-decompose the smaller of ``Xc^T Xc`` (d x d) and ``Xc Xc^T`` (n x n): one
    ``eigh`` of size ``min(n, d)``, several times cheaper than an SVD of ``Xc``."""
    n, d = X.shape
    x_mean, y_mean = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - x_mean, Y - y_mean
    uy, sy, vty = np.linalg.svd(Yc, full_matrices=False)  # n x C: cheap
    keep_y = sy > sy[0] * 1e-10 if len(sy) and sy[0] > 0 else np.zeros(len(sy), dtype=bool)
    if d <= n:
        lam, v = np.linalg.eigh(Xc.T @ Xc)
        keep = lam > max(lam[-1], 0.0) * 1e-12 if lam[-1] > 0 else np.zeros(len(lam), dtype=bool)
        lam, v = lam[keep], v[:, keep]
        sing = np.sqrt(lam)
        uty = ((Xc @ v) / sing).T @ uy[:, keep_y]
        vt = v.T
    else:
        lam, u = np.linalg.eigh(Xc @ Xc.T)
        keep = lam > max(lam[-1], 0.0) * 1e-12 if lam[-1] > 0 else np.zeros(len(lam), dtype=bool)
        lam, u = lam[keep], u[:, keep]
        sing = np.sqrt(lam)
        vt = (Xc.T @ u / sing).T
        uty = u.T @ uy[:, keep_y]
    if not keep.any() or not keep_y.any():
        return None
    s2 = lam / n
    # The label side is whitened exactly: it has at most (words - 1) dimensions, nothing to overfit.
    y_dirs = vty[keep_y].T / (sy[keep_y] / math.sqrt(n))
    return _CcaBasis(x_mean, y_mean, s2, vt, uty, float(s2.sum() / d), y_dirs)


def _cca_directions(basis: _CcaBasis, reg: float) -> tuple[np.ndarray, np.ndarray]:
    """Canonical directions ``(a: d x m, b: C x m)`` of shrinkage-regularised CCA.

    The cross-covariance lies in the row space of centred X, so the whitening only needs
    the regularised eigenvalues there: ``e = (1 - reg) s^2/n + reg tau``. In whitened
    coordinates the cross-covariance is ``diag(sqrt(s^2/n / e)) U^T Uy``; its SVD gives
    the canonical pairs.
    """
    e = (1.0 - reg) * basis.s2 + reg * basis.tau
    M = np.sqrt(basis.s2 / e)[:, None] * basis.uty
    p, _, qt = np.linalg.svd(M, full_matrices=False)
    a = basis.vt.T @ (p / np.sqrt(e)[:, None])
    b = basis.y_dirs @ qt.T
    return a, b


def _pwcca_on(X: np.ndarray, Y: np.ndarray, basis: _CcaBasis, a: np.ndarray, b: np.ndarray) -> float:
    """PWCCA of held-out rows ``(X, Y)`` along directions fitted elsewhere.

    Correlations: Pearson, per canonical pair, on these rows. Weights (Morcos et al. 2018,
    as google/svcca's ``compute_pwcca`` does it): the side with fewer dimensions (the
    one-hot labels unless the layer is narrower) has its canonical variates
    orthonormalised (QR), and each weight is the summed absolute projection of that
    side's centred columns onto a variate: how much of the representation it accounts for.
    """
    Xc = X - basis.x_mean
    Yc = Y - basis.y_mean
    u, v = Xc @ a, Yc @ b
    u = u - u.mean(axis=0)
    v = v - v.mean(axis=0)
    norms = np.linalg.norm(u, axis=0) * np.linalg.norm(v, axis=0)
    ok = norms > 1e-12
    if not ok.any():
        return NAN
    rho = np.where(ok, np.sum(u * v, axis=0) / np.where(ok, norms, 1.0), 0.0)
    side, variates = (Yc, v) if Y.shape[1] <= X.shape[1] else (Xc, u)
    q, _ = np.linalg.qr(variates[:, ok])
    weights = np.sum(np.abs(q.T @ (side - side.mean(axis=0))), axis=1)
    total = weights.sum()
    if not total > 0:
        return NAN
    return float(np.sum(weights / total * rho[ok]))


def _inner_split(codes: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 75/25 split of training rows for choosing the regularisation (stratified when
    every word has at least 2 rows, plain shuffled otherwise)."""
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

    counts = np.bincount(codes)
    counts = counts[counts > 0]
    n_test = max(1, int(round(0.25 * len(codes))))
    if counts.min() >= 2 and n_test >= len(counts) and len(codes) - n_test >= len(counts):
        splitter: Any = StratifiedShuffleSplit(n_splits=1, test_size=n_test, random_state=seed)
        return next(splitter.split(np.zeros(len(codes)), codes))
    return next(ShuffleSplit(n_splits=1, test_size=n_test, random_state=seed).split(np.zeros(len(codes))))


@dataclass(frozen=True)
class PwccaResult:
    """Held-out PWCCA: ``value`` (mean over outer folds), the regularisation chosen most
    often, and how many outer folds were used (0 when undefined)."""

    value: float
    regularisation: float
    folds: int

    def __post_init__(self) -> None:
        if self.folds < 0:
            raise ConfigError(f"folds must be >= 0, got {self.folds}")


def pwcca_words(
    X: ArrayLike,
    words: ArrayLike,
    *,
    folds: int = PWCCA_FOLDS,
    grid: Sequence[float] = PWCCA_REGULARISATION,
    seed: int = 0,
) -> PwccaResult:
    """Projection-weighted CCA between a layer and one-hot word labels, on held-out clips.

    References: Morcos, Raghu & Bengio (2018), "Insights on representational similarity
    in neural networks with canonical correlation", NeurIPS (PWCCA); Pasad, Chou &
    Livescu (2021), "Layer-wise analysis of a self-supervised speech representation
    model", ASRU, and Pasad, Shi & Livescu (2023), "Comparative layer-wise analysis of
    self-supervised speech models", ICASSP (CCA with one-hot word labels per layer,
    regularisation chosen on held-out data).

    Method: ridge CCA with the layer's covariance shrunk towards ``tau I``
    (``(1 - r) Sxx + r tau I``, ``tau = tr(Sxx) / d``; the one-hot side is whitened
    exactly, its rank is words - 1). Nested cross-validation: outer stratified
    ``folds``; inside each training part a 75/25 split chooses ``r`` from ``grid`` by
    held-out PWCCA; directions refitted on the whole training part are then scored on the
    outer test fold. The canonical correlations are Pearson correlations on the test
    fold (they can be slightly negative for a layer that holds no word information, whose
    expected value is 0); PWCCA weights them by the projection weights of Morcos et al.

    Returns:
        :class:`PwccaResult`; value in about ``[-1, 1]`` (1: the words are a linear
        function of the layer on unseen clips), nan with fewer than 2 words, fewer than 2
        clips of some word, or a constant layer.
    """
    from sklearn.model_selection import StratifiedKFold

    Xf = np.asarray(_matrix(X), dtype=np.float64)
    y = _labels(words, Xf.shape[0], "words")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, got {folds!r}")
    if not grid or any(not 0.0 <= float(r) < 1.0 for r in grid):
        raise ConfigError(f"grid must hold regularisations in [0, 1), got {list(grid)!r}")
    names, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(codes)
    if len(names) < 2 or counts.min() < 2:
        return PwccaResult(NAN, NAN, 0)
    Y = _one_hot(codes, len(names))
    n_folds = int(min(folds, counts.min()))
    outer = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    values: list[float] = []
    chosen: list[float] = []
    for fold, (train, test) in enumerate(outer.split(Xf, codes)):
        fit, val = _inner_split(codes[train], seed + fold)
        inner = _cca_basis(Xf[train][fit], Y[train][fit])
        best_r, best = float(grid[0]), -math.inf
        if inner is not None:
            for r in grid:
                a, b = _cca_directions(inner, float(r))
                score = _pwcca_on(Xf[train][val], Y[train][val], inner, a, b)
                if math.isfinite(score) and score > best:
                    best_r, best = float(r), score
        basis = _cca_basis(Xf[train], Y[train])
        if basis is None:
            continue
        a, b = _cca_directions(basis, best_r)
        value = _pwcca_on(Xf[test], Y[test], basis, a, b)
        if math.isfinite(value):
            values.append(value)
            chosen.append(best_r)
    if not values:
        return PwccaResult(NAN, NAN, 0)
    regs, times = np.unique(chosen, return_counts=True)
    return PwccaResult(float(np.mean(values)), float(regs[np.argmax(times)]), len(values))


# ---------------------------------------------------------------------- clusters


def _unit_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X, dtype=np.float64), where=norms > 0)


def nmi_chance(n: int, n_words: int, n_clusters: int, word_entropy: float) -> float:
    """Expected value of :func:`cluster_word_nmi` when clusters ignore the words: the bias
    of the plug-in mutual information, ``(C - 1)(K - 1) / (2 n)`` nats (Miller-Madow),
    divided by the words' entropy. Any finite sample shows about this much."""
    if n <= 0 or not word_entropy > 0:
        return NAN
    return (n_words - 1) * (n_clusters - 1) / (2.0 * n) / word_entropy


def cluster_word_nmi(X: ArrayLike, words: ArrayLike, *, seed: int = 0, n_init: int = 3) -> tuple[float, float]:
    """Mutual information between k-means clusters of a layer and the words, normalised
    by the words' entropy: ``I(word; cluster) / H(word)`` in ``[0, 1]``.

    1: knowing a clip's cluster tells its word; 0: it tells nothing. k = number of words,
    k-means++ seeded with ``seed`` (``n_init`` restarts), on L2-normalised vectors so
    clusters follow cosine geometry like the other numbers here. Computed with
    ``sklearn.metrics.mutual_info_score`` and ``scipy.stats.entropy`` (nats).

    Reference: the word analogue of phone-normalised mutual information (PNMI) of Hsu et
    al. (2021), "HuBERT: Self-supervised speech representation learning by masked
    prediction of hidden units", IEEE/ACM TASLP; used per layer for words by Pasad et al.
    (2024), "What do self-supervised speech models know about words?", TACL.

    Returns:
        ``(nmi, chance)``, chance from :func:`nmi_chance`; ``(nan, nan)`` with fewer than
        2 words or fewer clips than words.
    """
    from scipy.stats import entropy
    from sklearn.cluster import KMeans
    from sklearn.metrics import mutual_info_score

    Xf = _matrix(X)
    y = _labels(words, Xf.shape[0], "words")
    names, codes = np.unique(y, return_inverse=True)
    k = len(names)
    if k < 2 or Xf.shape[0] <= k:
        return NAN, NAN
    h = float(entropy(np.bincount(codes)))
    U = _unit_rows(np.asarray(Xf, dtype=np.float64))
    distinct = len(np.unique(U, axis=0))
    # KMeans cannot find more clusters than distinct points (it warns and merges them).
    clusters = KMeans(n_clusters=min(k, distinct), n_init=n_init, random_state=seed).fit_predict(U)
    return float(mutual_info_score(codes, clusters) / h), nmi_chance(len(codes), k, k, h)


# ---------------------------------------------------------------------- ABX


@dataclass(frozen=True)
class AbxResult:
    """ABX score (fraction of triplets with d(A, X) < d(B, X), ties 1/2) over ``triplets``
    scored; ``exhaustive``: every valid triplet was scored (else a seeded sample)."""

    score: float
    triplets: int
    exhaustive: bool

    @property
    def error(self) -> float:
        """The ABX error rate, ``1 - score`` (ZeroSpeech reports this)."""
        return 1.0 - self.score


def _abx_counts(wc: np.ndarray, sc: np.ndarray, condition: str) -> tuple[np.ndarray, np.ndarray]:
    """Per clip as X: how many valid (A, B) pairs it has; and the speaker x word count table."""
    table = np.zeros((int(sc.max()) + 1, int(wc.max()) + 1), dtype=np.int64)
    np.add.at(table, (sc, wc), 1)
    per_speaker = table.sum(axis=1)
    per_word = table.sum(axis=0)
    if condition == "across":
        # A: word w_x, speaker s != s_x; B: speaker s, another word.
        pairs_by_word = (table * (per_speaker[:, None] - table)).sum(axis=0)  # over all s
        own = table[sc, wc] * (per_speaker[sc] - table[sc, wc])
        return pairs_by_word[wc] - own, table
    if condition == "within":
        # A: another clip of w_x by s_x; B: s_x, another word.
        return (table[sc, wc] - 1) * (per_speaker[sc] - table[sc, wc]), table
    n_a = per_word[wc] - table[sc, wc]
    n_b = per_speaker[sc] - table[sc, wc]
    return n_a * n_b, table


def _abx_triplets_all(wc: np.ndarray, sc: np.ndarray, condition: str) -> np.ndarray:
    """Every valid ``(A, B, X)`` row-index triplet (only called when there are few)."""
    out: list[tuple[int, int, int]] = []
    rows = np.arange(len(wc))
    for x in range(len(wc)):
        other_speaker = sc != sc[x] if condition != "within" else (sc == sc[x]) & (rows != x)
        a_rows = np.flatnonzero((wc == wc[x]) & other_speaker)
        for a in a_rows:
            b_speaker = sc[a] if condition == "across" else sc[x]
            for b in np.flatnonzero((sc == b_speaker) & (wc != wc[x])):
                out.append((int(a), int(b), x))
    return np.array(out, dtype=np.int64).reshape(-1, 3)


def _abx_triplets_sampled(
    wc: np.ndarray, sc: np.ndarray, valid_x: np.ndarray, condition: str, count: int, seed: int
) -> np.ndarray:
    """``count`` triplets: X uniform over clips that have one, A uniform among X's word's
    clips by other speakers (``within``: X's other clips of its word), B uniform among the
    B speaker's clips of other words (rejection sampling, vectorised; never an ``n x n``
    table)."""
    rng = np.random.default_rng(seed)
    by_word = np.argsort(wc, kind="stable")
    word_start = np.concatenate([[0], np.cumsum(np.bincount(wc))])
    by_speaker = np.argsort(sc, kind="stable")
    speaker_start = np.concatenate([[0], np.cumsum(np.bincount(sc))])
    # within: A comes from X's (speaker, word) group, which drawing from the word would rarely hit.
    n_words = int(wc.max()) + 1
    group = sc * n_words + wc
    by_group = np.argsort(group, kind="stable")
    group_start = np.concatenate([[0], np.cumsum(np.bincount(group, minlength=(int(sc.max()) + 1) * n_words))])

    def draw(order: np.ndarray, starts: np.ndarray, groups: np.ndarray) -> np.ndarray:
        sizes = starts[groups + 1] - starts[groups]
        return order[starts[groups] + (rng.random(len(groups)) * sizes).astype(np.int64)]

    found: list[np.ndarray] = []
    need = count
    for _ in range(200):
        if need <= 0:
            break
        m = max(need * 2, 64)
        x = valid_x[rng.integers(0, len(valid_x), m)]
        if condition == "within":
            a = draw(by_group, group_start, group[x])
            a_ok = a != x
        else:
            a = draw(by_word, word_start, wc[x])
            a_ok = sc[a] != sc[x]
        b_speaker = sc[a] if condition == "across" else sc[x]
        b = draw(by_speaker, speaker_start, b_speaker)
        ok = a_ok & (wc[b] != wc[x])
        kept = np.column_stack([a, b, x])[ok][:need]
        found.append(kept)
        need -= len(kept)
    return np.concatenate(found) if found else np.zeros((0, 3), np.int64)


def abx_across_speakers(
    X: ArrayLike,
    words: ArrayLike,
    speakers: ArrayLike,
    *,
    condition: AbxCondition = "across",
    max_triplets: int = ABX_MAX_TRIPLETS,
    seed: int = 0,
) -> AbxResult:
    """Word ABX discrimination: the **score** (1 = perfect, 0.5 = chance;
    :attr:`AbxResult.error` is the error rate ZeroSpeech reports).

    A triplet is ``(A, B, X)`` with A and X two tokens of one word and B a token of
    another word; it asks whether X is closer to A than to B. ``condition="across"`` (the
    default and the headline number): A by a different speaker than X, B by A's speaker
    (Schatz et al. 2013, the ZeroSpeech across-speaker condition: is a clip closer to
    another token of its word by a different speaker than to another word? The voice
    favours neither A nor B). ``"within"``: A, B and X by one speaker (ZeroSpeech's
    within-speaker condition; only speakers who said a word twice have triplets).
    ``"distractor"``: A by another speaker, B by X's speaker, so a layer that groups
    clips by voice puts X nearer B and scores below 0.5. A triplet scores 1 when ``d(A, X) < d(B, X)``, 1/2 on
    a tie, 0 otherwise, with cosine distance between pooled vectors (all-zero vectors
    are at distance 1 from everything). The score is the mean over triplets: every valid
    triplet when there are at most ``max_triplets``, else that many seeded samples (X
    uniform, then A, then B); it is not first averaged per word or speaker pair as the
    ZeroSpeech toolkit does.

    References: Schatz, Peddinti, Bach, Jansen, Hermansky & Dupoux (2013), "Evaluating
    speech features with the minimal-pair ABX task: analysis of the classical MFC/PLP
    pipeline", Interspeech; Carlin, Thomas, Jansen & Hermansky (2011), "Rapid evaluation
    of speech representations for spoken term discovery", Interspeech (same-different
    word discrimination).

    Returns:
        :class:`AbxResult`; score nan and 0 triplets when no valid triplet exists (one
        speaker, or one word; ``within``: no speaker said a word twice).
    """
    if condition not in ABX_CONDITIONS:
        raise ConfigError(f"condition must be one of {', '.join(ABX_CONDITIONS)}, got {condition!r}")
    if isinstance(max_triplets, bool) or not isinstance(max_triplets, (int, np.integer)) or max_triplets < 1:
        raise ConfigError(f"max_triplets must be an integer >= 1, got {max_triplets!r}")
    Xf = _matrix(X)
    w = _labels(words, Xf.shape[0], "words")
    s = _labels(speakers, Xf.shape[0], "speakers")
    if len(w) < 3:
        return AbxResult(NAN, 0, True)
    wc = np.unique(w, return_inverse=True)[1].astype(np.int64)
    sc = np.unique(s, return_inverse=True)[1].astype(np.int64)
    per_x, _ = _abx_counts(wc, sc, condition)
    total = int(per_x.sum())
    if total == 0:
        return AbxResult(NAN, 0, True)
    exhaustive = total <= max_triplets
    if exhaustive:
        triplets = _abx_triplets_all(wc, sc, condition)
    else:
        triplets = _abx_triplets_sampled(wc, sc, np.flatnonzero(per_x > 0), condition, int(max_triplets), seed)
    if len(triplets) == 0:
        return AbxResult(NAN, 0, exhaustive)
    U = _unit_rows(np.asarray(Xf, dtype=np.float64))
    a, b, x = triplets.T
    d_ax = 1.0 - np.einsum("ij,ij->i", U[a], U[x])
    d_bx = 1.0 - np.einsum("ij,ij->i", U[b], U[x])
    # Ties (duplicate vectors) at float rounding level count one half.
    tie = np.isclose(d_ax, d_bx, rtol=0.0, atol=1e-12)
    scores = np.where(tie, 0.5, (d_ax < d_bx).astype(np.float64))
    return AbxResult(float(scores.mean()), int(len(triplets)), exhaustive)


def abx_legend() -> list[str]:
    """One line per ABX column of :func:`measures_table`, naming its condition (the CLI prints them)."""
    lines = [f"abx_{c}: word ABX score (1 perfect, 0.5 chance; error = 1 - score), {ABX_CONDITION_LABELS[c]}"
             + (" [headline; Schatz et al. 2013, ZeroSpeech across-speaker]" if c == "across" else "")
             for c in ABX_CONDITIONS]
    return lines + ["A and X are two tokens of one word, B a token of another word; abx_<condition>_triplets: "
                    "triplets scored"]


# ---------------------------------------------------------------------- per layer


def measure_rows(n: int, words: ArrayLike, *, max_n: int | None = MEASURES_MAX_N, seed: int = 0) -> np.ndarray:
    """The rows the measures use: all of them up to ``max_n``, else a seeded subsample
    stratified by word (:func:`embedviz.metrics.subsample`)."""
    if max_n is None:
        return np.arange(n)
    return subsample(n, max_n, seed, np.asarray(words))


def layer_measures(
    X: ArrayLike,
    words: ArrayLike,
    speakers: ArrayLike | None = None,
    *,
    seed: int = 0,
    max_n: int | None = MEASURES_MAX_N,
) -> dict[str, Any]:
    """:data:`MEASURE_COLUMNS` of one layer (PWCCA, cluster NMI and its chance level, the
    ABX score of each of :data:`ABX_CONDITIONS` with its triplet count), on at most ``max_n`` clips (``measures_n``;
    ``n_clips`` is the layer's total). ABX needs ``speakers`` (nan without)."""
    Xf = _matrix(X)
    y = _labels(words, Xf.shape[0], "words")
    rows = measure_rows(len(y), y, max_n=max_n, seed=seed)
    Xs, ys = Xf[rows], y[rows]
    pw = pwcca_words(Xs, ys, seed=seed)
    nmi, nmi_base = cluster_word_nmi(Xs, ys, seed=seed)
    out: dict[str, Any] = {
        "pwcca": pw.value,
        "pwcca_regularisation": pw.regularisation,
        "pwcca_folds": pw.folds,
        "cluster_nmi": nmi,
        "cluster_nmi_chance": nmi_base,
        "abx_across": NAN,
        "abx_across_triplets": 0,
        "abx_within": NAN,
        "abx_within_triplets": 0,
        "abx_distractor": NAN,
        "abx_distractor_triplets": 0,
        "measures_n": int(len(rows)),
        "n_clips": int(Xf.shape[0]),
    }
    if speakers is not None:
        ss = _labels(speakers, Xf.shape[0], "speakers")[rows]
        for condition in ABX_CONDITIONS:
            result = abx_across_speakers(Xs, ys, ss, condition=condition, seed=seed)  # type: ignore[arg-type]
            out[f"abx_{condition}"] = result.score
            out[f"abx_{condition}_triplets"] = result.triplets
    return out


def measures_table(
    embeddings: Mapping[str, ArrayLike],
    words: ArrayLike,
    speakers: ArrayLike | None = None,
    *,
    model: str | None = None,
    seed: int = 0,
    max_n: int | None = MEASURES_MAX_N,
    only: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
) -> "pd.DataFrame":
    """One row of :func:`layer_measures` per layer, in the given order: ``layer``, then
    ``model`` if given, ``depth`` (0..1), then :data:`MEASURE_COLUMNS`. Every layer uses
    the same subsample of clips. ``only``: compute just these layers (``depth`` still
    relative to all of ``embeddings``: the app computes and caches one layer at a time).
    ``progress`` gets one step per layer and can stop."""
    import pandas as pd

    layers = list(embeddings)
    todo = layers_to_compute(layers, only)
    reporter = ProgressReporter(progress, total=len(todo), stage="measures")
    reporter.report(f"{len(todo)} layers")
    rows: list[dict[str, Any]] = []
    for i, layer in enumerate(layers):
        if layer not in todo:
            continue
        row: dict[str, Any] = {"layer": str(layer)}
        if model is not None:
            row["model"] = model
        row["depth"] = i / (len(layers) - 1) if len(layers) > 1 else 0.0
        row.update(layer_measures(embeddings[layer], words, speakers, seed=seed, max_n=max_n))
        rows.append(row)
        reporter.advance(1, f"layer {layer}")
    columns = ["layer"] + (["model"] if model is not None else []) + ["depth", *MEASURE_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


__all__ = [
    "ABX_CONDITIONS",
    "ABX_CONDITION_LABELS",
    "ABX_MAX_TRIPLETS",
    "MEASURES_MAX_N",
    "MEASURE_COLUMNS",
    "PWCCA_FOLDS",
    "PWCCA_REGULARISATION",
    "AbxResult",
    "PwccaResult",
    "abx_across_speakers",
    "abx_legend",
    "cluster_word_nmi",
    "layer_measures",
    "measure_rows",
    "measures_table",
    "nmi_chance",
    "pwcca_words",
]
