"""Your own clip and the exports, in a real browser against a real `streamlit run` server.

A new user opens Explore on the demo with the log-mel / MFCC baseline, extracts, uploads
"yes" spoken by an espeak-ng voice the demo does not have, and sees a star labelled
"your clip" on every panel and the k-NN vote per panel; then downloads the figures (a zip
with plotly.js once) and the embeddings (Parquet equal to the store). Screenshots go to
``artifacts/e2e/own-clip-*.png``.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Page

from embedviz import export
from tests.e2e.explore_figure import GET_PANELS, explore_figure, idle, is_echarts, legend_names

pytestmark = pytest.mark.e2e

PARAMS = "model=baseline:mel&layers=logmel,mfcc&words=yes,no,up,down&n=12"
#: The "your clip" point of every panel of Explore's figure (None for a panel without one).
STARS = f"() => ({GET_PANELS})().map(p => p.stars.length ? p.stars[0] : null)"
TWO_PANELS = f"() => ({GET_PANELS})().length === 2"


def _clean(page: Page, where: str) -> None:
    assert page.get_by_test_id("stException").count() == 0, where
    errors = page.get_by_test_id("stAlertContentError")
    assert errors.count() == 0, f"{where}: {errors.all_inner_texts()}"


def test_upload_your_clip_see_the_star_and_vote_then_export(app_url: str, page: Page, screenshots: Path,
                                                            tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    clip = tmp_path / "yes_en-us+f4.wav"
    subprocess.run(["espeak-ng", "-v", "en-us+f4", "-s", "150", "-w", str(clip), "yes"], check=True)

    page.goto(f"{app_url}/?{PARAMS}")
    idle(page)
    extract = page.get_by_role("button", name="Extract")
    if extract.is_enabled():
        extract.click()
        page.wait_for_timeout(1000)
        idle(page)
    page.wait_for_function(TWO_PANELS, timeout=120_000)
    assert page.evaluate(STARS) == [None, None]

    page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(str(clip))
    page.wait_for_function(f"() => {{ const s = ({STARS})(); return s.length === 2 && s.every(v => v !== null); }}", timeout=120_000)
    idle(page)
    _clean(page, "after the upload")
    stars = page.evaluate(STARS)
    assert len(stars) == 2 and all(s[2] == "star" for s in stars)
    # One legend entry for the stars of every panel (a small 2D view: the ECharts chart).
    gd = explore_figure(page)
    assert is_echarts(gd) and legend_names(gd).count("your clip") == 1
    votes = page.get_by_test_id("stTable").filter(has_text="predicted word")
    text = votes.inner_text()
    assert "Log-mel / MFCC baseline · logmel" in text and "Log-mel / MFCC baseline · mfcc" in text
    assert " of 5 (" in text
    assert page.get_by_text("similarity", exact=False).count() >= 5  # the neighbours, each with a player
    own = page.get_by_text("Your own clip", exact=True)
    own.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "own-clip-upload.png"), full_page=True)

    with page.expect_download() as download:
        page.get_by_role("button", name="Figures (HTML, zip)").click()
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as zf:
        names = zf.namelist()
        assert names.count(export.PLOTLY_JS) == 1 and "index.html" in names
        pages = [n for n in names if n.endswith(".html") and n != "index.html"]
        assert len(pages) == 2 and all("your clip" in zf.read(n).decode() for n in pages)
    with page.expect_download() as download:
        page.get_by_role("button", name="Parquet").click()
    frame = pd.read_parquet(Path(download.value.path()))
    X, meta = export.read_embeddings(frame)
    assert "logmel" in download.value.suggested_filename
    stored = (meta["source"] == export.SOURCE_DATASET).to_numpy()
    assert stored.sum() == 48 and X.shape[0] == 49 and set(meta.loc[stored, "word"]) == {"yes", "no", "up", "down"}
    mine = meta[~stored].iloc[0]  # the uploaded clip: one more row, marked, with the panel's vote
    assert mine["source"] == export.SOURCE_OWN and mine["clip_id"] == export.OWN_CLIP_PREFIX + clip.name
    assert mine["predicted_word"] in {"yes", "no", "up", "down"} and mine["word"] == ""
    _clean(page, "after the downloads")


def test_record_your_clip_with_the_browser_microphone(app_url: str, browser, screenshots: Path, tmp_path: Path) -> None:
    """st.audio_input with Chromium's fake microphone playing a synthesised word."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    import numpy as np
    import soundfile as sf
    import soxr

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

    spoken = tmp_path / "no.wav"
    subprocess.run(["espeak-ng", "-v", "en-us+f4", "-s", "150", "-w", str(spoken), "no"], check=True)
    wave, rate = sf.read(spoken)
    mic = tmp_path / "mic.wav"  # Chromium's fake capture device wants 48 kHz; a little silence around the word
    pad = np.zeros(48000 // 4)
    sf.write(mic, np.concatenate([pad, soxr.resample(wave, rate, 48000), pad, pad]), 48000, subtype="PCM_16")
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}%noloop"]
    own_browser = browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=args)
    try:
        context = own_browser.new_context(viewport={"width": 1440, "height": 1000}, permissions=["microphone"])
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{app_url}/?{PARAMS}&pool=speech")
        idle(page)
        extract = page.get_by_role("button", name="Extract")
        if extract.is_enabled():
            extract.click()
            page.wait_for_timeout(1000)
            idle(page)
        page.wait_for_function(TWO_PANELS, timeout=120_000)
        page.get_by_text("Record", exact=True).click()
        idle(page)
        button = page.get_by_test_id("stAudioInput").get_by_test_id("stAudioInputActionButton")
        button.click()  # start
        page.wait_for_timeout(2500)
        button.click()  # stop: the recording is sent to the app
        page.wait_for_function(f"() => {{ const s = ({STARS})(); return s.length === 2 && s.every(v => v !== null); }}", timeout=120_000)
        idle(page)
        _clean(page, "after the recording")
        assert "predicted word" in page.get_by_test_id("stTable").first.inner_text()
        page.get_by_text("Your own clip", exact=True).scroll_into_view_if_needed()
        page.screenshot(path=str(screenshots / "own-clip-recording.png"))
    finally:
        own_browser.close()
