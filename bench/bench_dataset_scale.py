"""Opening, listing and sampling a dataset at 21,000 and 105,000 files: the manifest index vs before.

Usage (folders from ``scripts/make_synthetic_dataset.py``)::

    flock /tmp/embedviz-bench.lock python bench/bench_dataset_scale.py \\
        [/work/data/sc35_600 /work/data/sc35_3000] [--old-rev db08bb6] [--repeats 1]

Every row runs in a fresh Python process (so "re-open" is a new process finding the index
on disk, as a restarted app server does), with imports done before the clock starts. The
old code path is ``embedviz/datasets.py`` at ``--old-rev`` (the last commit before the
index), copied into a temporary module and run against the same folder in the same run;
it read every header when the manifest was built, which the app forced on open.

Rows (times in seconds; "x" = old / new, measured in this run):

- open, no index: the first open (new: lists the folders, writes the index; old: lists
  and reads every header);
- open, index present: a new process opening again;
- ``words()``; ``sample(35 words, 100)`` and ``sample(35 words, 1000)`` without durations
  (new) / from the full manifest (old);
- durations of the 3,500 and of the 35,000 sampled clips (new only: the headers read the
  first time those clips are sampled; old: part of the open);
- ``sample(35 words, 1000)`` with durations in a new process once they are in the index;
- the content keys (the store's clip keys) of the 5,250 and the 35,000 clips of
  ``sample(35 words, 150 | 1000)`` in a new process: before = hashing every file
  (``hashing.content_key`` per path, what each new process did), after = the keys
  remembered by ``key_cache.content_keys`` (and its first run: hashed, then remembered). Before runs first, so every row reads the files from the page cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOTS = ["/work/data/sc35_600", "/work/data/sc35_3000"]
DEFAULT_OLD_REV = "db08bb6"  # datasets.py before the manifest index


def _child(impl: str, root: str, step: str, old_module: str | None) -> dict[str, float]:
    """One measurement in this (fresh) process; returns named timings."""
    sys.path.insert(0, str(REPO))
    if impl == "old":
        import importlib.util

        spec = importlib.util.spec_from_file_location("old_datasets", old_module)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules["old_datasets"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        import embedviz.datasets as module
    # What a running app has imported and warmed already is done before the clock.
    import pandas as pd
    import pyarrow.parquet  # noqa: F401
    import soundfile  # noqa: F401

    pd.DataFrame({"a": ["x", "y"], "b": ["u", "u"]}).groupby("a").agg(n=("b", "size"), k=("b", "nunique"))

    out: dict[str, float] = {}
    t = time.perf_counter()
    ds = module.SpeechCommandsDataset(root)
    if impl == "old":
        ds.manifest()  # what ui.cached.dataset() forced on open
    out["open"] = time.perf_counter() - t
    words = ds.word_names
    if step == "open":
        t = time.perf_counter()
        table = ds.words()
        out["words"] = time.perf_counter() - t
        out["clips"] = float(table["clips"].sum())
        for n in (100, 1000):
            t = time.perf_counter()
            picked = ds.sample(words, n, seed=0) if impl == "old" else ds.sample(words, n, seed=0, durations=False)
            out[f"sample_{n}"] = time.perf_counter() - t
            out[f"sampled_{n}"] = float(len(picked))
    elif step == "durations":  # new only: headers of sampled clips, none in the index yet
        for n in (100, 1000):
            picked = ds.sample(words, n, seed=0, durations=False)
            t = time.perf_counter()
            filled = ds.with_durations(picked)
            out[f"durations_{n}"] = time.perf_counter() - t
            out[f"read_{n}"] = float(filled["duration"].notna().sum())
    elif step in ("keys_old", "keys_new"):
        from embedviz.hashing import content_key
        from embedviz.key_cache import content_keys

        for n in (150, 1000):
            paths = ds.sample(words, n, seed=0, durations=False)["path"].tolist()
            t = time.perf_counter()
            keys = [content_key(p) for p in paths] if step == "keys_old" else content_keys(paths)
            out[f"keys_{n}"] = time.perf_counter() - t
            out[f"keyed_{n}"] = float(len(keys))
    elif step == "warm_sample":
        t = time.perf_counter()
        picked = ds.sample(words, 1000, seed=0)
        out["sample_1000_durations"] = time.perf_counter() - t
        out["known"] = float(picked["duration"].notna().sum())
    return out


def _run(impl: str, root: str, step: str, old_module: str, index_dir: str) -> dict[str, float]:
    env = {**os.environ, "EMBEDVIZ_MANIFEST_CACHE": index_dir}
    cmd = [sys.executable, __file__, "--child", impl, root, step, old_module]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("roots", nargs="*", default=DEFAULT_ROOTS)
    parser.add_argument("--old-rev", default=DEFAULT_OLD_REV)
    parser.add_argument("--child", nargs=4, metavar=("IMPL", "ROOT", "STEP", "OLD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, root, step, old_module = args.child
        print(json.dumps(_child(impl, root, step, old_module)))
        return

    work = Path(tempfile.mkdtemp(prefix="bench-dataset-scale-"))
    try:
        old_module = work / "old_datasets.py"
        source = subprocess.run(["git", "show", f"{args.old_rev}:embedviz/datasets.py"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout
        old_module.write_text(source)
        for root in args.roots:
            print(f"\n### {root}", flush=True)
            index = work / f"index-{Path(root).name}"
            if index.exists():
                shutil.rmtree(index)
            rows: dict[str, dict[str, float | None]] = {}
            # New: first open builds the index; then a new process re-opens it.
            first = _run("new", root, "open", str(old_module), str(index))
            rows["open, no index (first open)"] = {"new": first["open"]}
            again = _run("new", root, "open", str(old_module), str(index))
            rows["open, index present (new process)"] = {"new": again["open"]}
            for key, label in [("words", "words()"), ("sample_100", "sample(35 words, 100 each)"),
                               ("sample_1000", "sample(35 words, 1000 each)")]:
                rows[label] = {"new": again[key]}
            index_file = next(index.glob("*.parquet"))
            pristine = work / "pristine.parquet"
            shutil.copy(index_file, pristine)  # no duration read yet
            durations = _run("new", root, "durations", str(old_module), str(index))
            rows[f"durations of the {int(durations['read_100']):,} sampled clips"] = {"new": durations["durations_100"]}
            shutil.copy(pristine, index_file)
            # The 35,000 alone (a fresh index again, so none of them is known yet).
            bigger = _run("new", root, "durations", str(old_module), str(index))
            rows[f"durations of the {int(bigger['read_1000']):,} sampled clips"] = {
                "new": bigger["durations_1000"] + bigger["durations_100"]
            }
            warm = _run("new", root, "warm_sample", str(old_module), str(index))
            rows["sample(35 words, 1000 each) with durations, in the index"] = {"new": warm["sample_1000_durations"]}
            # Clip keys: the old way first (it also brings the files into the page cache).
            old_keys = _run("new", root, "keys_old", str(old_module), str(index))
            first_keys = _run("new", root, "keys_new", str(old_module), str(index))
            kept_keys = _run("new", root, "keys_new", str(old_module), str(index))
            for n in (150, 1000):
                label = f"content keys of the {int(old_keys[f'keyed_{n}']):,} sampled clips, new process"
                rows[label + ", first time (hashed, then remembered)"] = {"old": old_keys[f"keys_{n}"], "new": first_keys[f"keys_{n}"]}
                rows[label + ", keys remembered"] = {"old": old_keys[f"keys_{n}"], "new": kept_keys[f"keys_{n}"]}
            print(f"new done: {json.dumps({k: v['new'] for k, v in rows.items()})}", flush=True)
            # Old: every open reads every header (there is no index), so both opens cost the same.
            old_first = _run("old", root, "open", str(old_module), str(index))
            old_again = _run("old", root, "open", str(old_module), str(index))
            rows["open, no index (first open)"]["old"] = old_first["open"]
            rows["open, index present (new process)"]["old"] = old_again["open"]
            for key, label in [("words", "words()"), ("sample_100", "sample(35 words, 100 each)"),
                               ("sample_1000", "sample(35 words, 1000 each)")]:
                rows[label]["old"] = old_again[key]
            rows["sample(35 words, 1000 each) with durations, in the index"]["old"] = old_again["sample_1000"]
            size = index_file.stat().st_size
            print(f"{int(again['clips']):,} clips; index file {size / 1e6:.1f} MB\n")
            print("| step | before (s) | after (s) | before / after |")
            print("|---|---:|---:|---:|")
            for label, v in rows.items():
                old, new = v.get("old"), v.get("new")
                ratio = f"{old / new:.0f}x" if old is not None and new else "—"
                print(f"| {label} | {_fmt(old)} | {_fmt(new)} | {ratio} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
