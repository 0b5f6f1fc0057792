"""Extraction benchmark: embedviz against a naive loop, in one run, written to docs/PERFORMANCE.md.

Usage (one command, a few minutes on 2 CPU cores)::

    OMP_NUM_THREADS=2 python bench/bench_extraction.py [--clips 24] [--rounds 2] [--no-write]

For each model (random-init wav2vec2-base, Whisper base padded and crop, DAC 16 kHz) it
times, on the same demo clips and interleaved over ``--rounds`` rounds (best kept, as
the CPU is shared):

* the **naive loop**: one clip at a time through the HF feature extractor and the model,
  all hidden states, mean-pooled, nothing stored;
* **embedviz** ``extract`` (decode, forward, all poolings, Parquet writes) into a fresh store,
  with the family's default batch size.

It also reports the machine's fp32 matmul GFLOP/s and the fraction embedviz reaches on
wav2vec2-base (FLOPs counted by ``torch.utils.flop_counter``), a fully cached re-run against
the first run, bytes per clip in the store and the process's peak RSS. Every figure is a
ratio measured in this run. The section "Extraction" of docs/PERFORMANCE.md is replaced.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from embedviz import pipeline  # noqa: E402
from embedviz.audio import load_audio  # noqa: E402
from embedviz.datasets import open_dataset  # noqa: E402
from embedviz.models import _random_init, load_extractor  # noqa: E402
from embedviz.settings import ExtractionSettings  # noqa: E402
from embedviz.store import EmbeddingStore  # noqa: E402

W2V = "random-init:facebook/wav2vec2-base"
WHISPER = "random-init:openai/whisper-base"
DAC = "random-init:descript/dac_16khz"


def _naive(name: str, paths: list[str]) -> float:
    """Seconds for the naive loop over ``paths`` (model build excluded)."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    torch.manual_seed(0)
    model = _random_init(name, 0)
    t = time.perf_counter()
    with torch.inference_mode():
        for p in paths:
            wave = load_audio(p, 16000)
            if name == W2V:
                x = Wav2Vec2FeatureExtractor()(wave, sampling_rate=16000, return_tensors="pt").input_values
                states = model(x, output_hidden_states=True).hidden_states
            elif name == WHISPER:
                x = WhisperFeatureExtractor(feature_size=80)(wave, sampling_rate=16000, return_tensors="pt")
                states = model(x.input_features, output_hidden_states=True).hidden_states
            else:
                h = torch.from_numpy(wave)[None, None]
                enc = model.encoder
                h = enc.conv1(h)
                states = []
                for block in enc.block:
                    h = block(h)
                    states.append(h.transpose(1, 2))
            [s[0].mean(0).numpy() for s in states]
    return time.perf_counter() - t


def _embedviz(name: str, manifest, mode: str, root: Path) -> tuple[float, EmbeddingStore]:
    settings = ExtractionSettings(model=name, whisper_mode=mode)
    store = EmbeddingStore(root)
    t = time.perf_counter()
    report = pipeline.extract(manifest, settings, store=store)
    seconds = time.perf_counter() - t
    assert report.computed == len(manifest), report.summary()
    return seconds, store


