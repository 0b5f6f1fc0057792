"""Real-browser fixtures: a `streamlit run` server and Debian's chromium driven by Playwright.

The server runs the real app on a free loopback port with its own embedding store and a
model root holding tiny random models, fully offline. Screenshots go to
``artifacts/e2e/`` (or ``$EMBEDVIZ_SCREENSHOTS``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("EMBEDVIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"streamlit did not answer at {url} within {timeout:.0f} s")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    out = Path(os.environ.get("EMBEDVIZ_SCREENSHOTS", REPO / "artifacts" / "e2e"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def e2e_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from tests.tiny_models import save_tiny_model

    base = tmp_path_factory.mktemp("e2e")
    models = base / "models"
    for family in ("wav2vec2", "whisper", "dac"):
        save_tiny_model(family, models / f"tiny-{family}")
    env = {
        **os.environ,
        "EMBEDVIZ_CACHE": str(base / "store"),
        "EMBEDVIZ_MODEL_ROOTS": str(models),
        "EMBEDVIZ_DATA_ROOTS": str(base / "data"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(base / "hf"),
        "PYTHONUNBUFFERED": "1",
    }
    (base / "data").mkdir()
    return env


@pytest.fixture(scope="session")
def app_url(e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = (tmp_path_factory.mktemp("log") / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=e2e_env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        text = Path(log.name).read_text(errors="replace")
        if "Traceback" in text:
            print("streamlit server log:\n" + text[-5000:])


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: install Debian's chromium (bash .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    try:
        yield pg
    finally:
        context.close()
