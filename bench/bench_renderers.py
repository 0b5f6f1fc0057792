"""Plotly (Scattergl) against regl-scatterplot at 100,000 and 1,000,000 points, in headless Chromium.

Usage::

    (cd bench/renderers && npm ci)        # once: regl-scatterplot + esbuild, from the npm registry
    flock /tmp/embedviz-bench.lock python bench/bench_renderers.py [--sizes 100000,1000000] [--out DIR]

Both renderers run from local files served on 127.0.0.1 (no CDN): plotly.js from the installed
plotly package, regl-scatterplot bundled by esbuild from bench/renderers/node_modules. The
browser is the app's: Debian's Chromium, headless, ``--disable-gpu``, so WebGL is software
(SwiftShader) on the CPU; a real GPU draws far faster, and the ratio between renderers is
what this measures.

Measured per renderer and size, 35 word clusters:

* first draw: from handing over the data to the first frame with the points on screen;
* pan/zoom: 40 scripted view changes (zoom in 5%, pan), each awaited to its next frame;
  the median and 90th percentile frame time;
* many panels: 13 panels of 20,000 points built by ``embedviz.figures``, as 13 separate
  charts and as one ``grid_figure``; how many panels stay blank (WebGL context limit);
* for Plotly at 100,000 points, the embedviz figure itself (``embedviz.figures.scatter_figure``,
  one trace per word, customdata and hover template): first draw, then a hover over a point
  (does the hover label name the clip?) and a click (does plotly_click give its clip id?).

Prints one Markdown table; screenshots go to ``--out``.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streamlit_server import CHROMIUM_ARGS as ARGS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NPM_DIR = REPO / "bench" / "renderers"

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<style>body{margin:0} #plot{width:1000px;height:800px}</style>
<script src="plotly.min.js"></script><script src="regl-scatterplot.bundle.js"></script></head>
<body><div id="plot"></div><canvas id="canvas" style="width:1000px;height:800px;display:none"></canvas>
<script>
function clusters(n, k) {  // n points in k Gaussian clusters, deterministic
  let s = 12345; const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const gauss = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
  const cx = [], cy = []; for (let c = 0; c < k; c++) { cx.push(gauss() * 3); cy.push(gauss() * 3); }
  const x = new Float32Array(n), y = new Float32Array(n), c = new Uint8Array(n);
  for (let i = 0; i < n; i++) { const j = i % k; c[i] = j; x[i] = cx[j] + gauss() * 0.5; y[i] = cy[j] + gauss() * 0.5; }
  return {x, y, c};
}
const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
const PALETTE = %PALETTE%;
function stats(times) { const t = [...times].sort((a, b) => a - b); return {median: t[Math.floor(t.length / 2)], p90: t[Math.floor(t.length * 0.9)]}; }
function views(steps) {  // zoom in 5% per step while the centre circles inside the clusters (pan + zoom)
  const out = []; let w = 16;
  for (let i = 0; i < steps; i++) { w *= 0.95; const cx = 1.5 * Math.sin(i / 6), cy = 1.5 * Math.cos(i / 6);
    out.push([cx - w / 2, cx + w / 2, cy - w / 2.5, cy + w / 2.5]); }
  return out;
}
async function plotlyRun(n) {
  const {x, y, c} = clusters(n, 35); const gd = document.getElementById('plot');
  // One trace per cluster, as the app draws one per word.
  const traces = [];
  for (let k = 0; k < 35; k++) {
    const idx = []; for (let i = k; i < n; i += 35) idx.push(i);
    traces.push({type: 'scattergl', mode: 'markers', x: Float32Array.from(idx, i => x[i]), y: Float32Array.from(idx, i => y[i]),
                 marker: {size: 4, opacity: 0.6, color: PALETTE[k % PALETTE.length]}, name: 'w' + k});
  }
  const t0 = performance.now();
  await Plotly.newPlot(gd, traces, {width: 1000, height: 800, showlegend: false, margin: {l: 30, r: 10, t: 10, b: 30}});
  await frame(); const first = performance.now() - t0;
  const times = [];
  for (const [x0, x1, y0, y1] of views(40)) {
    const t = performance.now(); await Plotly.relayout(gd, {'xaxis.range': [x0, x1], 'yaxis.range': [y0, y1]}); await frame();
    times.push(performance.now() - t);
  }
  return {first, ...stats(times)};
}
async function reglRun(n) {
  const {x, y, c} = clusters(n, 35); const canvas = document.getElementById('canvas');
  document.getElementById('plot').style.display = 'none'; canvas.style.display = 'block';
  const points = new Array(n); for (let i = 0; i < n; i++) points[i] = [x[i] / 8, y[i] / 8, c[i]];
  const t0 = performance.now();
  const sp = createScatterplot({canvas, width: 1000, height: 800, pointSize: 3, opacity: 0.6});
  sp.set({colorBy: 'category', pointColor: PALETTE.slice(0, 35)});
  await sp.draw(points); await frame(); const first = performance.now() - t0;
  window._shot && await window._shot();
  const times = [];
  for (const [x0, x1, y0, y1] of views(40)) {
    const t = performance.now();
    await sp.zoomToArea({x: x0 / 8, y: y0 / 8, width: (x1 - x0) / 8, height: (y1 - y0) / 8}, {transition: false});
    await frame(); times.push(performance.now() - t);
  }
  return {first, ...stats(times)};
}
async function embedvizRun(fig) {
  const gd = document.getElementById('plot'); const t0 = performance.now();
  fig.layout.width = 1000; fig.layout.height = 800;
  await Plotly.newPlot(gd, fig.data, fig.layout); await frame();
  const first = performance.now() - t0;
  window._clicked = null; gd.on('plotly_click', ev => { window._clicked = ev.points[0].customdata[0]; });
  return {first};
}
</script></body></html>"""


