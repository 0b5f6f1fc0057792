"""How well a layer separates words: numbers computed in the ORIGINAL embedding space.

None of these functions look at a 2D/3D picture (except :func:`trustworthiness`, which
measures how faithful a picture is). All of them are nan-safe: they return ``nan``
instead of raising when a number is undefined (one word only, too few clips per word,
constant features), and cosine distances treat all-zero vectors as distance 1 from
everything (scikit-learn's convention) instead of producing nan.

Leave-one-out k-NN (:func:`knn_accuracy`) is the headline number: for every clip, the
``k`` nearest *other* clips vote on its word. With ``groups`` (speaker ids) neighbours
spoken by the query's own speaker are not allowed to vote, which removes the easy
"same voice, same recording conditions" shortcut.

scikit-learn is imported lazily inside the functions.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from embedviz.errors import ConfigError
from embedviz.progress import ProgressCallback, ProgressReporter

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from numpy.typing import ArrayLike

log = logging.getLogger(__name__)

NAN = float("nan")

#: Speaker-vs-word columns (:func:`speaker_word_knn`), in :data:`METRIC_COLUMNS` after the
#: separability numbers. Word k-NN *across speakers* is ``speaker_disjoint_knn``.
SPEAKER_WORD_COLUMNS: tuple[str, ...] = (
    "speaker_knn_within_word",
    "speaker_within_word_chance",
    "speaker_within_word_n",
    "speaker_knn_across_words",
    "speaker_across_words_chance",
    "speaker_across_words_n",
)

#: Column order of :func:`metrics_table` after ``layer`` (and ``model`` when given).
METRIC_COLUMNS: tuple[str, ...] = (
    "depth",
    "knn_accuracy",
    "speaker_disjoint_knn",
    "silhouette",
    "probe_accuracy",
    "chance",
    "n_clips",
    "n_words",
    "knn_n",
    "silhouette_n",
    "probe_n",
    *SPEAKER_WORD_COLUMNS,
)

#: The separability numbers a layer curve can show (labels: figures.METRIC_LABELS).
SEPARABILITY_METRICS: tuple[str, ...] = ("knn_accuracy", "speaker_disjoint_knn", "silhouette", "probe_accuracy")

# Memory (MB) for one chunk of the pairwise distance matrix in k-NN.
_WORKING_MEMORY_MB = 64

#: Caps that bound memory and time at any ``n``. Above them a number is computed on a
#: seeded, stratified subsample of rows and the sample size is returned with it (the
#: ``*_n`` keys of :func:`layer_metrics`), so whoever shows the number can state it.
#: k-NN: query clips whose vote is counted (neighbours are still searched among ALL
#: clips, in chunks of ``_WORKING_MEMORY_MB``), so time is O(KNN_MAX_QUERIES x n x d).
KNN_MAX_QUERIES = 5000
#: Silhouette: rows used. Time O(m^2 d); scikit-learn chunks the distances.
SILHOUETTE_MAX_N = 5000
#: Trustworthiness: rows used; scikit-learn builds m x m matrices (m = 3000: ~150 MB).
TRUST_MAX_N = 3000
#: Linear probe: rows used for the cross-validation.
PROBE_MAX_N = 10000
#: CKA: the largest side of a square (Gram ``n x n`` or feature ``d x d``) matrix built.
CKA_MAX_SIDE = 4096


def _matrix(X: ArrayLike, name: str = "X") -> np.ndarray:
    arr = np.asarray(X)
    # float32 stays float32: a float64 copy of 100,000 x 768 would be 600 MB more.
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D array (clips x features), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} contains NaN or infinite values")
    return arr


def _labels(labels: ArrayLike, n: int, name: str = "labels") -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ConfigError(f"{name} must have one entry per row ({n}), got shape {arr.shape}")
    return arr


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def subsample(n: int, cap: int, seed: int = 0, labels: ArrayLike | None = None) -> np.ndarray:
    """Sorted indices of at most ``cap`` of ``n`` rows, drawn reproducibly with ``seed``.

    All rows when ``n <= cap``. With ``labels`` the draw is stratified: every label keeps
    its share (rounded down, at least one row), so a subsample of balanced data stays
    balanced.
    """
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n, size=cap, replace=False))
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    counts = np.bincount(codes)
    quota = np.maximum(1, np.floor(counts * (cap / n))).astype(np.int64)
    # A random key per row ranked within its label: rows ranked below the label's quota
    # form a stratified draw, without a Python loop over labels.
    order = np.lexsort((rng.random(n), codes))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, counts)
    return np.flatnonzero(rank < quota[codes])


def _chunk_rows(n_cols: int, n_rows: int, working_memory_mb: float = _WORKING_MEMORY_MB) -> int:
    """Rows per chunk of an ``n_rows x n_cols`` float64 distance matrix within the working
    memory (scikit-learn's ``get_chunk_n_rows`` rule, so chunks are the same as its own)."""
    rows = int(working_memory_mb * 2**20 // (8 * max(1, n_cols)))
    return max(1, min(rows, n_rows))


def distance_chunks(
    X: np.ndarray,
    Y: np.ndarray | None = None,
    metric: str = "cosine",
    *,
    working_memory_mb: float = _WORKING_MEMORY_MB,
    zero_diagonal: bool | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, D)``: the rows ``start:start + len(D)`` of the distance matrix from ``X`` to
    ``Y`` (``None``: ``X`` to itself), in chunks of ``working_memory_mb`` (never ``n x n``).

    The values are exactly those of ``sklearn.metrics.pairwise_distances_chunked`` (same
    chunks, same arithmetic). For ``"cosine"`` the rows are normalised once instead of
    once per chunk and clipped with numpy: scikit-learn 1.9's array-API ``clip`` and its
    per-chunk normalisation of all of ``Y`` took about half of a 5,000-point k-NN pass.
    Other metrics go through scikit-learn.

    ``zero_diagonal`` (cosine, ``Y`` None): set each row's distance to itself to 0, as
    scikit-learn does only when the whole matrix is one chunk; ``None``: do as it does.
    """
    from sklearn.metrics import pairwise_distances_chunked

    same = Y is None
    Yf = X if same else Y
    if metric != "cosine":
        start = 0
        for D in pairwise_distances_chunked(X, None if same else Yf, metric=metric, working_memory=working_memory_mb):
            yield start, D
            start += D.shape[0]
        return
    from sklearn.preprocessing import normalize

    dtype = np.float32 if X.dtype == np.float32 and Yf.dtype == np.float32 else np.float64
    Xn = normalize(np.asarray(X, dtype=dtype), copy=True)
    Yn = Xn if same else normalize(np.asarray(Yf, dtype=dtype), copy=True)
    n = X.shape[0]
    step = _chunk_rows(Yf.shape[0], n, working_memory_mb)
    for start in range(0, n, step):
        S = Xn[start : start + step] @ Yn.T
        # 1 - S without a copy, then clipped to [0, 2]: scikit-learn's cosine_distances.
        S *= -1
        S += 1
        np.clip(S, 0.0, 2.0, out=S)
        if same and (step >= n if zero_diagonal is None else zero_diagonal):
            # One chunk of X against itself: scikit-learn sees ``X is Y`` and zeroes the
            # diagonal (rounding leaves ~1e-7 there).
            rows = np.arange(S.shape[0])
            S[rows, start + rows] = 0.0
        yield start, S


def knn_predict(
    X: ArrayLike,
    labels: ArrayLike,
    k: int = 5,
    metric: str = "cosine",
    groups: ArrayLike | None = None,
    queries: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out k-NN predictions.

    ``queries`` (row indices) restricts which rows are *predicted*; every row is still a
    candidate neighbour. Distances are computed in chunks of query rows against all
    rows, so memory stays bounded (never ``n x n``).

    For each row, its ``k`` nearest other rows (by index: duplicates of a point still
    count as neighbours) vote; the most frequent label wins and a tie goes to the tied
    label whose member is nearest. With ``groups``, rows of the query's own group are not
    candidates. Fewer than ``k`` candidates: all of them vote.

    Returns:
        ``(predictions, valid)``: predicted labels (object array) and a boolean mask of
        rows that had at least one candidate neighbour (``predictions`` is ``None`` elsewhere).
    """
    Xf = _matrix(X)
    n = Xf.shape[0]
    y = _labels(labels, n)
    k = _check_k(k)
    g = None if groups is None else _labels(groups, n, "groups")
    names, codes = np.unique(y, return_inverse=True)
    n_classes = len(names)
    predictions = np.empty(n, dtype=object)
    valid = np.zeros(n, dtype=bool)
    if n < 2:
        return predictions, valid
    if g is not None:
        _, gcodes = np.unique(g, return_inverse=True)

    kk = min(k, n - 1)
    q = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)

    def reduce_chunk(D: np.ndarray, chunk_start: int) -> tuple[np.ndarray, np.ndarray]:
        rows = q[chunk_start : chunk_start + D.shape[0]]
        # Each chunk is a fresh array of this call's own generator: marked in place. (A
        # float64 copy changed no order, since float32 -> float64 is exact, and cost
        # a third of the k-NN's time.)
        if not (D.flags.writeable and D.dtype in (np.float32, np.float64)):
            D = np.array(D, dtype=np.float64)
        D[np.arange(D.shape[0]), rows] = np.inf
        if g is not None:
            D[gcodes[rows][:, None] == gcodes[None, :]] = np.inf
        part = np.argpartition(D, kk - 1, axis=1)[:, :kk]
        dist = np.take_along_axis(D, part, axis=1)
        # Distance first, then index, so equal distances resolve the same way every run.
        order = np.lexsort((part, dist), axis=1)
        return np.take_along_axis(part, order, axis=1), np.take_along_axis(dist, order, axis=1)

    chunks = [reduce_chunk(D, start) for start, D in distance_chunks(Xf[q], Xf, metric=metric)]
    nbrs = np.concatenate([c[0] for c in chunks])
    usable = np.isfinite(np.concatenate([c[1] for c in chunks]))
    votes = codes[nbrs]
    m = len(q)
    # Vote counts per query and word, all queries at once.
    counts = np.zeros((m, n_classes), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(m), kk), votes.ravel()), usable.ravel().astype(np.int64))
    top = counts.max(axis=1)
    # Neighbours are sorted nearest first: the first usable voter of a tied word wins.
    is_top = usable & (np.take_along_axis(counts, votes, axis=1) == top[:, None])
    winners = votes[np.arange(m), np.argmax(is_top, axis=1)]
    has = usable.any(axis=1)
    predictions[q[has]] = names[winners[has]]
    valid[q[has]] = True
    return predictions, valid


