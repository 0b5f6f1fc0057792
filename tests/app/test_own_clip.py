"""Explore's "Your own clip" (AppTest): upload or record, the star on every panel, the vote, neighbours."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from embedviz.datasets import open_dataset
from tests.app.conftest import new_app, no_exception, texts, wait_for_job
from tests.app.explore_chart import echart, plotly_array, plotly_figure

PARAMS = {"model": "baseline:mel", "layers": "logmel,mfcc", "words": "yes,no", "n": "6"}


@pytest.fixture(scope="module")
def spoken_yes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """"yes" in an espeak-ng voice the demo does not have (en-us + f4 at 150 wpm)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    out = tmp_path_factory.mktemp("voice") / "yes.wav"
    subprocess.run(["espeak-ng", "-v", "en-us+f4", "-s", "150", "-w", str(out), "yes"], check=True)
    return out.read_bytes()


def _extracted(params: dict) -> object:
    at = new_app(params)
    at.run()
    at.switch_page("pages/explore.py").run()
    next(b for b in at.button if b.label == "Extract").click().run()
    return wait_for_job(at)


def _stars(at) -> list[list[float] | None]:
    """The "your clip" point of every 2D panel of the page's ECharts chart (None: none there)."""
    chart = echart(at)
    assert chart is not None and plotly_figure(at) is None  # a small 2D view is ECharts
    return chart.stars()


def _votes(at):
    return next(t.value.reset_index() for t in at.table if "predicted word" in t.value.columns)


def test_an_uploaded_clip_gets_a_star_on_every_panel_a_vote_and_neighbours(env, spoken_yes: bytes) -> None:
    at = _extracted(PARAMS)
    no_exception(at)
    assert not _stars(at)[0]  # no clip yet
    at.get("file_uploader")[0].set_value(("yes.wav", spoken_yes, "audio/wav")).run()
    no_exception(at)
    assert not at.error, texts(at.error)
    stars = _stars(at)
    assert len(stars) == 2 and all(s is not None and np.isfinite(s).all() for s in stars)
    votes = _votes(at)
    assert list(votes["panel"]) == ["Log-mel / MFCC baseline · logmel", "Log-mel / MFCC baseline · mfcc"]
    assert set(votes["predicted word"]) <= {"yes", "no"}
    assert all(" of 5 (" in s for s in votes["share of votes"])

    # The numbers are the library's: the clip through the baseline, against the stored mfcc vectors.
    from embedviz.models import load_extractor
    from embedviz.placement import embed_clip, load_clip, nearest_stored
    from embedviz.settings import ExtractionSettings
    from embedviz.store import EmbeddingStore, read_layers

    extractor = load_extractor("baseline:mel")
    wave = load_clip(spoken_yes, extractor.sample_rate, name="yes.wav")
    vector = embed_clip(extractor, wave, "mean", ["mfcc"])["mfcc"]
    sample = open_dataset(None).sample(["yes", "no"], 6, seed=0)
    stored = read_layers(EmbeddingStore(env["cache"]), ExtractionSettings(model="baseline:mel"), ["mfcc"], "mean",
                         manifest=sample)["mfcc"]
    expected = nearest_stored(stored.X, stored.clips, vector, 5)
    assert votes["predicted word"].iloc[1] == expected.vote.predicted
    # The neighbours of the chosen panel are listed, playable, nearest first.
    at.selectbox(key="own_panel").set_value(("baseline:mel", ("mfcc",))).run()
    cards = [m for m in texts(at.markdown) if "similarity" in m]
    assert len(cards) == 5
    for card, (_, row) in zip(cards, expected.neighbours.iterrows(), strict=True):
        assert card.startswith(f"**{row['word']}** · speaker `{row['speaker']}`")
        assert f"{row['similarity']:.3f}" in card
    assert len(at.get("audio")) >= 6  # your clip + its 5 neighbours


