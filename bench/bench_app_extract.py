"""Extract in the app (headless Chromium) against the CLI: same clips, same model, fresh store each.

Usage (a few minutes on 2 CPU cores; run under the shared benchmark lock)::

    flock /tmp/embedviz-bench.lock python bench/bench_app_extract.py \
        [--model random-init:facebook/wav2vec2-base] [--words yes,no,up,down] [--samples 12] [--rounds 1] \
        [--before DIR] [--profile]

Each round, interleaved so that load from other processes hits both alike:

* **app**: a fresh ``streamlit run`` server on a fresh ``$EMBEDVIZ_CACHE``; the Explore page
  opened with the model, words and clips in the URL; the clock runs from the click on
  *Extract* until "Extraction finished." is shown (model load, extraction, progress display);
* **CLI**: ``python -m embedviz extract`` on the same clips into another fresh store; both the
  process's wall time and the seconds ``extract`` reports (model load included, interpreter
  start and imports not) are kept.

Besides the wall seconds it records CPU seconds, which other load on a shared machine disturbs
far less: the server's over the app's interval (``app_cpu_s``), the headless browser's
(``browser_cpu_s``: on one machine it competes with the extraction), and the whole CLI
process's (``cli_cpu_s``: interpreter start and imports included); ``app_lib_s`` is the time
the library's ``extract`` reported inside the app (the job loads the model before it, so
the model load is not in it). ``--before DIR`` runs a second checkout of the app in the
same rounds (order alternating), for before/after figures measured under the same load;
``--profile`` records the server with py-spy during each app run.

Prints ``RESULT`` lines; ``--json PATH`` also writes them for ``bench/bench_extraction.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from streamlit_server import CHROMIUM_ARGS, free_port, wait_healthy  # noqa: E402


def _settled(page, timeout_s: float = 600.0) -> None:
    """Until Streamlit's 'running' indicator has been gone for 1 s."""
    t0, quiet = time.time(), 0.0
    while time.time() - t0 < timeout_s and quiet < 1.0:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        quiet = 0.0 if running else quiet + 0.25
        page.wait_for_timeout(250)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _browser_cpu_s(server_pid: int) -> float:
    """CPU seconds so far of this benchmark's headless Chromium (and Playwright's driver)."""
    total = 0.0
    for pid in _descendants(os.getpid()):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            if pid != server_pid and ("chrom" in name or name.startswith("node")):
                total += _cpu_s(pid)
        except (OSError, IndexError, ValueError):
            pass  # exited meanwhile
    return total


def _start_profiler(pid: int, out: Path) -> subprocess.Popen:
    """py-spy on the server (all threads, non-blocking so it does not slow what it measures)."""
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(spy), "record", "--pid", str(pid), "--threads", "--nonblocking", "--idle",
                             "--rate", "50", "--format", "raw", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _stop_profiler(spy: subprocess.Popen) -> None:
    import signal

    spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
    try:
        spy.wait(timeout=60)
    except subprocess.TimeoutExpired:
        spy.kill()


def run_app(model: str, words: str, samples: int, logs: Path, profile: Path | None = None,
            repo: Path = REPO) -> dict[str, float]:
    """Seconds from the click on Extract to 'Extraction finished.' on a fresh server and store.

    Also the server's CPU seconds over the same interval (``app_cpu_s``) and the seconds the
    library's ``extract`` itself took inside the app (``app_lib_s``, model load excluded: the
    job loads the model first), read from the finished message. With ``profile``, py-spy
    records the server over the interval into that file (raw folded stacks, per thread).
    """
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="embedviz-app-bench-") as cache:
        port = free_port()
        env = {**os.environ, "EMBEDVIZ_CACHE": cache, "HF_HUB_OFFLINE": "1"}
        with open(logs / "streamlit.log", "a") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
                 "--server.port", str(port), "--server.address", "127.0.0.1"],
                cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
            url = f"http://127.0.0.1:{port}"
            try:
                wait_healthy(url, proc)
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                                args=CHROMIUM_ARGS)
                    page = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
                    page.goto(f"{url}/?model={model}&words={words}&n={samples}&seed=0", timeout=300_000)
                    page.get_by_text("1 · Models").wait_for(timeout=300_000)
                    _settled(page)
                    button = page.get_by_role("button", name="Extract", exact=True)
                    button.wait_for(timeout=300_000)
                    spy = _start_profiler(proc.pid, profile) if profile is not None else None
                    if spy is not None:
                        time.sleep(2.0)  # py-spy attached before the clock starts
                    cpu0, browser0 = _cpu_s(proc.pid), _browser_cpu_s(proc.pid)
                    t0 = time.perf_counter()
                    button.click()
                    done = page.get_by_text("Extraction finished.")
                    done.wait_for(timeout=1_800_000)
                    seconds = time.perf_counter() - t0
                    cpu = _cpu_s(proc.pid) - cpu0
                    browser_cpu = _browser_cpu_s(proc.pid) - browser0
                    threads = len(os.listdir(f"/proc/{proc.pid}/task"))  # torch's OpenMP pool included
                    if spy is not None:
                        _stop_profiler(spy)
                    reported = re.search(r"computed.*? in ([\d.]+) s", done.locator("xpath=..").inner_text())
                    page.screenshot(path=str(logs / "app_extract_done.png"), full_page=False)
                    browser.close()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    return {"app_s": seconds, "app_cpu_s": cpu, "browser_cpu_s": browser_cpu, "app_threads": threads,
            "app_lib_s": float(reported.group(1)) if reported else float("nan")}


