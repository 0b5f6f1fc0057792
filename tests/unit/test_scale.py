"""Caps that keep numbers, projections and figures bounded at any n, and the view helpers.

Memory is measured with tracemalloc (numpy reports its buffers to it), nothing
numerical is patched: the functions run on n = 20,000 rows, where any n x n float64
matrix would be 3.2 GB.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from embedviz import metrics, views
from embedviz.figures import Highlight, overview_figure, scatter_figure, word_styles
from embedviz.reduction import ReductionSettings, estimate_seconds, plan_projection, reduce
from embedviz.store import LayerVectors

N = 20_000
NXN_BYTES = N * N * 8


def clustered(n: int = N, d: int = 8, words: int = 35, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % words
    X = rng.normal(size=(words, d))[y] * 3 + rng.normal(size=(n, d))
    return X.astype(np.float32), np.array([f"w{v:02d}" for v in y])


def peak_bytes(fn, *args, **kwargs):
    tracemalloc.start()
    try:
        out = fn(*args, **kwargs)
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def big() -> tuple[np.ndarray, np.ndarray]:
    return clustered()


def test_subsample_is_seeded_stratified_and_capped() -> None:
    labels = np.repeat(["a", "b", "c"], [1000, 500, 100])
    rows = metrics.subsample(len(labels), 160, seed=3, labels=labels)
    assert len(rows) <= 160 and np.all(np.diff(rows) > 0)
    _, counts = np.unique(labels[rows], return_counts=True)
    assert counts.tolist() == [100, 50, 10]  # each word keeps its share
    assert np.array_equal(rows, metrics.subsample(len(labels), 160, seed=3, labels=labels))
    assert not np.array_equal(rows, metrics.subsample(len(labels), 160, seed=4, labels=labels))
    assert np.array_equal(metrics.subsample(50, 160), np.arange(50))


def test_trustworthiness_above_the_cap_uses_a_subsample_and_no_nxn(big) -> None:
    X, _ = big
    coords = X[:, :2].copy()
    (value, n_used), peak = peak_bytes(metrics.trustworthiness_n, X, coords, 5, "cosine")
    assert n_used == metrics.TRUST_MAX_N < N
    assert 0.0 <= value <= 1.0
    assert peak < NXN_BYTES / 10
    # Below the cap every point is used and the number matches scikit-learn's exactly.
    from sklearn.manifold import trustworthiness as sk

    small, small_c = X[:300], coords[:300]
    assert metrics.trustworthiness_n(small, small_c)[1] == 300
    assert metrics.trustworthiness(small, small_c) == pytest.approx(sk(small, small_c, n_neighbors=5))


def test_layer_metrics_at_20000_rows_state_their_sample_sizes_within_bounded_memory(big) -> None:
    X, y = big
    speakers = np.array([f"s{i % 97}" for i in range(N)])
    out, peak = peak_bytes(metrics.layer_metrics, X, y, speakers, probe=True)
    assert out["n_clips"] == N
    assert 0 < out["knn_n"] <= metrics.KNN_MAX_QUERIES
    assert 0 < out["silhouette_n"] <= metrics.SILHOUETTE_MAX_N
    assert out["probe_n"] == metrics.PROBE_MAX_N
    assert out["knn_accuracy"] > 0.9 and out["speaker_disjoint_knn"] > 0.9 and out["silhouette"] > 0.1
    assert peak < NXN_BYTES / 10


def test_capped_knn_agrees_with_the_full_count_on_easy_data() -> None:
    X, y = clustered(n=3000, d=8, words=5)
    full = metrics.knn_accuracy(X, y, max_queries=None)
    capped, n_used = metrics.knn_accuracy_n(X, y, max_queries=1000)
    assert n_used == 1000
    assert abs(full - capped) < 0.03


def test_vectorised_vote_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = rng.integers(0, 4, size=200).astype(str)
    pred, valid = metrics.knn_predict(X, y, k=7)
    from sklearn.metrics import pairwise_distances

    D = pairwise_distances(X, metric="cosine")
    np.fill_diagonal(D, np.inf)
    for i in range(200):
        order = np.lexsort((np.arange(200), D[i]))[:7]
        votes = list(y[order])
        counts = {v: votes.count(v) for v in votes}
        top = max(counts.values())
        assert pred[i] == next(v for v in votes if counts[v] == top)
    assert valid.all()


def test_cka_never_builds_a_square_past_the_cap(big) -> None:
    X, _ = big
    Y = X @ np.random.default_rng(2).normal(size=(8, 8))
    df, peak = peak_bytes(metrics.cka_matrix, {"a": X, "b": Y})
    assert df.attrs["n"] == N  # feature form: all rows, 8 x 8 matrices
    assert peak < NXN_BYTES / 20
    # Wide and tall: neither form fits, so rows are subsampled and the count says so.
    wide = np.random.default_rng(3).normal(size=(metrics.CKA_MAX_SIDE + 200, metrics.CKA_MAX_SIDE + 10)).astype(np.float32)
    df = metrics.cka_matrix({"a": wide, "b": wide[:, ::-1]})
    assert df.attrs["n"] == metrics.CKA_MAX_SIDE
    assert df.loc["a", "b"] == pytest.approx(1.0, abs=1e-6)


def test_pca_on_100000_points_is_randomised_and_within_its_estimate() -> None:
    from embedviz.reduction import pca_solver

    X, _ = clustered(n=100_000, d=16)
    proj = reduce(X, ReductionSettings())
    assert proj.coords.shape == (100_000, 2)
    # Never a full SVD of 100,000 rows: tall data goes through its 16 x 16 covariance.
    assert proj.params["backend"] == f"sklearn.PCA-{pca_solver(100_000, 16)}" == "sklearn.PCA-covariance_eigh"
    assert pca_solver(100_000, 2000) == "randomized" and pca_solver(500, 768) == "full"
    again = reduce(X, ReductionSettings())
    assert np.array_equal(proj.coords, again.coords)  # seeded: same picture every time


def test_plan_refuses_what_would_run_for_minutes_and_offers_a_sample_or_pca() -> None:
    plan = plan_projection(100_000, 768, ReductionSettings(method="tsne"))
    assert not plan.ok
    assert 0 < plan.suggested_n < 100_000
    assert estimate_seconds("tsne", plan.suggested_n, 768) <= 60.0 < estimate_seconds("tsne", plan.suggested_n + 1000, 768)
    assert "PCA" in plan.reason and f"{plan.suggested_n:,}" in plan.reason
    assert plan.pca_seconds < 60
    ok = plan_projection(500, 768, ReductionSettings(method="tsne"))
    assert ok.ok and ok.suggested_n == 500 and ok.reason == ""
    assert estimate_seconds("umap", 20_000, 80) > estimate_seconds("umap", 2_000, 80)


# --------------------------------------------------------------------- views


def _vectors(keys, ids, X):
    clips = pd.DataFrame({"clip_key": keys, "clip_id": ids, "path": ids, "word": ["w"] * len(ids), "speaker": ["s"] * len(ids)})
    return LayerVectors(np.asarray(X, dtype=np.float32), clips)


def test_common_rows_match_by_clip_key_not_clip_id() -> None:
    # Two different clips share the file name "a" (different folders): keys tell them apart.
    a = _vectors(["k1", "k2", "k3"], ["a", "a", "c"], [[1], [2], [3]])
    b = _vectors(["k3", "k2", "k9"], ["c", "a", "z"], [[30], [20], [90]])
    blocks, clips = views.common_rows({"x": a, "y": b})
    assert clips["clip_key"].tolist() == ["k2", "k3"]
    assert blocks[0].ravel().tolist() == [2, 3] and blocks[1].ravel().tolist() == [20, 30]


def test_aligned_coords_match_rows_by_key_and_leave_other_clip_sets_alone() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 2))
    R = np.array([[0.0, -1.0], [1.0, 0.0]])
    keys = [f"k{i}" for i in range(50)]
    clips = pd.DataFrame({"clip_key": keys, "clip_id": keys})
    perm = rng.permutation(50)
    p0 = views.PanelData(base.astype(np.float32), clips, 1, 0, 0, 50, 0)
    p1 = views.PanelData((base @ R)[perm].astype(np.float32), clips.iloc[perm].reset_index(drop=True), 1, 0, 0, 50, 0)
    out = views.aligned_coords([p0, p1])
    np.testing.assert_allclose(out[1], base[perm], atol=1e-5)  # rotated back, in panel 1's own row order
    other = views.PanelData(base[:40].astype(np.float32), clips.iloc[:40], 1, 0, 0, 40, 0)
    assert out[0] is not None and np.array_equal(views.aligned_coords([p0, other])[1], other.coords)


def test_panel_caption_states_subsample_sizes() -> None:
    p = views.PanelData(np.zeros((1, 2)), pd.DataFrame(), 0.8, 0.2, 0.03, 20_000, 0, trust=0.9,
                        knn_n=5000, silhouette_n=5000, trust_n=3000)
    assert "(on 5,000 of 20,000)" in p.caption() and "(on 3,000 of 20,000)" in p.caption()
    small = views.PanelData(np.zeros((1, 2)), pd.DataFrame(), 0.8, 0.2, 0.03, 500, 0, trust=0.9,
                            knn_n=500, silhouette_n=500, trust_n=500)
    assert "of" not in small.caption()


# --------------------------------------------------------------------- figures


def test_35_words_never_share_colour_and_symbol_in_any_figure() -> None:
    words = [f"w{i:02d}" for i in range(35)]
    fig = scatter_figure(np.random.default_rng(0).normal(size=(70, 2)), [str(i) for i in range(70)], words * 2, ["s"] * 70)
    styles = {(t.marker.color, t.marker.symbol) for t in fig.data}
    assert len(styles) == 35
    assert word_styles(words)["w24"].symbol != word_styles(words)["w00"].symbol


def test_highlight_dims_the_rest_and_keeps_the_match_opaque() -> None:
    coords = np.arange(12, dtype=float).reshape(6, 2)
    fig = scatter_figure(coords, list("abcdef"), ["yes"] * 3 + ["no"] * 3, ["s1", "s2"] * 3,
                         highlight=Highlight(speakers=("s1",)))
    for trace in fig.data:
        speakers = [c[2] for c in trace.customdata]
        alphas = [float(c.rsplit(",", 1)[1].rstrip(")")) for c in trace.marker.color]
        assert [a > 0.5 for a in alphas] == [s == "s1" for s in speakers]
    plain = scatter_figure(coords, list("abcdef"), ["yes"] * 3 + ["no"] * 3, ["s1", "s2"] * 3)
    assert all(isinstance(t.marker.color, str) for t in plain.data)


def test_overview_image_is_bounded_and_takes_the_majority_colour() -> None:
    rng = np.random.default_rng(0)
    left = rng.normal(loc=(-10, 0), scale=0.3, size=(50_000, 2))
    right = rng.normal(loc=(10, 0), scale=0.3, size=(50_000, 2))
    words = ["yes"] * 50_000 + ["no"] * 50_000
    fig, peak = peak_bytes(overview_figure, np.vstack([left, right]), words, bins=64)
    image = np.asarray(fig.data[0].z)
    assert image.shape == (64, 64, 3)
    colors = {k: v.color for k, v in word_styles(["yes", "no"]).items()}
    from plotly.colors import hex_to_rgb

    row = image[32]
    leftmost = row[np.flatnonzero(row.sum(axis=1) < 3 * 255)[0]]
    assert tuple(int(v) for v in leftmost) != (255, 255, 255)
    # The left blob is 'yes': its darkest pixel is (close to) yes' colour.
    darkest = image[:, :32].reshape(-1, 3)[image[:, :32].reshape(-1, 3).sum(axis=1).argmin()]
    assert np.abs(darkest.astype(int) - np.array(hex_to_rgb(colors["yes"]))).max() <= 2
    assert peak < 100e6
    assert math.isfinite(float(fig.data[0].dx))


def test_keys_in_matches_isin_for_every_kind_of_key_column() -> None:
    from embedviz.store import keys_in

    stored = {f"k{i:05d}" for i in range(0, 20000, 3)}
    keys = [f"k{i:05d}" for i in range(0, 600, 7)] + ["missing:/x.wav"]
    for column in (pd.Series(keys), pd.Series(keys, dtype=object), pd.Index(keys), keys):
        expected = pd.Series(keys, dtype=object).isin(stored).to_numpy()
        got = keys_in(column, stored)
        assert got.dtype == bool and np.array_equal(got, expected)
    assert keys_in(pd.Series([], dtype=str), stored).shape == (0,)
    assert keys_in(pd.Series(keys), iter(["k00000"])).sum() == 1


def test_the_projection_notice_names_the_method_panels_and_expected_time() -> None:
    from embedviz.reduction import human_seconds, projection_notice

    tsne = ReductionSettings(method="tsne")
    plans = [plan_projection(5250, 80, tsne), plan_projection(5250, 39, tsne), plan_projection(101_500, 80, tsne)]
    assert [p.ok for p in plans] == [True, True, False]
    text = projection_notice("tsne", plans)
    total = plans[0].seconds + plans[1].seconds
    assert text.startswith("t-SNE of 2 panels, up to 5,250 points each: about ") and human_seconds(total) in text
    assert "compile" not in text
    assert "compile" in projection_notice("umap", [plan_projection(5250, 80, ReductionSettings(method="umap"))])
    assert projection_notice("pca", [plan_projection(5250, 80, ReductionSettings(method="pca"))]) == ""
    assert projection_notice("tsne", plans[2:]) == "", "nothing runs: no notice"
    assert human_seconds(0.2) == "under a second" and human_seconds(42) == "42 s" and human_seconds(125) == "2 min 5 s"
