"""Extract in the app (headless Chromium) against the CLI: same clips, same model, fresh store each.

Usage (a few minutes on 2 CPU cores; run under the shared benchmark lock)::

    flock /tmp/embedviz-bench.lock python bench/bench_app_extract.py \
        [--model random-init:facebook/wav2vec2-base] [--words yes,no,up,down] [--samples 12] [--rounds 1]

Each round, interleaved so that load from other processes hits both alike:

* **app**: a fresh ``streamlit run`` server on a fresh ``$EMBEDVIZ_CACHE``; the Explore page
  opened with the model, words and clips in the URL; the clock runs from the click on
  *Extract* until "Extraction finished." is shown (model load, extraction, progress display);
* **CLI**: ``python -m embedviz extract`` on the same clips into another fresh store; both the
  process's wall time and the seconds ``extract`` reports (model load included, interpreter
  start and imports not) are kept.

Prints ``RESULT`` lines; ``--json PATH`` also writes them for ``bench/bench_extraction.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError("the streamlit server exited before it was healthy")
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the streamlit server was not healthy within {timeout:.0f} s")


def _settled(page, timeout_s: float = 600.0) -> None:
    """Until Streamlit's 'running' indicator has been gone for 1 s."""
    t0, quiet = time.time(), 0.0
    while time.time() - t0 < timeout_s and quiet < 1.0:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        quiet = 0.0 if running else quiet + 0.25
        page.wait_for_timeout(250)


def run_app(model: str, words: str, samples: int, logs: Path) -> dict[str, float]:
    """Seconds from the click on Extract to 'Extraction finished.' on a fresh server and store."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="embedviz-app-bench-") as cache:
        port = _free_port()
        env = {**os.environ, "EMBEDVIZ_CACHE": cache, "HF_HUB_OFFLINE": "1"}
        with open(logs / "streamlit.log", "a") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
                 "--server.port", str(port), "--server.address", "127.0.0.1"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
            url = f"http://127.0.0.1:{port}"
            try:
                _wait_healthy(url, proc)
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                                args=CHROMIUM_ARGS)
                    page = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
                    page.goto(f"{url}/?model={model}&words={words}&n={samples}&seed=0", timeout=300_000)
                    page.get_by_text("1 · Models").wait_for(timeout=300_000)
                    _settled(page)
                    button = page.get_by_role("button", name="Extract", exact=True)
                    button.wait_for(timeout=300_000)
                    t0 = time.perf_counter()
                    button.click()
                    page.get_by_text("Extraction finished.").wait_for(timeout=1_800_000)
                    seconds = time.perf_counter() - t0
                    page.screenshot(path=str(logs / "app_extract_done.png"), full_page=False)
                    browser.close()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    return {"app_s": seconds}


def run_cli(model: str, words: str, samples: int) -> dict[str, float]:
    """Wall seconds of ``python -m embedviz extract`` and the seconds its summary reports."""
    with tempfile.TemporaryDirectory(prefix="embedviz-cli-bench-") as cache:
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "embedviz", "extract", "--model", model, "--words", words,
             "--samples", str(samples), "--seed", "0", "--cache", cache],
            cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, check=True,
        )
        wall = time.perf_counter() - t0
    reported = re.search(r"computed.*? in ([\d.]+) s", out.stdout + out.stderr)
    return {"cli_wall_s": wall, "cli_extract_s": float(reported.group(1)) if reported else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random-init:facebook/wav2vec2-base")
    parser.add_argument("--words", default="yes,no,up,down")
    parser.add_argument("--samples", type=int, default=12, help="clips per word")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--logs", type=Path, default=REPO / "artifacts" / "bench")
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    best: dict[str, float] = {}
    for r in range(args.rounds):
        for name, fn in (("cli", run_cli), ("app", run_app)):
            result = fn(args.model, args.words, args.samples, args.logs) if name == "app" else fn(
                args.model, args.words, args.samples)
            for k, v in result.items():
                best[k] = min(best.get(k, float("inf")), v)
            print(f"round {r}: {name}: " + ", ".join(f"{k}={v:.1f}" for k, v in result.items()), flush=True)
    n = args.samples * len(args.words.split(","))
    best["clips"] = n
    best["app_over_cli_extract"] = best["app_s"] / best["cli_extract_s"]
    best["app_over_cli_wall"] = best["app_s"] / best["cli_wall_s"]
    print(f"RESULT {n} clips of {args.model}: app {best['app_s']:.1f} s (click -> finished), "
          f"CLI extract {best['cli_extract_s']:.1f} s, CLI process {best['cli_wall_s']:.1f} s; "
          f"app / CLI extract = {best['app_over_cli_extract']:.2f}x, app / CLI process = {best['app_over_cli_wall']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(best, indent=2))


if __name__ == "__main__":
    main()
