"""Tests for embedviz.reduction: settings, PCA/t-SNE/UMAP, concatenation, Procrustes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedviz.errors import Cancelled, ConfigError
from embedviz.progress import ProgressEvent
from embedviz.reduction import (
    ReductionSettings,
    align_procrustes,
    concatenate_layers,
    effective_perplexity,
    reduce,
)

REPO = Path(__file__).resolve().parents[2]


def blobs(n_per: int = 20, n_blobs: int = 5, dim: int = 32, sep: float = 12.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, sep, size=(n_blobs, dim))
    labels = np.repeat(np.arange(n_blobs), n_per)
    X = centres[labels] + rng.normal(0.0, 1.0, size=(labels.size, dim))
    return X.astype(np.float32), labels


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "lda"),
        ("n_components", 4),
        ("n_components", True),
        ("seed", -1),
        ("seed", 1.5),
        ("preprocess", "whiten"),
        ("perplexity", 0.0),
        ("perplexity", float("nan")),
        ("n_neighbors", 1),
        ("n_neighbors", 7.0),
        ("min_dist", 1.5),
        ("min_dist", -0.1),
    ],
)
def test_settings_reject_bad_values_naming_the_setting(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        ReductionSettings(**{field: value})  # type: ignore[arg-type]
    assert field in str(info.value)
    assert repr(value) in str(info.value)


def test_settings_are_frozen_and_hashable() -> None:
    s = ReductionSettings(method="tsne")
    with pytest.raises(AttributeError):
        s.method = "pca"  # type: ignore[misc]
    assert hash(s) == hash(ReductionSettings(method="tsne"))


def test_canonical_settings_forget_what_the_method_ignores() -> None:
    a = ReductionSettings(method="tsne", perplexity=20.0, seed=1)
    assert a.canonical() == a
    assert ReductionSettings(method="tsne", perplexity=20.0, n_neighbors=50).canonical() == ReductionSettings(
        method="tsne", perplexity=20.0
    )
    assert a.canonical() != ReductionSettings(method="tsne", perplexity=25.0, seed=1).canonical()
    # PCA ignores perplexity and seed: same picture, same (hashable) settings.
    pca = ReductionSettings(method="pca", perplexity=5.0, seed=3).canonical()
    assert pca == ReductionSettings(method="pca") and hash(pca) == hash(ReductionSettings(method="pca"))
    assert ReductionSettings(method="pca").canonical() != ReductionSettings(method="pca", preprocess="sphereize")
    assert ReductionSettings(method="umap", perplexity=7.0, seed=4).canonical() == ReductionSettings(method="umap", seed=4)


def test_import_is_light() -> None:
    code = (
        "import sys, embedviz.reduction, embedviz.metrics, embedviz.figures\n"
        "heavy = [m for m in ('umap', 'openTSNE', 'sklearn', 'plotly', 'streamlit', 'numba') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- reduce -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_points_is_a_clear_config_error(n: int) -> None:
    with pytest.raises(ConfigError, match="at least 3"):
        reduce(np.ones((n, 4)), ReductionSettings())


def test_rejects_non_finite_and_non_matrix_input() -> None:
    X = np.ones((10, 4))
    X[3, 2] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        reduce(X)
    with pytest.raises(ConfigError, match="2-D"):
        reduce(np.ones(10))


def test_pca_matches_sklearn_and_transform_is_exact() -> None:
    from sklearn.decomposition import PCA

    X, _ = blobs()
    proj = reduce(X, ReductionSettings(method="pca"))
    assert proj.coords.shape == (X.shape[0], 2) and proj.coords.dtype == np.float32
    ref = PCA(n_components=2, svd_solver="full").fit_transform(X.astype(np.float64))
    np.testing.assert_allclose(proj.coords, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(proj.transform(X[:7]), proj.coords[:7], rtol=0, atol=1e-5)
    ratios = proj.params["explained_variance_ratio"]
    assert len(ratios) == 2 and ratios[0] >= ratios[1] > 0


def test_pca_pads_when_fewer_dimensions_exist_than_asked() -> None:
    X = np.random.default_rng(0).normal(size=(10, 2))
    proj = reduce(X, ReductionSettings(method="pca", n_components=3))
    assert proj.coords.shape == (10, 3)
    assert np.all(proj.coords[:, 2] == 0)
    assert proj.transform(X[:2]).shape == (2, 3)


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
@pytest.mark.parametrize("k", [2, 3])
def test_tiny_inputs_work_with_clipped_parameters(method: str, k: int) -> None:
    X = np.random.default_rng(1).normal(size=(5, 40))
    proj = reduce(X, ReductionSettings(method=method, n_components=k))  # type: ignore[arg-type]
    assert proj.coords.shape == (5, k)
    assert np.isfinite(proj.coords).all()
    if method == "tsne":
        assert proj.params["perplexity"] == pytest.approx(4 / 3)
    if method == "umap":
        assert proj.params["n_neighbors"] == 4
    assert proj.transform(X[:2]).shape == (2, k)


def test_effective_perplexity_clips_only_when_needed() -> None:
    assert effective_perplexity(30.0, 1000) == 30.0
    assert effective_perplexity(30.0, 10) == pytest.approx(3.0)


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_seeded_methods_are_deterministic_and_seed_sensitive(method: str) -> None:
    X, _ = blobs(n_per=20)
    a = reduce(X, ReductionSettings(method=method, seed=3)).coords  # type: ignore[arg-type]
    b = reduce(X, ReductionSettings(method=method, seed=3)).coords  # type: ignore[arg-type]
    c = reduce(X, ReductionSettings(method=method, seed=4)).coords  # type: ignore[arg-type]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_transform_places_a_copy_of_a_training_point_near_it(method: str) -> None:
    X, labels = blobs(n_per=20)
    proj = reduce(X, ReductionSettings(method=method, seed=0))  # type: ignore[arg-type]
    picks = np.array([0, 25, 47, 66, 99])
    placed = proj.transform(X[picks])
    spread = float(np.ptp(proj.coords, axis=0).max())
    dist = np.linalg.norm(placed - proj.coords[picks], axis=1)
    assert np.all(dist < 0.1 * spread), (dist, spread)
    # ...and inside its own cluster: its nearest training points carry its label.
    for p, i in zip(placed, picks):
        nearest = np.argsort(np.linalg.norm(proj.coords - p, axis=1))[:5]
        assert np.all(labels[nearest] == labels[i])


def test_tsne_separates_blobs_and_3d_works() -> None:
    X, labels = blobs(n_per=15)
    proj = reduce(X, ReductionSettings(method="tsne", n_components=3, seed=0))
    assert proj.coords.shape == (75, 3)
    assert proj.params["backend"] == "openTSNE-bh"
    for i in range(len(labels)):
        nearest = np.argsort(np.linalg.norm(proj.coords - proj.coords[i], axis=1))[1:4]
        assert np.all(labels[nearest] == labels[i])


def test_preprocessing_is_refitted_on_transform() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 6)) * np.array([1, 10, 100, 1000, 1, 0]) + 50.0  # last column constant
    for pre in ("standardize", "sphereize"):
        proj = reduce(X, ReductionSettings(method="pca", preprocess=pre))  # type: ignore[arg-type]
        assert np.isfinite(proj.coords).all()
        np.testing.assert_allclose(proj.transform(X[:4]), proj.coords[:4], atol=1e-5)
    # Standardising removes the scale: multiplying a column changes nothing.
    X2 = X.copy()
    X2[:, 3] *= 1e-3
    a = reduce(X, ReductionSettings(preprocess="standardize")).coords
    b = reduce(X2, ReductionSettings(preprocess="standardize")).coords
    np.testing.assert_allclose(np.abs(a), np.abs(b), atol=1e-4)
    # Sphereizing ignores a row's length around the training mean.
    proj = reduce(X, ReductionSettings(preprocess="sphereize"))
    mean = X.mean(axis=0)
    stretched = mean + 7.0 * (X[:3] - mean)
    np.testing.assert_allclose(proj.transform(stretched), proj.coords[:3], atol=1e-5)


def test_transform_rejects_wrong_width() -> None:
    X, _ = blobs(n_per=5)
    proj = reduce(X)
    with pytest.raises(ConfigError, match="features"):
        proj.transform(np.ones((2, X.shape[1] + 1)))


def test_tsne_reports_progress_and_can_be_cancelled() -> None:
    X, _ = blobs(n_per=10)
    events: list[ProgressEvent] = []

    def record(event: ProgressEvent) -> bool:
        events.append(event)
        return False

    reduce(X, ReductionSettings(method="tsne"), progress=record)
    assert events[-1].fraction == 1.0
    dones = [e.done for e in events]
    assert dones == sorted(dones) and len(events) > 5

    with pytest.raises(Cancelled):
        reduce(X, ReductionSettings(method="tsne"), progress=lambda e: e.done >= 100)


# --- concatenate_layers ------------------------------------------------------------------


def test_concatenate_width_and_equal_block_variance() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 8)) * 1000.0
    b = rng.normal(size=(40, 64)) * 0.01 + 5.0
    c = rng.normal(size=(40, 3))
    out = concatenate_layers([a, b, c])
    assert out.shape == (40, 8 + 64 + 3) and out.dtype == np.float32
    bounds = np.cumsum([0, 8, 64, 3])
    totals = [out[:, lo:hi].astype(np.float64).var(axis=0).sum() for lo, hi in zip(bounds[:-1], bounds[1:])]
    np.testing.assert_allclose(totals, 1.0, rtol=1e-5)
    # Scale of a block does not matter.
    np.testing.assert_allclose(concatenate_layers([a * 1e-6, b, c]), out, atol=1e-5)


def test_concatenate_handles_constant_features_and_checks_rows() -> None:
    a = np.ones((10, 4))
    a[:, 0] = np.arange(10)
    out = concatenate_layers([a])
    assert np.isfinite(out).all() and np.all(out[:, 1:] == 0)
    with pytest.raises(ConfigError, match="rows"):
        concatenate_layers([np.ones((10, 2)), np.ones((9, 2))])
    with pytest.raises(ConfigError):
        concatenate_layers([])


# --- align_procrustes --------------------------------------------------------------------


def _orthogonal(k: int, seed: int, reflect: bool = False) -> np.ndarray:
    Q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(k, k)))
    if reflect and np.linalg.det(Q) > 0:
        Q[:, 0] *= -1
    return Q


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("reflect", [False, True])
def test_procrustes_recovers_a_known_rotation_and_translation(k: int, reflect: bool) -> None:
    ref = np.random.default_rng(0).normal(size=(50, k)) * 10.0
    R = _orthogonal(k, 1, reflect)
    moved = ref @ R + np.arange(1, k + 1) * 3.0
    moved2 = moved @ _orthogonal(k, 2) - 7.0
    aligned = align_procrustes([ref, moved, moved2])
    assert len(aligned) == 3
    np.testing.assert_array_equal(aligned[0], ref.astype(np.float32))
    # float32 output: compare at float32 resolution of values of size ~30.
    np.testing.assert_allclose(aligned[1], ref, atol=1e-4)
    np.testing.assert_allclose(aligned[2], ref, atol=1e-4)
    # The fit itself is exact: redo it in float64 without the float32 cast.
    from scipy.linalg import orthogonal_procrustes

    B = moved - moved.mean(axis=0)
    Rhat, _ = orthogonal_procrustes(B, ref - ref.mean(axis=0))
    assert np.abs(B @ Rhat + ref.mean(axis=0) - ref).max() < 1e-6


def test_procrustes_keeps_scale_unless_asked() -> None:
    ref = np.random.default_rng(3).normal(size=(30, 2))
    bigger = 5.0 * ref @ _orthogonal(2, 4)
    kept = align_procrustes([ref, bigger])[1]
    size = lambda Z: np.linalg.norm(Z - Z.mean(axis=0))  # noqa: E731
    assert size(kept) == pytest.approx(5.0 * size(ref), rel=1e-5)
    scaled = align_procrustes([ref, bigger], scale=True)[1]
    np.testing.assert_allclose(scaled, ref, atol=1e-5)


def test_procrustes_checks_shapes() -> None:
    with pytest.raises(ConfigError, match="shape"):
        align_procrustes([np.ones((5, 2)), np.ones((4, 2))])
    assert align_procrustes([]) == []


def test_projection_title_states_the_clipped_parameters() -> None:
    X = np.random.default_rng(0).standard_normal((10, 5))
    proj = reduce(X, ReductionSettings(method="tsne", perplexity=30))
    assert "perplexity 30" in proj.settings.describe()
    assert "perplexity 3" in proj.describe() and "perplexity 30" not in proj.describe()
