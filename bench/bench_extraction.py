"""Extraction benchmark: embedviz against a naive loop, in one run, written to docs/PERFORMANCE.md.

Usage (one command, under 10 minutes on the shared 2-core CPU)::

    flock /tmp/embedviz-bench.lock python bench/bench_extraction.py [--clips 16] [--rounds 2] [--no-app] [--no-write]

For each model (random-init wav2vec2-base, Whisper base padded and crop, DAC 16 kHz) it
times, on the same demo clips and interleaved over ``--rounds`` rounds (best kept, as
the CPU is shared), with every model already built (building it is a one-off that both
pay alike, reported on its own):

* the **naive loop**: one clip at a time through the HF feature extractor and the model,
  every hidden state (for DAC: every encoder block, the quantizer's outputs and the
  codebook vectors, the same stages embedviz stores), mean-pooled, nothing stored;
* **embedviz** ``extract`` (decode, forward, all poolings, Parquet writes) into a fresh store,
  with the family's default batch size;
* the **forward pass alone** (``Extractor.extract``) at batch 1 and at the family's batch
  size: what the model costs without decoding, pooling or writing.

Each is given as wall seconds per clip and as process CPU seconds per clip (all threads):
the CPU is shared with other work, and CPU time is far less disturbed by it.

It also reports the machine's fp32 matmul GFLOP/s and the fraction embedviz reaches on
wav2vec2-base (FLOPs counted by ``torch.utils.flop_counter``), a fully cached re-run against
the first run, Extract in the app against the CLI (``bench/bench_app_extract.py``), bytes
per clip in the store and the process's peak RSS. Every figure is a ratio measured in this
run. The section "Extraction" of docs/PERFORMANCE.md is replaced.
"""

from __future__ import annotations

import argparse
import json
import subprocess
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
from embedviz.modelref import ModelRef  # noqa: E402
from embedviz.models import _random_init, load_extractor  # noqa: E402
from embedviz.settings import ExtractionSettings  # noqa: E402
from embedviz.store import EmbeddingStore  # noqa: E402

W2V = "random-init:facebook/wav2vec2-base"
WHISPER = "random-init:openai/whisper-base"
DAC = "random-init:descript/dac_16khz"


class _Timer:
    """Wall and process-CPU seconds of a block (CPU: every thread of this process)."""

    def __enter__(self) -> "_Timer":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _naive_model(name: str):
    import torch

    torch.manual_seed(0)
    return _random_init(ModelRef.parse(name), 0)


