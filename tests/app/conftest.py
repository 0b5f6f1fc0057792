"""Fixtures for Streamlit AppTest tests of the app.

Each test gets its own embedding store (``EMBEDVIZ_CACHE``), model root and data root
(tmp dirs), and empty Streamlit caches: ``st.cache_data`` / ``st.cache_resource`` are
process-global, so without clearing them one test's store listing or loaded model would
leak into the next.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "streamlit_app.py")
EXPLORE = "pages/explore.py"
ANALYSIS = "pages/layer_analysis.py"
DATA = "pages/data_cache.py"
#: Runs that extract or compute metrics need more than AppTest's default 3 s.
SLOW = 60


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Private store, model root and data root for one test; caches cleared."""
    paths = {"cache": tmp_path / "store", "models": tmp_path / "models", "data": tmp_path / "data"}
    for p in paths.values():
        p.mkdir()
    monkeypatch.setenv("EMBEDVIZ_CACHE", str(paths["cache"]))
    monkeypatch.setenv("EMBEDVIZ_MODEL_ROOTS", str(paths["models"]))
    monkeypatch.setenv("EMBEDVIZ_DATA_ROOTS", str(paths["data"]))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield paths
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(scope="session")
def tiny_wav2vec2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random wav2vec2 folder in HF format (built once per session)."""
    from tests.tiny_models import save_tiny_model

    return Path(save_tiny_model("wav2vec2", tmp_path_factory.mktemp("tiny") / "tiny-wav2vec2"))


@pytest.fixture
def local_model(env: dict[str, Path], tiny_wav2vec2: Path) -> Path:
    """The tiny wav2vec2 copied under this test's model root (so the URL allowlist accepts it)."""
    target = env["models"] / "tiny-wav2vec2"
    shutil.copytree(tiny_wav2vec2, target)
    return target.resolve()


def new_app(params: dict[str, str | list[str]] | None = None, timeout: float = SLOW) -> AppTest:
    """The app (router) with query params set, not run yet."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    for key, value in (params or {}).items():
        at.query_params[key] = value
    return at


def page(at: AppTest, path: str) -> AppTest:
    """Run the router once, then switch to ``path`` and run it (AppTest needs one run first)."""
    at.run()
    return at.switch_page(path).run()


def wait_for_job(at: AppTest, timeout: float = 120) -> AppTest:
    """Rerun until the background extraction has finished and its report is shown."""
    job = at.session_state["_ev_job"] if "_ev_job" in at.session_state else None
    if job is not None:
        assert job.wait(timeout), "extraction did not finish in time"
    deadline = time.monotonic() + timeout
    while "_ev_job" in at.session_state and time.monotonic() < deadline:
        at.run()
    at.run()  # one more: the page draws from the store
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


Factory = Callable[..., AppTest]


def charts(at: AppTest, kind: str = "plotly_chart") -> list:
    """The page's ``plotly_chart`` or ``echarts_chart`` elements that draw something: the
    hidden chart that makes the browser load its library early (``ui.widgets.preload_charts``,
    no traces or series) is left out."""
    import json

    def empty(chart) -> bool:
        spec = json.loads(chart.proto.spec)
        return not (spec.get("data") if kind == "plotly_chart" else spec.get("series"))

    return [chart for chart in at.get(kind) if not empty(chart)]
