"""A new user's whole workflow, in a real browser, against a real `streamlit run` server.

Everything runs offline on the bundled demo dataset with the tiny random models of the
session's model root (see ``conftest.py``): open the app, choose models, words and clips
per word through the real widgets, press Extract and watch the progress bar, check the
Plotly figure really drew every panel's points (all panels are subplots of ONE figure,
``explore_figure.py``), click a point to hear its clip and its nearest
neighbours, open the shared URL in a fresh browser context (the same view, no
extraction), visit Layer analysis and Data & cache through the sidebar, and finally feed
the app a hostile URL.

Screenshots of every step go to ``artifacts/e2e/`` (``01-first-paint.png`` ...
``08-invalid-url.png``). Synchronisation never relies on fixed sleeps alone: every step
waits for its visible effect (a widget value, the URL, a chart) and then for Streamlit's
script to be idle (``stApp[data-test-script-state]``).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect

from embedviz.viewstate import ViewSettings
from tests.e2e.explore_figure import EC_SELECTOR, GET_PANELS, PLOTLY_SELECTOR, explore_figure, hover_text, isolated_point, panel_pixels

pytestmark = pytest.mark.e2e

#: Words and clips per word of the workflow (3 x 6 = 18 clips per model: quick on 2 cores).
WORDS = ("yes", "no", "left")
SAMPLES = 6
N_CLIPS = len(WORDS) * SAMPLES
#: The tiny local models (folders under EMBEDVIZ_MODEL_ROOTS) the user adds to the baseline.
TINY = ("tiny-wav2vec2", "tiny-whisper")
BASELINE_LABEL = "Log-mel / MFCC baseline"
DEFAULT_CONTROL_LABEL = "wav2vec2-base (random init)"  # a default model; too slow to extract here

DEFAULTS = ViewSettings()  # what an unusable URL value falls back to
UI_TIMEOUT = 30_000  # ms: a widget change or page switch (one Streamlit rerun)
EXTRACT_TIMEOUT = 180_000  # ms: the first extraction imports torch and loads three models

#: Init script: marks every canvas whose WebGL context the browser takes away (the event is
#: caught in the capture phase; asking a canvas for its context could create a new one).
WATCH_WEBGL = """document.addEventListener('webglcontextlost',
    e => e.target && e.target.setAttribute && e.target.setAttribute('data-webgl-lost', '1'), true);"""

#: Every chart of a page other than Explore (Explore's one figure: ``explore_figure.GET_PANELS``).
GET_PLOTS = """() => [...document.querySelectorAll('%s')].map(gd => ({
    title: String((gd._fullLayout && gd._fullLayout.title && gd._fullLayout.title.text) || ''),
    names: (gd._fullData || []).map(t => t.name),
    nPoints: (gd._fullData || []).reduce((n, t) => n + (t.x ? t.x.length : 0), 0),
    svgTraces: gd.querySelectorAll('.scatterlayer .trace').length,
}))""" % PLOTLY_SELECTOR


# ---------------------------------------------------------------------- helpers


def wait_idle(page: Page, *, stable_s: float = 0.6, timeout_s: float = 60.0) -> None:
    """Wait until Streamlit's script has been idle (not running) for ``stable_s`` seconds."""
    app = page.get_by_test_id("stApp")
    deadline = time.monotonic() + timeout_s
    since = None
    state = None
    while time.monotonic() < deadline:
        state = app.get_attribute("data-test-script-state", timeout=UI_TIMEOUT)
        if state == "notRunning":
            since = since or time.monotonic()
            if time.monotonic() - since >= stable_s:
                return
        else:
            since = None
        page.wait_for_timeout(100)
    raise AssertionError(f"Streamlit did not become idle within {timeout_s:.0f} s (script state {state!r})")


def assert_clean(page: Page, where: str) -> None:
    """No Streamlit exception box, no traceback text and no error alert on the page."""
    exceptions = page.get_by_test_id("stException")
    assert exceptions.count() == 0, f"{where}: Streamlit exception shown: {exceptions.first.inner_text()[:2000]}"
    body = page.locator("body").inner_text()
    assert "Traceback" not in body, f"{where}: 'Traceback' on the page:\n{body[:3000]}"
    errors = page.get_by_test_id("stAlertContentError")
    assert errors.count() == 0, f"{where}: error alert(s) shown: {errors.all_inner_texts()}"


