"""Reading Explore's one figure of every panel in a real browser (shared by the e2e tests).

Explore draws all its panels as subplots of ONE Plotly figure (``figures.grid_figure``):
panel ``k`` has axes ``x{k+1}`` / ``y{k+1}`` (the first: ``x`` / ``y``; 3D: ``scene{k+1}``),
its title is the ``k``-th annotation named ``"panel title"``, and the section headers
(one per model) are annotations named ``"section header"``. These helpers read the
figure back from the page's ``.js-plotly-plot`` element (``_fullLayout``, ``_fullData``).
"""

from __future__ import annotations

import re
import time
from io import BytesIO

import numpy as np
from playwright.sync_api import Locator, Page, expect

def idle(page: Page, timeout_s: float = 180.0) -> None:
    """Wait until Streamlit's script has not run for 0.8 s (a fragment may rerun in between)."""
    app = page.get_by_test_id("stApp")
    deadline, since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        if app.get_attribute("data-test-script-state") == "notRunning":
            since = since or time.monotonic()
            if time.monotonic() - since > 0.8:
                return
        else:
            since = None
        page.wait_for_timeout(150)
    raise AssertionError("Streamlit did not become idle")


def open_extracted(page: Page, url: str, n_panels: int) -> None:
    """Open an Explore URL, press Extract if anything is left to compute, and wait until the
    figure has ``n_panels`` panels and the page is idle."""
    page.goto(url)
    idle(page)
    extract = page.get_by_role("button", name="Extract")
    if extract.is_enabled():
        extract.click()
        expect(page.get_by_text("Extraction finished")).to_be_visible(timeout=180_000)
        idle(page)
    page.wait_for_function(f"() => ({GET_PANELS})().length === {n_panels}", timeout=120_000)
    idle(page)


#: Ring overlays (clicked clip, its neighbours, a box/lasso selection, search hits) are not data.
RINGS = ("selected", "neighbours", "brushed", "found")

#: One entry per panel of the page's Explore figure: title (section header · panel title ·
#: figure title, tags removed), its data traces, points, clips, words and each word's visibility.
GET_PANELS = """() => {
    const rings = %s;
    const out = [];
    for (const gd of document.querySelectorAll('.js-plotly-plot')) {
        const fl = gd._fullLayout;
        if (!fl) continue;
        const notes = fl.annotations || [];
        const titles = notes.filter(a => a.name === 'panel title');
        if (!titles.length) continue;  // not Explore's figure (e.g. the layer curves)
        const headers = notes.filter(a => a.name === 'section header');
        const figureTitle = String((fl.title && fl.title.text) || '');
        titles.forEach((a, k) => {
            const ref = k === 0 ? '' : String(k + 1);
            const mine = t => t.type === 'scatter3d' ? (t.scene || 'scene') === 'scene' + ref
                                                     : (t.xaxis || 'x') === 'x' + ref;
            const all = (gd._fullData || []).filter(mine);
            const data = all.filter(t => !rings.includes(t.name) && t.customdata);
            const header = headers.filter(h => h.y >= a.y).sort((p, q) => p.y - q.y)[0];
            out.push({
                panel: k,
                title: [header ? header.text : '', a.text, figureTitle].join(' · ').replace(/<[^>]+>/g, ' '),
                types: data.map(t => t.type),
                names: data.map(t => t.name),
                visible: Object.fromEntries(data.map(t => [t.name, t.visible])),
                nPoints: data.reduce((n, t) => n + (t.x ? t.x.length : 0), 0),
                clips: data.flatMap(t => Array.from(t.customdata, c => String(c[0]))),
                words: data.flatMap(t => Array.from(t.customdata, c => String(c[1]))),
                ringed: all.some(t => t.name === 'selected'),
                brushed: all.some(t => t.name === 'brushed'),
                stars: all.filter(t => t.name === 'your clip').map(t => [t.x[0], t.y[0], t.marker.symbol]),
                coords: data.filter(t => t.x && t.y).map(t => Array.from(t.x, (x, i) => [
                    String(t.customdata[i][0]), +(+x).toFixed(4), +(+t.y[i]).toFixed(4)])),
            });
        });
    }
    return out;
}""" % (list(RINGS),)