def _naive(name: str, model, paths: list[str]) -> None:
    """The naive loop over ``paths``: one clip at a time, every stage mean-pooled."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    with torch.inference_mode():
        for p in paths:
            wave = load_audio(p, 16000)
            if name == W2V:
                x = Wav2Vec2FeatureExtractor()(wave, sampling_rate=16000, return_tensors="pt").input_values
                states = list(model(x, output_hidden_states=True).hidden_states)
            elif name == WHISPER:
                x = WhisperFeatureExtractor(feature_size=80)(wave, sampling_rate=16000, return_tensors="pt")
                states = list(model(x.input_features, output_hidden_states=True).hidden_states)
            else:  # DAC: what DacModel.encode runs, with every block's output kept
                h = torch.from_numpy(wave)[None, None]
                enc, states = model.encoder, []
                h = enc.conv1(h)
                for block in enc.block:
                    h = block(h)
                    states.append(h.transpose(1, 2))
                z = enc.conv2(enc.snake1(h))
                quantized, codes, latents, _, _ = model.quantizer(z)
                states += [z.transpose(1, 2), quantized.transpose(1, 2), latents.transpose(1, 2)]
                states += [q.codebook(codes[:, i]) for i, q in enumerate(model.quantizer.quantizers)]
            [s[0].mean(0).numpy() for s in states]


def _embedviz(extractor, name: str, manifest, mode: str, root: Path) -> tuple[_Timer, EmbeddingStore]:
    settings = ExtractionSettings(model=name, whisper_mode=mode)
    store = EmbeddingStore(root)
    with _Timer() as t:
        report = pipeline.extract(manifest, settings, store=store, extractor=extractor)
    assert report.computed == len(manifest), report.summary()
    return t, store


def _forward(extractor, waves, batch: int) -> _Timer:
    with _Timer() as t:
        for i in range(0, len(waves), batch):
            extractor.extract(waves[i : i + batch])
    return t


def _flops_per_clip(name: str) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    # The counter runs on the bare HF model: embedviz's forward runs under inference_mode,
    # where weight-norm parametrizations and the counter's dispatch mode do not mix.
    model = _random_init(ModelRef.parse(name), 0)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 16000) * 0.1, output_hidden_states=True)
    return float(counter.get_total_flops())


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.parquet"))


def _app_vs_cli(samples: int, words: str) -> dict | None:
    out = Path(tempfile.mkdtemp()) / "app.json"
    cmd = [sys.executable, str(REPO / "bench" / "bench_app_extract.py"), "--model", W2V, "--words", words,
           "--samples", str(samples), "--json", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        print("bench_app_extract failed:", done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(out.read_text())


SWEEP = [  # (model, whisper mode, clips, malloc tuned, intra-op threads, batch sizes)
    (DAC, "padded", 8, False, 2, "1,4,8"), (DAC, "padded", 8, True, 2, "1,4,8"),
    (W2V, "padded", 16, False, 2, "1,16"), (W2V, "padded", 16, True, 2, "1,16"), (W2V, "padded", 16, False, 1, "1,16"),
    (WHISPER, "crop", 16, False, 2, "1,8,16"), (WHISPER, "crop", 16, False, 1, "1,8,16"),
]


def _sweep_child(name: str, mode: str, n: int, tuned: bool, threads: int, sizes: list[int]) -> dict[int, float]:
    """Process CPU s/clip of the forward pass alone per batch size (best of 2), in this process."""
    import torch

    if tuned:
        pipeline.tune_glibc_malloc()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(16000).astype(np.float32) * 0.1 for _ in range(n)]
    ex = load_extractor(name, device="cpu", whisper_mode=mode)
    ex.extract(waves[:2])
    best: dict[int, float] = {}
    for _ in range(2):
        for b in sizes:
            best[b] = min(best.get(b, 1e9), _forward(ex, waves, b).cpu / n)
    return best


def sweep() -> str:
    """Batch size, glibc malloc tuning and intra-op threads per family: one process per setting."""
    lines = ["| model | malloc tuned | threads | CPU s/clip by batch size |", "|---|---|---:|---|"]
    for name, mode, n, tuned, threads, sizes in SWEEP:
        out = subprocess.run([sys.executable, __file__, "--sweep-child", json.dumps([name, mode, n, tuned, threads, sizes])],
                             capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        cells = ", ".join(f"{b}: {v:.3f}" for b, v in result.items())
        lines.append(f"| {name.split(':')[-1]} ({mode}) | {'yes' if tuned else 'no'} | {threads} | {cells} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def merge_cost(dataset: str | None, clips: int, rounds: int) -> str:
    """What merging small parts (``StoreEntry.compact``, run by every ``write_batch``) costs the writes.

    baseline:mel (fast: writing is a large share of its time) on ``clips`` clips, interleaved
    over ``rounds``: ``extract`` into a fresh store as shipped, and with ``compact`` a no-op
    (parts stay one per batch). ``compact`` is timed where it runs (the writer thread: wall
    and that thread's CPU). Then one layer of every clip is read back from each store.
    Returns a Markdown table and notes.
    """
    from embedviz.store import StoreEntry, read_layers

    logging.basicConfig(level=logging.WARNING)
    ds = open_dataset(dataset)
    manifest = ds.sample(ds.word_names, -(-clips // len(ds.word_names)), seed=0).iloc[:clips]
    pipeline._with_keys(manifest)  # content keys memoised and the files in the page cache, for both alike
    mel = ExtractionSettings(model="baseline:mel")
    original = StoreEntry.compact
    spent = {"wall": 0.0, "cpu": 0.0, "calls": 0, "merged": 0}

    def timed(self, *, force: bool = False) -> int:
        w, c = time.perf_counter(), time.thread_time()
        try:
            merged = original(self, force=force)
            spent["merged"] += merged
            return merged
        finally:
            spent["wall"] += time.perf_counter() - w
            spent["cpu"] += time.thread_time() - c
            spent["calls"] += 1

    rows: dict[str, dict[str, float]] = {}
    for r in range(rounds):
        for mode in ("merging", "no merging"):
            StoreEntry.compact = timed if mode == "merging" else (lambda self, *, force=False: 0)  # type: ignore[method-assign]
            for k in spent:
                spent[k] = 0
            try:
                with tempfile.TemporaryDirectory(prefix="embedviz-merge-") as tmp:
                    store = EmbeddingStore(Path(tmp))
                    with _Timer() as t:
                        report = pipeline.extract(manifest, mel, store=store, device="cpu")
                    entry = store.entry_for(mel)
                    parts = len(entry.parts())
                    size = _dir_bytes(Path(tmp))
                    with _Timer() as read:
                        read_layers(store, mel, ["mfcc"], "mean", manifest=manifest)
            finally:
                StoreEntry.compact = original  # type: ignore[method-assign]
            assert report.computed == len(manifest), report.summary()
            got = {"wall": t.wall, "cpu": t.cpu, "compact_wall": spent["wall"], "compact_cpu": spent["cpu"],
                   "calls": spent["calls"], "merged": spent["merged"], "parts": parts, "bytes": size,
                   "read": read.wall}
            print(f"round {r} {mode}: " + ", ".join(f"{k}={v:.2f}" for k, v in got.items()), flush=True)
            if mode not in rows or got["wall"] < rows[mode]["wall"]:
                rows[mode] = got
    on, off = rows["merging"], rows["no merging"]
    n = len(manifest)
    lines = [
        f"| store | extract s (wall / CPU) | clips/s | in `compact` s (wall / writer thread's CPU) | parts merged away | parts at the end | "
        "MB | read one layer of every clip, s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, row in rows.items():
        lines.append(f"| {mode} | {row['wall']:.1f} / {row['cpu']:.1f} | {n / row['wall']:.0f} | "
                     f"{row['compact_wall']:.1f} / {row['compact_cpu']:.1f} | {int(row['merged'])} | "
                     f"{int(row['parts'])} | {row['bytes'] / 1e6:.1f} | {row['read']:.2f} |")
    lines += [
        "",
        f"{n} clips of `{ds.root}`, baseline:mel, batch {pipeline.batch_size_for(pipeline._family('baseline:mel'))}, best of {rounds} "
        f"interleaved rounds. Merging costs {on['wall'] / off['wall']:.2f}x the extraction's wall time "
        f"({on['compact_wall'] / on['wall']:.0%} of it inside `compact`, on the writer thread; the writer "
        f"thread's CPU leaves out pyarrow's own threads) and {on['cpu'] / off['cpu']:.2f}x its process CPU, and reading "
        f"one layer back is {off['read'] / max(on['read'], 1e-9):.1f}x faster from the merged store.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--padded-clips", type=int, default=4, help="clips for Whisper padded (30 s window each)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--app-samples", type=int, default=6, help="clips per word (4 words) for app against CLI")
    parser.add_argument("--no-app", action="store_true", help="skip app against CLI (needs Chromium)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/PERFORMANCE.md alone")
    parser.add_argument("--sweep", action="store_true",
                        help="only print the batch size / malloc / threads table (process CPU s/clip of the forward)")
    parser.add_argument("--sweep-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--merge-cost", type=int, default=0, metavar="CLIPS",
                        help="only print what merging parts costs the writes of baseline:mel on CLIPS clips")
    parser.add_argument("--merge-dataset", default=None, help="dataset root for --merge-cost (default: the demo)")
    args = parser.parse_args()
    if args.merge_cost:
        print(merge_cost(args.merge_dataset, args.merge_cost, args.rounds))
        return
    if args.sweep_child:
        name, mode, n, tuned, threads, sizes = json.loads(args.sweep_child)
        print(json.dumps(_sweep_child(name, mode, n, tuned, threads, [int(b) for b in sizes.split(",")])))
        return
    if args.sweep:
        print(sweep())
        return
    logging.basicConfig(level=logging.WARNING)
    import torch
    from transformers import WhisperConfig

    from embedviz.catalogue import embedded_config
    from embedviz.extractors.whisper import estimate_seconds_per_clip

    t_start = time.perf_counter()
    ds = open_dataset()
    manifest = ds.sample(ds.word_names, -(-args.clips // len(ds.word_names)), seed=0).iloc[: args.clips]
    paths = [str(p) for p in manifest["path"]]
    waves = [load_audio(p, 16000) for p in paths]
    gflops = pipeline.matmul_gflops(n=2048, repeats=5)
    probe = pipeline.matmul_gflops()  # the app's probe (1024x1024), which the Whisper ETAs scale
    cases = [  # (label, model, whisper mode, clips)
        ("wav2vec2-base (random init)", W2V, "padded", args.clips),
        ("Whisper base, padded", WHISPER, "padded", args.padded_clips),
        ("Whisper base, crop", WHISPER, "crop", args.clips),
        ("DAC 16 kHz (random init)", DAC, "padded", args.clips),
    ]
    extractors, naive_models, load_s, batch = {}, {}, {}, {}
    for label, name, mode, _ in cases:
        with _Timer() as t:
            extractors[label] = load_extractor(name, device="cpu", whisper_mode=mode)
        load_s[label] = t.wall
        ex = extractors[label]
        batch[label] = ex.batch_size_hint or pipeline.batch_size_for(ex.info.family)
        if mode == "padded":
            naive_models[label] = _naive_model(name)
        extractors[label].extract(waves[:1])  # first-call warm-up, for every measurement alike
    best: dict[tuple[str, str], tuple[float, float]] = {}

    def keep(label: str, what: str, t: _Timer, n: int) -> None:
        w, c = best.get((label, what), (1e9, 1e9))
        best[(label, what)] = (min(w, t.wall / n), min(c, t.cpu / n))

    stores: dict[str, EmbeddingStore] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):  # rounds interleave all cases, so load from others hits all alike
            for label, name, mode, n in cases:
                ex = extractors[label]
                if label in naive_models:
                    with _Timer() as t:
                        _naive(name, naive_models[label], paths[:n])
                    keep(label, "naive", t, n)
                t, store = _embedviz(ex, name, manifest.iloc[:n], mode, Path(tmp) / f"{label}-{r}")
                keep(label, "embedviz", t, n)
                stores[label] = store
                keep(label, "forward b1", _forward(ex, waves[:n], 1), n)
                if batch[label] > 1:
                    keep(label, "forward bN", _forward(ex, waves[:n], batch[label]), n)
                print(f"round {r}: {label}: done ({time.perf_counter() - t_start:.0f} s)", flush=True)
        w2v_store = stores[cases[0][0]]
        with _Timer() as cached:
            hit = pipeline.extract(manifest, ExtractionSettings(model=W2V), store=w2v_store)
        assert hit.computed == 0
        w2v_bytes = _dir_bytes(w2v_store.root) / args.clips
    for ex in extractors.values():
        ex.close()
    naive_models.clear()
    flops = _flops_per_clip(W2V)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    app = None if args.no_app else _app_vs_cli(args.app_samples, "yes,no,up,down")
    total_s = time.perf_counter() - t_start

    command = (f"flock /tmp/embedviz-bench.lock python bench/bench_extraction.py --clips {args.clips} "
               f"--padded-clips {args.padded_clips} --rounds {args.rounds}"
               + (f" --app-samples {args.app_samples}" if not args.no_app else " --no-app"))
    lines = [
        "## Extraction",
        "",
        f"Measured by `{command}` ({total_s:.0f} s, torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op threads, 2-core CPU shared with other work). Seconds per "
        "1 s demo clip, best of the interleaved rounds, as **wall / process CPU** (CPU: all threads; far "
        "less disturbed by other load than wall time). Every model is built before the clock starts "
        "(building it is a one-off both pay alike, in the last column). The naive loop is one clip at a "
        "time through the HF feature extractor and the model, every stage mean-pooled, nothing stored. "
        "embedviz is `extract` with the family's batch size (`FamilySpec.preferred_batch_size`): decoding, "
        "all poolings and the Parquet writes included. *forward* is `Extractor.extract` alone.",
        "",
        "| model | batch | naive | embedviz | naive / embedviz (wall, CPU) | forward, batch 1 | forward, batch N | model build s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(label: str, what: str) -> str:
        v = best.get((label, what))
        return f"{v[0]:.3f} / {v[1]:.3f}" if v else "-"

    for label, _, mode, _ in cases:
        e, nv = best[(label, "embedviz")], best.get((label, "naive"))
        ratio = f"**{nv[0] / e[0]:.2f}x**, {nv[1] / e[1]:.2f}x" if nv else "-"
        lines.append(f"| {label} | {batch[label]} | {cell(label, 'naive')} | {cell(label, 'embedviz')} | {ratio} | "
                     f"{cell(label, 'forward b1')} | {cell(label, 'forward bN')} | {load_s[label]:.1f} |")
    pad, crop = best[(cases[1][0], "embedviz")], best[(cases[2][0], "embedviz")]
    w2v = best[(cases[0][0], "embedviz")]
    w2v_fwd = best.get((cases[0][0], "forward bN"), best[(cases[0][0], "forward b1")])
    achieved, fwd_rate = flops / w2v[0] / 1e9, flops / w2v_fwd[0] / 1e9
    _, kwargs = embedded_config(WHISPER.split(":", 1)[1])
    wcfg = WhisperConfig(**kwargs)
    eff = {m: estimate_seconds_per_clip(wcfg, m, 1.0, probe) / best[(cases[i][0], "embedviz")][0]
           for i, m in ((1, "padded"), (2, "crop"))}
    first = load_s[cases[0][0]] + w2v[0] * args.clips
    lines += [
        "",
        f"- Whisper base crop against padded (embedviz, per clip): **{pad[0] / crop[0]:.1f}x** faster "
        f"(CPU time: {pad[1] / crop[1]:.1f}x). By `whisper.estimate_seconds_per_clip`'s FLOP count the "
        f"encoder runs at {eff['padded']:.2f}x (padded) and {eff['crop']:.2f}x (crop) the app's 1024x1024 "
        f"matmul probe ({probe:.1f} GFLOP/s here); the app's ETAs scale the probe by "
        "`whisper.ETA_RATE_FACTOR`.",
        f"- fp32 matmul on this machine (2048x2048, best of 5): {gflops:.1f} GFLOP/s. wav2vec2-base costs "
        f"{flops / 1e9:.1f} GFLOP per 1 s clip (torch.utils.flop_counter): embedviz end to end reaches "
        f"{achieved:.1f} GFLOP/s = **{achieved / gflops:.0%}** of the matmul rate; the forward pass alone at "
        f"batch {batch[cases[0][0]]} {fwd_rate:.1f} GFLOP/s = {fwd_rate / gflops:.0%}.",
        f"- Fully cached re-run of the wav2vec2-base extraction: {cached.wall:.2f} s for {args.clips} clips, "
        f"**{first / cached.wall:.0f}x** faster than the first run ({first:.1f} s with the model build).",
    ]
    if app:
        lines.append(
            f"- Extract in the app (headless Chromium, fresh server and store, click to \"Extraction finished.\") "
            f"against the CLI, {app['clips']:.0f} clips of wav2vec2-base: app {app['app_s']:.1f} s, "
            f"`extract` in the CLI {app['cli_extract_s']:.1f} s (model load included), the whole CLI process "
            f"{app['cli_wall_s']:.1f} s: **{app['app_over_cli_extract']:.2f}x** the CLI's extraction, "
            f"{app['app_over_cli_wall']:.2f}x its process (`bench/bench_app_extract.py`).")
    lines += [
        f"- Store: {w2v_bytes / 1000:.0f} kB per clip for wav2vec2-base (every stored pooling in float16, no time grid; store format {__import__('embedviz.store').store.FORMAT_VERSION}).",
        f"- Peak RSS of the benchmark process (all four models built at once): {peak_mb:.0f} MB.",
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
            notes = ""
            marker = "### Extraction notes"
            if marker in rest:  # hand-written notes under the table survive a re-run
                notes = rest[rest.index(marker):rest.find("\n## ") if "\n## " in rest else len(rest)]
            old = head + text + ("\n" + notes.rstrip("\n") + "\n\n" if notes else "\n") + tail.lstrip("\n")
        else:
            old = old.rstrip("\n") + "\n\n" + text
        doc.write_text(old)


if __name__ == "__main__":
    main()