def shot(page: Page, folder: Path, name: str, *, full: bool = True) -> None:
    """Screenshot; ``full`` grows the viewport to the page's length (Streamlit scrolls inside stMain)."""
    if not full:
        page.screenshot(path=str(folder / name))
        return
    size = page.viewport_size or {"width": 1440, "height": 1000}
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=stMain]');"
        " return m ? m.scrollHeight : document.documentElement.scrollHeight; }"
    )
    page.set_viewport_size({"width": size["width"], "height": int(min(max(size["height"], height), 4000))})
    try:
        page.wait_for_timeout(500)  # Plotly relayouts on resize
        page.screenshot(path=str(folder / name))
    finally:
        page.set_viewport_size(size)
        page.wait_for_timeout(200)


@contextlib.contextmanager
def failure_screenshots(browser, folder: Path, name: str) -> Iterator[None]:
    """On a failure, a full-length screenshot of every open page: ``FAILED-<name>-<n>.png``."""
    try:
        yield
    except BaseException:
        n = 0
        for context in browser.contexts:
            for pg in context.pages:
                n += 1
                with contextlib.suppress(Exception):  # never hide the real failure
                    shot(pg, folder, f"FAILED-{name}-{n}.png")
        raise


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def multiselect(page: Page, label: str) -> Locator:
    """The st.multiselect whose label is exactly ``label``."""
    return page.get_by_test_id("stMultiSelect").filter(
        has=page.get_by_test_id("stWidgetLabel").get_by_text(label, exact=True)
    )


def tags(ms: Locator) -> list[str]:
    """The chosen values' labels of a multiselect (its tags)."""
    return ms.locator("[data-tag]").evaluate_all("els => els.map(e => e.getAttribute('aria-label') || e.innerText)")


def add_option(page: Page, ms: Locator, typed: str, option: re.Pattern[str]) -> None:
    """Type into a multiselect, click the matching option, close the dropdown."""
    box = ms.get_by_role("combobox")
    box.click()
    box.fill(typed)
    page.get_by_role("option", name=option).click()
    page.keyboard.press("Escape")


def checked(page: Page, group: str) -> list[str]:
    """The selected option(s) of a segmented control (a radiogroup named ``group``)."""
    return page.get_by_role("radiogroup", name=group).get_by_role("radio", checked=True).all_inner_texts()


def set_slider(page: Page, label: str, value: int) -> None:
    """Move an st.slider to ``value`` with the keyboard, as a user would (arrow keys on the thumb)."""
    box = page.get_by_test_id("stSlider").filter(has=page.get_by_text(label, exact=True))
    thumb_value = box.get_by_test_id("stSliderThumbValue")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current = int(thumb_value.inner_text())
        if current == value and query(page.url).get("n") == [str(value)]:
            wait_idle(page)
            if int(thumb_value.inner_text()) == value:
                return
        if current != value:
            box.get_by_role("slider").focus()
            page.keyboard.press("ArrowLeft" if current > value else "ArrowRight")
        page.wait_for_timeout(150)
    raise AssertionError(f"slider {label!r} did not settle at {value}: {thumb_value.inner_text()}, URL {page.url}")


def switches(page: Page) -> dict[str, bool]:
    """Every st.toggle / st.checkbox on the page: label -> checked."""
    pairs = page.locator('[data-testid="stCheckbox"] input').evaluate_all(
        "els => els.map(e => [e.getAttribute('aria-label'), e.checked])"
    )
    return dict(pairs)


def status_lines(page: Page) -> str:
    """The 'N clip(s) to compute, M already stored' lines above the Extract button."""
    return "\n".join(page.get_by_text("clip(s) to compute").all_inner_texts())