def _serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _bundle(out: Path) -> None:
    esbuild = NPM_DIR / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        sys.exit(f"run `npm ci` in {NPM_DIR} first (regl-scatterplot and esbuild from the npm registry)")
    subprocess.run([str(esbuild), str(NPM_DIR / "entry.js"), "--bundle", "--minify", "--format=iife",
                    f"--outfile={out}"], check=True, cwd=NPM_DIR, capture_output=True)


def _embedviz_figure(n: int) -> dict:
    sys.path.insert(0, str(REPO))
    import numpy as np
    import plotly.io as pio

    from embedviz.figures import scatter_figure

    rng = np.random.default_rng(0)
    words = [f"word{i:02d}" for i in range(35)]
    label = rng.integers(0, 35, n)
    centres = rng.normal(size=(35, 2)) * 3
    xy = centres[label] + rng.normal(size=(n, 2)) * 0.5
    fig = scatter_figure(xy, [f"{words[w]}/{i:08x}_nohash_0.wav" for i, w in enumerate(label)],
                         [words[w] for w in label], [f"{i % 2618:08x}" for i in range(n)])
    return json.loads(pio.to_json(fig, validate=False))


def _panel_figures(n_panels: int, n: int) -> tuple[list[dict], dict]:
    """``n_panels`` projections of ``n`` points as the app draws them: separate
    ``scatter_figure`` charts, and one ``grid_figure`` of subplots."""
    sys.path.insert(0, str(REPO))
    import numpy as np
    import plotly.io as pio

    from embedviz.figures import Panel, grid_figure, scatter_figure

    rng = np.random.default_rng(1)
    words = [f"word{i:02d}" for i in range(35)]
    label = rng.integers(0, 35, n)
    ids = [f"{words[w]}/{i:08x}_nohash_0.wav" for i, w in enumerate(label)]
    names, speakers = [words[w] for w in label], [f"{i % 2618:08x}" for i in range(n)]
    panels = [Panel(f"layer {k}", rng.normal(size=(35, 2))[label] * 3 + rng.normal(size=(n, 2)) * 0.5, ids, names,
                    speakers) for k in range(n_panels)]
    separate = [json.loads(pio.to_json(scatter_figure(p.coords, ids, names, speakers, title=p.title), validate=False))
                for p in panels]
    grid = json.loads(pio.to_json(grid_figure(panels, 3, width_px=1400), validate=False))
    return separate, grid


MANY = """async ([figs, height]) => { const root = document.getElementById('plot'); root.style.height = 'auto';
  const t0 = performance.now();
  for (const f of figs) { const d = document.createElement('div'); d.className = 'panel';
    d.style.cssText = `width:${figs.length > 1 ? 460 : 1400}px;height:${height}px;display:inline-block`; root.appendChild(d);
    f.layout.height = height; f.layout.width = figs.length > 1 ? 460 : 1400; await Plotly.newPlot(d, f.data, f.layout); }
  await frame(); return performance.now() - t0; }"""


def _drawn_panels(page, selector: str) -> list[int]:
    """Saturated pixels inside each plot area (subplot) under ``selector``: 0 = blank."""
    import io

    import numpy as np
    from PIL import Image

    out = []
    for gd in page.locator(selector).all():
        image = Image.open(io.BytesIO(gd.screenshot())).convert("RGB")
        areas = gd.evaluate("""gd => Object.keys(gd._fullLayout).filter(k => /^xaxis\d*$/.test(k)).map(k => {
            const xa = gd._fullLayout[k], ya = gd._fullLayout['y' + k.slice(1)];
            return [xa._offset, ya._offset, xa._offset + xa._length, ya._offset + ya._length]; })""")
        for box in areas:
            pixels = np.asarray(image.crop(tuple(int(v) for v in box)), dtype=np.int16)
            out.append(int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum()))
    return out