def knn_accuracy(
    X: ArrayLike,
    labels: ArrayLike,
    k: int = 5,
    metric: str = "cosine",
    groups: ArrayLike | None = None,
    *,
    max_queries: int | None = KNN_MAX_QUERIES,
    seed: int = 0,
) -> float:
    """Leave-one-out k-NN word accuracy in ``[0, 1]`` (see :func:`knn_predict`).

    Above ``max_queries`` rows the accuracy is averaged over a seeded stratified
    subsample of query clips (their neighbours are searched among all rows);
    :func:`knn_accuracy_n` also returns how many. ``None``: every row.

    Args:
        X: ``(n, d)`` embeddings.
        labels: ``(n,)`` word of each row.
        k: neighbours that vote.
        metric: any scikit-learn pairwise metric; ``"cosine"`` by default.
        groups: optional ``(n,)`` speaker of each row; same-speaker neighbours are excluded.

    Returns:
        Fraction of rows whose prediction is right, over rows that had a candidate
        neighbour; ``nan`` if there are fewer than 2 rows or no row had one.
    """
    return knn_accuracy_n(X, labels, k=k, metric=metric, groups=groups, max_queries=max_queries, seed=seed)[0]


def knn_accuracy_n(
    X: ArrayLike,
    labels: ArrayLike,
    k: int = 5,
    metric: str = "cosine",
    groups: ArrayLike | None = None,
    *,
    max_queries: int | None = KNN_MAX_QUERIES,
    seed: int = 0,
) -> tuple[float, int]:
    """:func:`knn_accuracy` and the number of query clips it was averaged over."""
    y = np.asarray(labels)
    queries = None if max_queries is None else subsample(len(y), max_queries, seed, y)
    predictions, valid = knn_predict(X, y, k=k, metric=metric, groups=groups, queries=queries)
    n_used = int(valid.sum())
    if not n_used:
        return NAN, 0
    return float(np.mean(predictions[valid] == y[valid])), n_used


