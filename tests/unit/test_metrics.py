"""Tests for embedviz.metrics: known answers on constructed data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedviz.errors import ConfigError
from embedviz.metrics import (
    METRIC_COLUMNS,
    chance_rate,
    cka_matrix,
    knn_accuracy,
    knn_confusion,
    knn_predict,
    layer_metrics,
    linear_cka,
    metrics_table,
    probe_accuracy,
    silhouette,
    speaker_disjoint_knn_accuracy,
    trustworthiness,
)
from embedviz.progress import ProgressEvent


def blobs(n_per: int = 20, n_words: int = 5, dim: int = 32, sep: float = 10.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, sep, size=(n_words, dim))
    codes = np.repeat(np.arange(n_words), n_per)
    X = centres[codes] + rng.normal(0.0, 1.0, size=(codes.size, dim))
    words = np.array([f"w{c}" for c in codes])
    return X, words


# --- k-NN ---------------------------------------------------------------------------------


def test_separated_blobs_score_perfectly() -> None:
    X, words = blobs()
    assert knn_accuracy(X, words) == 1.0
    assert knn_accuracy(X, words, metric="euclidean") == 1.0
    assert silhouette(X, words) > 0.5
    assert probe_accuracy(X, words) == 1.0


def test_structureless_data_scores_near_chance() -> None:
    # 6 words x 100 clips of pure noise. Under the null each LOO prediction is right with
    # p = 1/6; for n = 600 the standard error is sqrt(p(1-p)/n) ~ 0.015, and neighbouring
    # predictions are correlated, so we allow ~4.5 standard errors (0.07).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 16))
    words = np.repeat([f"w{i}" for i in range(6)], 100)
    rng.shuffle(words)
    assert abs(knn_accuracy(X, words) - 1 / 6) < 0.07
    assert abs(probe_accuracy(X, words) - 1 / 6) < 0.07
    assert abs(silhouette(X, words)) < 0.05


def test_shuffling_labels_destroys_blob_accuracy() -> None:
    X, words = blobs(n_per=60, n_words=5)
    shuffled = np.random.default_rng(1).permutation(words)
    # 300 clips, p = 0.2: standard error ~ 0.023; 0.1 is > 4 standard errors.
    assert abs(knn_accuracy(X, shuffled) - 0.2) < 0.1


def test_agrees_with_scikit_learn_leave_one_out_knn() -> None:
    from sklearn.model_selection import LeaveOneOut, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    # Two overlapping words and odd k: no vote ties, so both must predict the same.
    rng = np.random.default_rng(7)
    X = rng.normal(size=(120, 6))
    words = np.where(X[:, 0] + 0.8 * rng.normal(size=120) > 0, "yes", "no")
    ref = cross_val_predict(KNeighborsClassifier(n_neighbors=5, metric="cosine"), X, words, cv=LeaveOneOut())
    preds, valid = knn_predict(X, words, k=5)
    assert valid.all()
    np.testing.assert_array_equal(preds.astype(str), ref)
    assert knn_accuracy(X, words) == pytest.approx(np.mean(ref == words))
    assert 0.55 < knn_accuracy(X, words) < 0.95  # the case is neither trivial nor hopeless


def test_the_query_is_not_its_own_neighbour_but_duplicates_are() -> None:
    X = np.array([[0.0], [0.1], [10.0]])
    # Point 0's nearest *other* point is point 1 (word b): wrong. Point 1's is 0: wrong.
    assert knn_accuracy(X, ["a", "b", "b"], k=1, metric="euclidean") == pytest.approx(1 / 3)
    X = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert knn_accuracy(X, ["a", "a", "b", "b"], k=1) == 1.0


def test_ties_are_broken_by_the_nearest_neighbour() -> None:
    # Query at 0; with k=2 one 'a' and one 'b' vote. Whichever is nearer must win.
    X = np.array([[0.0], [1.0], [2.0], [50.0], [51.0]])
    preds, valid = knn_predict(X, ["q", "a", "b", "a", "b"], k=2, metric="euclidean")
    assert valid.all() and preds[0] == "a"
    preds, _ = knn_predict(X, ["q", "b", "a", "a", "b"], k=2, metric="euclidean")
    assert preds[0] == "b"


def test_majority_beats_nearest() -> None:
    X = np.array([[0.0], [1.0], [2.0], [2.5], [40.0]])
    preds, _ = knn_predict(X, ["q", "a", "b", "b", "a"], k=3, metric="euclidean")
    assert preds[0] == "b"


def test_k_larger_than_the_data_uses_everyone() -> None:
    X, words = blobs(n_per=2, n_words=2)
    assert 0.0 <= knn_accuracy(X, words, k=50) <= 1.0


def test_speaker_disjoint_excludes_same_speaker_neighbours() -> None:
    # Every word is spoken by one speaker only: its only same-word neighbours are the
    # same speaker, so speaker-disjoint k-NN cannot find them.
    X, words = blobs(n_per=6, n_words=4)
    speakers = np.array([w.replace("w", "s") for w in words])
    assert knn_accuracy(X, words) == 1.0
    assert speaker_disjoint_knn_accuracy(X, words, speakers) == 0.0
    # When each word is spoken by several speakers, excluding the speaker costs nothing.
    mixed = np.array([f"s{i % 3}" for i in range(len(words))])
    assert speaker_disjoint_knn_accuracy(X, words, mixed) == 1.0


def test_speaker_disjoint_uses_only_other_speakers() -> None:
    # Query 0 (speaker A) is nearest to its own speaker's clip of word 'x', but the
    # nearest other-speaker clip says 'y'.
    X = np.array([[0.0], [0.1], [1.0], [5.0]])
    words = ["y", "x", "y", "x"]
    speakers = ["A", "A", "B", "B"]
    preds, valid = knn_predict(X, words, k=1, metric="euclidean", groups=speakers)
    assert preds[0] == "y" and valid.all()
    preds, _ = knn_predict(X, words, k=1, metric="euclidean")
    assert preds[0] == "x"


def test_speaker_disjoint_is_nan_when_nobody_has_another_speaker() -> None:
    X, words = blobs(n_per=3, n_words=2)
    assert math.isnan(knn_accuracy(X, words, groups=["s"] * len(words)))


def test_zero_vectors_are_nan_safe_under_cosine() -> None:
    X, words = blobs(n_per=10, n_words=3)
    X[[0, 11, 25]] = 0.0
    with np.errstate(all="raise"):
        acc = knn_accuracy(X, words)
        sil = silhouette(X, words)
    assert math.isfinite(acc) and 0.8 < acc < 1.0
    assert math.isfinite(sil)
    assert math.isfinite(probe_accuracy(X, words))


def test_small_and_degenerate_inputs() -> None:
    assert math.isnan(knn_accuracy(np.ones((1, 3)), ["a"]))
    assert knn_accuracy(np.array([[1.0, 0.0], [0.0, 1.0]]), ["a", "a"]) == 1.0
    X, words = blobs(n_per=3, n_words=2)
    assert math.isnan(silhouette(X, ["a"] * 6))  # a single word
    assert math.isnan(silhouette(X[:2], ["a", "b"]))  # as many words as clips
    assert math.isnan(probe_accuracy(X, ["a"] * 6))
    assert math.isnan(probe_accuracy(X, ["a", "a", "a", "b", "b", "c"]))  # 'c' has one clip
    # Folds clip to the smallest class (3 clips -> 3 folds) instead of failing.
    assert probe_accuracy(X, words, folds=10) == 1.0


def test_bad_inputs_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="k must"):
        knn_accuracy(np.ones((4, 2)), list("aabb"), k=0)
    with pytest.raises(ConfigError, match="one entry per row"):
        knn_accuracy(np.ones((4, 2)), list("aab"))
    with pytest.raises(ConfigError, match="NaN"):
        silhouette(np.full((4, 2), np.nan), list("aabb"))
    with pytest.raises(ConfigError, match="folds"):
        probe_accuracy(np.ones((4, 2)), list("aabb"), folds=1)


def test_probe_is_reproducible_under_a_seed() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(120, 10))
    words = np.repeat(list("abc"), 40)
    X[words == "a", 0] += 1.0  # a weak signal, so folds matter
    assert probe_accuracy(X, words, seed=1) == probe_accuracy(X, words, seed=1)


def test_knn_confusion_counts_predictions() -> None:
    X, words = blobs(n_per=8, n_words=3)
    matrix, names = knn_confusion(X, words)
    assert names == ["w0", "w1", "w2"]
    np.testing.assert_array_equal(matrix, np.diag([8, 8, 8]))
    # Rows are the true words: a clip that looks like w1 but is called w0 lands in row w0.
    words2 = words.copy()
    words2[9] = "w0"
    matrix, _ = knn_confusion(X, words2, k=3)
    assert matrix.sum() == len(words2)
    assert matrix[0, 1] == 1


# --- CKA ------------------------------------------------------------------------------------


def _reference_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """HSIC form of Kornblith et al.: tr(KHLH) / sqrt(tr(KHKH) tr(LHLH))."""
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T
    hsic = lambda A, B: np.trace(A @ H @ B @ H)  # noqa: E731
    return float(hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L)))


def test_cka_is_invariant_to_rotation_and_isotropic_scale() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 20))
    R, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    assert linear_cka(X, X @ R) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(X, 3.7 * X + 2.0) == pytest.approx(1.0, abs=1e-10)
    Y = rng.normal(size=(200, 5)) + X[:, :5]
    assert linear_cka(X, Y) == pytest.approx(linear_cka(0.01 * X, 50.0 * Y), rel=1e-10)


def test_cka_matches_the_hsic_definition_in_both_computation_paths() -> None:
    rng = np.random.default_rng(1)
    for n, dx, dy in [(30, 4, 7), (12, 50, 80)]:  # feature-space path, Gram path
        X = rng.normal(size=(n, dx))
        Y = X[:, :1] @ rng.normal(size=(1, dy)) + rng.normal(size=(n, dy))
        assert linear_cka(X, Y) == pytest.approx(_reference_cka(X, Y), rel=1e-9)
        assert linear_cka(X, Y) == pytest.approx(linear_cka(Y, X), rel=1e-12)


def test_cka_of_independent_data_is_near_zero() -> None:
    # For independent data E[CKA] ~ sqrt(dx * dy) / n = 10 / 2000 = 0.005.
    rng = np.random.default_rng(2)
    assert linear_cka(rng.normal(size=(2000, 10)), rng.normal(size=(2000, 10))) < 0.03


def test_cka_degenerate_cases() -> None:
    X = np.random.default_rng(3).normal(size=(10, 3))
    assert math.isnan(linear_cka(X, np.ones((10, 2))))
    with pytest.raises(ConfigError, match="rows"):
        linear_cka(X, X[:5])


def test_cka_matrix_is_symmetric_with_unit_diagonal() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=(50, 8))
    blocks = {
        "0": a,
        "1": a @ rng.normal(size=(8, 12)),
        "2": rng.normal(size=(50, 4)),
        "wide": a @ rng.normal(size=(8, 60)) + 0.5 * rng.normal(size=(50, 60)),  # wider than n: Gram path
        "wider": rng.normal(size=(50, 80)),
        "c": np.zeros((50, 3)),
    }
    df = cka_matrix(blocks)
    names = list(blocks)
    assert list(df.index) == list(df.columns) == names
    values = df.to_numpy()
    np.testing.assert_allclose(np.diag(values)[:5], 1.0)
    np.testing.assert_allclose(values[:5, :5], values[:5, :5].T)
    for i in range(5):
        for j in range(5):
            assert values[i, j] == pytest.approx(linear_cka(blocks[names[i]], blocks[names[j]]), rel=1e-9)
    assert values[0, 1] > values[0, 2]
    assert np.isnan(values[5]).all() and np.isnan(values[:, 5]).all()


# --- trustworthiness ---------------------------------------------------------------------


def test_trustworthiness_of_a_rotated_copy_is_one_and_of_noise_is_lower() -> None:
    rng = np.random.default_rng(5)
    flat = rng.normal(size=(80, 2))
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    X = np.hstack([flat, np.zeros((80, 8))]) @ Q
    assert trustworthiness(X, flat) == pytest.approx(1.0)
    assert trustworthiness(X, rng.normal(size=(80, 2))) < 0.8
    # n_neighbors is clipped below n/2 instead of raising.
    assert math.isfinite(trustworthiness(X[:5], flat[:5], n_neighbors=10))
    assert math.isnan(trustworthiness(X[:2], flat[:2]))


# --- layer summaries ---------------------------------------------------------------------


def test_layer_metrics_keys_and_chance() -> None:
    X, words = blobs(n_per=10, n_words=4)
    speakers = np.array([f"s{i % 5}" for i in range(len(words))])
    out = layer_metrics(X, words, speakers)
    assert set(out) == {"knn_accuracy", "silhouette", "probe_accuracy", "speaker_disjoint_knn", "n_clips", "n_words", "chance",
                        "knn_n", "silhouette_n", "probe_n"}
    assert out["knn_n"] == out["silhouette_n"] == out["probe_n"] == 40  # below every cap: all clips
    assert out["n_clips"] == 40 and out["n_words"] == 4 and out["chance"] == 0.25
    assert out["speaker_disjoint_knn"] == 1.0
    assert math.isnan(layer_metrics(X, words)["speaker_disjoint_knn"])
    assert chance_rate(["a", "a", "a", "b"]) == 0.75


def test_metrics_table_rows_follow_layer_order() -> None:
    X, words = blobs(n_per=8, n_words=3)
    noise = np.random.default_rng(0).normal(size=X.shape)
    layers = {"cnn": noise, "0": 0.5 * noise + 0.5 * X, "1": X}
    events: list[ProgressEvent] = []
    table = metrics_table(layers, words, model="m", progress=lambda e: events.append(e) and False)
    assert list(table.columns) == ["layer", "model", *METRIC_COLUMNS]
    assert list(table["layer"]) == ["cnn", "0", "1"]
    np.testing.assert_allclose(table["depth"], [0.0, 0.5, 1.0])
    assert table["knn_accuracy"].iloc[2] == 1.0
    assert table["knn_accuracy"].iloc[0] < table["knn_accuracy"].iloc[2]
    assert table["speaker_disjoint_knn"].isna().all()
    assert [e.done for e in events] == [1, 2, 3]
    single = metrics_table({"z": X}, words)
    assert list(single.columns)[0] == "layer" and "model" not in single.columns
    assert single["depth"].iloc[0] == 0.0


def test_metrics_table_of_one_layer_is_that_row_of_the_whole_table() -> None:
    """The app computes and caches one layer at a time: the same row, depth relative to all."""
    import pandas as pd

    X, words = blobs(n_per=8, n_words=3)
    noise = np.random.default_rng(0).normal(size=X.shape)
    layers = {"cnn": noise, "0": 0.5 * noise + 0.5 * X, "1": X}
    whole = metrics_table(layers, words, model="m")
    events: list[ProgressEvent] = []
    middle = metrics_table(layers, words, model="m", only=["0"], progress=lambda e: events.append(e) and False)
    pd.testing.assert_frame_equal(middle, whole.iloc[[1]].reset_index(drop=True))
    assert middle["depth"].iloc[0] == 0.5 and [(e.done, e.total) for e in events] == [(1, 1)]
    with pytest.raises(ConfigError, match="no such layer.*nope"):
        metrics_table(layers, words, only=["nope"])


def test_nearest_neighbours_in_cosine_space_exclude_the_query() -> None:
    from embedviz.metrics import nearest_neighbours

    X = np.array([[1.0, 0.0], [10.0, 0.5], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    idx, dist = nearest_neighbours(X, 0, k=3)
    # cosine ignores scale: row 1 (same direction, 10x longer) is nearest, then the diagonal
    assert list(idx) == [1, 3, 2]
    assert np.all(np.diff(dist) >= 0) and 0 not in idx
    assert len(nearest_neighbours(X, 0, k=10)[0]) == 4


def test_layer_metrics_adds_speaker_identity_only_when_asked() -> None:
    from embedviz.metrics import SPEAKER_WORD_COLUMNS

    X, words = blobs(n_per=12, n_words=3)
    speakers = np.array([f"s{i % 4}" for i in range(len(words))])  # each speaker says each word 3 times
    plain = layer_metrics(X, words, speakers, probe=False)
    assert not set(SPEAKER_WORD_COLUMNS) & set(plain)
    out = layer_metrics(X, words, speakers, probe=False, speaker_identity=True)
    assert set(SPEAKER_WORD_COLUMNS) <= set(out)
    # Word blobs carry no voice: speaker identity within a word is near its chance level
    # (2 of the 11 other clips of a word are by the same speaker).
    assert out["speaker_within_word_chance"] == pytest.approx(2 / 11)
    assert out["speaker_within_word_n"] == len(words)
    assert out["speaker_knn_within_word"] < 0.6
    table = metrics_table({"a": X}, words, speakers, probe=False)
    assert list(table.columns) == ["layer", *METRIC_COLUMNS] and table["speaker_within_word_n"].iloc[0] == len(words)


# --- the app's fast paths give scikit-learn's exact numbers -------------------------------


def _with_duplicates(n: int, dim: int, dtype, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 12, n)
    X = (rng.normal(0.0, 2.0, size=(12, dim))[codes] + rng.normal(size=(n, dim))).astype(dtype)
    X[5] = 0.0  # an all-zero vector: cosine distance 1 from everything
    X[20:30] = X[40]  # exact duplicates: tied distances
    words = np.array([f"w{c}" for c in codes], dtype=object)
    words[3] = "alone"  # a word with one clip scores 0
    coords = (X[:, :2] + 0.1 * rng.normal(size=(n, 2))).astype(np.float32)
    coords[11] = coords[12]
    return X, words, coords


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distance_chunks_are_scikit_learns_values(dtype) -> None:
    from sklearn.metrics import pairwise_distances_chunked

    from embedviz.metrics import distance_chunks

    X, _, _ = _with_duplicates(700, 16, dtype)
    q = np.arange(0, 700, 3)
    for memory in (64, 0.5):  # one chunk, many chunks
        ours = [D for _, D in distance_chunks(X[q], X, working_memory_mb=memory)]
        theirs = list(pairwise_distances_chunked(X[q], X, metric="cosine", working_memory=memory))
        assert [d.shape for d in ours] == [d.shape for d in theirs]
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(ours, theirs))
        ours_self = np.concatenate([D for _, D in distance_chunks(X, working_memory_mb=memory)])
        theirs_self = np.concatenate(list(pairwise_distances_chunked(X, metric="cosine", working_memory=memory)))
        assert np.array_equal(ours_self, theirs_self)


@pytest.mark.parametrize(("n", "dtype"), [(400, np.float32), (3200, np.float32), (3200, np.float64)])
def test_silhouette_and_trustworthiness_equal_scikit_learns_exactly(n, dtype) -> None:
    # 3,200 rows: several 64 MB chunks here, one chunk in scikit-learn (which zeroes the diagonal).
    from sklearn.manifold import trustworthiness as sk_trust
    from sklearn.metrics import silhouette_score

    X, words, coords = _with_duplicates(n, 24, dtype)
    assert silhouette(X, words, max_n=None) == float(silhouette_score(X, words, metric="cosine"))
    assert silhouette(X, words, metric="euclidean", max_n=None) == float(silhouette_score(X, words, metric="euclidean"))
    assert trustworthiness(X, coords, 5, "cosine", max_n=None) == float(sk_trust(X, coords, n_neighbors=5, metric="cosine"))
    assert trustworthiness(X, coords, 5, max_n=None) == float(sk_trust(X, coords, n_neighbors=5))
