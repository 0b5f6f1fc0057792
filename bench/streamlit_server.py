"""One Streamlit server for a browser benchmark: a free port on 127.0.0.1, started, healthy.

Shared by the browser benchmarks (``bench_app_scale``, ``bench_browser_floor``,
``bench_echarts_cap``) so each starts and waits for its server the same way.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO


#: Chromium's flags for every browser benchmark (headless on a shared CPU box; no downloads).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    """Return once the server at ``url`` answers ``/_stcore/health``; RuntimeError if its
    process exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Streamlit server exited (code {proc.returncode}) before it was healthy")
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the Streamlit server was not healthy within {timeout:.0f} s")


@contextmanager
def streamlit_server(script: str | Path, *, cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
                     log: IO | None = None, wait_s: float = 120.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``streamlit run SCRIPT`` headless until the block ends; yields ``(url, process)``
    once ``/_stcore/health`` answers (the server's first script run has not happened yet)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1"],
                            cwd=cwd, env=dict(env) if env is not None else None,
                            stdout=log if log is not None else subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, wait_s)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def settle(page, t0: float, cond: str, timeout: float = 300) -> tuple[float, float]:
    """``(first, shown)``: seconds from ``t0`` until the JS predicate ``cond`` first holds in
    ``page`` (NaN if never), and until the view is shown: its points drawn and Streamlit's
    running indicator gone (the later of ``first`` and the last time the indicator was
    seen; it must then stay away for 1 s). A script that ends before its chart is painted
    is shown at ``first``, not earlier."""
    first, last_busy = float("nan"), 0.0
    while time.time() - t0 < timeout:
        now = time.time() - t0
        if first != first and page.evaluate(cond):
            first = now
        if page.locator('[data-testid="stStatusWidget"]').count():
            last_busy = now
        elif first == first and now - last_busy >= 1.0:
            break
        page.wait_for_timeout(100)
    return first, max(first, last_busy)


def first_drawn(page, t0: float, cond: str, timeout: float = 300) -> float:
    """Seconds from ``t0`` to the first drawn point (the ``first`` of :func:`settle`)."""
    return settle(page, t0, cond, timeout)[0]