def expect_plots_drawn(page: Page, n_panels: int, where: str) -> list[dict]:
    """Explore's one figure with ``n_panels`` panels of data (clip ids in customdata) and visibly drawn points."""
    plots = page.locator(f"{EC_SELECTOR}, {PLOTLY_SELECTOR}")  # ECharts for a small 2D view, else Plotly
    expect(plots, f"{where}: one figure for every panel").to_have_count(1, timeout=60_000)
    deadline = time.monotonic() + 30
    info = page.evaluate(GET_PANELS)
    while time.monotonic() < deadline and not (len(info) == n_panels and all(p["nPoints"] == N_CLIPS for p in info)):
        page.wait_for_timeout(300)
        info = page.evaluate(GET_PANELS)
    assert len(info) == n_panels, f"{where}: {len(info)} panels, not {n_panels}: {[p['title'] for p in info]}"
    for i, p in enumerate(info):
        assert p["nPoints"] == N_CLIPS, f"{where}: panel {i} ({p['title']}) has {p['nPoints']} points, not {N_CLIPS}"
        assert len(p["clips"]) == N_CLIPS and all(re.fullmatch(r"[^/]+/[^/]+", c) for c in p["clips"]), (
            f"{where}: panel {i} customdata does not carry clip ids: {p['clips'][:3]}"
        )
        assert set(p["words"]) == set(WORDS), f"{where}: panel {i} shows words {sorted(set(p['words']))}"
    gd = explore_figure(page)
    if any("scattergl" in p["types"] or "echarts-scatter" in p["types"] for p in info):
        assert gd.locator("canvas").count() > 0, f"{where}: WebGL / ECharts panels without a canvas"
    else:
        assert gd.locator(".scatterlayer .trace").count() > 0, f"{where}: no SVG trace drawn"
    # The markers must really be painted (WebGL works in headless chromium, or Plotly says it does not).
    body = page.locator("body").inner_text()
    assert "WebGL is not supported" not in body, f"{where}: Plotly could not use WebGL"
    gd.scroll_into_view_if_needed()
    deadline = time.monotonic() + 15
    while True:
        counts = panel_pixels(gd, n_panels)
        if all(c >= 40 for c in counts) or time.monotonic() > deadline:
            break
        page.wait_for_timeout(500)
    blank = [f"panel {i} ({info[i]['title']}): {c} coloured px" for i, c in enumerate(counts) if c < 40]
    lost = gd.locator("canvas[data-webgl-lost]").count()
    assert not blank, (
        f"{where}: {len(blank)} of {n_panels} panels show no points although their data is there:\n  "
        + "\n  ".join(blank) + f"\nWebGL contexts lost: {lost}"
    )
    return info


def selected_clip_panel(page: Page) -> Locator:
    """The innermost block holding the 'Selected clip' heading (the clip player and its neighbours)."""
    heading = page.get_by_role("heading", name="Selected clip")
    return page.get_by_test_id("stVerticalBlock").filter(has=heading).last


def expect_clip_card(page: Page, clip_id: str, word: str, speaker: str, pooling: str, where: str) -> None:
    """The picked clip's word, speaker and player, then its 5 nearest neighbours with players."""
    panel = selected_clip_panel(page)
    card = re.compile(rf"^\s*{re.escape(word)} · speaker {re.escape(speaker)}\s*$")
    expect(panel.get_by_text(card), f"{where}: card of {clip_id}").to_have_count(1, timeout=UI_TIMEOUT)
    header_p = panel.locator("p").filter(has_text="Nearest neighbours")
    expect(header_p, f"{where}: neighbours header").to_have_count(1, timeout=UI_TIMEOUT)
    header = header_p.inner_text()
    assert f"{pooling} pooling" in header, f"{where}: neighbours header {header!r} does not name {pooling} pooling"
    neighbours = panel.get_by_text(re.compile(r"· distance \d+\.\d+"))
    expect(neighbours, f"{where}: 5 nearest neighbours").to_have_count(5, timeout=UI_TIMEOUT)
    for text in neighbours.all_inner_texts():
        assert re.search(rf"^({'|'.join(WORDS)}) · speaker \S+ · distance", text.strip()), text
    # One player for the clip, one per neighbour; each plays a real (non-empty) source.
    audio = panel.get_by_test_id("stAudio")
    expect(audio, f"{where}: 6 audio players").to_have_count(6, timeout=UI_TIMEOUT)
    sources = panel.locator("audio").evaluate_all("els => els.map(e => e.currentSrc || e.src)")
    assert len(sources) == 6 and all(sources), f"{where}: audio elements without a source: {sources}"
    # The clip chooser beside the plots names the same clip.
    chooser = panel.get_by_test_id("stSelectbox").get_by_role("combobox")
    shown = chooser.input_value() if chooser.evaluate("e => e.tagName") == "INPUT" else chooser.inner_text()
    assert clip_id in shown, f"{where}: the clip chooser shows {shown!r}, not {clip_id!r}"