def speaker_disjoint_knn_accuracy(
    X: ArrayLike, labels: ArrayLike, speakers: ArrayLike, k: int = 5, metric: str = "cosine"
) -> float:
    """k-NN word accuracy where no clip may be voted on by clips of its own speaker."""
    return knn_accuracy(X, labels, k=k, metric=metric, groups=speakers)


#: Neighbours that vote on a speaker. 1, not 5: a speaker has few clips of a word (2-3 in
#: typical sets), so a 5-NN majority is won by any other speaker with more clips nearby
#: (measured: speaker-encoded synthetic data, 3 clips per speaker and word, scored 0.11
#: with k = 5 and 1.0 with k = 1). With k = 1 the stated chance levels are exact.
SPEAKER_K = 1


def _codes(values: np.ndarray) -> np.ndarray:
    return np.unique(values, return_inverse=True)[1].astype(np.int64)


def speaker_knn_within_word(
    X: ArrayLike,
    words: ArrayLike,
    speakers: ArrayLike,
    k: int = SPEAKER_K,
    metric: str = "cosine",
    *,
    max_queries: int | None = KNN_MAX_QUERIES,
    seed: int = 0,
) -> tuple[float, float, int]:
    """Speaker-identity k-NN accuracy *within words*: how much speaker information a layer
    holds once the word is fixed.

    For a clip of word ``w`` by speaker ``s`` only the other clips of ``w`` are candidate
    neighbours, and they vote on the **speaker**. Only clips whose speaker said ``w`` at
    least twice are scored (otherwise no right answer exists among the candidates);
    clips of speakers who said ``w`` once are still candidates (wrong answers).

    Chance is the accuracy of guessing the speaker of a random other clip of the same
    word, ``(n_sw - 1) / (n_w - 1)``, averaged over the scored clips.

    Returns:
        ``(accuracy, chance, n_scored)``; ``(nan, nan, 0)`` when no speaker said any word
        twice (the demo and Speech Commands-style synthetic sets have one clip per
        speaker and word: then see :func:`speaker_knn_across_words`).
    """
    Xf = _matrix(X)
    w = _labels(words, Xf.shape[0], "words")
    s = _labels(speakers, Xf.shape[0], "speakers")
    if len(w) < 2:
        return NAN, NAN, 0
    wc, sc = _codes(w), _codes(s)
    # Clip count of each (word, speaker) cell, looked up per row.
    pair = wc * (int(sc.max()) + 1) + sc
    _, pair_codes, pair_counts = np.unique(pair, return_inverse=True, return_counts=True)
    eligible = pair_counts[pair_codes] >= 2
    if not eligible.any():
        return NAN, NAN, 0
    rows = np.flatnonzero(eligible)
    if max_queries is not None and len(rows) > max_queries:
        rows = rows[subsample(len(rows), max_queries, seed, w[rows])]
    query = np.zeros(len(w), dtype=bool)
    query[rows] = True
    word_counts = np.bincount(wc)
    correct = 0
    scored = 0
    chance_sum = 0.0
    for code in np.unique(wc[rows]):
        members = np.flatnonzero(wc == code)
        local_q = np.flatnonzero(query[members])
        pred, valid = knn_predict(Xf[members], s[members], k=k, metric=metric, queries=local_q)
        hit = valid[local_q]
        q_rows = members[local_q][hit]
        correct += int(np.sum(pred[local_q][hit] == s[q_rows]))
        scored += int(hit.sum())
        chance_sum += float(np.sum((pair_counts[pair_codes[q_rows]] - 1) / (word_counts[code] - 1)))
    if not scored:
        return NAN, NAN, 0
    return correct / scored, chance_sum / scored, scored


