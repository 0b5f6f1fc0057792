#!/usr/bin/env python3
"""Generate a full-size synthetic Speech Commands folder (35 words, N clips per word), offline.

The real Speech Commands v0.02 has 105,829 clips of 35 words from 2,618 speakers. This
script builds a folder of the same layout and scale without any download, for scale
tests and benchmarks::

    <out>/<word>/<speaker>_nohash_<n>.wav      16 kHz mono PCM_16, 1.0 s
    <out>/validation_list.txt, <out>/testing_list.txt   (~10% of the speakers each)

How: every word is synthesised once per espeak-ng voice of the bundled demo (24 voices,
see ``make_demo_dataset.py``). Each of ``--speakers`` synthetic speakers is one of those
voices with its own speed/pitch factor (a soxr resample by 0.88..1.12), level and
background-noise level; a clip is its speaker's rendition of the word at a random onset,
with fresh noise, so no two files are identical (the store keys clips by content).
Everything is seeded: the same arguments give the same folder.

Usage::

    python scripts/make_synthetic_dataset.py --out /data/sc35 --per-word 600 [--speakers 2618]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_demo_dataset import (  # noqa: E402
    ESPEAK_RATE,
    SAMPLE_RATE,
    VOICES,
    fade_edges,
    synthesise,
    trim_silence,
)

LOGGER = logging.getLogger("make_synthetic_dataset")

#: The 35 words of Speech Commands v0.02.
WORDS: tuple[str, ...] = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward",
    "four", "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on",
    "one", "right", "seven", "sheila", "six", "stop", "three", "tree", "two", "up",
    "visual", "wow", "yes", "zero",
)
CLIP = SAMPLE_RATE
MAX_SPEECH = int(0.95 * SAMPLE_RATE)


def _base(word: str, voice_index: int, workdir: Path) -> np.ndarray:
    voice = VOICES[voice_index]
    raw = synthesise(word, voice, voice.speed, workdir)
    x = soxr.resample(raw, ESPEAK_RATE, SAMPLE_RATE, quality="HQ")
    x = fade_edges(trim_silence(np.asarray(x, dtype=np.float64), SAMPLE_RATE), SAMPLE_RATE)
    return x / np.max(np.abs(x))


def _speaker_id(index: int, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:8]


def generate(out: Path, per_word: int, n_speakers: int, seed: int, words: tuple[str, ...]) -> int:
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(4) as pool:
        work = Path(tmp)
        keys = [(w, v) for w in words for v in range(len(VOICES))]
        bases = dict(zip(keys, pool.map(lambda k: _base(k[0], k[1], work), keys)))
    LOGGER.info("synthesised %d base renditions in %.0f s", len(bases), time.perf_counter() - t0)

    rng = np.random.default_rng(seed)
    voice_of = rng.integers(0, len(VOICES), n_speakers)
    factor = rng.uniform(0.88, 1.12, n_speakers)
    level_db = rng.uniform(-14.0, -2.0, n_speakers)
    noise_db = rng.uniform(-60.0, -32.0, n_speakers)
    ids = [_speaker_id(i, seed) for i in range(n_speakers)]
    # Resampled renditions per (word, speaker) are memoised: speakers say a word several times.
    cache: dict[tuple[str, int], np.ndarray] = {}
    written = 0
    for word in words:
        folder = out / word
        folder.mkdir(exist_ok=True)
        speakers = rng.permutation(n_speakers)
        takes: dict[int, int] = {}
        for i in range(per_word):
            s = int(speakers[i % n_speakers])
            take = takes.get(s, 0)
            takes[s] = take + 1
            key = (word, s)
            if key not in cache:
                x = soxr.resample(bases[(word, int(voice_of[s]))], SAMPLE_RATE, SAMPLE_RATE * factor[s], quality="QQ")
                cache[key] = x[:MAX_SPEECH]
            x = cache[key] * 10.0 ** (level_db[s] / 20.0)
            clip = rng.standard_normal(CLIP) * 10.0 ** ((noise_db[s] + rng.uniform(-3, 3)) / 20.0)
            onset = int(rng.integers(0, CLIP - x.size + 1))
            clip[onset : onset + x.size] += x
            pcm = np.clip(np.round(clip * 32767.0), -32768, 32767).astype(np.int16)
            sf.write(folder / f"{ids[s]}_nohash_{take}.wav", pcm, SAMPLE_RATE, subtype="PCM_16")
            written += 1
        cache.clear()
        LOGGER.info("%s: %d clips (%.0f s so far)", word, per_word, time.perf_counter() - t0)
    # Whole speakers per split, as in the real dataset (~10% each).
    order = sorted(range(n_speakers), key=lambda i: hashlib.sha256(f"split:{ids[i]}".encode()).hexdigest())
    validation = {ids[i] for i in order[: n_speakers // 10]}
    testing = {ids[i] for i in order[n_speakers // 10 : n_speakers // 5]}
    lists: dict[str, list[str]] = {"validation_list.txt": [], "testing_list.txt": []}
    for word in words:
        for f in sorted((out / word).iterdir()):
            spk = f.name.split("_nohash_", 1)[0]
            if spk in validation:
                lists["validation_list.txt"].append(f"{word}/{f.name}")
            elif spk in testing:
                lists["testing_list.txt"].append(f"{word}/{f.name}")
    for name, lines in lists.items():
        (out / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    LOGGER.info("wrote %d clips to %s in %.0f s", written, out, time.perf_counter() - t0)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-word", type=int, default=600, help="clips per word")
    parser.add_argument("--speakers", type=int, default=2618, help="synthetic speakers")
    parser.add_argument("--words", default=",".join(WORDS), help="comma-separated (default: the 35 words)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    words = tuple(w.strip() for w in args.words.split(",") if w.strip())
    if args.per_word < 1 or args.speakers < 1 or not words:
        parser.error("--per-word and --speakers must be >= 1 and --words non-empty")
    generate(args.out, args.per_word, args.speakers, args.seed, words)
    (args.out / "READY").write_text("ok\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
