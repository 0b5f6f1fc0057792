"""Reading Explore's one figure of every panel in a real browser (shared by the e2e tests).

Explore draws all its panels in ONE chart, with one of two renderers:

* 2D views up to ``figures.ECHARTS_MAX_POINTS`` points: ONE ``st.echarts_chart``
  (``figures.echarts_grid``): panel ``k`` is grid ``k`` with axes ``k``, a series per word
  per panel (a dataset each: rows x, y, clip, word, speaker), rings and the user's star as
  further series named by ``figures.RING_NAMES`` / ``"your clip"``; titles are ``title``
  entries with ids ``"panel title k"``, ``"section header i"``, ``"figure title"``. The
  ECharts instance is found from the chart element's React fiber (``EC_INST``); nothing
  of it is in the DOM but a canvas, so legend entries and toolbox icons are clicked at the
  positions the live chart reports (``EC_RECTS``).
* 3D views and larger 2D ones: ONE Plotly figure (``figures.grid_figure``): panel ``k``
  has axes ``x{k+1}`` / ``y{k+1}`` (the first: ``x`` / ``y``; 3D: ``scene{k+1}``), its
  title is the ``k``-th annotation named ``"panel title"``, and the section headers (one
  per model) are annotations named ``"section header"``; read back from the page's
  ``.js-plotly-plot`` element (``_fullLayout``, ``_fullData``).

The helpers take either; ``GET_PANELS`` gives the same record for both (``visible`` is
True or ``'legendonly'`` as in Plotly).
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

#: The ECharts chart element of the page, and its ECharts instance (from the element's React
#: fiber: the first hook state with ``getOption`` and ``dispatchAction``).
#: Charts inside the hidden container of ``ui.widgets.preload_charts`` (an empty chart that
#: makes the browser load its library early) are not the page's charts.
NOT_PRELOAD = ":not(.st-key-chart_preload *)"
EC_SELECTOR = '[data-testid="stEChartsChart"]' + NOT_PRELOAD
PLOTLY_SELECTOR = ".js-plotly-plot" + NOT_PRELOAD
EC_INST = """(el) => {
    if (!el) return null;
    const fk = Object.keys(el).find(k => k.startsWith('__reactFiber$'));
    for (let f = el[fk]; f; f = f.return) {
        for (let h = f.memoizedState, n = 0; h && n < 200; h = h.next, n++) {
            const v = h.memoizedState;
            if (v && typeof v.getOption === 'function' && typeof v.dispatchAction === 'function') return v;
            if (v && v.current && typeof v.current.getOption === 'function') return v.current;
        }
    }
    return null;
}"""

#: Panels of the ECharts chart, in GET_PANELS' record (null: no ECharts chart, or not ready).
EC_PANELS = """(rings) => {
    const el = document.querySelector('%s');
    const inst = (%s)(el);
    if (!inst || !inst.getModel()) return null;
    const o = inst.getOption(), model = inst.getModel();
    const titles = (o.title || []);
    const byId = prefix => titles.filter(t => String(t.id || '').startsWith(prefix));
    const headers = byId('section header'), figureTitle = (byId('figure title')[0] || {}).text || '';
    const selected = ((o.legend || [])[0] || {}).selected || {};
    return (o.grid || []).map((g, k) => {
        const title = byId('panel title ' + k)[0] || {};
        const header = headers.filter(h => h.top <= title.top).sort((p, q) => q.top - p.top)[0];
        const mine = (o.series || []).map((s, i) => [s, i]).filter(([s]) => s.xAxisIndex === k);
        const data = mine.filter(([s]) => s.datasetIndex !== undefined && s.datasetIndex !== null);
        const rows = data.map(([s, i]) => { const d = model.getSeriesByIndex(i).getData();
                                            return Array.from({length: d.count()}, (_, j) => d.getRawDataItem(j)); });
        return {
            panel: k,
            title: [header ? header.text : '', [title.text, title.subtext].filter(Boolean).join(' '), figureTitle]
                .join(' · ').replace(/\\n/g, ' '),
            types: data.map(() => 'echarts-scatter'),
            names: data.map(([s]) => s.name),
            visible: Object.fromEntries(data.map(([s]) => [s.name, selected[s.name] === false ? 'legendonly' : true])),
            nPoints: rows.reduce((n, r) => n + r.length, 0),
            clips: rows.flatMap(r => r.map(v => String(v[2]))),
            words: rows.flatMap(r => r.map(v => String(v[3]))),
            ringed: mine.some(([s]) => s.name === 'selected'),
            brushed: mine.some(([s]) => s.name === 'brushed'),
            stars: mine.filter(([s]) => s.name === 'your clip').map(([s]) => [s.data[0][0], s.data[0][1], 'star']),
            coords: rows.map(r => r.map(v => [String(v[2]), +(+v[0]).toFixed(4), +(+v[1]).toFixed(4)])),
        };
    });
}""" % (EC_SELECTOR, EC_INST)

#: One entry per panel of the page's Explore figure: title (section header · panel title ·
#: figure title, tags removed), its data traces, points, clips, words and each word's visibility.
GET_PANELS = """() => {
    const rings = %s;
    const echarts = (%s)(rings);
    if (echarts) return echarts;
    const out = [];
    for (const gd of document.querySelectorAll('%s')) {
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
}""" % (list(RINGS), EC_PANELS, PLOTLY_SELECTOR)


def explore_figure(page: Page) -> Locator:
    """Explore's chart: the ECharts chart element, or else the ``.js-plotly-plot`` element
    of the Plotly figure (the one with panel titles)."""
    echarts = page.locator(EC_SELECTOR)
    if echarts.count():
        return echarts.first
    return page.locator(PLOTLY_SELECTOR).filter(has=page.locator(".annotation")).first


def is_echarts(gd: Locator) -> bool:
    return gd.evaluate("el => el.matches('%s')" % EC_SELECTOR)


#: The plot area of each of the first ``n`` 2D panels, in pixels relative to the chart element.
BOXES = """(gd, n) => {
    if (gd.matches('%s')) {
        const inst = (%s)(gd), r = gd.getBoundingClientRect(), c = inst.getDom().getBoundingClientRect();
        return Array.from({length: Math.min(n, inst.getOption().grid.length)}, (_, k) => {
            const g = inst.getModel().getComponent('grid', k).coordinateSystem.getRect();  // pixels, as drawn
            return [c.left - r.left + g.x, c.top - r.top + g.y, c.left - r.left + g.x + g.width, c.top - r.top + g.y + g.height];
        });
    }
    return Array.from({length: n}, (_, k) => {
        const ref = k === 0 ? '' : String(k + 1), fl = gd._fullLayout;
        const xa = fl['xaxis' + ref], ya = fl['yaxis' + ref];
        return [xa._offset, ya._offset, xa._offset + xa._length, ya._offset + ya._length];
    });
}""" % (EC_SELECTOR, EC_INST)


def panel_box(gd: Locator, panel: int) -> tuple[float, float, float, float]:
    """Viewport ``(left, top, width, height)`` of 2D panel ``panel``'s plot area."""
    x0, y0, x1, y1 = gd.evaluate(BOXES, panel + 1)[panel]
    r = gd.bounding_box()
    return r["x"] + x0, r["y"] + y0, x1 - x0, y1 - y0


def panel_pixels(gd: Locator, n_panels: int) -> list[int]:
    """Saturated pixels inside each 2D panel's plot area (markers, drawn by SVG, WebGL or canvas)."""
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
    """Viewport pixel position and ``customdata`` (clip, word, speaker) of the visible point of
    a 2D panel farthest from its neighbours, with the panel's plot area (left, top, width, height).

    Positions come from the renderer's own axis maps (ECharts ``convertToPixel``, Plotly's
    ``l2p`` plus the axis offsets) and the chart's box, so a click there lands on that point
    and on no other.
    """
    return gd.evaluate(
        """(gd, [k, rings]) => {
            const r = gd.getBoundingClientRect(), pts = [];
            let area;
            if (gd.matches('%s')) {
                const inst = (%s)(gd), o = inst.getOption(), model = inst.getModel();
                const c = inst.getDom().getBoundingClientRect();
                const g = model.getComponent('grid', k).coordinateSystem.getRect();
                const selected = (o.legend[0] || {}).selected || {};
                area = {left: c.left + g.x, top: c.top + g.y, width: g.width, height: g.height};
                o.series.forEach((s, i) => {
                    if (s.xAxisIndex !== k || s.datasetIndex === undefined || selected[s.name] === false) return;
                    const d = model.getSeriesByIndex(i).getData();
                    for (let j = 0; j < d.count(); j++) {
                        const v = d.getRawDataItem(j), [px, py] = inst.convertToPixel({gridIndex: k}, [v[0], v[1]]);
                        pts.push({x: c.left + px, y: c.top + py, customdata: [v[2], v[3], v[4]].map(String)});
                    }
                });
            } else {
                const ref = k === 0 ? '' : String(k + 1), fl = gd._fullLayout;
                const xa = fl['xaxis' + ref], ya = fl['yaxis' + ref];
                area = {left: r.left + xa._offset, top: r.top + ya._offset, width: xa._length, height: ya._length};
                for (const tr of gd._fullData) {
                    if (rings.includes(tr.name) || !tr.customdata || tr.xaxis !== 'x' + ref) continue;
                    if (tr.visible !== true) continue;
                    for (let i = 0; i < tr.x.length; i++) {
                        pts.push({x: r.left + xa._offset + xa.l2p(tr.x[i]), y: r.top + ya._offset + ya.l2p(tr.y[i]),
                                  customdata: Array.from(tr.customdata[i], String)});
                    }
                }
            }
            let best = null;
            for (const p of pts) {
                p.gap = Math.min(...pts.filter(q => q !== p).map(q => Math.hypot(p.x - q.x, p.y - q.y)));
                if (!best || p.gap > best.gap) best = p;
            }
            return {...best, ...area};
        }""" % (EC_SELECTOR, EC_INST),
        [panel, list(RINGS)],
    )


#: Viewport boxes of the drawn elements of an ECharts component (``"legend"``, ``"toolbox"``):
#: ``{type, text, x, y, w, h}`` each (text for legend entries and selector buttons).
EC_RECTS = """(gd, kind) => {
    const inst = (%s)(gd), c = inst.getDom().getBoundingClientRect(), out = [];
    for (const v of inst._componentsViews) {
        const m = v.__model;
        if (!m || m.mainType !== kind) continue;
        v.group.traverse(el => {
            if (el.isGroup || el.invisible) return;
            const b = el.getBoundingRect().clone(), t = el.getComputedTransform();
            if (t) b.applyTransform(t);
            out.push({type: el.type, text: (el.style && el.style.text) || '', x: c.left + b.x, y: c.top + b.y,
                      w: b.width, h: b.height});
        });
    }
    return out;
}""" % EC_INST


def _ec_click_text(gd: Locator, kind: str, text: str) -> None:
    gd.scroll_into_view_if_needed()
    hits = [e for e in gd.evaluate(EC_RECTS, kind) if e["text"].strip() == text]
    assert hits, f"no {kind} element {text!r} in the chart"
    e = hits[0]
    gd.page.mouse.click(e["x"] + e["w"] / 2, e["y"] + e["h"] / 2)


def legend_item(gd: Locator, name: str) -> Locator:
    """The clickable part of the Plotly legend entry ``name``."""
    text = gd.page.locator(".legendtext", has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))
    return gd.locator(".legend .traces").filter(has=text).locator(".legendtoggle")