def speaker_knn_across_words(
    X: ArrayLike,
    words: ArrayLike,
    speakers: ArrayLike,
    k: int = SPEAKER_K,
    metric: str = "cosine",
    *,
    max_queries: int | None = KNN_MAX_QUERIES,
    seed: int = 0,
) -> tuple[float, float, int]:
    """Speaker-identity k-NN accuracy *across words*: can a clip's speaker be told from
    that speaker's other words?

    Clips of the query's own word are not candidates (so word similarity cannot help);
    the neighbours vote on the speaker. Only clips whose speaker also said another word
    are scored. Defined on data with one clip per speaker and word, where
    :func:`speaker_knn_within_word` is not. Chance: the accuracy of guessing the speaker
    of a random clip of another word, ``(n_s - n_sw) / (n - n_w)``, averaged.

    Returns:
        ``(accuracy, chance, n_scored)``; ``(nan, nan, 0)`` when nothing can be scored.
    """
    Xf = _matrix(X)
    w = _labels(words, Xf.shape[0], "words")
    s = _labels(speakers, Xf.shape[0], "speakers")
    n = len(w)
    if n < 2:
        return NAN, NAN, 0
    wc, sc = _codes(w), _codes(s)
    pair = wc * (int(sc.max()) + 1) + sc
    _, pair_codes, pair_counts = np.unique(pair, return_inverse=True, return_counts=True)
    n_s = np.bincount(sc)[sc]
    n_w = np.bincount(wc)[wc]
    n_sw = pair_counts[pair_codes]
    eligible = np.flatnonzero(n_s - n_sw >= 1)
    if len(eligible) == 0:
        return NAN, NAN, 0
    if max_queries is not None and len(eligible) > max_queries:
        eligible = eligible[subsample(len(eligible), max_queries, seed, w[eligible])]
    pred, valid = knn_predict(Xf, s, k=k, metric=metric, groups=w, queries=eligible)
    rows = eligible[valid[eligible]]
    if len(rows) == 0:
        return NAN, NAN, 0
    chance = float(np.mean((n_s[rows] - n_sw[rows]) / (n - n_w[rows])))
    return float(np.mean(pred[rows] == s[rows])), chance, int(len(rows))


def speaker_word_knn(
    X: ArrayLike, words: ArrayLike, speakers: ArrayLike, k: int = SPEAKER_K, metric: str = "cosine", *, seed: int = 0
) -> dict[str, Any]:
    """The :data:`SPEAKER_WORD_COLUMNS` of one layer: speaker-identity k-NN within words
    and across words, each with its chance level and the number of clips scored.

    Their counterpart, word k-NN across speakers, is ``speaker_disjoint_knn`` of
    :func:`layer_metrics`: where the speaker curve is above the word curve, a layer's
    neighbourhoods are organised more by voice than by word.
    """
    within = speaker_knn_within_word(X, words, speakers, k=k, metric=metric, seed=seed)
    across = speaker_knn_across_words(X, words, speakers, k=k, metric=metric, seed=seed)
    return dict(zip(SPEAKER_WORD_COLUMNS, (*within, *across)))


