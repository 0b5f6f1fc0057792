"""embedviz.placement: own clip -> vector (pipeline pooling) -> nearest stored clips, vote, placement."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from embedviz.cli import main
from embedviz.limits import DEFAULTS
from embedviz.errors import AudioLoadError, ConfigError
from embedviz.placement import (
    UploadLimits,
    cosine_similarities,
    follow_alignment,
    load_clip,
    nearest_stored,
    panel_vector,
    place_in_panel,
    place_on,
    upload_limits,
    vote,
)
from embedviz.reduction import ReductionSettings, reduce

DEMO_YES = Path(__file__).resolve().parents[2] / "embedviz" / "data" / "demo" / "yes"


def _separable(seed: int = 0, n_words: int = 4, per_word: int = 10, dim: int = 16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_words, dim)) * 10
    X = np.concatenate([c + rng.normal(size=(per_word, dim)) for c in centres])
    words = np.repeat([f"w{i}" for i in range(n_words)], per_word)
    clips = pd.DataFrame({"clip_id": [f"c{i}" for i in range(len(X))], "path": [f"/x/{i}.wav" for i in range(len(X))],
                          "word": words, "speaker": [f"s{i % 5}" for i in range(len(X))]})
    return X.astype(np.float32), clips, centres, rng


def test_vote_on_separable_data_predicts_the_right_word() -> None:
    X, clips, centres, rng = _separable()
    for w, centre in enumerate(centres):
        query = centre + rng.normal(size=centre.shape) * 0.5
        placement = nearest_stored(X, clips, query, k=5)
        assert placement.vote.predicted == f"w{w}"
        assert placement.vote.share == 1.0
        sims = placement.neighbours["similarity"].to_numpy()
        assert np.all(np.diff(sims) <= 0)  # nearest first
        assert len(placement.neighbours) == 5


def test_cosine_similarities_match_a_direct_computation_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import embedviz.placement as placement

    monkeypatch.setattr(placement, "_CHUNK_ROWS", 7)  # several chunks and a ragged last one
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 5))
    X[3] = 0.0
    v = rng.normal(size=5)
    expected = X @ v / (np.linalg.norm(X, axis=1) * np.linalg.norm(v) + 1e-300)
    expected[3] = 0.0
    np.testing.assert_allclose(cosine_similarities(X, v), expected, atol=1e-12)


def test_vote_ties_go_to_the_nearest_word_and_share_counts_votes() -> None:
    result = vote(["b", "a", "a", "b", "c"])
    assert result.predicted == "b" and math.isclose(result.share, 0.4) and result.k == 5
    with pytest.raises(ConfigError):
        vote([])


def test_a_clip_placed_with_pca_transform_equals_the_pca_of_that_vector() -> None:
    X, _, _, rng = _separable()
    v = rng.normal(size=X.shape[1]) * 5
    projection = reduce(X, ReductionSettings(method="pca"))
    placed = place_on(projection, v)
    # Fitting PCA on the same stored points and projecting v by hand gives the same point.
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, svd_solver="full").fit(X.astype(np.float64))
    direct = pca.transform(v.reshape(1, -1))[0]
    train_direct = pca.transform(X.astype(np.float64))
    # Component signs are arbitrary: align them with the projection's training coordinates.
    signs = np.sign(np.sum(train_direct * projection.coords, axis=0))
    np.testing.assert_allclose(placed, direct * signs, rtol=1e-4, atol=1e-4)
    assert placed.shape == (2,)


def test_bad_audio_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AudioLoadError, match="my.wav: cannot decode audio"):
        load_clip(b"this is not audio at all" * 10, 16000, name="my.wav")
    with pytest.raises(AudioLoadError, match="empty file"):
        load_clip(b"", 16000, name="empty.wav")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000, np.float32), 16000)
    with pytest.raises(AudioLoadError, match="silent"):
        load_clip(silent, 16000)
    long = tmp_path / "long.wav"
    sf.write(long, np.random.default_rng(0).normal(size=16000 * 3).astype(np.float32) * 0.1, 16000)
    with pytest.raises(AudioLoadError, match="longer than the 2 s limit"):
        load_clip(long, 16000, limits=UploadLimits(max_seconds=2.0))
    with pytest.raises(AudioLoadError, match="larger than"):
        load_clip(long.read_bytes(), 16000, name="long.wav", limits=UploadLimits(max_bytes=4096))
    # Bytes of a real clip load, resampled to the model's rate.
    wave = load_clip(next(DEMO_YES.glob("*.wav")).read_bytes(), 8000, name="yes.wav")
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) > 400


def test_upload_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDVIZ_MAX_UPLOAD_SECONDS", "5")
    monkeypatch.setenv("EMBEDVIZ_MAX_UPLOAD_MB", "1")
    assert upload_limits() == UploadLimits(max_seconds=5.0, max_bytes=1024 * 1024)
    # One place reads the caps (embedviz.limits): a value that is not a number keeps the default.
    monkeypatch.setenv("EMBEDVIZ_MAX_UPLOAD_SECONDS", "lots")
    assert upload_limits().max_seconds == float(DEFAULTS["EMBEDVIZ_MAX_UPLOAD_SECONDS"])


def test_a_stored_clip_joined_like_the_stored_blocks_equals_its_concatenated_row() -> None:
    from embedviz.reduction import concatenate_layers

    rng = np.random.default_rng(3)
    blocks = [rng.normal(size=(20, 4)) * 5 + 2, rng.normal(size=(20, 7))]
    blocks[1][:, 2] = 1.5  # a constant feature: 0 in the joined space, never nan
    joined = concatenate_layers(blocks)
    for i in (0, 7, 19):
        np.testing.assert_allclose(panel_vector(blocks, [b[i] for b in blocks]), joined[i], atol=1e-5)
    np.testing.assert_array_equal(panel_vector(blocks[:1], [blocks[0][3]]), blocks[0][3])  # one layer: as it is
    with pytest.raises(ConfigError):
        panel_vector(blocks, [blocks[0][0]])


def test_follow_alignment_moves_a_point_with_its_procrustes_aligned_panel() -> None:
    from embedviz.reduction import align_procrustes

    rng = np.random.default_rng(4)
    ref = rng.normal(size=(30, 2))
    theta = 1.1
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    other = (ref @ rot) * np.array([1.0, -1.0]) + 3.0 + rng.normal(size=ref.shape) * 0.05  # turned, flipped, shifted
    new_point = other[5] + np.array([0.3, -0.2])
    _, aligned = align_procrustes([ref, other])
    moved = follow_alignment(other, aligned, new_point)
    # The map is affine: a point of the panel moves exactly like the panel's points.
    np.testing.assert_allclose(follow_alignment(other, aligned, other[5]), aligned[5], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(moved - aligned[5]), np.linalg.norm([0.3, -0.2]), atol=1e-4)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_a_clip_placed_in_a_panel_lands_among_its_own_word(method: str) -> None:
    from embedviz.reduction import ReductionSettings, reduce

    X, clips, centres, rng = _separable(per_word=15)
    projection = reduce(X, ReductionSettings(method=method, seed=0))
    for w, centre in enumerate(centres):
        query = centre + rng.normal(size=centre.shape) * 0.5
        placed = place_in_panel([X], clips, projection, [query], k=5, layer="x")
        assert placed.placement.vote.predicted == f"w{w}" and placed.coords.shape == (2,)
        # In the picture too: nearer to its word's points than to any other word's.
        mine = projection.coords[(clips["word"] == f"w{w}").to_numpy()].mean(axis=0)
        others = [projection.coords[(clips["word"] == f"w{o}").to_numpy()].mean(axis=0)
                  for o in range(len(centres)) if o != w]
        assert np.linalg.norm(placed.coords - mine) < min(np.linalg.norm(placed.coords - c) for c in others)


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import save_tiny_model

    return save_tiny_model("wav2vec2", tmp_path_factory.mktemp("tiny") / "wav2vec2")


def test_nearest_end_to_end_with_a_tiny_model(tiny_wav2vec2: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    model = str(tiny_wav2vec2)
    assert main(["extract", "--model", model, "--words", "yes,no", "--samples", "3", "--cache", str(cache)]) == 0
    capsys.readouterr()
    clip = next(DEMO_YES.glob("*.wav"))
    assert main(["nearest", "--model", model, "--clip", str(clip), "--cache", str(cache), "--k", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result) == ["predicted", "share", "neighbours"]
    assert len(result["neighbours"]) == 3
    assert all(list(n) == ["path", "word", "speaker", "similarity"] for n in result["neighbours"])
    assert result["predicted"] in {"yes", "no"} and 0 < result["share"] <= 1
    # The clip is itself stored: pooled by the same code, it is its own nearest neighbour.
    assert result["neighbours"][0]["path"] == str(clip) or Path(result["neighbours"][0]["path"]).name == clip.name
    assert result["neighbours"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)

    assert main(["nearest", "--model", model, "--clip", str(clip), "--cache", str(cache), "--layer", "cnn"]) == 0
    out = capsys.readouterr().out
    assert "layer cnn" in out and "vote:" in out

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"nope" * 100)
    assert main(["nearest", "--model", model, "--clip", str(bad), "--cache", str(cache)]) == 1
    assert "bad.wav: cannot decode audio" in capsys.readouterr().err


@pytest.mark.parametrize(("fmt", "subtype"), [("FLAC", None), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_uploads_in_every_offered_format_load_like_the_wav(tmp_path: Path, fmt: str, subtype: str | None) -> None:
    wav = next(DEMO_YES.glob("*.wav"))
    data, rate = sf.read(wav)
    other = tmp_path / f"clip.{fmt.lower()}"
    sf.write(other, data, rate, format=fmt, subtype=subtype)
    reference = load_clip(wav.read_bytes(), 16000, name="clip.wav")
    wave = load_clip(other.read_bytes(), 16000, name=other.name)
    assert abs(len(wave) - len(reference)) <= 0.05 * len(reference)  # lossy codecs may pad a little
    assert np.abs(wave).max() > 0.1
