"""The floor under every app view: how long headless Chromium takes to show a Streamlit page
with nothing but one 3-point ``st.plotly_chart`` or one 3-point ``st.echarts_chart`` (and,
for comparison, text only), in a fresh tab of a warm browser and in a fresh profile. No
embedviz code runs; the clock is the same as ``bench_app_scale.py``'s (first drawn point,
its ``DRAWN`` conditions; status widget gone for 1 s).

Usage::

    flock /tmp/embedviz-bench.lock python bench/bench_browser_floor.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

APP = '''import streamlit as st
import plotly.graph_objects as go
st.title("floor")
kind = st.query_params.get("kind", "plotly")
if kind == "plotly":
    st.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], mode="markers")), key="c")
elif kind == "echarts":
    st.echarts_chart({"animation": False, "xAxis": {"type": "value"}, "yAxis": {"type": "value"},
                      "series": [{"type": "scatter", "data": [[1, 3], [2, 1], [3, 2]], "symbolSize": 12,
                                  "itemStyle": {"color": "#2E91E5"}}]}, key="e")
else:
    st.write("text only")
'''
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_app_scale import ARGS, ECHARTS_DRAWN, PLOTLY_DRAWN  # noqa: E402 (one definition of "drawn")
from streamlit_server import first_drawn as settle, streamlit_server  # noqa: E402
TEXT = "() => document.body.innerText.includes('text only')"


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    rounds = ap.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "app.py"
        app.write_text(APP)
        with streamlit_server(app) as (url, _):
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
                ctx = b.new_context(viewport={"width": 1500, "height": 1300})
                page = ctx.new_page()  # warm-up: the server's first run and the tab's HTTP cache
                t0 = time.time()
                page.goto(url + "/?kind=plotly")
                settle(page, t0, PLOTLY_DRAWN)
                for rnd in range(rounds):
                    for kind, cond in (("text", TEXT), ("plotly", PLOTLY_DRAWN), ("echarts", ECHARTS_DRAWN)):
                        for where in ("fresh profile", "fresh tab"):
                            c = b.new_context(viewport={"width": 1500, "height": 1300}) if where == "fresh profile" else ctx
                            page = c.new_page()
                            t0 = time.time()
                            page.goto(url + f"/?kind={kind}")
                            print(f"RESULT round {rnd} {kind} page, {where}: shown in {settle(page, t0, cond):.2f} s",
                                  flush=True)
                            page.close()
                b.close()


if __name__ == "__main__":
    main()
