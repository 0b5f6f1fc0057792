"""Data & cache panels (AppTest): fetching Speech Commands from a local server, and the
open dataset's problem files.

The server runs on 127.0.0.1 and serves a small generated ``.tar.gz`` in the Speech
Commands layout (``tests/archive_server.py``); it honours
``Range`` and can send slowly, so a fetch can be cancelled half-way and resumed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from embedviz.datasets import open_dataset
from tests.app.conftest import DATA, new_app, no_exception, page, texts, wait_for_job
from tests.unit.test_bad_audio_corpus import make_corpus
from tests.archive_server import make_archive

FETCH_JOB = "_dc_fetch_job"


def archive(big_seconds: float = 0.0) -> bytes:
    """A Speech Commands shaped .tar.gz; ``big_seconds`` of noise in one extra 'cat' clip make it
    large enough to be cancelled while it downloads."""
    return make_archive(big_seconds=big_seconds, license_file=False)


@pytest.fixture
def serve(env, serve):
    """The archive server of ``tests/conftest.py``, in the app's test environment."""
    return serve


def fill_form(at, url: str, folder: str = "sc", words: tuple[str, ...] = ()):
    at.text_input(key="dc_fetch_url").input(url)
    at.text_input(key="dc_fetch_folder").input(folder)
    chooser = at.multiselect(key="dc_fetch_words")
    for word in words:
        chooser = chooser.select(word)
    return at


def fetch_button(at):
    return next(b for b in at.button if b.label == "Fetch")


def wait_for_fetch(at, timeout: float = 60):
    job = at.session_state[FETCH_JOB] if FETCH_JOB in at.session_state else None
    if job is not None:
        assert job.wait(timeout), "fetch did not finish in time"
    deadline = time.monotonic() + timeout
    while FETCH_JOB in at.session_state and time.monotonic() < deadline:
        at.run()
    return at


def table_with(at, *columns: str):
    """The shown table with exactly these columns (AppTest keeps no key on a plain dataframe)."""
    found = [d.value for d in at.dataframe if list(d.value.columns) == list(columns)]
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def progress_texts(at) -> list[str]:
    return [p.proto.text for p in at.get("progress")]


def test_fetch_from_a_local_server_then_open_the_dataset(env, serve) -> None:
    server = serve(archive())
    at = page(new_app(), DATA)
    no_exception(at)
    fill_form(at, server.url, words=("yes", "cat"))
    fetch_button(at).click().run()
    no_exception(at)
    # Started (a small local archive may even be done by now).
    assert FETCH_JOB in at.session_state or "_dc_fetch_done" in at.session_state, texts(at.error)
    wait_for_fetch(at)
    no_exception(at)

    dest = (env["data"] / "sc").resolve()
    assert any(f"Fetched 7 clips of 2 words into `{dest}`" in s for s in texts(at.success)), texts(at.success)
    counts = table_with(at, "word", "clips")
    assert dict(zip(counts["word"], counts["clips"])) == {"cat": 4, "yes": 3}
    assert not (dest / "no").exists() and not (dest / "_background_noise_").exists()

    next(b for b in at.button if b.label == "Open this dataset").click().run()
    no_exception(at)
    assert at.query_params["data"] == str(dest)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Words"] == "2" and metrics["Clips"] == "7"
    assert any("Opened" in s for s in texts(at.success))


@pytest.mark.parametrize(
    "url,needle",
    [
        ("ftp://127.0.0.1/speech_commands.tar.gz", "must be an http or https address"),
        ("file:///etc/passwd", "must be an http or https address"),
        ("http:///no-host.tar.gz", "has no host"),
    ],
)
def test_the_url_field_is_checked_like_the_cli(env, serve, url: str, needle: str) -> None:
    at = page(new_app(), DATA)
    fill_form(at, url)
    fetch_button(at).click().run()
    no_exception(at)
    assert FETCH_JOB not in at.session_state and "_dc_fetch_done" not in at.session_state
    assert any(needle in e and e.startswith("Archive address") for e in texts(at.error)), texts(at.error)
    assert not (env["data"] / "sc").exists(), "nothing is written for a refused address"


@pytest.mark.parametrize("folder", ["../outside", "a/b", ".hidden", ""])
def test_the_destination_must_be_one_new_folder_under_a_data_root(env, serve, folder: str) -> None:
    server = serve(archive())
    at = page(new_app(), DATA)
    fill_form(at, server.url, folder=folder)
    fetch_button(at).click().run()
    no_exception(at)
    assert FETCH_JOB not in at.session_state and "_dc_fetch_done" not in at.session_state
    assert any(e.startswith(("Folder name", "Destination")) for e in texts(at.error)), texts(at.error)