@pytest.mark.parametrize("pool", ["mean", "meanstd", "speech", "time:0.3"])
def test_a_stored_clip_uploaded_lands_on_its_own_point_in_aligned_panels(env, pool: str, monkeypatch) -> None:
    """PCA places a vector exactly; the second panel is Procrustes-aligned and the star follows.
    With every pooling: the clip is pooled from its forward pass as the store pools it."""
    if pool.startswith("time:"):
        monkeypatch.setenv("EMBEDVIZ_TIME_GRID", "1")  # the time grid is stored only on request
    at = _extracted({**PARAMS, "pool": pool})
    assert (at.query_params["pool"] if "pool" in at.query_params else "mean") == pool and not at.warning
    clip = open_dataset(None).sample(["yes", "no"], 6, seed=0).iloc[2]
    at.get("file_uploader")[0].set_value((Path(clip["path"]).name, Path(clip["path"]).read_bytes(), "audio/wav")).run()
    no_exception(at)
    chart = echart(at)
    stars = _stars(at)
    assert len(stars) == 2
    for k, star in enumerate(stars):
        own_point = chart.panel_points(k)[clip["clip_id"]]
        np.testing.assert_allclose(star, own_point, atol=1e-3)
    # One legend entry for the stars of every panel, after the words.
    assert chart.option["legend"]["data"][-1] == "your clip" and chart.option["legend"]["data"].count("your clip") == 1
    votes = _votes(at)
    assert (votes["similarity"] == "1.000").all()  # its nearest stored clip is itself


def test_a_recording_is_placed_like_an_upload(env, spoken_yes: bytes) -> None:
    at = _extracted({**PARAMS, "method": "tsne", "mode": "concatenate"})
    at.segmented_control(key="own_mode").set_value("record").run()
    at.get("audio_input")[0].set_value(("recording.wav", spoken_yes, "audio/wav")).run()
    no_exception(at)
    assert not at.error, texts(at.error)
    stars = _stars(at)
    assert len(stars) == 1 and stars[0] is not None and np.isfinite(stars[0]).all()  # t-SNE transform, joined layers
    assert list(_votes(at)["panel"]) == ["Log-mel / MFCC baseline · logmel+mfcc"]


def test_a_file_that_is_not_audio_or_too_long_says_why(env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import soundfile as sf

    long = tmp_path / "long.wav"
    t = np.arange(int(16000 * 2.5)) / 16000
    sf.write(long, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    at = _extracted(PARAMS)
    at.get("file_uploader")[0].set_value(("notes.wav", b"this is not audio at all" * 50, "audio/wav")).run()
    no_exception(at)
    assert any("notes.wav: cannot decode audio" in e for e in texts(at.error))
    assert all(s is None for s in _stars(at))
    monkeypatch.setenv("EMBEDVIZ_MAX_UPLOAD_SECONDS", "1")
    at.get("file_uploader")[0].set_value(("long.wav", long.read_bytes(), "audio/wav")).run()
    no_exception(at)
    assert any("2.5 s is longer than the 1 s limit" in e for e in texts(at.error))


def test_in_3d_the_clip_is_a_marker_on_its_own_point(env) -> None:
    at = _extracted({**PARAMS, "dims": "3", "layers": "mfcc"})
    clip = open_dataset(None).sample(["yes", "no"], 6, seed=0).iloc[7]
    at.get("file_uploader")[0].set_value((Path(clip["path"]).name, Path(clip["path"]).read_bytes(), "audio/wav")).run()
    no_exception(at)
    assert echart(at) is None  # 3D stays Plotly
    spec = plotly_figure(at)
    (own,) = [t for t in spec["data"] if t.get("name") == "your clip"]
    assert own["type"] == "scatter3d"
    point = [
        [plotly_array(t[a])[i] for a in "xyz"] for t in spec["data"] if t.get("customdata")
        for i, c in enumerate(t["customdata"]) if c[0] == clip["clip_id"]
    ]
    np.testing.assert_allclose([plotly_array(own[a])[0] for a in "xyz"], point[0], atol=1e-3)
