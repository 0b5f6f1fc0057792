"""Layer analysis page (AppTest): needs stored embeddings, curves, table, confusion, CKA, URL state."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedviz.datasets import open_dataset
from embedviz.pipeline import extract
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore
from tests.app.conftest import ANALYSIS, charts, new_app, no_exception, page, texts

WORDS = ("yes", "no", "up")
N = 4


def store_models(cache: Path, *models: str) -> None:
    """Extract through the library (faster than through the UI) into the test's store."""
    manifest = open_dataset().sample(list(WORDS), N, seed=0)
    for model in models:
        report = extract(manifest, ExtractionSettings(model=model), store=EmbeddingStore(cache))
        assert report.computed == len(manifest)


def params(*models: str, **extra: str) -> dict[str, str | list[str]]:
    return {"model": list(models), "words": ",".join(WORDS), "n": str(N), **extra}


def test_nothing_stored_says_where_to_extract(env) -> None:
    at = page(new_app(params("baseline:mel")), ANALYSIS)
    no_exception(at)
    assert any("no stored clips" in i for i in texts(at.info))
    assert any(link.label == "Go to Explore" for link in at.page_link)


def test_page_links_carry_the_view_in_their_query_params(env) -> None:
    """Streamlit's own menu drops query params on a page switch; our links keep them."""
    at = page(new_app(params("baseline:mel", method="tsne")), ANALYSIS)
    links = {link.label: link.proto.query_string for link in at.page_link}
    assert {"Explore", "Layer analysis", "Data & cache"} <= set(links)
    for label in ("Explore", "Data & cache", "Go to Explore"):
        assert "model=baseline%3Amel" in links[label] and "method=tsne" in links[label], links[label]


def test_widgets_figures_and_url_round_trip(env, local_model: Path) -> None:
    store_models(env["cache"], "baseline:mel", str(local_model))
    at = page(new_app(params("baseline:mel", str(local_model), metric="silhouette")), ANALYSIS)
    no_exception(at)
    assert not at.error, texts(at.error)
    assert at.segmented_control(key="la_metric").value == "silhouette"
    assert at.selectbox(key="la_cm_model").value == "baseline:mel"
    assert at.selectbox(key="la_cm_layer").value == "mfcc"  # default: the last layer
    drawn = charts(at)
    assert len(drawn) == 4  # curve, speaker vs word, confusion, CKA
    assert any("Best layer by silhouette" in m for m in texts(at.markdown))
    table = at.dataframe[0].value
    assert set(table["model"]) == {"Log-mel / MFCC baseline", "tiny-wav2vec2"}
    assert {"knn_accuracy", "silhouette", "probe_accuracy", "speaker_disjoint_knn"} <= set(table.columns)

    at.segmented_control(key="la_metric").set_value("probe_accuracy").run()
    assert at.query_params["metric"] == "probe_accuracy"
    # The sidebar's links are drawn before the metrics and again with the final view: once
    # each, carrying the metric chosen further down the page.
    nav = [link for link in at.sidebar.get("page_link")]
    assert [link.label for link in nav] == ["Explore", "Layer analysis", "Data & cache"]
    assert all("metric=probe_accuracy" in link.proto.query_string for link in nav)
    at.selectbox(key="la_cm_model").set_value(str(local_model)).run()
    no_exception(at)
    assert at.query_params["cm_model"] == str(local_model)
    assert at.selectbox(key="la_cm_layer").value in at.selectbox(key="la_cm_layer").options
    at.segmented_control(key="la_cka_mode").set_value("across").run()
    no_exception(at)
    assert at.query_params["cka"] == "across"
    assert at.query_params["cka_model"] == ["baseline:mel", str(local_model)]
    assert len(charts(at)) == 4

    # The same URL in a new session restores the page state.
    again = page(new_app(dict(at.query_params)), ANALYSIS)
    no_exception(again)
    assert again.segmented_control(key="la_metric").value == "probe_accuracy"
    assert again.selectbox(key="la_cm_model").value == str(local_model)
    assert again.segmented_control(key="la_cka_mode").value == "across"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"metric": "auc"}, "auc"),
        ({"cm_model": "openai/whisper-tiny"}, "Confusion-matrix model"),
        ({"cka": "diagonal"}, "diagonal"),
    ],
)
def test_invalid_params_warn_and_fall_back(env, extra, needle) -> None:
    store_models(env["cache"], "baseline:mel")
    at = new_app(params("baseline:mel", **extra))
    at.switch_page(ANALYSIS).run()
    no_exception(at)
    assert any(needle in w for w in texts(at.warning)), texts(at.warning)
    assert at.segmented_control(key="la_metric").value == "knn_accuracy"
    assert at.segmented_control(key="la_cka_mode").value == "within"