def test_cancel_keeps_the_partial_download_and_fetch_resumes_it(env, serve) -> None:
    data = archive(big_seconds=40.0)  # ~1.3 MB of noise, sent at ~0.6 MB/s
    server = serve(data, piece=16 * 1024, delay_s=0.025)
    at = page(new_app(), DATA)
    fill_form(at, server.url)
    fetch_button(at).click().run()
    job = at.session_state[FETCH_JOB]
    deadline = time.monotonic() + 30
    while (job.snapshot().event is None or job.snapshot().event.done == 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    at.run()
    no_exception(at)
    shown = progress_texts(at)
    assert shown and "Downloading" in shown[0] and "MB/s" in shown[0] and "ETA" in shown[0], shown
    at.button(key="dc_fetch_cancel").click().run()
    wait_for_fetch(at)
    no_exception(at)
    assert any("Fetch cancelled" in w for w in texts(at.warning)), texts(at.warning)
    part = env["data"] / "sc" / ".download" / "speech_commands_test.tar.gz.part"
    kept = part.stat().st_size
    assert 0 < kept < len(data)

    server.delay_s = 0.0
    # The form still holds the address and folder, so Fetch alone resumes.
    assert at.text_input(key="dc_fetch_url").value == server.url
    assert at.text_input(key="dc_fetch_folder").value == "sc"
    fetch_button(at).click().run()
    wait_for_fetch(at)
    no_exception(at)
    assert server.ranges[-1] == f"bytes={kept}-", server.ranges
    assert any("resumed a partial download" in s for s in texts(at.success)), texts(at.success)
    counts = table_with(at, "word", "clips")
    assert dict(zip(counts["word"], counts["clips"])) == {"cat": 5, "no": 2, "yes": 3}


def test_without_data_roots_fetching_says_how_to_allow_one(env, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("EMBEDVIZ_DATA_ROOTS")
    monkeypatch.setenv("EMBEDVIZ_FETCHED_ROOTS_FILE", str(tmp_path / "none.json"))
    at = page(new_app(), DATA)
    no_exception(at)
    assert any("EMBEDVIZ_DATA_ROOTS" in i for i in texts(at.info))
    assert not [b for b in at.button if b.label == "Fetch"]


def test_the_problem_files_of_the_open_dataset_are_listed(env) -> None:
    corpus = make_corpus(env["data"] / "corpus")
    problems = open_dataset(corpus.root).problems
    assert len(problems) == len(corpus.discovered)
    at = page(new_app({"data": str(corpus.root.resolve())}), DATA)
    no_exception(at)
    assert any(f"{len(problems)} file(s) in this folder look like clips but cannot be used" in w
               for w in texts(at.warning)), texts(at.warning)
    table = table_with(at, "path", "reason")
    assert sorted(table["path"]) == sorted(p.path for p in problems)
    assert dict(zip(table["path"], table["reason"])) == {p.path: p.reason for p in problems}


def test_a_dataset_without_problems_shows_none(env) -> None:
    at = page(new_app(), DATA)  # the bundled demo
    no_exception(at)
    assert not any("cannot be used" in w for w in texts(at.warning))
    assert not [d for d in at.dataframe if list(d.value.columns) == ["path", "reason"]]


def test_after_an_extraction_explore_names_skipped_clips_notices_and_unusable_files(env) -> None:
    corpus = make_corpus(env["data"] / "corpus")
    ds = open_dataset(corpus.root)
    at = new_app({"data": str(corpus.root.resolve()), "model": "baseline:mel", "words": "bad,good,odd", "n": "40"})
    at.run()
    no_exception(at)
    next(b for b in at.button if b.label == "Extract").click().run()
    wait_for_job(at)
    no_exception(at)
    readable = os.access(corpus.unreadable, os.R_OK)  # root reads a chmod 000 file; anyone else does not
    n_usable = len(corpus.usable) + readable
    n_bad = len(corpus.unusable) - len(corpus.discovered) + (not readable)
    n_notices = sum(len(kinds) for kinds in corpus.usable.values())
    assert any(f"{n_usable} computed, 0 already stored, {n_bad} skipped, {n_notices} with notices" in s
               for s in texts(at.success)), texts(at.success)
    labels = [e.label for e in at.expander]
    assert f"{n_bad} clip(s) skipped, with reasons" in labels
    assert any(label.startswith(f"{n_notices} notice(s) about odd but usable clips: 2 downmixed, 4 resampled, 1 cut")
               for label in labels), labels
    notices = table_with(at, "model", "notice", "clip", "detail", "path")
    assert sorted(notices["clip"]) == sorted(c for c, kinds in corpus.usable.items() for _ in kinds)
    assert any(f"{len(ds.problems)} file(s) in the dataset folder are not clips" in c for c in texts(at.caption))
    # The rejected clips are not counted as stored, nor as still to compute.
    at.run()
    status = f"0 clip(s) to compute, {n_usable} already stored, {n_bad} unusable"
    assert any(status in m for m in texts(at.markdown)), texts(at.markdown)
    assert next(b for b in at.button if b.label == "Extract").disabled
