"""Store benchmark: reading some clips of one layer and pooling, format 1 against format 2, in one run.

Usage (the default is the table in docs/PERFORMANCE.md, "Store reads")::

    flock /tmp/embedviz-bench.lock python bench/bench_store.py [--clips 100000] [--widths mel]
        [--reads 500 5000 20000] [--v1-rev db08bb6] [--root DIR [--build-only | --reuse]]

It builds two entries of ``--clips`` synthetic clips (random vectors, no audio) with the
layer widths of the mel baseline (``logmel`` 80, ``mfcc`` 39) or of wav2vec2-base
(``--widths w2v``: ``cnn`` 512 and 13 x 768), written as extraction writes them: one part per
batch of 8 clips, every stored pooling, the time grid of a 1 s clip in format 1. Format 1 is
the store code of ``--v1-rev`` (loaded from git, same run, same data); format 2 is this
checkout's, with its merging of parts on write. It then times reading ``--reads`` random
clips (seeded, spread over the whole entry) of one layer and one pooling, as
:func:`embedviz.store.read_layers` asks for them, warm (the process's key memo built and the
files in the OS cache, as on a running app server), best of ``--repeats``; plus the first
read of a fresh process's memo, and bytes per clip on disk. Both formats' answers are
checked to hold the same clips and the same vectors (to float16 precision).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from embedviz import store as v2  # noqa: E402

WIDTHS = {"mel": {"logmel": 80, "mfcc": 39}, "w2v": {"cnn": 512, **{str(i): 768 for i in range(13)}}}
READ_LAYER = {"mel": "mfcc", "w2v": "6"}
VECTORS = ("mean", "std", "max", "centre", "speech")
BATCH = 8
GRID_STEPS = 11  # a 1 s clip on the 0.1 s grid


def load_v1(rev: str):
    """The format-1 store module, from git (it imports only modules that still exist)."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:embedviz/store.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="store-v1-")) / "store_v1.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("store_v1", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["store_v1"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    assert module.FORMAT_VERSION == 1, f"{rev} is not format 1"
    return module


def batches(n_clips: int, widths: dict[str, int], seed: int = 0):
    """Rows of each batch of BATCH clips, as the pipeline builds them (the same for both formats)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_clips, BATCH):
        rows = []
        for c in range(start, min(n_clips, start + BATCH)):
            key = f"{rng.integers(0, 2**63):016x}{c:016x}"
            word = f"w{c % 35:02d}"
            for layer, d in widths.items():
                block = rng.standard_normal((5, d)).astype(np.float32)
                rows.append({
                    "clip_key": key, "clip_id": f"{word}/{key[:8]}_nohash_{c % 5}.wav",
                    "path": f"/data/sc35/{word}/{key[:8]}_nohash_{c % 5}.wav", "word": word,
                    "speaker": key[:8], "layer": layer, "n_frames": 49,
                    **dict(zip(VECTORS, block)),
                    "grid": rng.standard_normal(GRID_STEPS * d).astype(np.float16), "grid_steps": GRID_STEPS,
                })
        yield rows


def build(module, root: Path, n_clips: int, widths: dict[str, int]) -> tuple[object, float]:
    store = module.EmbeddingStore(root)
    entry = store.open_for_writing("bench@1", {"max_seconds": 30.0}, {"model": "bench", "layers": list(widths)})
    t = time.perf_counter()
    for rows in batches(n_clips, widths):
        entry.write_batch(rows)
    return entry, time.perf_counter() - t


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def timed(fns, repeats: int) -> list[tuple[float, object]]:
    """Best time and last result of each function, the functions interleaved in every round
    (a shared machine's load then weighs on both alike)."""
    best = [float("inf")] * len(fns)
    out: list[object] = [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            out[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return list(zip(best, out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--widths", choices=sorted(WIDTHS), default="mel")
    parser.add_argument("--reads", type=int, nargs="+", default=[500, 5000, 20000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--v1-rev", default="db08bb6", help="a commit whose embedviz/store.py is format 1")
    parser.add_argument("--root", default=None, help="folder for the two entries (default: a temporary one)")
    parser.add_argument("--build-only", action="store_true",
                        help="only build the entries in --root (setup, e.g. outside the benchmark lock)")
    parser.add_argument("--reuse", action="store_true", help="read the entries already built in --root")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    widths, layer = WIDTHS[args.widths], READ_LAYER[args.widths]
    v1 = load_v1(args.v1_rev)
    root = Path(args.root or tempfile.mkdtemp(prefix="bench-store-"))
    if args.reuse:
        e1 = v1.EmbeddingStore(root / "v1").entry("bench@1", {"max_seconds": 30.0})
        e2 = v2.EmbeddingStore(root / "v2").entry("bench@1", {"max_seconds": 30.0})
        w1 = w2 = float("nan")
    else:
        shutil.rmtree(root, ignore_errors=True)
        e1, w1 = build(v1, root / "v1", args.clips, widths)
        e2, w2 = build(v2, root / "v2", args.clips, widths)
        print(f"built {args.clips} clips x {len(widths)} layers: format 1 {w1:.1f} s, format 2 {w2:.1f} s (with merging)")
    if args.build_only:
        return
    b1, b2 = dir_bytes(root / "v1") / args.clips, dir_bytes(root / "v2") / args.clips
    n1, n2 = len(e1.parts()), len(e2.parts())
    all_keys = sorted(e2.stored_keys())
    rng = np.random.default_rng(1)
    # First read in a fresh process: each part's keys (format 1) / index (format 2) are read once.
    first_keys = list(rng.choice(all_keys, size=min(args.reads[0], len(all_keys)), replace=False))
    v1._PART_KEYS.clear()
    v2._PART_INDEX.clear()
    (c1, _), = timed([lambda: e1.read([layer], "mean", clip_keys=first_keys)], 1)
    (c2, _), = timed([lambda: e2.read([layer], "mean", clip_keys=first_keys, clip_columns=False)], 1)
    rows = []
    for n in args.reads:
        keys = list(rng.choice(all_keys, size=min(n, len(all_keys)), replace=False))
        (t1, r1), (t2, r2) = timed([lambda: e1.read([layer], "mean", clip_keys=keys)[layer],
                                    lambda: e2.read([layer], "mean", clip_keys=keys, clip_columns=False)[layer]],
                                   args.repeats)
        i1 = {k: i for i, k in enumerate(r1.clip_keys)}
        assert sorted(r1.clip_keys) == sorted(r2.clip_keys) == sorted(keys)
        np.testing.assert_allclose(r2.X, r1.X[[i1[k] for k in r2.clip_keys]], rtol=2.0**-11, atol=1e-7)
        rows.append((n, t1, t2))
    print()
    print(f"`python bench/bench_store.py --clips {args.clips} --widths {args.widths}` "
          f"({len(widths)} layers, widths {sorted(set(widths.values()))}; layer `{layer}`, pooling `mean`; "
          f"load average {os.getloadavg()[0]:.1f}):")
    print()
    print("| | format 1 | format 2 | format 1 / format 2 |")
    print("|---|---:|---:|---:|")
    print(f"| parts on disk | {n1:,} | {n2:,} | |")
    print(f"| bytes per clip | {b1 / 1000:,.1f} kB | {b2 / 1000:,.1f} kB | {b1 / b2:.1f}x |")
    if not args.reuse:
        print(f"| writing all clips (batches of {BATCH}) | {w1:.1f} s | {w2:.1f} s | {w1 / w2:.2f}x |")
    print(f"| first read of {len(first_keys):,} clips (fresh process) | {c1:.2f} s | {c2:.2f} s | {c1 / c2:.1f}x |")
    for n, t1, t2 in rows:
        print(f"| read {n:,} of {args.clips:,} clips, warm | {t1:.3f} s | {t2:.3f} s | {t1 / t2:.1f}x |")
    if args.root is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
