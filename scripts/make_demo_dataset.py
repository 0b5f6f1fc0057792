#!/usr/bin/env python3
"""Generate the bundled embedviz demo dataset with espeak-ng, deterministically.

The dataset mimics the Google Speech Commands layout::

    <out>/<word>/<speaker>_nohash_<n>.wav
    <out>/validation_list.txt
    <out>/testing_list.txt
    <out>/speakers.csv
    <out>/README.md

Every clip is 16 kHz mono PCM_16 and exactly 1.0 s long. For each (voice, word) the
script runs ``espeak-ng`` (22050 Hz output), resamples to 16 kHz with python-soxr,
trims leading/trailing silence, re-synthesises a little faster if the word does not
fit in :data:`MAX_SPEECH_S`, normalises the peak to :data:`PEAK_DBFS`, centres the
word in one second and adds a seeded noise floor at :data:`NOISE_DBFS` so that the
edges are not digitally silent.

Nothing depends on the clock or on random state outside the fixed seed, so two runs
with the same espeak-ng and libsoxr give byte-identical files. ``--check`` verifies
that by regenerating into a temporary directory and comparing with ``--out``.

Usage::

    python scripts/make_demo_dataset.py [--out DIR] [--check] [--jobs N]
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

LOGGER = logging.getLogger("make_demo_dataset")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "embedviz" / "data" / "demo"

#: The twelve Speech Commands words in the demo, in this order.
WORDS: tuple[str, ...] = (
    "yes", "no", "up", "down", "left", "right",
    "cat", "dog", "zero", "one", "two", "three",
)

ESPEAK = "espeak-ng"
ESPEAK_RATE = 22050
SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE  # exactly 1.0 s
#: Longest trimmed word allowed; longer words are re-synthesised faster.
MAX_SPEECH_S = 0.90
#: Factor by which the speed is raised per re-synthesis attempt (beyond the ratio needed).
SPEEDUP_MARGIN = 1.05
MAX_SPEEDUP_ATTEMPTS = 6
#: Frames quieter than this relative to the loudest frame count as silence.
TRIM_THRESHOLD_DB = -45.0
TRIM_FRAME_S = 0.010
TRIM_HOP_S = 0.005
#: Kept around the detected speech so soft onsets/releases are not clipped.
TRIM_MARGIN_S = 0.015
FADE_S = 0.005
PEAK_DBFS = -3.0
NOISE_DBFS = -60.0  # RMS of the noise floor
SEED = 20240521
RESAMPLE_QUALITY = "HQ"
SPLIT_FRACTION = 0.10


#: Variants with a female voice; every other variant used here is male.
FEMALE_VARIANTS = frozenset({"f1", "f2", "f3", "f4", "f5", "linda", "aunty"})


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an espeak-ng voice, a variant, a speed and a pitch."""

    language: str  # espeak-ng voice name, e.g. "en-gb-scotland"
    variant: str  # variant file under espeak-ng-data/voices/!v, e.g. "f3"
    speed: int  # words per minute (espeak-ng -s)
    pitch: int  # 0..99 (espeak-ng -p)

    @property
    def espeak_voice(self) -> str:
        """The ``-v`` argument, e.g. ``en-us+f2``."""
        return f"{self.language}+{self.variant}"

    @property
    def gender(self) -> str:
        """``"female"`` or ``"male"``, from the variant (used to balance the splits)."""
        return "female" if self.variant in FEMALE_VARIANTS else "male"

    @property
    def key(self) -> str:
        """Canonical description the speaker id is hashed from."""
        return f"{self.espeak_voice}|s{self.speed}|p{self.pitch}"

    @property
    def speaker_id(self) -> str:
        """Eight lowercase hex characters, stable for these parameters."""
        return hashlib.sha256(self.key.encode("utf-8")).hexdigest()[:8]


# 8 espeak-ng English accents x 3 variants = 24 voices, 12 male + 12 female variants,
# speeds 130..185 wpm and pitches 30..70 spread so that no two voices share all four.
VOICES: tuple[Voice, ...] = (
    Voice("en-us", "m1", 165, 45),
    Voice("en-us", "f2", 170, 55),
    Voice("en-us", "f5", 150, 60),
    Voice("en-gb", "m3", 160, 50),
    Voice("en-gb", "f1", 155, 62),
    Voice("en-gb", "m7", 175, 40),
    Voice("en-gb-scotland", "m2", 150, 45),
    Voice("en-gb-scotland", "f3", 160, 55),
    Voice("en-gb-scotland", "m6", 180, 35),
    Voice("en-gb-x-rp", "m4", 145, 50),
    Voice("en-gb-x-rp", "f4", 165, 48),
    Voice("en-gb-x-rp", "linda", 140, 58),
    Voice("en-gb-x-gbclan", "m5", 170, 52),
    Voice("en-gb-x-gbclan", "f2", 135, 65),
    Voice("en-gb-x-gbclan", "m1", 185, 30),
    Voice("en-gb-x-gbcwmd", "m3", 140, 38),
    Voice("en-gb-x-gbcwmd", "f1", 175, 50),
    Voice("en-gb-x-gbcwmd", "aunty", 160, 45),
    Voice("en-029", "m2", 155, 60),
    Voice("en-029", "f5", 180, 45),
    Voice("en-029", "f3", 130, 70),
    Voice("en-us-nyc", "m6", 160, 55),
    Voice("en-us-nyc", "f4", 145, 40),
    Voice("en-us-nyc", "m4", 175, 65),
)