def main() -> None:
    from playwright.sync_api import sync_playwright
    from plotly.colors import qualitative

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--out", type=Path, default=Path("artifacts/bench"))
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement")
    ap.add_argument("--panels", type=int, default=13, help="panels of the many-panels check (13: wav2vec2-base's layers)")
    ap.add_argument("--panel-points", type=int, default=20000)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import plotly

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", folder / "plotly.min.js")
        _bundle(folder / "regl-scatterplot.bundle.js")
        (folder / "index.html").write_text(PAGE.replace("%PALETTE%", json.dumps(list(qualitative.Dark24) * 2)))
        server, url = _serve(folder)
        rows = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
            for n in [int(v) for v in args.sizes.split(",")]:
                for name, fn in (("Plotly scattergl", "plotlyRun"), ("regl-scatterplot", "reglRun")):
                    page = browser.new_page(viewport={"width": 1000, "height": 800})
                    page.set_default_timeout(args.timeout * 1000)
                    page.goto(url + "/index.html")
                    try:
                        r = page.evaluate(f"n => {fn}(n)", n)
                        rows.append((name, n, f"{r['first'] / 1000:.2f} s", f"{r['median']:.0f} ms", f"{r['p90']:.0f} ms"))
                    except Exception as error:  # a renderer that cannot draw this many points is a result too
                        rows.append((name, n, f"failed: {str(error).splitlines()[0][:60]}", "", ""))
                    page.screenshot(path=str(args.out / f"renderer_{fn}_{n}.png"))
                    print(rows[-1], flush=True)
                    page.close()
            # The app's own figure at 100,000 points: draws, hovers, clicks.
            fig = _embedviz_figure(100_000)
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.set_default_timeout(args.timeout * 1000)
            page.goto(url + "/index.html")
            r = page.evaluate("fig => embedvizRun(fig)", fig)
            # The point nearest the centre of the first trace, in page pixels.
            target = page.evaluate("""() => { const gd = document.getElementById('plot'); const t = gd._fullData[0];
                const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
                const i = 0; return {x: box.left + xa._offset + xa.l2p(t.x[i]), y: box.top + ya._offset + ya.l2p(t.y[i]),
                clip: t.customdata[i][0]}; }""")
            page.mouse.move(target["x"], target["y"])
            page.wait_for_timeout(1500)
            hover = page.evaluate("() => [...document.querySelectorAll('.hoverlayer .hovertext')].map(e => e.textContent).join(' | ')")
            page.mouse.click(target["x"], target["y"])
            page.wait_for_timeout(1500)
            clicked = page.evaluate("() => window._clicked")
            page.screenshot(path=str(args.out / "renderer_embedviz_100000.png"))
            rows.append(("embedviz figure (Plotly)", 100_000, f"{r['first'] / 1000:.2f} s", "", ""))
            print(f"embedviz figure at 100000: first draw {r['first'] / 1000:.2f} s; hover label {hover[:80]!r}; "
                  f"click -> {clicked!r} (the hovered clip: {bool(clicked) and clicked in hover})", flush=True)
            # Many panels: 13 layers x 20,000 points, as separate charts and as one grid figure.
            separate, grid = _panel_figures(args.panels, args.panel_points)
            for label, figs, height in (("separate charts", separate, 380), ("one grid figure", [grid], grid["layout"]["height"])):
                page = browser.new_page(viewport={"width": 1450, "height": 1000})
                page.set_default_timeout(args.timeout * 1000)
                warnings: list[str] = []
                page.on("console", lambda m, w=warnings: w.append(m.text) if "WebGL" in m.text else None)
                page.goto(url + "/index.html")
                seconds = page.evaluate(MANY, [figs, height]) / 1000
                drawn = _drawn_panels(page, ".js-plotly-plot")
                blank = sum(1 for v in drawn if v == 0)
                page.screenshot(path=str(args.out / f"panels_{label.replace(' ', '_')}.png"), full_page=True)
                print(f"{args.panels} panels x {args.panel_points:,} points, {label}: drawn in {seconds:.1f} s, "
                      f"{blank} of {len(drawn)} panels blank, {len(warnings)} WebGL context warnings", flush=True)
                page.close()
            browser.close()
        server.shutdown()
    print("| renderer | points | first draw | pan/zoom frame (median) | (p90) |")
    print("|---|---|---|---|---|")
    for name, n, first, median, p90 in rows:
        print(f"| {name} | {n:,} | {first} | {median} | {p90} |")


if __name__ == "__main__":
    main()