def legend_names(gd: Locator) -> list[str]:
    """The legend's entries, in order."""
    if is_echarts(gd):
        return gd.evaluate("gd => (%s)(gd).getOption().legend[0].data.map(d => typeof d === 'string' ? d : d.name)" % EC_INST)
    return gd.locator(".legend .traces .legendtext").all_inner_texts()


def click_legend(gd: Locator, name: str) -> None:
    """Click the legend entry ``name`` (hides or shows that word in every panel)."""
    if is_echarts(gd):
        _ec_click_text(gd, "legend", name)
    else:
        legend_item(gd, name).click()


def isolate_legend(gd: Locator, name: str) -> None:
    """Show ``name`` alone: Plotly's double-click on its entry. ECharts' legend has no
    double-click; its selector buttons do it: "all", "invert" (none), then the entry."""
    if is_echarts(gd):
        for text in ("all", "invert", name):
            _ec_click_text(gd, "legend", text)
    else:
        legend_item(gd, name).dblclick()


def show_all_legend(gd: Locator, name: str) -> None:
    """Every word back after :func:`isolate_legend`: Plotly's second double-click, ECharts' "all"."""
    if is_echarts(gd):
        _ec_click_text(gd, "legend", "all")
    else:
        legend_item(gd, name).dblclick()


