"""Data & cache page (AppTest): dataset summary, switching datasets (validated), store listing, delete."""

from __future__ import annotations

import shutil
from pathlib import Path

from embedviz.datasets import demo_root, open_dataset
from embedviz.pipeline import extract
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore
from tests.app.conftest import DATA, EXPLORE, charts, new_app, no_exception, page, texts


def small_dataset(root: Path, words=("yes", "no", "cat"), per_word: int = 3) -> Path:
    """A Speech Commands style folder with a few demo clips, under ``root``."""
    target = root / "mini"
    for word in words:
        (target / word).mkdir(parents=True)
        for clip in sorted((demo_root() / word).iterdir())[:per_word]:
            shutil.copy(clip, target / word / clip.name)
    return target


def test_dataset_summary_and_widgets(env) -> None:
    at = page(new_app(), DATA)
    no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Words"] == "12" and metrics["Clips"] == "288" and metrics["Speakers"] == "24"
    assert at.dataframe[0].value.shape[0] == 12  # words table
    assert at.text_input(key="dc_path") is not None
    assert any("Nothing stored yet" in i for i in texts(at.info))
    # Durations: a histogram, or one sentence when every clip has the same length (the demo).
    assert len(charts(at)) == 1 or any("Every readable clip lasts" in m for m in texts(at.markdown))


def test_invalid_dataset_paths_are_refused_with_a_clear_error(env, tmp_path: Path) -> None:
    outside = small_dataset(tmp_path / "elsewhere")
    not_a_dataset = env["data"] / "empty"
    not_a_dataset.mkdir()
    at = page(new_app(), DATA)
    for raw, needle in [
        (str(outside), "outside the allowed folders"),
        (str(env["data"] / ".." / "elsewhere" / "mini"), ".."),
        (str(env["data"] / "missing"), "no such folder"),
        (str(not_a_dataset), "no word folders"),
        ("relative/path", "absolute"),
    ]:
        at.text_input(key="dc_path").input(raw)
        next(b for b in at.button if b.label == "Open").click().run()
        no_exception(at)
        assert any(needle in e for e in texts(at.error)), (raw, texts(at.error))
        assert "data" not in at.query_params


def test_open_a_dataset_under_a_data_root_then_explore_uses_it(env) -> None:
    mini = small_dataset(env["data"])
    at = page(new_app({"words": "up,down"}), DATA)
    at.text_input(key="dc_path").input(str(mini))
    next(b for b in at.button if b.label == "Open").click().run()
    no_exception(at)
    assert any("Opened" in s for s in texts(at.success))
    assert at.query_params["data"] == str(mini.resolve())
    assert {m.label: m.value for m in at.metric}["Words"] == "3"

    at.switch_page(EXPLORE).run()
    no_exception(at)
    # up/down are not in the new dataset: its default words are used instead.
    assert set(at.multiselect(key="ex_words").value) == {"yes", "no", "cat"}
    assert at.query_params["data"] == str(mini.resolve())

    # The URL alone (new session) opens it too; an outside path in the URL falls back to the demo.
    again = new_app({"data": str(mini)})
    again.run()
    no_exception(again)
    assert not again.warning
    assert set(again.multiselect(key="ex_words").value) == {"yes", "no", "cat"}


def test_store_entries_are_listed_and_deleted_after_confirmation(env) -> None:
    manifest = open_dataset().sample(["yes", "no"], 3)
    extract(manifest, ExtractionSettings(model="baseline:mel"), store=EmbeddingStore(env["cache"]))
    at = page(new_app(), DATA)
    no_exception(at)
    listing = at.dataframe[1].value
    assert list(listing["model"]) == ["Log-mel / MFCC baseline"] and list(listing["clips"]) == [6]
    delete = at.button(key="dc_delete")
    assert delete.disabled
    chosen_entry = EmbeddingStore(env["cache"]).entries()["entry"].iloc[0]
    at.multiselect(key="dc_chosen").set_value([chosen_entry]).run()
    at.button(key="dc_delete").click().run()
    assert any("Delete 1 stored entry" in w for w in texts(at.warning))
    # Cancel keeps it.
    at.button(key="dc_cancel").click().run()
    assert len(EmbeddingStore(env["cache"]).entries()) == 1
    at.multiselect(key="dc_chosen").set_value([chosen_entry]).run()
    at.button(key="dc_delete").click().run()
    at.button(key="dc_confirm").click().run()
    no_exception(at)
    assert EmbeddingStore(env["cache"]).entries().empty
    assert any("Deleted 1 stored entry" in s for s in texts(at.success))


def test_a_url_dataset_that_cannot_be_opened_falls_back_to_the_demo(env) -> None:
    (env["data"] / "empty").mkdir()
    at = new_app({"data": str(env["data"] / "empty")})
    at.run()
    no_exception(at)
    assert any("cannot be opened" in e and "demo" in e for e in texts(at.error)), texts(at.error)
    assert at.multiselect(key="ex_words").value == ["yes", "no", "up", "down"]
    assert "data" not in at.query_params
