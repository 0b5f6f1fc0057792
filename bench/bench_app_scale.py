"""Plots at scale: one panel in the library at 500 / 5,000 / 20,000 / 100,000 points, then the
app in headless Chromium (new 500 / 5,000-point views, the 5,000 view reopened, 21,000 points).

Usage (the dataset from scripts/make_synthetic_dataset.py, baseline:mel already stored in CACHE)::

    flock /tmp/embedviz-bench.lock python bench/bench_app_scale.py DATASET CACHE [SHOTS_DIR]
        [--repo PATH] [--skip-library] [--skip-app] [--extras]

``--repo`` runs the app from another checkout (e.g. an export of ``main``), so before and
after can be measured in one locked session. ``--extras`` also opens t-SNE at 21,000
points, Layer analysis and Data & cache (slow) for screenshots.

Library panel: 35 words of synthetic 128-d clusters (the width of the log-mel baseline),
timed steps: PCA projection, the panel's numbers (k-NN, silhouette), trustworthiness, the
Plotly figure and its JSON (what ``st.plotly_chart`` sends). App: each view opens in a
fresh browser context on one warm server; "first plot" is when a chart has drawn its
points (Plotly: data and points or a WebGL canvas; ECharts: data in the instance and
coloured pixels on its canvas), "shown" when the points are drawn and Streamlit's running indicator
is gone (the later of the two; before 2026-12-04 "shown" could come before "first plot", by up to
1 s, when the script ended before the chart was painted, and the ratios were taken of it);
"server CPU" is the CPU time the server process spent on the view.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from streamlit_server import CHROMIUM_ARGS as ARGS, settle as shared_settle, streamlit_server  # noqa: E402
WORDS = "backward,bed,bird,cat,dog,down,eight,five,follow,forward,four,go,happy,house,learn,left,marvin,nine,no,off,on,one,right,seven,sheila,six,stop,three,tree,two,up,visual,wow,yes,zero"
#: A Plotly chart counts as drawn once it has data and its points exist (SVG points or a WebGL canvas).
PLOTLY_DRAWN = """() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g._fullData && g._fullData.length
    && (g.querySelector('.scatterlayer .point') || g.querySelector('canvas')))"""
#: An ECharts chart counts as drawn once its instance holds the points (every series' data
#: counted, the Arrow datasets swapped in) and its canvas has painted some of them: a
#: pixel with colour (markers use the word palette; frames, text and background are grey).
ECHARTS_DRAWN = """() => [...document.querySelectorAll('[data-testid="stEChartsChart"]')].some(el => {
    const fk = Object.keys(el).find(k => k.startsWith('__reactFiber$'));
    let inst = null;
    for (let f = el[fk]; f && !inst; f = f.return)
        for (let h = f.memoizedState, n = 0; h && n < 200 && !inst; h = h.next, n++) {
            const v = h.memoizedState;
            if (v && typeof v.getOption === 'function' && typeof v.dispatchAction === 'function') inst = v;
        }
    const model = inst && inst.getModel();
    if (!model) return false;
    const points = model.getSeries().reduce((n, s) => n + s.getData().count(), 0);
    if (!points) return false;
    return [...el.querySelectorAll('canvas')].some(c => {
        const ctx = c.getContext('2d'), d = ctx && ctx.getImageData(0, 0, c.width, c.height).data;
        if (!d) return false;
        for (let i = 0; i < d.length; i += 16)
            if (d[i + 3] > 200 && Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 60) return true;
        return false;
    });
})"""
#: Either renderer: Explore draws 2D views up to figures.ECHARTS_MAX_POINTS with ECharts, the rest with Plotly.
DRAWN = f"() => ({PLOTLY_DRAWN})() || ({ECHARTS_DRAWN})()"


def library_panels(sizes: list[int]) -> None:
    """Time each step of one panel at each size (library only, no Streamlit)."""
    sys.path.insert(0, str(REPO))
    import numpy as np
    import pandas as pd
    import plotly.io as pio

    from embedviz import views
    from embedviz.figures import scatter_figure, word_colors
    from embedviz.reduction import ReductionSettings

    words = WORDS.split(",")
    colors = word_colors(words)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(words), 128)).astype(np.float32) * 2
    print("| points | PCA | numbers | trust | figure | JSON | JSON MB | total |")
    print("|---|---|---|---|---|---|---|---|")
    for n in [200, *sizes]:  # the first, small panel only imports scikit-learn, plotly, ...
        label = rng.integers(0, len(words), n)
        X = centres[label] + rng.normal(size=(n, 128)).astype(np.float32)
        clips = pd.DataFrame({
            "clip_key": [f"k{i}" for i in range(n)],
            "clip_id": [f"{words[w]}/{i:08x}_nohash_{i % 5}.wav" for i, w in enumerate(label)],
            "word": [words[w] for w in label],
            "speaker": [f"{i % 2618:08x}" for i in range(n)],
        })
        t = [time.perf_counter()]
        proj = views.project(X, ReductionSettings(method="pca"))
        t.append(time.perf_counter())
        numbers = views.panel_numbers(X, clips)
        t.append(time.perf_counter())
        p = views.panel(X, clips, proj, numbers)
        t.append(time.perf_counter())
        fig = scatter_figure(p.coords, clips["clip_id"], clips["word"], clips["speaker"], colors=colors)
        t.append(time.perf_counter())
        spec = pio.to_json(fig, validate=False)
        t.append(time.perf_counter())
        steps = [b - a for a, b in zip(t, t[1:])]
        if n == 200:
            continue
        print(f"| {n:,} | " + " | ".join(f"{s:.2f} s" for s in steps)
              + f" | {len(spec) / 1e6:.1f} | {t[-1] - t[0]:.2f} s |", flush=True)


def app_views(dataset: str, cache: str, shots: Path, repo: Path, extras: bool) -> None:
    env = {**os.environ, "EMBEDVIZ_CACHE": cache, "HF_HUB_OFFLINE": "1", "EMBEDVIZ_DATA_ROOTS": str(Path(dataset).parent)}
    with open(shots / "streamlit.log", "w") as log, \
            streamlit_server("streamlit_app.py", cwd=repo, env=env, log=log) as (url, proc):
        _views(url, proc, dataset, shots, extras)


def _views(url: str, proc, dataset: str, shots: Path, extras: bool) -> None:
    from playwright.sync_api import sync_playwright

    def base(n: int, extra: str = "") -> str:
        return f"{url}/?data={dataset}&model=baseline:mel&layers=logmel,mfcc&words={WORDS}&n={n}{extra}"

    def server_cpu() -> float:
        # The server's user + system CPU seconds (Linux): on a shared 2-core machine wall
        # times swing 2-3x with other work, the script's CPU time much less.
        try:
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return float("nan")

    def settle(page, t0: float) -> tuple[float, float]:
        return shared_settle(page, t0, DRAWN, timeout=400)

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)

        def tab():
            return b.new_context(viewport={"width": 1500, "height": 1300}).new_page()

        pg = tab()
        t0 = time.time()
        pg.goto(base(3))
        print(f"warm-up (dataset scan, 105 points): {settle(pg, t0)[1]:.1f} s", flush=True)
        results = {}
        # Each new view in a fresh browser profile (empty HTTP cache, as the issue measured);
        # the 5,000 view reopened both in a fresh tab of the same browser (its cache holds
        # Streamlit's and plotly.js's scripts, as a user's browser would) and in a fresh profile.
        views = [("500", 15, None), ("5000", 150, None), ("5000 reopened, fresh tab", 150, "same"),
                 ("5000 reopened, fresh profile", 150, None), ("21000", 600, None)]
        last = None
        for name, n, where in views:
            pg = last.context.new_page() if where == "same" and last is not None else tab()
            last = pg
            t0, c0 = time.time(), server_cpu()
            pg.goto(base(n))
            first, shown = settle(pg, t0)
            results[name] = (first, shown)
            print(f"{name}: first plot {first:.1f} s, shown {shown:.1f} s, server CPU {server_cpu() - c0:.2f} s",
                  flush=True)
            # Streamlit scrolls inside its main container: bring the plots into the viewport.
            # (Not the hidden chart that preloads the library: ui.widgets.preload_charts.)
            pg.locator(':is(.js-plotly-plot, [data-testid="stEChartsChart"]):not(.st-key-chart_preload *)'
                       ).first.scroll_into_view_if_needed()
            pg.screenshot(path=str(shots / f"scale_{name.replace(', ', '_').replace(' ', '_')}.png"))
        for k, (first, shown) in results.items():
            print(f"RESULT {k}: first plot {first:.1f} s, shown {shown:.1f} s "
                  f"({shown / results['500'][1]:.2f}x the 500 view)")
        if extras:
            pg = tab()
            t0 = time.time()
            pg.goto(base(600, "&method=tsne"))
            print(f"t-SNE at 21000: {settle(pg, t0)[1]:.1f} s", flush=True)
            pg.screenshot(path=str(shots / "scale_tsne_21000.png"), full_page=True)
            pg.get_by_role("link", name="Layer analysis").first.click()
            pg.get_by_text("Separability by layer").wait_for(timeout=300000)
            pg.wait_for_timeout(8000)
            pg.screenshot(path=str(shots / "scale_layer_analysis.png"), full_page=True)
        b.close()
    print("server alive until the end:", proc.poll() is None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("cache")
    ap.add_argument("shots", nargs="?", default="artifacts/bench")
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout whose app is measured (default: this one)")
    ap.add_argument("--sizes", default="500,5000,20000,100000")
    ap.add_argument("--skip-library", action="store_true")
    ap.add_argument("--skip-app", action="store_true")
    ap.add_argument("--extras", action="store_true")
    args = ap.parse_args()
    shots = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)
    if not args.skip_library:
        library_panels([int(v) for v in args.sizes.split(",")])
    if not args.skip_app:
        app_views(args.dataset, args.cache, shots, args.repo.resolve(), args.extras)


if __name__ == "__main__":
    main()
