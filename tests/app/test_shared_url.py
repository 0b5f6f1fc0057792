"""A shared URL reproduces what the sender sees: the clicked clip AND the panel its
neighbours come from; Data & cache keeps the chosen words across dataset switches."""

from __future__ import annotations

from pathlib import Path

from embedviz.datasets import open_dataset
from embedviz.pipeline import extract
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore
from tests.app.conftest import DATA, EXPLORE, new_app, no_exception, page, texts
from tests.app.explore_chart import echart
from tests.app.test_data_cache import small_dataset

WORDS = ("yes", "no")


def _store(cache: Path, *models: str) -> None:
    manifest = open_dataset().sample(list(WORDS), 3, seed=0)
    for model in models:
        extract(manifest, ExtractionSettings(model=model), store=EmbeddingStore(cache))


def _neighbour_heading(at) -> str:
    return next(m for m in texts(at.markdown) if m.startswith("**Nearest neighbours**"))


def _neighbour_captions(at) -> list[str]:
    return [m for m in texts(at.markdown) if "distance" in m and "·" in m]


def test_the_recipient_sees_the_senders_clip_and_neighbour_panel(env, local_model: Path) -> None:
    _store(env["cache"], "baseline:mel", str(local_model))
    at = new_app({"model": ["baseline:mel", str(local_model)], "layers": ["logmel,mfcc", "default"],
                  "words": ",".join(WORDS), "n": "3"})
    at.run()
    no_exception(at)
    chart = echart(at)  # every panel is a grid of one chart
    assert len(chart.panel_titles()) >= 3 and len(chart.option["grid"]) == len(chart.panel_titles())
    layer = at.multiselect(key=f"ex_layers::{local_model}").value[-1]
    # The sender clicks a point in the tiny model's last layer (what the plot's on_select callback does).
    clip = open_dataset().sample(list(WORDS), 3, seed=0)["clip_id"].iloc[0]
    at.session_state["ex_clip"] = clip
    at.session_state["ex_nn_space"] = (str(local_model), (layer,))
    at.run()
    no_exception(at)
    sender_heading, sender_rows = _neighbour_heading(at), _neighbour_captions(at)
    assert "tiny-wav2vec2" in sender_heading and f"layer {layer}" in sender_heading
    assert at.query_params["clip"] == clip
    assert at.query_params["nn_model"] == str(local_model) and at.query_params["nn_layers"] == layer

    # A fresh browser opens the URL: same clip, same panel, same neighbours and distances.
    recipient = new_app(dict(at.query_params))
    recipient.run()
    no_exception(recipient)
    assert not recipient.warning, texts(recipient.warning)
    assert _neighbour_heading(recipient) == sender_heading
    assert _neighbour_captions(recipient) == sender_rows


def test_a_url_panel_that_is_not_drawn_falls_back_and_the_url_says_so(env) -> None:
    _store(env["cache"], "baseline:mel")
    clip = open_dataset().sample(list(WORDS), 3, seed=0)["clip_id"].iloc[0]
    at = new_app({"model": "baseline:mel", "layers": "logmel,mfcc", "words": ",".join(WORDS), "n": "3",
                  "clip": clip, "nn_model": "baseline:mel", "nn_layers": "nope"})
    at.run()
    no_exception(at)
    assert "layer logmel" in _neighbour_heading(at)
    assert at.query_params["nn_layers"] == "logmel"


def test_switching_datasets_keeps_the_chosen_words_it_has_and_names_the_dropped(env) -> None:
    mini = small_dataset(env["data"])  # yes, no, cat
    at = page(new_app({"words": "yes,dog,cat"}), DATA)
    at.text_input(key="dc_path").input(str(mini))
    next(b for b in at.button if b.label == "Open").click().run()
    no_exception(at)
    message = " ".join(texts(at.success))
    assert "dropped from the chosen words: dog" in message, message
    assert at.query_params["words"] == "yes,cat"
    # "Use the bundled demo": the demo has both, so both are kept (they used to be dropped silently).
    next(b for b in at.button if b.label == "Use the bundled demo").click().run()
    no_exception(at)
    assert "Chosen words kept: yes, cat" in " ".join(texts(at.success))
    assert at.query_params["words"] == "yes,cat"
    at.switch_page(EXPLORE).run()
    no_exception(at)
    assert at.multiselect(key="ex_words").value == ["yes", "cat"]


def test_reopening_the_same_dataset_keeps_every_chosen_word(env) -> None:
    mini = small_dataset(env["data"])
    at = page(new_app({"data": str(mini), "words": "no,cat"}), DATA)
    at.text_input(key="dc_path").input(str(mini))
    next(b for b in at.button if b.label == "Open").click().run()
    no_exception(at)
    assert "Chosen words kept: no, cat" in " ".join(texts(at.success))
    assert at.query_params["words"] == "no,cat"
    at.switch_page(EXPLORE).run()
    assert at.multiselect(key="ex_words").value == ["no", "cat"]
