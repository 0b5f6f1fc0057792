"""Concurrent sessions in headless Chromium: 1 session, then 4, pressing Extract on the same 48 clips.

Usage::

    flock /tmp/embedviz-bench.lock python bench/bench_sessions.py [--port 8618] [--repeats 2] [SHOTS_DIR]

Each scenario starts its own server with a fresh, empty embedding store (``EMBEDVIZ_CACHE``)
and a tiny random-init wav2vec2 folder (``tests.tiny_models``) under ``EMBEDVIZ_MODEL_ROOTS``.
It opens N pages, each in its own browser context (= its own Streamlit session), on the same
URL (4 demo words x 12 clips = 48 clips), waits until every page shows its enabled Extract
button, clicks Extract in all of them (back to back, within a few ms), and measures until every
page shows the "Extraction finished" report, at least one plot, and Streamlit's running
indicator has been gone for 1 s (that last second is not counted).

Printed: per scenario the wall time of the slowest page, what each page reported (computed /
already stored) and the ratio 4 sessions / 1 session (issue 9: must be at most 2x). The
server log of each scenario is written to SHOTS_DIR with a screenshot of every page.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from streamlit_server import CHROMIUM_ARGS, wait_healthy  # noqa: E402
WORDS = "yes,no,cat,dog"
PER_WORD = 12


def start_server(port: int, cache: Path, models: Path, log_path: Path, app: Path = REPO) -> subprocess.Popen:
    env = {**os.environ, "EMBEDVIZ_CACHE": str(cache), "EMBEDVIZ_MODEL_ROOTS": str(models), "HF_HUB_OFFLINE": "1"}
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=120)
    except RuntimeError as error:
        proc.terminate()
        raise SystemExit(f"{error}; see {log_path}") from None
    return proc


def wait_ready(page: Page, timeout_s: float = 300) -> None:
    """Until the Extract button is drawn and enabled (the page knows 48 clips are missing)."""
    button = page.get_by_role("button", name="Extract")
    button.wait_for(timeout=timeout_s * 1000)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if button.is_enabled() and page.get_by_text("clip(s) to compute").count():
            return
        page.wait_for_timeout(200)
    raise TimeoutError("the Extract button never became enabled")


def finished(page: Page) -> bool:
    return (
        page.get_by_text("Extraction finished").count() > 0
        and page.locator(".js-plotly-plot").count() >= 1
        and page.locator('[data-testid="stStatusWidget"]').count() == 0
    )


def scenario(n: int, port: int, model: Path, shots: Path, tag: str, profile: bool = False, app: Path = REPO) -> dict:
    cache = Path(tempfile.mkdtemp(prefix=f"ev-bench-sessions-{tag}-"))
    proc = start_server(port, cache, model.parent, shots / f"streamlit_{tag}.log", app)
    url = f"http://127.0.0.1:{port}/?model={model}&words={WORDS}&n={PER_WORD}"
    spy = None
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
            # A first page warms the server (imports, dataset scan) the same way in both scenarios.
            warm = browser.new_context().new_page()
            warm.goto(url)
            wait_ready(warm)
            warm.context.close()
            pages = [browser.new_context(viewport={"width": 1400, "height": 1200}).new_page() for _ in range(n)]
            for page in pages:
                page.goto(url)
            for page in pages:
                wait_ready(page)
            if profile:  # sampled stacks of the server while the sessions extract (py-spy, optional)
                spy = subprocess.Popen(["py-spy", "record", "--format", "raw", "--rate", "50", "--threads",
                                        "--pid", str(proc.pid), "-o", str(shots / f"pyspy_{tag}.txt")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0 = time.perf_counter()
            for page in pages:  # back to back: "at once"
                page.get_by_role("button", name="Extract").click()
            done_at: dict[int, float] = {}
            reported_at: dict[int, float] = {}  # the report is shown (extraction over), plots may still come
            quiet: dict[int, float] = {}
            while len(done_at) < n and time.perf_counter() - t0 < 900:
                for i, page in enumerate(pages):
                    if i in done_at:
                        continue
                    if i not in reported_at and page.get_by_text("Extraction finished").count():
                        reported_at[i] = time.perf_counter() - t0
                    if finished(page):
                        quiet.setdefault(i, time.perf_counter())
                        if time.perf_counter() - quiet[i] >= 1.0:
                            done_at[i] = quiet[i] - t0
                    else:
                        quiet.pop(i, None)
                pages[0].wait_for_timeout(100)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
            reports = []
            for i, page in enumerate(pages):
                page.screenshot(path=str(shots / f"sessions_{tag}_page{i + 1}.png"), full_page=True)
                alert = page.locator('[data-testid="stAlert"]').filter(has_text="Extraction finished")
                text = alert.first.inner_text() if i in done_at else "NOT FINISHED"
                reports.append(re.sub(r"\s+", " ", text)[:160])
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(cache, ignore_errors=True)
    if len(done_at) < n:
        raise SystemExit(f"{tag}: {n - len(done_at)} page(s) never finished (screenshots in {shots})")
    return {"n": n, "slowest_s": max(done_at.values()), "per_page_s": [done_at[i] for i in range(n)],
            "reported_s": [reported_at.get(i, float("nan")) for i in range(n)],
            "reports": reports}


def tick_cost(rounds: int = 20000) -> None:
    """Library-side cost of one progress tick: what the fragment reads and formats, per call.

    Four handles on one job (held in "loading the model" by a gated loader), the way four
    attached sessions poll it; the Streamlit-side cost of a fragment rerun comes on top (see
    docs/PERFORMANCE.md for the py-spy figure).
    """
    import threading

    from embedviz.datasets import open_dataset
    from embedviz.errors import ModelLoadError
    from embedviz.settings import ExtractionSettings
    from embedviz.store import EmbeddingStore
    from ui.jobs import JobRegistry, Task
    from ui.widgets import _progress_text

    gate = threading.Event()

    def load(settings):
        gate.wait(60)
        raise ModelLoadError("not loaded: tick-cost measurement only")

    manifest = open_dataset().sample(WORDS.split(","), PER_WORD, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        registry = JobRegistry(max_running=1)
        tasks = [Task(ExtractionSettings(model="baseline:mel"), manifest, "mel")]
        handles = [registry.submit(tasks, EmbeddingStore(Path(tmp)), load) for _ in range(4)]
        t = time.perf_counter()
        for i in range(rounds):
            _progress_text(handles[i % 4].snapshot())
        per_tick = (time.perf_counter() - t) / rounds
        gate.set()
        for h in handles:
            h.wait(60)
    print(f"RESULT tick (snapshot + progress text, 4 handles on one job): {per_tick * 1e6:.1f} us per tick")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("shots", nargs="?", default="artifacts/bench")
    parser.add_argument("--port", type=int, default=8618)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", type=int, choices=(1, 4), help="run only this scenario")
    parser.add_argument("--baseline", type=Path, metavar="APP_DIR",
                        help="also run every scenario on this checkout (e.g. `git archive main | tar -x -C DIR`), "
                        "interleaved with this one, and print both")
    parser.add_argument("--profile", action="store_true", help="record the server with py-spy (SHOTS_DIR/pyspy_*.txt)")
    parser.add_argument("--tick-cost", action="store_true", help="only measure the library side of one progress tick")
    args = parser.parse_args()
    if args.tick_cost:
        tick_cost()
        return
    shots = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)

    from tests.tiny_models import save_tiny_model

    root = Path(tempfile.mkdtemp(prefix="ev-bench-sessions-models-"))
    model = save_tiny_model("wav2vec2", root / "tiny-wav2vec2").resolve()
    apps = {"this checkout": REPO} if args.baseline is None else {"baseline": args.baseline.resolve(), "this checkout": REPO}
    results: dict[tuple[str, int], list[float]] = {(a, n): [] for a in apps for n in (1, 4)}
    try:
        for r in range(args.repeats):
            for name, app in apps.items():
                for n in (1, 4) if args.only is None else (args.only,):
                    tag = f"{'base_' if app != REPO else ''}{n}x_run{r + 1}"
                    out = scenario(n, args.port, model, shots, tag, args.profile, app)
                    results[(name, n)].append(out["slowest_s"])
                    pages = ", ".join(f"{t:.1f} (report at {x:.1f})" for t, x in zip(out["per_page_s"], out["reported_s"]))
                    print(f"run {r + 1} [{name}]: {n} session(s): slowest {out['slowest_s']:.1f} s; pages: {pages}",
                          flush=True)
                    for text in out["reports"]:
                        print(f"    {text}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for name in apps:
        one, four = results[(name, 1)], results[(name, 4)]
        if one and four:
            print(f"RESULT [{name}] 1 session: {', '.join(f'{t:.1f}' for t in one)} s; "
                  f"4 sessions: {', '.join(f'{t:.1f}' for t in four)} s; "
                  f"median 4/1 = {sorted(four)[len(four) // 2] / sorted(one)[len(one) // 2]:.2f}x; "
                  f"per run 4/1: {', '.join(f'{b / a:.2f}x' for a, b in zip(one, four))}")


if __name__ == "__main__":
    main()
