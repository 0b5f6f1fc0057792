"""The app's state lives in the URL: query params <-> ViewSettings <-> widgets.

One run of a page:

1. :func:`current_view` reads ``st.query_params``. If they are what this session wrote
   last time (or empty, which happens after switching pages), the session's view is
   used. Otherwise (first visit, a pasted link, back/forward) they are validated by
   :meth:`ViewSettings.from_query_params`; every invalid value falls back to its
   default with a warning, and the widgets are re-seeded from the parsed view.
2. The page seeds each widget's session-state key with :func:`seed` (only when the
   URL changed from outside, or the widget has no state yet) and draws the widgets
   without ``default=`` (their value comes from session state).
3. The page builds the new view from the widget values and calls :func:`commit`, which
   writes the query params back (only when they changed) and remembers them.

So widgets initialise from the URL, every change lands in the URL, and a pasted URL
restores the whole view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from embedviz.errors import EmbedvizError
from embedviz.viewstate import ViewSettings

_VIEW = "_ev_view"
_SEEN = "_ev_seen_params"
_RESEED = "_ev_reseed"
_WARNINGS = "_ev_warnings"


def read_params() -> dict[str, list[str]]:
    """The current query params, every value as a list (repeated keys kept)."""
    return {key: list(st.query_params.get_all(key)) for key in st.query_params.keys()}


def _as_lists(params: dict[str, Any]) -> dict[str, list[str]]:
    # Empty lists are dropped: the URL cannot carry them, so they must not count as a difference.
    lists = {k: [v] if isinstance(v, str) else list(v) for k, v in params.items()}
    return {k: v for k, v in lists.items() if v}


def _dataset_words(root: str) -> list[str]:
    from ui import cached

    return cached.dataset_words(root)


def parse(params: dict[str, list[str]]) -> tuple[ViewSettings, list[str]]:
    """Validate query params against the catalogue and the configured roots."""
    from embedviz.catalogue import CATALOGUE
    from embedviz.datasets import demo_root
    from embedviz.settings import data_roots, model_roots
    from ui import cached

    return ViewSettings.from_query_params(
        params,
        catalogue=CATALOGUE,
        data_roots=data_roots(),
        model_roots=model_roots(),
        dataset_words=_dataset_words,
        demo_root=demo_root(),
        model_layers=cached.model_layers,
    )


def current_view() -> ViewSettings:
    """This run's view (see the module docstring); URL warnings are shown by :func:`show_warnings`."""
    params = read_params()
    state = st.session_state
    if _VIEW in state and (params == state.get(_SEEN) or not params):
        state[_RESEED] = False
        return state[_VIEW]
    view, warnings = parse(params)
    state[_VIEW] = view
    state[_RESEED] = True
    state[_WARNINGS] = warnings
    return view


def show_warnings() -> None:
    """Warnings about the URL this view was parsed from (shown once)."""
    for message in st.session_state.pop(_WARNINGS, []) or []:
        st.warning(message, icon="⚠️")


def reseeding() -> bool:
    """True on a run whose view came from a URL (widgets must take its values)."""
    return bool(st.session_state.get(_RESEED, True))


def seed(key: str, value: Any, options: Sequence[Any] | None = None) -> None:
    """Give widget ``key`` the view's ``value`` if the URL changed or it has no state yet.

    With ``options``, a stored value that is no longer an option (the dataset or model
    list changed) is dropped, so the widget never sees an invalid value.
    """
    state = st.session_state
    if reseeding() or key not in state:
        state[key] = value
    if options is not None:
        allowed = list(options)
        current = state[key]
        if isinstance(current, list):
            state[key] = [v for v in current if v in allowed]
        elif current not in allowed:
            state[key] = value if value in allowed else (allowed[0] if allowed else None)


def commit(view: ViewSettings) -> None:
    """Make ``view`` the session's view and write it to the URL if it changed."""
    params = view.to_query_params()
    wanted = _as_lists(params)
    if read_params() != wanted:
        st.query_params.from_dict(params)
    st.session_state[_VIEW] = view
    st.session_state[_SEEN] = wanted
    st.session_state[_RESEED] = False


def view_or_error() -> ViewSettings | None:
    """:func:`current_view`, showing a library error instead of raising it."""
    try:
        return current_view()
    except EmbedvizError as error:
        st.error(str(error))
        return None


def ensure_routed() -> None:
    """Run the router in place when Streamlit ran a page file by itself.

    A folder named ``pages`` beside the entry point makes a freshly started server run in
    Streamlit's legacy multipage mode until the router's ``st.navigation`` has run once:
    a deep link such as ``/layer_analysis`` then executes ``pages/layer_analysis.py``
    directly, without the router's page config and navigation, and with the automatic
    page list. Here the page hands over to ``streamlit_app.py`` within the same run (its
    ``st.navigation`` resolves the same URL to this page, which then runs normally) and
    stops the direct execution. A rerun would also work on a server, but would drop a
    button click of this run. Streamlit has no public switch for the legacy mode; the
    class attribute is what ``st.navigation`` itself sets.
    """
    import runpy
    from pathlib import Path

    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(Path(__file__).resolve().parents[1] / "streamlit_app.py"), run_name="__main__")
        st.stop()