#: Clips per (voice, word); file suffix n runs 0..CLIPS_PER_VOICE-1.
CLIPS_PER_VOICE = 1


# --------------------------------------------------------------------------- synthesis


def espeak_version() -> str:
    """Return ``espeak-ng --version`` without the machine-specific data path.

    E.g. ``eSpeak NG text-to-speech: 1.51`` (the ``Data at: ...`` part is dropped).
    """
    out = subprocess.run(
        [ESPEAK, "--version"], check=True, capture_output=True, text=True
    ).stdout
    return out.strip().splitlines()[0].split("Data at:")[0].strip()


def synthesise(text: str, voice: Voice, speed: int, workdir: Path) -> np.ndarray:
    """Run espeak-ng and return mono float64 samples at :data:`ESPEAK_RATE`."""
    wav = workdir / f"{voice.speaker_id}_{text}_{speed}.wav"
    cmd = [
        ESPEAK, "-v", voice.espeak_voice, "-s", str(speed), "-p", str(voice.pitch),
        "-w", str(wav), text,
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    data, rate = sf.read(wav, dtype="float64", always_2d=True)
    wav.unlink()
    if rate != ESPEAK_RATE:
        raise RuntimeError(f"espeak-ng wrote {rate} Hz, expected {ESPEAK_RATE}")
    return data.mean(axis=1)


def trim_silence(x: np.ndarray, rate: int) -> np.ndarray:
    """Cut leading and trailing silence, keeping :data:`TRIM_MARGIN_S` either side."""
    frame = int(round(TRIM_FRAME_S * rate))
    hop = int(round(TRIM_HOP_S * rate))
    if x.size < frame:
        raise RuntimeError("synthesised clip is shorter than one analysis frame")
    n_frames = 1 + (x.size - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n_frames)[:, None]
    rms = np.sqrt(np.mean(x[idx] ** 2, axis=1))
    loudest = float(rms.max())
    if loudest <= 0.0:
        raise RuntimeError("synthesised clip is silent")
    active = np.flatnonzero(rms >= loudest * 10.0 ** (TRIM_THRESHOLD_DB / 20.0))
    margin = int(round(TRIM_MARGIN_S * rate))
    start = max(0, int(active[0]) * hop - margin)
    stop = min(x.size, int(active[-1]) * hop + frame + margin)
    return x[start:stop]


def fade_edges(x: np.ndarray, rate: int) -> np.ndarray:
    """Apply raised-cosine fades of :data:`FADE_S` at both ends (avoids clicks)."""
    n = min(int(round(FADE_S * rate)), x.size // 2)
    if n == 0:
        return x
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
    y = x.copy()
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def seeded_noise(n: int, seed_text: str) -> np.ndarray:
    """Zero-mean noise with unit RMS, from PCG64's raw stream (stable across numpy).

    ``Generator`` distribution methods may change between numpy versions; the raw
    bit stream of a seeded PCG64 may not, so uniform values are built from it directly
    and four are summed (Irwin-Hall) for a near-Gaussian shape.
    """
    seed = int.from_bytes(hashlib.sha256(seed_text.encode("utf-8")).digest()[:8], "little")
    raw = np.random.PCG64(seed).random_raw(4 * n)
    uniform = (raw >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)
    summed = uniform.reshape(n, 4).sum(axis=1) - 2.0  # variance 4/12
    return summed * np.sqrt(3.0)


def make_clip(word: str, voice: Voice, take: int, workdir: Path) -> np.ndarray:
    """Synthesise one 1.0 s, 16 kHz clip of ``word`` as int16 samples."""
    speed = voice.speed + 10 * take  # later takes (if any) are a little faster
    for attempt in range(MAX_SPEEDUP_ATTEMPTS + 1):
        raw = synthesise(word, voice, speed, workdir)
        x = soxr.resample(raw, ESPEAK_RATE, SAMPLE_RATE, quality=RESAMPLE_QUALITY)
        x = trim_silence(np.asarray(x, dtype=np.float64), SAMPLE_RATE)
        duration = x.size / SAMPLE_RATE
        if duration <= MAX_SPEECH_S:
            break
        if attempt == MAX_SPEEDUP_ATTEMPTS:
            raise RuntimeError(
                f"{word!r} by {voice.key} still {duration:.3f} s at {speed} wpm"
            )
        new_speed = int(np.ceil(speed * duration / MAX_SPEECH_S * SPEEDUP_MARGIN))
        LOGGER.info(
            "%s %s: %.3f s at %d wpm, re-synthesising at %d wpm",
            word, voice.key, duration, speed, new_speed,
        )
        speed = new_speed
    x = fade_edges(x, SAMPLE_RATE)
    x *= 10.0 ** (PEAK_DBFS / 20.0) / np.max(np.abs(x))
    clip = np.zeros(CLIP_SAMPLES, dtype=np.float64)
    offset = (CLIP_SAMPLES - x.size) // 2
    clip[offset : offset + x.size] = x
    noise_seed = f"{SEED}:{voice.speaker_id}:{word}:{take}"
    clip += seeded_noise(CLIP_SAMPLES, noise_seed) * 10.0 ** (NOISE_DBFS / 20.0)
    return np.clip(np.round(clip * 32767.0), -32768, 32767).astype(np.int16)


# --------------------------------------------------------------------------- dataset


def assign_splits(voices: tuple[Voice, ...]) -> tuple[list[str], list[str]]:
    """Pick whole speakers for validation and testing, deterministically.

    Speakers are ordered by a salted hash of their id and dealt out alternately by
    gender (female, male, female, ...), so each split holds ~10% of the speakers and
    both genders; the first picks go to validation, the next to testing, the rest are
    training. Returns the sorted speaker ids of (validation, testing).
    """
    n_split = max(1, int(round(SPLIT_FRACTION * len(voices))))

    def rank(voice: Voice) -> str:
        return hashlib.sha256(f"split:{SEED}:{voice.speaker_id}".encode()).hexdigest()

    queues = {
        gender: sorted((v for v in voices if v.gender == gender), key=rank)
        for gender in ("female", "male")
    }
    dealt: list[str] = []
    while len(dealt) < 2 * n_split and any(queues.values()):
        for gender in ("female", "male"):
            if queues[gender] and len(dealt) < 2 * n_split:
                dealt.append(queues[gender].pop(0).speaker_id)
    return sorted(dealt[:n_split]), sorted(dealt[n_split:])


def write_readme(out: Path, version: str, validation: list[str], testing: list[str]) -> None:
    """Write README.md describing how the dataset was made."""
    rows = "\n".join(
        f"| `{v.speaker_id}` | `{v.language}` | `{v.variant}` | {v.gender} "
        f"| {v.speed} | {v.pitch} |"
        for v in VOICES
    )
    n_clips = len(WORDS) * len(VOICES) * CLIPS_PER_VOICE
    text = f"""# embedviz demo dataset

Synthetic spoken words in the Google Speech Commands layout
(`<word>/<speaker>_nohash_<n>.wav`), made by `scripts/make_demo_dataset.py`.
Do not edit by hand: re-run the script, and check with
`python scripts/make_demo_dataset.py --check`.

- Words ({len(WORDS)}): {", ".join(WORDS)}
- Voices: {len(VOICES)} synthetic speakers x {CLIPS_PER_VOICE} clip per word = {n_clips} clips
- Synthesiser: `{version}` (formant synthesis, no MBROLA)
- Format: 16 kHz, mono, PCM_16 WAV, exactly 1.0 s ({CLIP_SAMPLES} samples) per clip

## How each clip is made

1. `espeak-ng -v <voice>+<variant> -s <speed> -p <pitch> -w out.wav <word>` (22050 Hz).
2. Resampled to 16 kHz with python-soxr (`{RESAMPLE_QUALITY}` quality).
3. Leading/trailing silence trimmed: 10 ms frames, {TRIM_THRESHOLD_DB:g} dB below the
   loudest frame, {TRIM_MARGIN_S * 1000:g} ms margin kept, {FADE_S * 1000:g} ms fades.
4. A word longer than {MAX_SPEECH_S:g} s is re-synthesised at a higher speed (never cut).
5. Peak normalised to {PEAK_DBFS:g} dBFS and centred in 1.0 s.
6. A noise floor at {NOISE_DBFS:g} dBFS RMS is added, seeded from
   `{SEED}:<speaker>:<word>:<n>` (SHA-256 -> PCG64 raw stream), so clips are not
   digitally silent at the edges and output stays byte-identical between runs.

Speaker ids are the first 8 hex characters of SHA-256 of
`<voice>+<variant>|s<speed>|p<pitch>`.

## Speakers

Speed is in words per minute, pitch on espeak-ng's 0-99 scale. Also in `speakers.csv`.

| speaker | espeak-ng voice | variant | gender | speed | pitch |
|---|---|---|---|---|---|
{rows}

## Splits

Whole speakers are assigned to splits: speakers ordered by SHA-256 of
`split:{SEED}:<speaker>` are dealt out alternately by gender, so each split has
~{SPLIT_FRACTION:.0%} of the speakers and both female and male variants.

- `validation_list.txt`: {", ".join(f"`{s}`" for s in validation)}
- `testing_list.txt`: {", ".join(f"`{s}`" for s in testing)}
- training: every other speaker (not listed, as in Speech Commands).

## Provenance

Every clip is synthesised by espeak-ng for embedviz; the dataset contains no
recordings of real people.
"""
    (out / "README.md").write_text(text, encoding="utf-8")


def generate(out: Path, jobs: int) -> list[Path]:
    """Generate the full dataset into ``out`` (replacing it); return files written."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ids = [v.speaker_id for v in VOICES]
    if len(set(ids)) != len(ids):
        raise RuntimeError("two voices hash to the same speaker id")
    version = espeak_version()
    tasks = [(w, v, n) for w in WORDS for v in VOICES for n in range(CLIPS_PER_VOICE)]
    for word in WORDS:
        (out / word).mkdir()

    with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
        workdir = Path(tmp)

        def run(task: tuple[str, Voice, int]) -> Path:
            word, voice, take = task
            samples = make_clip(word, voice, take, workdir)
            path = out / word / f"{voice.speaker_id}_nohash_{take}.wav"
            sf.write(path, samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
            return path

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            written = list(pool.map(run, tasks))

    validation, testing = assign_splits(VOICES)
    for name, speakers in (("validation_list.txt", validation), ("testing_list.txt", testing)):
        wanted = set(speakers)
        lines = sorted(
            f"{p.parent.name}/{p.name}" for p in written if p.name.split("_")[0] in wanted
        )
        (out / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    csv = "speaker,language,variant,gender,speed,pitch\n" + "".join(
        f"{v.speaker_id},{v.language},{v.variant},{v.gender},{v.speed},{v.pitch}\n"
        for v in VOICES
    )
    (out / "speakers.csv").write_text(csv, encoding="utf-8")
    write_readme(out, version, validation, testing)
    return written


def relative_files(root: Path) -> set[str]:
    """All regular files under ``root`` as POSIX paths relative to it."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def compare_trees(expected: Path, actual: Path) -> list[str]:
    """Describe every difference between two directory trees (empty if identical)."""
    want, have = relative_files(expected), relative_files(actual)
    problems = [f"missing from {actual}: {p}" for p in sorted(want - have)]
    problems += [f"unexpected in {actual}: {p}" for p in sorted(have - want)]
    for rel in sorted(want & have):
        if not filecmp.cmp(expected / rel, actual / rel, shallow=False):
            problems.append(f"differs: {rel}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="dataset directory")
    parser.add_argument(
        "--check", action="store_true",
        help="regenerate into a temp dir and verify --out is byte-identical",
    )
    parser.add_argument(
        "--jobs", type=int, default=min(4, os.cpu_count() or 1),
        help="parallel espeak-ng processes",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every re-synthesis")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if shutil.which(ESPEAK) is None:
        print(f"error: {ESPEAK} not found on PATH (apt-get install espeak-ng)", file=sys.stderr)
        return 2

    start = time.perf_counter()
    if args.check:
        if not args.out.is_dir():
            print(f"error: {args.out} does not exist", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory(prefix="demo-check-") as tmp:
            fresh = Path(tmp) / "demo"
            generate(fresh, args.jobs)
            problems = compare_trees(fresh, args.out)
        elapsed = time.perf_counter() - start
        if problems:
            for line in problems:
                print(line)
            print(
                f"FAIL: {len(problems)} difference(s) ({espeak_version()}, "
                f"soxr {soxr.__version__}, numpy {np.__version__}); {elapsed:.1f} s"
            )
            return 1
        print(f"OK: {args.out} is byte-identical to a fresh build ({elapsed:.1f} s)")
        return 0

    written = generate(args.out, args.jobs)
    elapsed = time.perf_counter() - start
    size = sum((args.out / p).stat().st_size for p in relative_files(args.out))
    print(
        f"wrote {len(written)} clips, {len(WORDS)} words, {len(VOICES)} speakers to "
        f"{args.out} ({size / 1e6:.2f} MB) in {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
