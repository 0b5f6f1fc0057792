"""Where ECharts (canvas) stops beating Plotly (WebGL): Explore's two 2D panels at 10,000 /
20,000 / 50,000 / 100,000 points in all, drawn and panned in headless Chromium.

Usage::

    flock /tmp/embedviz-bench.lock python bench/bench_echarts_cap.py [--sizes 10000,20000,50000,100000]

A Streamlit page draws the panels as the app does: ``figures.echarts_grid`` in
``st.echarts_chart`` (selections on, so ECharts' "large" mode is off, as in the app) or
``figures.grid_figure`` in ``st.plotly_chart`` (``Scattergl``, selections on), 35 word
clusters, 2 panels. Per renderer and size, each in a fresh tab of a warm browser:

* shown: from ``goto`` to the points on screen (``bench_app_scale``'s DRAWN conditions);
* pan: a mouse drag across the first panel (30 moves; Plotly in pan mode, ECharts' inside
  dataZoom after zooming to the middle half: it pans only within the axis range), with a ``requestAnimationFrame`` loop timing the frames meanwhile: the median
  and 90th percentile frame interval and the drag's duration (a renderer that takes
  200 ms a frame shows 200 ms intervals: a pan that lags behind the pointer).

The browser is the app's: ``--disable-gpu``, so WebGL is software (SwiftShader) on the CPU.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_app_scale import ARGS, ECHARTS_DRAWN, PLOTLY_DRAWN  # noqa: E402
from streamlit_server import first_drawn as settle, streamlit_server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = '''import sys
sys.path.insert(0, %r)
import numpy as np
import streamlit as st
from embedviz.figures import Panel, echarts_grid, grid_figure, word_colors

n, kind = int(st.query_params.get("n", 1000)), st.query_params.get("kind", "echarts")
words = [f"w{i:02d}" for i in range(35)]
rng = np.random.default_rng(0)
centres = rng.normal(size=(35, 2)) * 4
panels = []
for k in range(2):
    label = rng.integers(0, 35, n // 2)
    coords = centres[label] + rng.normal(size=(n // 2, 2))
    panels.append(Panel(f"panel {k}", coords, [f"{words[w]}/{i:06d}" for i, w in enumerate(label)],
                        [words[w] for w in label], [f"s{i %% 500}" for i in range(n // 2)], subtitle="kNN 0.50"))
colors = word_colors(words)
if kind == "echarts":
    grid = echarts_grid(panels, 2, colors=colors, width_px=760, panel_height=260, title="bench")
    st.echarts_chart(grid.option, key="e", on_select=lambda: None, width=grid.width, height=grid.height)
else:
    fig = grid_figure(panels, 2, colors=colors, width_px=760, panel_height=260, title="bench")
    fig.update_layout(dragmode="pan")
    st.plotly_chart(fig, key="p", on_select=lambda: None, selection_mode=("points", "box", "lasso"))
''' % str(REPO)

#: Frame intervals while the page is driven (started before the drag, read after it).
FRAMES = """() => { window.__frames = []; let last = performance.now();
  const tick = now => { window.__frames.push(now - last); last = now; if (window.__frames.length < 100000) requestAnimationFrame(tick); };
  requestAnimationFrame(tick); }"""


#: The first panel's view: ECharts' x and y dataZoom windows, Plotly's axis ranges.
VIEW = {"echarts": """() => { const el = document.querySelector('[data-testid="stEChartsChart"]');
            const fk = Object.keys(el).find(k => k.startsWith('__reactFiber$'));
            for (let f = el[fk]; f; f = f.return)
                for (let h = f.memoizedState, n = 0; h && n < 200; h = h.next, n++) {
                    const v = h.memoizedState;
                    if (v && typeof v.dispatchAction === 'function') { window.__ec = v;
                        return JSON.stringify(v.getOption().dataZoom.slice(0, 2).map(z => [z.start, z.end])); }
                } }""",
        "plotly": """() => { const fl = document.querySelector('.js-plotly-plot')._fullLayout;
            return JSON.stringify([fl.xaxis.range, fl.yaxis.range]); }"""}


def pan(page, kind: str) -> tuple[float, float, float, bool]:
    """Median and p90 frame interval (ms) during a drag across the first panel, its duration (s),
    and whether the view moved (ECharts pans only inside the axis range: it is zoomed to the
    middle half first, through its dataZoom action, as a wheel would; Plotly pans anywhere)."""
    chart = page.locator('[data-testid="stEChartsChart"]' if kind == "echarts" else ".js-plotly-plot").first
    chart.scroll_into_view_if_needed()
    if kind == "echarts":
        page.evaluate(VIEW[kind])
        page.evaluate("() => [0, 1].forEach(i => window.__ec.dispatchAction({type: 'dataZoom', dataZoomIndex: i, start: 25, end: 75}))")
        page.wait_for_timeout(1000)
    box = chart.bounding_box()
    # The first panel's plot area starts ~10 px in and ~95 px down (title, header band) in both.
    x0, y0 = box["x"] + 60, box["y"] + 190
    page.mouse.move(x0, y0)
    page.wait_for_timeout(300)
    before = page.evaluate(VIEW[kind])
    page.evaluate(FRAMES)
    t0 = time.time()
    page.mouse.down()
    for i in range(1, 31):
        page.mouse.move(x0 + 8 * i, y0 + 3 * i)
    page.mouse.up()
    page.wait_for_timeout(200)
    duration = time.time() - t0
    moved = page.evaluate(VIEW[kind]) != before
    frames = sorted(page.evaluate("() => window.__frames")[1:])
    if not frames:
        return float("nan"), float("nan"), duration, moved
    return frames[len(frames) // 2], frames[int(len(frames) * 0.9)], duration, moved


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,20000,50000,100000")
    ap.add_argument("--shots", type=Path, default=None, help="folder for a screenshot per chart")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "app.py"
        app.write_text(APP)
        with streamlit_server(app) as (url, _):
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
                ctx = b.new_context(viewport={"width": 1500, "height": 1300})
                for kind, cond in (("plotly", PLOTLY_DRAWN), ("echarts", ECHARTS_DRAWN)):  # warm-up: scripts cached
                    page = ctx.new_page()
                    t0 = time.time()
                    page.goto(f"{url}/?kind={kind}&n=1000")
                    settle(page, t0, cond)
                    page.close()
                print("| points | renderer | shown | pan frame median | pan frame p90 | drag | view moved |")
                print("|---|---|---|---|---|---|---|")
                for n in [int(v) for v in args.sizes.split(",")]:
                    for kind, cond in (("plotly", PLOTLY_DRAWN), ("echarts", ECHARTS_DRAWN)):
                        page = ctx.new_page()
                        t0 = time.time()
                        page.goto(f"{url}/?kind={kind}&n={n}")
                        shown = settle(page, t0, cond)
                        med, p90, drag, moved = pan(page, kind)
                        if args.shots:
                            args.shots.mkdir(parents=True, exist_ok=True)
                            page.screenshot(path=str(args.shots / f"cap_{kind}_{n}.png"))
                        print(f"| {n:,} | {kind} | {shown:.2f} s | {med:.0f} ms | {p90:.0f} ms | {drag:.2f} s | {moved} |",
                              flush=True)
                        page.close()
                b.close()


if __name__ == "__main__":
    main()