def _flops_per_clip(name: str) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    # The counter runs on the bare HF model: embedviz's forward runs under inference_mode,
    # where weight-norm parametrizations and the counter's dispatch mode do not mix.
    model = _random_init(name, 0)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 16000) * 0.1, output_hidden_states=True)
    return float(counter.get_total_flops())


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.parquet"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--padded-clips", type=int, default=6, help="clips for Whisper padded (30 s window each)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/PERFORMANCE.md alone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    t_start = time.perf_counter()
    ds = open_dataset()
    manifest = ds.sample(ds.word_names, -(-args.clips // len(ds.word_names)), seed=0).iloc[: args.clips]
    paths = [str(p) for p in manifest["path"]]
    gflops = pipeline.matmul_gflops()
    cases = [  # (label, model, whisper mode, clips)
        ("wav2vec2-base (random init)", W2V, "padded", args.clips),
        ("Whisper base, padded", WHISPER, "padded", args.padded_clips),
        ("Whisper base, crop", WHISPER, "crop", args.clips),
        ("DAC 16 kHz (random init)", DAC, "padded", args.clips),
    ]
    best: dict[tuple[str, str], float] = {}
    stores: dict[str, EmbeddingStore] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):  # rounds interleave all cases, so load from others hits all alike
            for label, name, mode, n in cases:
                m = manifest.iloc[:n]
                if mode == "padded":
                    s = _naive(name, paths[:n]) / n
                    best[(label, "naive")] = min(best.get((label, "naive"), 1e9), s)
                s, store = _embedviz(name, m, mode, Path(tmp) / f"{label}-{r}")
                best[(label, "embedviz")] = min(best.get((label, "embedviz"), 1e9), s / n)
                stores[label] = store
                print(f"round {r}: {label}: done", flush=True)
        w2v_store = stores[cases[0][0]]
        t = time.perf_counter()
        hit = pipeline.extract(manifest, ExtractionSettings(model=W2V), store=w2v_store)
        cached_s = time.perf_counter() - t
        assert hit.computed == 0
        w2v_bytes = _dir_bytes(w2v_store.root) / args.clips
    flops = _flops_per_clip(W2V)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total_s = time.perf_counter() - t_start

    lines = [
        "## Extraction",
        "",
        f"Measured by `OMP_NUM_THREADS=2 python bench/bench_extraction.py --clips {args.clips} "
        f"--padded-clips {args.padded_clips} --rounds {args.rounds}` ({total_s:.0f} s, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, shared 2-core CPU). "
        "Seconds per 1 s demo clip, best of the interleaved rounds; the naive loop is one clip at a "
        "time through the HF feature extractor and the model, all hidden states, mean-pooled, "
        "nothing stored. embedviz is `extract` with the family's default batch size "
        "(`embedviz.pipeline.PREFERRED_BATCH_SIZE`): decoding, all poolings and the Parquet writes included.",
        "",
        "| model | naive s/clip | embedviz s/clip | naive / embedviz |",
        "|---|---:|---:|---:|",
    ]
    for label, _, mode, _ in cases:
        e = best[(label, "embedviz")]
        n_ = best.get((label, "naive"))
        lines.append(f"| {label} | {n_:.3f} | {e:.3f} | {n_ / e:.2f}x |" if n_ else f"| {label} | - | {e:.3f} | - |")
    pad, crop = best[(cases[1][0], "embedviz")], best[(cases[2][0], "embedviz")]
    w2v = best[(cases[0][0], "embedviz")]
    achieved = flops / w2v / 1e9
    lines += [
        "",
        f"- Whisper base crop against padded (embedviz, per clip): **{pad / crop:.1f}x** faster.",
        f"- fp32 matmul on this machine (1024x1024, best of 5): {gflops:.1f} GFLOP/s. wav2vec2-base costs "
        f"{flops / 1e9:.1f} GFLOP per 1 s clip (torch.utils.flop_counter), so embedviz reaches "
        f"{achieved:.1f} GFLOP/s end to end = **{achieved / gflops:.0%}** of the matmul rate.",
        f"- Fully cached re-run of the wav2vec2-base extraction: {cached_s:.2f} s for {args.clips} clips, "
        f"**{w2v * args.clips / cached_s:.0f}x** faster than the first run.",
        f"- Store: {w2v_bytes / 1000:.0f} kB per clip for wav2vec2-base (13 layers, all poolings).",
        f"- Peak RSS of the benchmark process: {peak_mb:.0f} MB.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        doc = REPO / "docs" / "PERFORMANCE.md"
        old = doc.read_text() if doc.exists() else "# Performance\n\n"
        if "## Extraction" in old:
            head, rest = old.split("## Extraction", 1)
            tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
            old = head + text + tail.lstrip("\n")
        else:
            old = old.rstrip("\n") + "\n\n" + text
        doc.write_text(old)


if __name__ == "__main__":
    main()