def knn_confusion(
    X: ArrayLike,
    labels: ArrayLike,
    k: int = 5,
    metric: str = "cosine",
    *,
    max_queries: int | None = KNN_MAX_QUERIES,
    seed: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """Confusion matrix of leave-one-out k-NN predictions.

    Above ``max_queries`` rows only a seeded stratified subsample of clips is predicted
    (the matrix then sums to about ``max_queries``; rows are best read normalised).

    Returns:
        ``(matrix, label_names)``: ``matrix[i, j]`` counts clips of word ``label_names[i]``
        predicted as ``label_names[j]``; names are sorted.
    """
    from sklearn.metrics import confusion_matrix

    y = np.asarray(labels)
    queries = None if max_queries is None else subsample(len(y), max_queries, seed, y)
    predictions, valid = knn_predict(X, y, k=k, metric=metric, queries=queries)
    names = [str(v) for v in np.unique(y)]
    if not valid.any():
        return np.zeros((len(names), len(names)), dtype=np.int64), names
    matrix = confusion_matrix(
        y[valid].astype(str), predictions[valid].astype(str), labels=names
    )
    return matrix.astype(np.int64), names


def silhouette(
    X: ArrayLike, labels: ArrayLike, metric: str = "cosine", *, max_n: int | None = SILHOUETTE_MAX_N, seed: int = 0
) -> float:
    """Mean silhouette coefficient of the word labels in ``[-1, 1]``.

    ``nan`` unless there are at least 2 words and fewer words than clips (scikit-learn's
    requirement). Words with a single clip score 0 (scikit-learn's convention). Above
    ``max_n`` rows it is computed on a seeded stratified subsample of ``max_n`` rows
    (:func:`silhouette_n` also returns the size).
    """
    return silhouette_n(X, labels, metric, max_n=max_n, seed=seed)[0]


def silhouette_n(
    X: ArrayLike, labels: ArrayLike, metric: str = "cosine", *, max_n: int | None = SILHOUETTE_MAX_N, seed: int = 0
) -> tuple[float, int]:
    """:func:`silhouette` and the number of rows it was computed on."""
    Xf = _matrix(X)
    y = _labels(labels, Xf.shape[0])
    if max_n is not None:
        rows = subsample(len(y), max_n, seed, y)
        Xf, y = Xf[rows], y[rows]
    n_labels = len(np.unique(y))
    if n_labels < 2 or n_labels > Xf.shape[0] - 1:
        return NAN, 0
    value = _silhouette_score(Xf, y, metric)
    return (value if math.isfinite(value) else NAN), int(Xf.shape[0])


def _silhouette_score(X: np.ndarray, y: np.ndarray, metric: str) -> float:
    """``sklearn.metrics.silhouette_score(X, y, metric=metric)``, step for step (the same
    value), over :func:`distance_chunks` (its cosine distances without the slow clip).

    scikit-learn chunks the silhouette by its global ``working_memory`` (1 GB: at 5,000
    rows the whole matrix at once, 100-200 MB); here chunks are :data:`_WORKING_MEMORY_MB`
    and the diagonal is zeroed exactly when scikit-learn's single chunk would zero it.
    Metrics other than cosine go to scikit-learn itself.
    """
    import sklearn

    if metric != "cosine":
        from sklearn.metrics import silhouette_score

        return float(silhouette_score(X, y, metric=metric))
    n = X.shape[0]
    whole = _chunk_rows(n, n, float(sklearn.get_config()["working_memory"])) >= n
    _, codes = np.unique(y, return_inverse=True)
    codes = codes.astype(np.intp).ravel()
    freqs = np.bincount(codes)
    intra_parts, inter_parts = [], []
    for start, D in distance_chunks(X, None, metric, zero_diagonal=whole):
        # scikit-learn's _silhouette_reduce: each row's summed distance to every word.
        sums = np.zeros((D.shape[0], len(freqs)), dtype=D.dtype)
        for i in range(D.shape[0]):
            sums[i] += np.bincount(codes, weights=D[i], minlength=len(freqs))
        own = (np.arange(D.shape[0]), codes[start : start + D.shape[0]])
        intra_parts.append(sums[own])
        sums[own] = np.inf
        sums /= freqs
        inter_parts.append(sums.min(axis=1))
    intra = np.concatenate(intra_parts)
    inter = np.concatenate(inter_parts)
    denom = (freqs - 1).take(codes, mode="clip")
    with np.errstate(divide="ignore", invalid="ignore"):
        intra /= denom
        samples = inter - intra
        samples /= np.maximum(intra, inter)
    # Words with one clip give nan, which scores 0 (scikit-learn's convention).
    return float(np.mean(np.nan_to_num(samples)))


def probe_accuracy(
    X: ArrayLike,
    labels: ArrayLike,
    folds: int = 5,
    seed: int = 0,
    max_iter: int = 200,
    *,
    max_n: int | None = PROBE_MAX_N,
) -> float:
    """Cross-validated accuracy of a linear (logistic-regression) word probe.

    Standardisation is fitted inside each training fold (a ``Pipeline``), folds are
    ``StratifiedKFold`` shuffled with ``seed`` and clipped to the smallest word's clip
    count. ``nan`` when fewer than 2 words or fewer than 2 clips of some word.

    ``max_iter`` bounds lbfgs: on 5000 clips x 768 dims x 35 words the held-out accuracy
    was identical after 100, 300 and 1000 iterations (1.6 s vs 4.3 s vs 11.5 s), because
    late iterations only grow the weights of already-separated classes. Above ``max_n``
    rows the cross-validation runs on a seeded stratified subsample of ``max_n`` rows.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xf = _matrix(X)
    y = _labels(labels, Xf.shape[0])
    if max_n is not None:
        rows = subsample(len(y), max_n, seed, y)
        Xf, y = Xf[rows], y[rows]
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, got {folds!r}")
    _, counts = np.unique(y, return_counts=True)
    if len(counts) < 2:
        return NAN
    n_folds = int(min(folds, counts.min()))
    if n_folds < 2:
        log.info("probe_accuracy: a word has only %d clip(s); cannot cross-validate", counts.min())
        return NAN
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Unconverged lbfgs still gives a usable probe; the warning would only confuse.
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(model, Xf, y, cv=cv, scoring="accuracy")
    return float(np.mean(scores))


def _centred(X: np.ndarray) -> np.ndarray:
    return X - X.mean(axis=0, keepdims=True)


def _cka_parts(Xc: np.ndarray, Yc: np.ndarray) -> tuple[float, float, float]:
    """(HSIC(X,Y), HSIC(X,X), HSIC(Y,Y)) up to a common factor, cheapest form first."""
    n, dx = Xc.shape
    dy = Yc.shape[1]
    gram_cheaper = n * n * (dx + dy) < n * (dx * dy + dx * dx + dy * dy)
    # Never a square matrix wider than CKA_MAX_SIDE: callers subsample rows first when
    # both n and the widths exceed it (see :func:`_cka_rows`).
    if n <= CKA_MAX_SIDE and (gram_cheaper or max(dx, dy) > CKA_MAX_SIDE):
        K = Xc @ Xc.T
        L = Yc @ Yc.T
        return float(np.sum(K * L)), float(np.sum(K * K)), float(np.sum(L * L))
    xy = Yc.T @ Xc
    xx = Xc.T @ Xc
    yy = Yc.T @ Yc
    return float(np.sum(xy * xy)), float(np.sum(xx * xx)), float(np.sum(yy * yy))


def _cka_rows(n: int, width: int, seed: int = 0) -> np.ndarray:
    """Rows CKA uses: all, unless both ``n`` and the widest block exceed CKA_MAX_SIDE
    (then neither the Gram nor the feature form fits the cap and rows are subsampled)."""
    if n <= CKA_MAX_SIDE or width <= CKA_MAX_SIDE:
        return np.arange(n)
    return subsample(n, CKA_MAX_SIDE, seed)


def linear_cka(X: ArrayLike, Y: ArrayLike) -> float:
    """Centred linear CKA (Kornblith et al., 2019) between two representations of the same rows.

    ``CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred ``Xc``,
    ``Yc``; widths may differ. Invariant to orthogonal transforms and isotropic scaling.
    Returns a value in ``[0, 1]``, or ``nan`` if either side is constant or ``n < 2``.
    """
    Xf = _matrix(X, "X")
    Yf = _matrix(Y, "Y")
    if Xf.shape[0] != Yf.shape[0]:
        raise ConfigError(f"X has {Xf.shape[0]} rows and Y has {Yf.shape[0]}; CKA needs the same clips")
    if Xf.shape[0] < 2:
        return NAN
    rows = _cka_rows(Xf.shape[0], max(Xf.shape[1], Yf.shape[1]))
    Xf, Yf = Xf[rows], Yf[rows]
    xy, xx, yy = _cka_parts(_centred(Xf), _centred(Yf))
    denom = math.sqrt(xx) * math.sqrt(yy)
    if not denom > 0:
        return NAN
    return float(min(1.0, max(0.0, xy / denom)))


def cka_matrix(blocks: Mapping[str, ArrayLike]) -> "pd.DataFrame":
    """Pairwise linear CKA between named representations of the same clips (symmetric).

    Each block's self-similarity is computed once. Blocks at least as wide as there are
    clips keep their ``n x n`` Gram matrix (no larger than the block itself) while
    ``n <= CKA_MAX_SIDE``, so pairs of them cost ``O(n^2)``; other pairs use the
    feature-space form ``O(n dx dy)``. When both ``n`` and some block's width exceed the
    cap, a seeded subsample of ``CKA_MAX_SIDE`` rows is used. ``df.attrs["n"]`` is the
    number of rows the values were computed on. Constant blocks give ``nan`` rows.
    """
    import pandas as pd

    names = list(blocks)
    centred = {name: _centred(_matrix(blocks[name], f"block {name!r}")) for name in names}
    rows = {c.shape[0] for c in centred.values()}
    if len(rows) > 1:
        raise ConfigError(f"all blocks must have the same number of rows (clips), got {sorted(rows)}")
    n = rows.pop() if rows else 0
    keep = _cka_rows(n, max((c.shape[1] for c in centred.values()), default=0))
    if len(keep) < n:
        centred = {name: _centred(Z[keep]) for name, Z in centred.items()}
        n = len(keep)
    grams: dict[str, np.ndarray] = {}
    self_norm: dict[str, float] = {}
    for name, Z in centred.items():
        if Z.shape[1] >= n and n <= CKA_MAX_SIDE:
            grams[name] = Z @ Z.T
            self_norm[name] = float(np.linalg.norm(grams[name]))
        else:
            self_norm[name] = float(np.linalg.norm(Z.T @ Z))
    out = np.full((len(names), len(names)), NAN)
    if n < 2:
        empty = pd.DataFrame(out, index=pd.Index(names, name="layer"), columns=pd.Index(names, name="layer"))
        empty.attrs["n"] = n
        return empty
    for i, a in enumerate(names):
        for j in range(i, len(names)):
            b = names[j]
            denom = self_norm[a] * self_norm[b]
            if not denom > 0:
                continue
            if a in grams and b in grams:
                cross = float(np.sum(grams[a] * grams[b]))
            else:
                cross = float(np.sum(np.square(centred[b].T @ centred[a])))
            out[i, j] = out[j, i] = min(1.0, max(0.0, cross / denom))
    df = pd.DataFrame(out, index=pd.Index(names, name="layer"), columns=pd.Index(names, name="layer"))
    df.attrs["n"] = n
    return df


def nearest_neighbours(X: ArrayLike, index: int, k: int = 5, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows nearest to row ``index`` (itself excluded), closest first.

    Returns ``(indices, distances)``; fewer than ``k`` when there are fewer other rows.
    Distances are in the original embedding space, never in a projection.
    """
    from sklearn.metrics import pairwise_distances

    Xf = _matrix(X)
    if not 0 <= index < Xf.shape[0]:
        raise ConfigError(f"row {index} is out of range for {Xf.shape[0]} rows")
    d = pairwise_distances(Xf[index : index + 1], Xf, metric=metric)[0]
    d = np.nan_to_num(d, nan=np.inf)
    d[index] = np.inf
    order = np.argsort(d, kind="stable")[: min(k, Xf.shape[0] - 1)]
    return order, d[order]


def trustworthiness(
    X: ArrayLike,
    coords: ArrayLike,
    n_neighbors: int = 5,
    metric: str = "euclidean",
    *,
    max_n: int | None = TRUST_MAX_N,
    seed: int = 0,
) -> float:
    """How well a picture keeps original-space neighbourhoods (scikit-learn), in ``[0, 1]``.

    ``n_neighbors`` is clipped below ``n / 2`` as scikit-learn requires; ``nan`` if
    fewer than 3 points. scikit-learn builds ``n x n`` distance matrices (35,000 points
    crashed a server), so above ``max_n`` points it is computed on a seeded subsample of
    ``max_n`` (neighbourhoods within the subsample, in both spaces);
    :func:`trustworthiness_n` also returns the size.
    """
    return trustworthiness_n(X, coords, n_neighbors, metric, max_n=max_n, seed=seed)[0]


def trustworthiness_n(
    X: ArrayLike,
    coords: ArrayLike,
    n_neighbors: int = 5,
    metric: str = "euclidean",
    *,
    max_n: int | None = TRUST_MAX_N,
    seed: int = 0,
) -> tuple[float, int]:
    """:func:`trustworthiness` and the number of points it was computed on."""
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    Xf = _matrix(X, "X")
    C = _matrix(coords, "coords")
    if Xf.shape[0] != C.shape[0]:
        raise ConfigError(f"X has {Xf.shape[0]} rows and coords has {C.shape[0]}")
    if max_n is not None:
        rows = subsample(Xf.shape[0], max_n, seed)
        Xf, C = Xf[rows], C[rows]
    k = min(_check_k(n_neighbors), (Xf.shape[0] - 1) // 2)
    if k < 1:
        return NAN, 0
    if metric != "cosine":
        return float(sk_trustworthiness(Xf, C, n_neighbors=k, metric=metric)), int(Xf.shape[0])
    return _trustworthiness(Xf, C, k, metric), int(Xf.shape[0])


def _trustworthiness(X: np.ndarray, C: np.ndarray, k: int, metric: str) -> float:
    """``sklearn.manifold.trustworthiness(X, C, n_neighbors=k, metric=metric)``, the same value.

    scikit-learn argsorts the whole ``n x n`` distance matrix and builds an ``n x n``
    inverted index only to look up ``k`` ranks per row (at 3,000 points about 1 s and
    ~150 MB). The rank of a picture neighbour ``j`` in row ``i`` is ``1 +`` the number of
    points nearer than it when no other point is exactly as near; rows where one is
    (duplicates) are argsorted as scikit-learn does, so ties resolve the same way.
    Distances come in :func:`distance_chunks` (never ``n x n``).
    """
    from sklearn.neighbors import NearestNeighbors

    n = X.shape[0]
    picture = NearestNeighbors(n_neighbors=k).fit(C).kneighbors(return_distance=False)
    t = 0
    for start, D in distance_chunks(X, None, metric):
        rows = np.arange(D.shape[0])
        D[rows, start + rows] = np.inf  # a point is not its own neighbour
        nbrs = picture[start : start + D.shape[0]]
        dj = np.take_along_axis(D, nbrs, axis=1)
        ranks = np.empty(nbrs.shape, dtype=np.int64)
        tied = np.zeros(D.shape[0], dtype=bool)
        for c in range(k):
            ranks[:, c] = 1 + np.count_nonzero(D < dj[:, c : c + 1], axis=1)
            tied |= np.count_nonzero(D == dj[:, c : c + 1], axis=1) > 1
        for r in np.flatnonzero(tied):
            inverted = np.empty(n, dtype=np.int64)
            inverted[np.argsort(D[r])] = np.arange(1, n + 1)
            ranks[r] = inverted[nbrs[r]]
        ranks -= k
        t += int(np.sum(ranks[ranks > 0]))
    return float(1.0 - t * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))))


