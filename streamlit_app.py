"""embedviz app entry point: only the page router.

Run with ``streamlit run streamlit_app.py``. Pages live in ``pages/``; shared
Streamlit helpers in ``ui/``; all analysis in the ``embedviz`` library.

A ``pages/`` folder beside the entry point switches a freshly started server into
Streamlit's legacy multipage mode until ``st.navigation`` has run once; each page
therefore starts with ``ui.state.ensure_routed()``, which sends a deep link that arrives
first through this router (see there).
"""

from pathlib import Path

import streamlit as st

st.set_page_config(
    page_title="embedviz: how speech models represent words",
    # A local image: a ':material/...' page icon makes the browser fetch the favicon from
    # fonts.gstatic.com, and an emoji one from a CDN; the app must work offline.
    page_icon=str(Path(__file__).resolve().parent / "assets" / "icon.png"),
    layout="wide",
    initial_sidebar_state="expanded",
    menu_items={
        "About": "embedviz: see and measure how Wav2Vec2, Whisper and DAC represent spoken words, layer by layer."
    },
)

# position="hidden": the sidebar links are drawn by each page (ui.widgets.sidebar) so they
# can carry the view's query params; Streamlit's own menu clears them on every switch.
st.navigation(
    [
        st.Page("pages/explore.py", title="Explore", icon=":material/scatter_plot:", default=True),
        st.Page("pages/layer_analysis.py", title="Layer analysis", icon=":material/stacked_line_chart:"),
        st.Page("pages/data_cache.py", title="Data & cache", icon=":material/database:"),
    ],
    position="hidden",
).run()