def run_cli(model: str, words: str, samples: int) -> dict[str, float]:
    """Wall seconds of ``python -m embedviz extract`` and the seconds its summary reports."""
    with tempfile.TemporaryDirectory(prefix="embedviz-cli-bench-") as cache:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "embedviz", "extract", "--model", model, "--words", words,
             "--samples", str(samples), "--seed", "0", "--cache", cache],
            cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, check=True,
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    reported = re.search(r"computed.*? in ([\d.]+) s", out.stdout + out.stderr)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"cli_wall_s": wall, "cli_cpu_s": cpu,
            "cli_extract_s": float(reported.group(1)) if reported else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random-init:facebook/wav2vec2-base")
    parser.add_argument("--words", default="yes,no,up,down")
    parser.add_argument("--samples", type=int, default=12, help="clips per word")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--logs", type=Path, default=REPO / "artifacts" / "bench")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the server during each app run (LOGS/app_profile_<round>.txt, raw folded stacks)")
    parser.add_argument("--before", type=Path, default=None,
                        help="another checkout of the app (e.g. `git archive BASE | tar -x -C DIR`), run in the same "
                             "rounds: its results are prefixed before_")
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    best: dict[str, float] = {}
    ratios: list[float] = []
    before_ratios: list[float] = []
    for r in range(args.rounds):
        result: dict[str, float] = {}
        names = ["cli", "app"] + (["before"] if args.before else [])
        for name in names if r % 2 == 0 else names[:1] + names[:0:-1]:  # alternate which app goes first
            if name == "cli":
                got = run_cli(args.model, args.words, args.samples)
            else:
                profile = args.logs / f"{name}_profile_{r}.txt" if args.profile else None
                got = run_app(args.model, args.words, args.samples, args.logs, profile,
                              repo=args.before if name == "before" else REPO)
                if name == "before":
                    got = {f"before_{k}": v for k, v in got.items()}
            result.update(got)
            print(f"round {r}: {name}: " + ", ".join(f"{k}={v:.1f}" for k, v in got.items()), flush=True)
        for k, v in result.items():
            best[k] = min(best.get(k, float("inf")), v)
        # The runs of one round ran back to back, under the same outside load.
        ratios.append(result["app_s"] / result["cli_extract_s"])
        before_ratios.append(result.get("before_app_s", float("nan")) / result["cli_extract_s"])
        print(f"round {r}: app / CLI extract = {ratios[-1]:.2f}x"
              + (f", before / CLI extract = {before_ratios[-1]:.2f}x" if args.before else ""), flush=True)
    n = args.samples * len(args.words.split(","))
    best["clips"] = n
    best["app_over_cli_extract"] = best["app_s"] / best["cli_extract_s"]
    best["app_over_cli_wall"] = best["app_s"] / best["cli_wall_s"]
    best["app_over_cli_extract_median_of_rounds"] = sorted(ratios)[len(ratios) // 2]
    print(f"RESULT {n} clips of {args.model}: app {best['app_s']:.1f} s (click -> finished), "
          f"CLI extract {best['cli_extract_s']:.1f} s, CLI process {best['cli_wall_s']:.1f} s; "
          f"app / CLI extract = {best['app_over_cli_extract']:.2f}x (best of each), "
          f"median of the rounds' ratios {best['app_over_cli_extract_median_of_rounds']:.2f}x; "
          f"app / CLI process = {best['app_over_cli_wall']:.2f}x")
    if args.before:
        best["before_over_cli_extract"] = best["before_app_s"] / best["cli_extract_s"]
        best["before_over_cli_extract_median_of_rounds"] = sorted(before_ratios)[len(before_ratios) // 2]
        print(f"RESULT before ({args.before}): app {best['before_app_s']:.1f} s; before / CLI extract = "
              f"{best['before_over_cli_extract']:.2f}x (best of each), median of the rounds' ratios "
              f"{best['before_over_cli_extract_median_of_rounds']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(best, indent=2))


if __name__ == "__main__":
    main()