def hover_text(gd: Locator) -> str:
    """The hover label's text now (ECharts' tooltip is a div in the chart element)."""
    if is_echarts(gd):
        tip = gd.locator("div").filter(has_text=re.compile(r"^clip ")).last
        tip.wait_for(state="attached", timeout=10_000)
        return tip.text_content() or ""
    hover = gd.locator(".hoverlayer .hovertext").first
    hover.wait_for(state="attached", timeout=10_000)
    return hover.text_content() or ""


def start_box(gd: Locator) -> None:
    """Choose box selection: ECharts' toolbox "box" icon, Plotly's modebar button."""
    if is_echarts(gd):
        gd.scroll_into_view_if_needed()
        gd.hover()  # the toolbox icons are drawn for good once the pointer is over the chart
        icons = [e for e in gd.evaluate(EC_RECTS, "toolbox") if e["type"] == "path"]
        assert len(icons) >= 3, f"toolbox icons: {icons}"
        e = icons[0]  # rect, polygon, clear (figures.echarts_grid's order)
        gd.page.mouse.click(e["x"] + e["w"] / 2, e["y"] + e["h"] / 2)
    else:
        gd.locator('.modebar-btn[data-title="Box Select"]').click()


def zoom_windows(gd: Locator) -> list[list[float]]:
    """ECharts: each panel's x and y inside-dataZoom windows, ``[start, end]`` in percent
    (panel ``k``: entries ``2k`` and ``2k + 1``; ``[0, 100]``: not zoomed)."""
    return gd.evaluate("gd => (%s)(gd).getOption().dataZoom.map(z => [z.start, z.end])" % EC_INST)