def explore_figure(page: Page) -> Locator:
    """The ``.js-plotly-plot`` element of Explore's figure (the one with panel titles)."""
    return page.locator(".js-plotly-plot").filter(has=page.locator(".annotation")).first


#: The plot area of each of the first ``n`` 2D panels, in pixels relative to the figure.
BOXES = """(gd, n) => Array.from({length: n}, (_, k) => {
    const ref = k === 0 ? '' : String(k + 1), fl = gd._fullLayout;
    const xa = fl['xaxis' + ref], ya = fl['yaxis' + ref];
    return [xa._offset, ya._offset, xa._offset + xa._length, ya._offset + ya._length];
})"""


def panel_pixels(gd: Locator, n_panels: int) -> list[int]:
    """Saturated pixels inside each 2D panel's plot area (markers, drawn by SVG or WebGL)."""
    from PIL import Image

    # Streamlit scrolls inside stMain, so a figure taller than the viewport would be cut off:
    # the viewport grows to the page's length for the screenshot.
    page = gd.page
    size = page.viewport_size or {"width": 1440, "height": 1000}
    height = page.evaluate("() => (document.querySelector('[data-testid=stMain]') || document.body).scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": int(min(max(size["height"], height), 6000))})
    try:
        page.wait_for_timeout(500)  # Plotly relayouts on resize
        boxes = gd.evaluate(BOXES, n_panels)
        image = Image.open(BytesIO(gd.screenshot())).convert("RGB")
    finally:
        page.set_viewport_size(size)
    scale = image.width / max(1.0, gd.evaluate("gd => gd.getBoundingClientRect().width"))
    counts = []
    for box in boxes:
        pixels = np.asarray(image.crop(tuple(int(v * scale) for v in box)), dtype=np.int16)
        counts.append(int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum()))
    return counts


def isolated_point(gd: Locator, panel: int = 0) -> dict:
    """Viewport pixel position and customdata of the point of a 2D panel farthest from its neighbours.

    Positions come from Plotly's own axis maps (``l2p`` plus the axis offsets and the chart's box),
    so a click there lands on that point and on no other.
    """
    return gd.evaluate(
        """(gd, [k, rings]) => {
            const ref = k === 0 ? '' : String(k + 1), fl = gd._fullLayout;
            const xa = fl['xaxis' + ref], ya = fl['yaxis' + ref], r = gd.getBoundingClientRect();
            const pts = [];
            for (const tr of gd._fullData) {
                if (rings.includes(tr.name) || !tr.customdata || tr.xaxis !== 'x' + ref) continue;
                if (tr.visible !== true) continue;
                for (let i = 0; i < tr.x.length; i++) {
                    pts.push({x: r.left + xa._offset + xa.l2p(tr.x[i]), y: r.top + ya._offset + ya.l2p(tr.y[i]),
                              customdata: Array.from(tr.customdata[i], String)});
                }
            }
            let best = null;
            for (const p of pts) {
                p.gap = Math.min(...pts.filter(q => q !== p).map(q => Math.hypot(p.x - q.x, p.y - q.y)));
                if (!best || p.gap > best.gap) best = p;
            }
            return {...best, left: r.left + xa._offset, top: r.top + ya._offset, width: xa._length, height: ya._length};
        }""",
        [panel, list(RINGS)],
    )


def legend_item(gd: Locator, name: str) -> Locator:
    """The clickable part of the legend entry ``name``."""
    text = gd.page.locator(".legendtext", has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))
    return gd.locator(".legend .traces").filter(has=text).locator(".legendtoggle")