def test_speaker_word_chart_and_measures_section(env, local_model: Path) -> None:
    """The speaker-vs-word chart is drawn from the metrics; the Measures toggle computes
    PWCCA / NMI / ABX for every layer of every model, states the clip count, and is cached."""
    store_models(env["cache"], "baseline:mel", str(local_model))
    at = page(new_app(params("baseline:mel", str(local_model))), ANALYSIS)
    no_exception(at)
    assert not at.error, texts(at.error)
    # The demo has one clip per speaker and word: the page says so and shows speaker identity across words.
    assert any("across words" in c for c in texts(at.caption))
    speaker_word = at.dataframe[1].value
    assert {"word k-NN across speakers", "speaker 1-NN", "speaker chance"} <= set(speaker_word.columns)
    assert speaker_word["speaker 1-NN"].notna().all()
    assert any("Morcos" in m and "Schatz" in m and "Hsu" in m for m in texts(at.markdown))
    assert len(charts(at)) == 4  # the measures are not computed until asked

    at.toggle(key="la_measures").set_value(True).run()
    no_exception(at)
    assert not at.error, texts(at.error)
    table = at.dataframe[2].value
    assert set(table["model"]) == {"Log-mel / MFCC baseline", "tiny-wav2vec2"}
    n_layers = len(at.selectbox(key="la_cm_layer").options)
    assert (table["model"] == "Log-mel / MFCC baseline").sum() == n_layers
    assert table["PWCCA"].between(-1, 1).all() and table["ABX across speakers"].between(0, 1).all()
    assert table["ABX within speaker"].isna().all()  # the demo: nobody said a word twice
    assert any(m.startswith("**Word ABX across speakers** (A and X one word by different speakers, B another "
                            "word by A's speaker), best layer") for m in texts(at.markdown))
    assert (table["clips"] == len(WORDS) * N).all()
    assert any(f"Computed on {len(WORDS) * N} clips" in c for c in texts(at.caption))
    assert len(charts(at)) == 5

    # A rerun keeps the toggle and shows the same (cached) numbers.
    at.run()
    no_exception(at)
    assert at.toggle(key="la_measures").value is True
    assert at.dataframe[2].value.equals(table)
    assert at.query_params["measures"] == "on"  # the toggle is in the URL

    # The same URL opened in a new session shows the measures computed, without a click.
    shared = page(new_app(dict(at.query_params)), ANALYSIS)
    no_exception(shared)
    assert shared.toggle(key="la_measures").value is True
    assert len(charts(shared)) == 5
    assert shared.dataframe[2].value.equals(table)
    shared.toggle(key="la_measures").set_value(False).run()
    assert "measures" not in shared.query_params and len(charts(shared)) == 4


def test_speaker_identity_within_words_when_speakers_repeat_a_word(env) -> None:
    """A dataset where every speaker said each word twice: the chart uses the within-word speaker curve."""
    import numpy as np
    import soundfile as sf

    from embedviz.datasets import demo_root

    root = env["data"] / "takes"
    rng = np.random.default_rng(0)
    for word in WORDS:
        (root / word).mkdir(parents=True)
        for clip in sorted((demo_root() / word).iterdir())[:4]:
            audio, rate = sf.read(clip)
            speaker = clip.name.split("_nohash_")[0]
            sf.write(root / word / f"{speaker}_nohash_0.wav", audio, rate)
            # A second take by the same voice: quieter, with its own noise floor.
            sf.write(root / word / f"{speaker}_nohash_1.wav", 0.7 * audio + 1e-3 * rng.normal(size=audio.shape), rate)
    manifest = open_dataset(root).sample(list(WORDS), 8, seed=0)
    assert extract(manifest, ExtractionSettings(model="baseline:mel"), store=EmbeddingStore(env["cache"])).computed == 24

    at = page(new_app({"model": "baseline:mel", "words": ",".join(WORDS), "n": "8", "data": str(root)}), ANALYSIS)
    no_exception(at)
    assert not at.error, texts(at.error)
    assert any("measured within words" in c for c in texts(at.caption))
    speaker_word = at.dataframe[1].value
    assert (speaker_word["clips scored"] == 24).all()  # every clip's speaker said its word twice
    assert speaker_word["speaker chance"].iloc[0] == 1 / 7  # 1 other take among 7 other clips of the word
    assert speaker_word["speaker 1-NN"].between(0, 1).all()

    # Opened with measures=on (a shared link): computed at once; with repeated takes the
    # within-speaker ABX is defined beside the headline across-speaker one.
    at = page(new_app({"model": "baseline:mel", "words": ",".join(WORDS), "n": "8", "data": str(root),
                       "measures": "on"}), ANALYSIS)
    no_exception(at)
    assert at.toggle(key="la_measures").value is True
    measures = at.dataframe[2].value
    assert measures["ABX across speakers"].between(0, 1).all() and measures["ABX within speaker"].between(0, 1).all()
    # Per X: 1 other take of its word x 4 clips of the other 2 words by its speaker (2 takes each).
    assert (measures["triplets within"] == 24 * 4).all()


def _layer_by_layer_script() -> None:
    """A page that runs ``widgets.layer_by_layer`` over a good and a failing model."""
    from types import SimpleNamespace

    import pandas as pd
    import streamlit as st

    from embedviz.errors import ConfigError
    from ui import widgets

    calls = st.session_state.setdefault("calls", [])

    def compute(sel, layer: str) -> pd.DataFrame:
        calls.append((sel.name, layer))
        if sel.name == "bad" and layer == "1":
            raise ConfigError("layer 1 cannot be read")
        return pd.DataFrame({"layer": [layer], "knn_accuracy": [0.5]})

    ready = {name: SimpleNamespace(name=name, layers=("0", "1", "2")) for name in ("bad", "good")}
    tables = widgets.layer_by_layer(ready, {"bad": "Bad model", "good": "Good model"}, compute, "Metrics")
    st.session_state["tables"] = tables


def test_layer_by_layer_reports_a_failing_model_once_and_keeps_the_others() -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_layer_by_layer_script, default_timeout=30)
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Bad model: layer 1 cannot be read"]
    # The failing model stops at its failing layer; the other model gets every layer, in order.
    assert at.session_state["calls"] == [("bad", "0"), ("bad", "1"), ("good", "0"), ("good", "1"), ("good", "2")]
    (table,) = at.session_state["tables"]
    assert list(table["layer"]) == ["0", "1", "2"] and set(table["model"]) == {"Good model"}
    assert not at.get("progress"), "the progress bar is left on the page"