# ---------------------------------------------------------------------- the workflow


def test_new_user_workflow(app_url: str, page: Page, browser, screenshots: Path) -> None:
    """Open, choose, Extract, look, click, share, analyse, check the store: all through the UI."""
    with failure_screenshots(browser, screenshots, "workflow"):
        _new_user_workflow(app_url, page, browser, screenshots)


def test_invalid_url_params_fall_back_with_warnings(
    app_url: str, page: Page, browser, screenshots: Path, e2e_env: dict[str, str]
) -> None:
    """A hostile URL: visible warnings, defaults in the widgets and the URL, no traceback."""
    with failure_screenshots(browser, screenshots, "invalid-url"):
        _invalid_url(app_url, page, screenshots, e2e_env["EMBEDVIZ_MODEL_ROOTS"])


def _new_user_workflow(app_url: str, page: Page, browser, screenshots: Path) -> None:
    timings: dict[str, float] = {}
    page.context.add_init_script(WATCH_WEBGL)

    # 1. A fresh visit, no query params: Explore paints with the default view.
    t0 = time.monotonic()
    page.goto(app_url)
    extract = page.get_by_role("button", name="Extract")
    expect(extract).to_be_visible(timeout=60_000)
    expect(page.get_by_role("heading", name="Explore", level=1)).to_be_visible()
    timings["first paint"] = time.monotonic() - t0
    wait_idle(page)
    assert_clean(page, "first paint")
    models = multiselect(page, "Models")
    assert any(t.startswith(BASELINE_LABEL) for t in tags(models)), tags(models)
    assert "model" in query(page.url), f"the default view is not written to the URL: {page.url}"
    shot(page, screenshots, "01-first-paint.png")

    # 2. Choose models, words and clips per word through the widgets.
    models.get_by_role("button", name=re.compile(rf"^Remove {re.escape(DEFAULT_CONTROL_LABEL)}")).click()
    expect(multiselect(page, DEFAULT_CONTROL_LABEL), "its layer picker").to_have_count(0, timeout=UI_TIMEOUT)
    wait_idle(page)
    for name in TINY:
        add_option(page, models, name, re.compile(rf"^{re.escape(name)} · .*local folder"))
        expect(multiselect(page, name), f"layer picker of {name}").to_be_visible(timeout=UI_TIMEOUT)
        wait_idle(page)
    chosen = tags(models)
    assert len(chosen) == 3 and chosen[0].startswith(BASELINE_LABEL), chosen
    assert [t.split(" · ")[0] for t in chosen[1:]] == list(TINY), chosen
    # Whisper is in: its input mode appears, at the exact default.
    whisper_input = checked(page, "Whisper input")
    assert len(whisper_input) == 1 and whisper_input[0].startswith("padded"), whisper_input

    words = multiselect(page, "Words")
    for word in [w for w in (t.split(" (")[0] for t in tags(words)) if w not in WORDS]:
        words.get_by_role("button", name=re.compile(rf"^Remove {re.escape(word)} \(\d+\)$")).click()
        expect(words.locator("[data-tag]").filter(has_text=re.compile(rf"^{word} \("))).to_have_count(0)
        wait_idle(page)
    for word in WORDS:
        if not any(t.startswith(f"{word} (") for t in tags(words)):
            add_option(page, words, word, re.compile(rf"^{re.escape(word)} \(\d+\)$"))
            wait_idle(page)
    expect(words.locator("[data-tag]")).to_have_count(len(WORDS), timeout=UI_TIMEOUT)
    assert sorted(t.split(" (")[0] for t in tags(words)) == sorted(WORDS), tags(words)

    set_slider(page, "Clips per word", SAMPLES)

    params = query(page.url)
    assert params["model"][0] == "baseline:mel" and [Path(m).name for m in params["model"][1:]] == list(TINY), params
    assert sorted(params["words"][0].split(",")) == sorted(WORDS) and params["n"] == [str(SAMPLES)], params
    lines = status_lines(page)
    for label in (BASELINE_LABEL, *TINY):
        assert re.search(rf"{re.escape(label)}: {N_CLIPS} clip\(s\) to compute, 0 already stored", lines), lines
    expect(extract).to_be_enabled()
    assert_clean(page, "after choosing")

    # 3. Extract: the progress bar shows, then every chosen layer gets a drawn panel.
    t0 = time.monotonic()
    extract.click()
    progress = page.get_by_test_id("stProgress")
    expect(progress.first, "progress bar").to_be_visible(timeout=UI_TIMEOUT)
    expect(extract, "Extract while a job runs").to_be_disabled()
    progress_text = ""
    with contextlib.suppress(PlaywrightError):  # the bar may already be gone on a fast machine
        progress.first.scroll_into_view_if_needed(timeout=2_000)
        # A moment past "checking the store…", for a screenshot that says more (bounded: ~8 s).
        later = re.compile(r"loading the model|[1-9]\d*/\d+ clips|\(2/3\)")
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            progress_text = progress.first.inner_text(timeout=1_000)
            if later.search(progress_text):
                break
            page.wait_for_timeout(100)
        shot(page, screenshots, "02-progress.png", full=False)
    if progress_text:
        assert re.search(r"\(\d/3\): ", progress_text), f"progress text {progress_text!r}"
    finished = page.get_by_test_id("stAlert").filter(has_text="Extraction finished")
    expect(finished).to_be_visible(timeout=EXTRACT_TIMEOUT)
    timings["extract"] = time.monotonic() - t0
    summary = finished.inner_text()
    for label in (BASELINE_LABEL, *TINY):
        assert re.search(rf"{re.escape(label)}: {N_CLIPS} computed, 0 already stored", summary), summary
    expect(progress).to_have_count(0, timeout=UI_TIMEOUT)
    wait_idle(page)
    n_layers = sum(len(tags(multiselect(page, label))) for label in (BASELINE_LABEL, *TINY))
    info = expect_plots_drawn(page, n_layers, "after Extract")
    timings["extract -> plots"] = time.monotonic() - t0
    titles = " | ".join(p["title"] for p in info)
    for label in (BASELINE_LABEL, *TINY):
        assert label in titles, f"no panel of {label}: {titles}"
    lines = status_lines(page)
    for label in (BASELINE_LABEL, *TINY):
        assert re.search(rf"{re.escape(label)}: 0 clip\(s\) to compute, {N_CLIPS} already stored", lines), lines
    expect(extract, "Extract with everything stored").to_be_disabled()
    assert_clean(page, "after Extract")
    shot(page, screenshots, "03-plots.png")

    # Pooling and projection redraw from the store (no extraction).
    page.get_by_role("radiogroup", name="Pooling").get_by_role("radio", name="max", exact=True).click()
    expect(page).to_have_url(re.compile(r"[?&]pool=max(&|$)"), timeout=UI_TIMEOUT)
    page.get_by_role("radiogroup", name="Projection").get_by_role("radio", name="t-SNE", exact=True).click()
    expect(page).to_have_url(re.compile(r"[?&]method=tsne(&|$)"), timeout=UI_TIMEOUT)
    wait_idle(page)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        titles = [p["title"] for p in page.evaluate(GET_PANELS)]
        if titles and all("max pooling" in t and "t-SNE" in t for t in titles):
            break
        page.wait_for_timeout(300)
    assert titles and all("max pooling" in t and "t-SNE" in t for t in titles), titles
    assert page.get_by_test_id("stProgress").count() == 0, "changing pooling / projection ran an extraction"
    expect_plots_drawn(page, n_layers, "after max pooling + t-SNE")

    # 4. Click a point of the first 2D panel: the clip, its player and 5 neighbours appear.
    gd = explore_figure(page)
    gd.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    pos = isolated_point(gd)
    clip_id, word, speaker = pos["customdata"][:3]
    assert pos["gap"] > 6, f"no point of the first panel stands apart from the others: {pos}"
    assert pos["left"] < pos["x"] < pos["left"] + pos["width"] and pos["top"] < pos["y"] < pos["top"] + pos["height"], (
        pos
    )
    page.mouse.move(pos["x"], pos["y"])
    shown = hover_text(gd)
    assert clip_id in shown, f"hovering shows {shown!r}, not {clip_id}"
    page.mouse.click(pos["x"], pos["y"])
    expect(page).to_have_url(re.compile(r"[?&]clip=" + re.escape(quote(clip_id, safe=""))), timeout=UI_TIMEOUT)
    wait_idle(page)
    expect_clip_card(page, clip_id, word, speaker, "max", "after the click")
    ringed = [p["ringed"] for p in page.evaluate(GET_PANELS)]
    assert all(ringed), f"the picked clip is not ringed in every panel: {ringed}"
    assert_clean(page, "after the click")
    shot(page, screenshots, "04-clicked.png")

    # 5. The URL is the state: a fresh browser context shows the same view, already extracted.
    shared = page.url
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.add_init_script(WATCH_WEBGL)
    try:
        other = context.new_page()
        other.set_default_timeout(60_000)
        t0 = time.monotonic()
        other.goto(shared)
        other.wait_for_function(f"() => ({GET_PANELS})().length === {n_layers}", timeout=60_000)
        timings["shared URL -> plots"] = time.monotonic() - t0
        wait_idle(other)
        assert other.get_by_test_id("stProgress").count() == 0, "the shared URL started an extraction"
        assert other.get_by_text("Extraction finished").count() == 0
        expect(other.get_by_role("button", name="Extract")).to_be_disabled()
        lines = status_lines(other)
        for label in (BASELINE_LABEL, *TINY):
            assert re.search(rf"{re.escape(label)}: 0 clip\(s\) to compute, {N_CLIPS} already stored", lines), lines
        assert tags(multiselect(other, "Models")) == chosen
        for label in (BASELINE_LABEL, *TINY):
            assert tags(multiselect(other, label)) == tags(multiselect(page, label)), label
        assert sorted(tags(multiselect(other, "Words"))) == sorted(tags(words))
        slider = other.get_by_test_id("stSlider").filter(has=other.get_by_text("Clips per word", exact=True))
        assert slider.get_by_test_id("stSliderThumbValue").inner_text() == str(SAMPLES)
        for group in ("Pooling", "Projection", "Dimensions", "Preprocess", "Layers", "Colour by", "Whisper input"):
            assert checked(other, group) == checked(page, group), group
        assert checked(other, "Pooling") == ["max"] and checked(other, "Projection") == ["t-SNE"]
        assert switches(other) == switches(page), (switches(other), switches(page))
        shared_info = expect_plots_drawn(other, n_layers, "shared URL")
        # The very same pictures: same panels, same clips at the same projected positions.
        mine = {p["title"]: sorted(map(tuple, chain.from_iterable(p["coords"]))) for p in page.evaluate(GET_PANELS)}
        theirs = {p["title"]: sorted(map(tuple, chain.from_iterable(p["coords"]))) for p in shared_info}
        assert theirs == mine, "the shared URL shows other panels or other projections than the original page"
        expect_clip_card(other, clip_id, word, speaker, "max", "shared URL")
        assert query(other.url) == query(shared), f"the app rewrote the shared URL:\n{shared}\n{other.url}"
        assert_clean(other, "shared URL")
        shot(other, screenshots, "05-shared-url.png")

        # 6. Layer analysis through the sidebar link (which carries the view's params).
        sidebar = other.get_by_test_id("stSidebarUserContent")
        sidebar.get_by_role("link", name="Layer analysis").click()
        expect(other.get_by_role("heading", name="Layer analysis", level=1)).to_be_visible(timeout=UI_TIMEOUT)
        expect(other.get_by_text("Separability by layer")).to_be_visible(timeout=60_000)
        wait_idle(other)
        assert urlsplit(other.url).path.rstrip("/").endswith("layer_analysis"), other.url
        assert query(other.url)["model"] == query(shared)["model"], other.url
        curve = None
        deadline = time.monotonic() + 60
        while curve is None and time.monotonic() < deadline:
            curve = next((p for p in other.evaluate(GET_PLOTS) if "by layer" in p["title"]), None)
            if curve is None:
                other.wait_for_timeout(300)
        assert curve is not None, "no layer-curve chart on Layer analysis"
        for label in (BASELINE_LABEL, *TINY):
            assert label in curve["names"], f"layer curve has no line for {label}: {curve['names']}"
        assert curve["svgTraces"] >= 3 and curve["nPoints"] >= 2 + 3 + 3, curve
        lines_drawn = other.evaluate(
            """() => { const gd = [...document.querySelectorAll('%s')]
                         .find(g => String(g._fullLayout.title.text).includes('by layer'));
                       return [...gd.querySelectorAll('.scatterlayer .trace path.js-line')]
                         .filter(p => (p.getAttribute('d') || '').length > 10).length; }""" % PLOTLY_SELECTOR
        )
        assert lines_drawn >= 3, f"the layer curves drew {lines_drawn} lines"
        summary = other.get_by_text(re.compile(r"^\s*3 model\(s\) · words"))
        expect(summary).to_be_visible()
        assert "max pooling" in summary.inner_text() and all(w in summary.inner_text() for w in WORDS)
        assert_clean(other, "layer analysis")
        shot(other, screenshots, "06-layer-analysis.png")

        # Data & cache: the three stored entries.
        sidebar.get_by_role("link", name="Data & cache").click()
        expect(other.get_by_role("heading", name="Data & cache", level=1)).to_be_visible(timeout=UI_TIMEOUT)
        expect(other.get_by_text("Stored embeddings")).to_be_visible(timeout=UI_TIMEOUT)
        wait_idle(other)
        store_table = other.get_by_test_id("stDataFrame").filter(has_text="tiny-wav2vec2")
        expect(store_table).to_have_count(1, timeout=UI_TIMEOUT)
        rows = store_table.locator("table tr")
        expect(rows, "header + 3 stored entries").to_have_count(4, timeout=UI_TIMEOUT)
        text = store_table.locator("table").text_content() or ""
        for label in (BASELINE_LABEL, *TINY):
            assert label in text, f"{label} is not listed in the store table: {text[:500]}"
        expect(other.get_by_text(re.compile(r"^\s*3 entries")).first).to_be_visible()  # caption (and sidebar)
        assert_clean(other, "data & cache")
        shot(other, screenshots, "07-data-cache.png")
    finally:
        context.close()
    print("\nE2E timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def _invalid_url(app_url: str, page: Page, screenshots: Path, root: str) -> None:
    escape = quote(f"{root}/../../../etc", safe="")
    page.goto(f"{app_url}/?model=evil/../../etc&model={escape}&pooling=nonsense&pool=nonsense&n=-3")
    expect(page.get_by_role("button", name="Extract")).to_be_visible(timeout=60_000)
    wait_idle(page)
    warnings = page.get_by_test_id("stAlertContentWarning")
    expect(warnings.first).to_be_visible()
    text = "\n".join(warnings.all_inner_texts())
    assert "evil/../../etc" in text and "not allowed" in text, text
    assert "/etc" in text and "'..'" in text, f"the escaping model folder is not reported: {text}"
    assert "using the default models" in text, text
    assert "Pooling 'nonsense'" in text and "'mean'" in text, text
    assert re.search(r"Unknown URL parameter\(s\) ignored: (.*, )?pooling\b", text), text
    assert "clips per word -3" in text, text  # the label comes from the view table now
    # Defaults everywhere: widgets, and the URL rewritten without the hostile values.
    chosen = tags(multiselect(page, "Models"))
    assert chosen and chosen[0].startswith(BASELINE_LABEL), chosen
    assert not any("evil" in t or "etc" in t for t in chosen), chosen
    assert checked(page, "Pooling") == [DEFAULTS.pooling]
    slider = page.get_by_test_id("stSlider").filter(has=page.get_by_text("Clips per word", exact=True))
    assert slider.get_by_test_id("stSliderThumbValue").inner_text() == str(DEFAULTS.samples)
    params = query(page.url)
    assert "evil" not in page.url and "nonsense" not in page.url, page.url
    assert params.get("model") == list(DEFAULTS.models), params
    assert params.get("model", [None])[0] == "baseline:mel" and "pooling" not in params, params
    assert page.get_by_test_id("stProgress").count() == 0, "a hostile URL started an extraction"
    assert_clean(page, "invalid URL")
    shot(page, screenshots, "08-invalid-url.png")
