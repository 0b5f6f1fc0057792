"""kill -9 of a CLI extraction mid-run, then a re-run: nothing corrupt, nothing twice."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore, read_layers

REPO = Path(__file__).resolve().parents[2]
MEL = ExtractionSettings(model="baseline:mel")


def _dataset(root: Path, words: int = 4, per_word: int = 60) -> int:
    rng = np.random.default_rng(0)
    for w in range(words):
        folder = root / f"w{w}"
        folder.mkdir(parents=True)
        for i in range(per_word):
            wave = (0.1 * rng.standard_normal(16000)).astype(np.float32)
            sf.write(folder / f"{i:08x}_nohash_0.wav", wave, 16000)
    return words * per_word


def _extract(data: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "embedviz", "extract", "--model", "baseline:mel", "--dataset", str(data),
           "--samples", "1000", "--cache", str(cache), "--batch-size", "4"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_kill_9_mid_extraction_then_rerun(tmp_path: Path) -> None:
    n = _dataset(tmp_path / "data")
    cache = tmp_path / "store"
    proc = _extract(tmp_path / "data", cache)
    deadline = time.monotonic() + 240
    parts: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        parts = list(cache.glob("*/part-*.parquet"))
        if len(parts) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the extraction ended before it could be killed:\n{proc.communicate()[0]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    store = EmbeddingStore(cache)
    entry = store.entry_for(MEL)
    done = entry.stored_keys()
    assert 0 < len(done) < n, "killed mid-run: some clips finished, not all"
    for part in entry.parts():  # every part left behind is complete and readable
        pq.read_table(part)

    rerun = _extract(tmp_path / "data", cache)
    out = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, out
    computed, cached = map(int, re.search(r"(\d+) computed, (\d+) already stored", out).groups())
    assert cached == len(done) and computed == n - len(done), "finished clips are not recomputed"
    table = pa.concat_tables([pq.read_table(p, columns=["clip_key", "layer"]) for p in entry.parts()])
    rows = table.to_pandas()
    assert not rows.duplicated().any(), "no (clip, layer) row stored twice"
    assert rows["clip_key"].nunique() == n
    got = read_layers(store, MEL, ["mfcc"], "mean")["mfcc"]
    assert got.X.shape[0] == n and np.isfinite(got.X).all()
