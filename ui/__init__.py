"""Streamlit-side helpers of the embedviz app (this package may import streamlit; the
library ``embedviz`` never does).

* :mod:`ui.state`: the URL <-> :class:`embedviz.viewstate.ViewSettings` <-> widget sync.
* :mod:`ui.cached`: ``st.cache_data`` / ``st.cache_resource`` wrappers of library calls.
* :mod:`ui.jobs`: extraction in a background thread, with progress and cancel.
* :mod:`ui.widgets`: pieces shared by the pages (sidebar, table-driven choices, clip rings, hooks).
* :mod:`ui.explore_steps` / :mod:`ui.explore_results`: the Explore page's steps and results.

Heavy modules (torch, transformers, scikit-learn, umap) are imported only inside the
functions that need them, so the first page paints fast.
"""