def chance_rate(labels: ArrayLike) -> float:
    """Accuracy of always guessing the most frequent word (``1 / n_words`` when balanced)."""
    y = np.asarray(labels)
    if y.size == 0:
        return NAN
    _, counts = np.unique(y, return_counts=True)
    return float(counts.max() / y.size)


def layer_metrics(
    X: ArrayLike,
    words: ArrayLike,
    speakers: ArrayLike | None = None,
    k: int = 5,
    seed: int = 0,
    *,
    metric: str = "cosine",
    probe: bool = True,
    speaker_identity: bool = False,
) -> dict[str, Any]:
    """All separability numbers of one layer.

    With ``speaker_identity`` (and speakers) the :data:`SPEAKER_WORD_COLUMNS` of
    :func:`speaker_word_knn` are added (two more k-NN passes: off for the Explore panels).

    Returns:
        ``knn_accuracy``, ``silhouette``, ``probe_accuracy`` (``nan`` with ``probe=False``),
        ``speaker_disjoint_knn`` (``nan`` without speakers or when no clip has a
        neighbour from another speaker), ``n_clips``, ``n_words`` and ``chance`` (the
        majority-word rate, which is ``1 / n_words`` for balanced data), and the sample
        sizes behind the capped numbers: ``knn_n``, ``silhouette_n``, ``probe_n``
        (each equals ``n_clips`` below its cap; 0 where the number is nan).
    """
    Xf = _matrix(X)
    y = _labels(words, Xf.shape[0], "words")
    knn, knn_n = knn_accuracy_n(Xf, y, k=k, metric=metric, seed=seed)
    sil, sil_n = silhouette_n(Xf, y, metric=metric, seed=seed)
    probe_n = 0
    probe_value = NAN
    if probe:
        probe_value = probe_accuracy(Xf, y, seed=seed)
        probe_n = int(min(len(y), PROBE_MAX_N)) if math.isfinite(probe_value) else 0
    out: dict[str, Any] = {
        "knn_accuracy": knn,
        "speaker_disjoint_knn": NAN,
        "silhouette": sil,
        "probe_accuracy": probe_value,
        "chance": chance_rate(y),
        "n_clips": int(Xf.shape[0]),
        "n_words": int(len(np.unique(y))),
        "knn_n": knn_n,
        "silhouette_n": sil_n,
        "probe_n": probe_n,
    }
    if speakers is not None:
        s = _labels(speakers, Xf.shape[0], "speakers")
        if len(np.unique(s)) >= 2:
            out["speaker_disjoint_knn"] = knn_accuracy(Xf, y, k=k, metric=metric, groups=s, seed=seed)
        if speaker_identity:
            out.update(speaker_word_knn(Xf, y, s, metric=metric, seed=seed))
    return out


def layers_to_compute(layers: Sequence[str], only: Sequence[str] | None) -> set[str]:
    """The layers of ``layers`` a table computes: all, or those in ``only``.

    Raises:
        ConfigError: ``only`` names a layer that is not in ``layers``.
    """
    unknown = sorted(set(only or ()) - set(layers))
    if unknown:
        raise ConfigError(f"no such layer(s): {', '.join(unknown)}; layers are {', '.join(layers)}")
    return set(layers) if only is None else set(only)


def metrics_table(
    embeddings: Mapping[str, ArrayLike],
    words: ArrayLike,
    speakers: ArrayLike | None = None,
    k: int = 5,
    seed: int = 0,
    *,
    model: str | None = None,
    metric: str = "cosine",
    probe: bool = True,
    speaker_identity: bool = True,
    only: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
) -> "pd.DataFrame":
    """One row of :func:`layer_metrics` per layer, in the given order.

    ``speaker_identity`` adds the speaker-vs-word k-NN columns (nan without speakers).
    ``only``: compute just these layers (``depth`` still relative to all of ``embeddings``:
    the app computes and caches one layer at a time, with progress between them).

    Columns: ``layer``, then ``model`` if given, then :data:`METRIC_COLUMNS`; ``depth`` is
    the layer's position scaled to ``0..1`` (0 for a single layer). All layers must hold
    the same clips in the same order as ``words``/``speakers``.
    """
    import pandas as pd

    layers = list(embeddings)
    todo = layers_to_compute(layers, only)
    reporter = ProgressReporter(progress, total=len(todo), stage="metrics")
    rows: list[dict[str, Any]] = []
    for i, layer in enumerate(layers):
        if layer not in todo:
            continue
        values = layer_metrics(embeddings[layer], words, speakers, k=k, seed=seed, metric=metric, probe=probe,
                               speaker_identity=speaker_identity)
        row: dict[str, Any] = {"layer": str(layer)}
        if model is not None:
            row["model"] = model
        row["depth"] = i / (len(layers) - 1) if len(layers) > 1 else 0.0
        row.update(values)
        rows.append(row)
        reporter.advance(1, f"layer {layer}")
    columns = ["layer"] + (["model"] if model is not None else []) + list(METRIC_COLUMNS)
    return pd.DataFrame(rows, columns=columns)


__all__ = [
    "CKA_MAX_SIDE",
    "KNN_MAX_QUERIES",
    "METRIC_COLUMNS",
    "PROBE_MAX_N",
    "SILHOUETTE_MAX_N",
    "SPEAKER_K",
    "SPEAKER_WORD_COLUMNS",
    "TRUST_MAX_N",
    "knn_accuracy_n",
    "silhouette_n",
    "subsample",
    "trustworthiness_n",
    "chance_rate",
    "cka_matrix",
    "knn_accuracy",
    "knn_confusion",
    "knn_predict",
    "layer_metrics",
    "layers_to_compute",
    "linear_cka",
    "metrics_table",
    "nearest_neighbours",
    "probe_accuracy",
    "silhouette",
    "speaker_disjoint_knn_accuracy",
    "speaker_knn_across_words",
    "speaker_knn_within_word",
    "speaker_word_knn",
    "trustworthiness",
]
