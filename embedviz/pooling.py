"""Pooling: a layer's valid frames -> one vector per clip.

Every pooling of a forward pass is computed at extraction time and stored together, so
changing the pooling never runs a model again. Poolings users can pick:

- ``mean``, ``max``: over valid frames.
- ``meanstd``: mean and standard deviation, concatenated (2 x width).
- ``centre``: the frame in the middle of the clip.
- ``speech``: mean over frames whose waveform energy is within :data:`SPEECH_RANGE_DB`
  of the clip's loudest frame (drops leading and trailing silence).
- ``time:<seconds>``: the frame at a chosen time, from a :data:`GRID_STEP` second grid;
  times past the clip's end give its last frame. The grid takes about twice the space of
  all other poolings together, so the store keeps it only for entries that ask for it
  (:mod:`embedviz.store`, ``$EMBEDVIZ_TIME_GRID=1``).

The store keeps :data:`STORED_VECTORS` (each vector once) and the grid in float16
(:data:`STORED_DTYPE`); :func:`select` rounds the same way, so a vector computed now equals
the stored one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from embedviz.errors import ConfigError

POOLINGS = ("mean", "max", "meanstd", "centre", "speech", "time")
#: Short names for the app's controls (one per :data:`POOLINGS` kind).
POOLING_LABELS = {"mean": "mean", "max": "max", "meanstd": "mean+std", "centre": "centre", "speech": "speech", "time": "at time"}
#: Stored per (clip, layer), each once; ``meanstd`` is assembled from mean and std, and
#: ``time:`` from the grid.
STORED_VECTORS = ("mean", "std", "max", "centre", "speech")
#: Precision of stored vectors (k-NN and probe accuracy move < 0.005 against float32).
STORED_DTYPE = "float16"
GRID_STEP = 0.1
SPEECH_RANGE_DB = 30.0
_TIME_RE = re.compile(r"^time:(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class Pooling:
    """A parsed pooling name."""

    kind: str
    time_s: float = 0.0

    @property
    def name(self) -> str:
        return f"time:{self.time_s:g}" if self.kind == "time" else self.kind

    @property
    def grid_index(self) -> int:
        return int(math.floor(self.time_s / GRID_STEP + 0.5))


def parse_pooling(name: str) -> Pooling:
    """Parse ``mean`` / ``max`` / ``meanstd`` / ``centre`` / ``speech`` / ``time:<s>``."""
    name = str(name).strip().lower()
    if name in ("center",):
        name = "centre"
    if name in POOLINGS and name != "time":
        return Pooling(name)
    match = _TIME_RE.match(name)
    if match:
        t = float(match.group(1))
        if t > 600:
            raise ConfigError(f"pooling time {t:g} s is beyond any clip (max 600 s)")
        # Half-up rounding onto the grid (Python's round() would send 0.25 to 0.2).
        return Pooling("time", round(math.floor(t / GRID_STEP + 0.5) * GRID_STEP, 6))
    raise ConfigError(
        f"unknown pooling {name!r}; use one of mean, max, meanstd, centre, speech, time:<seconds> (e.g. time:0.5)"
    )


def speech_mask(waveform: np.ndarray, sample_rate: int, n_frames: int, frame_rate: float) -> np.ndarray:
    """Frames whose share of the waveform is within SPEECH_RANGE_DB of the loudest frame."""
    hop = sample_rate / frame_rate
    energies = np.empty(n_frames, dtype=np.float64)
    for i in range(n_frames):
        start = int(i * hop)
        chunk = waveform[start : max(start + 1, int((i + 1) * hop))]
        energies[i] = float(np.mean(chunk.astype(np.float64) ** 2)) if chunk.size else 0.0
    db = 10 * np.log10(energies + 1e-12)
    mask = db >= db.max() - SPEECH_RANGE_DB
    return mask


def pool_frames(
    frames: np.ndarray,
    frame_rate: float,
    waveform: np.ndarray,
    sample_rate: int,
) -> dict[str, np.ndarray]:
    """Every stored pooling of one clip's valid ``(T, D)`` frames of one layer.

    Returns ``mean``, ``std``, ``max``, ``centre``, ``speech`` (each ``(D,)`` float32) and
    ``grid`` (``(S, D)`` float16: the frame at 0, GRID_STEP, 2*GRID_STEP, ... seconds).
    """
    if frames.ndim != 2 or frames.shape[0] < 1:
        raise ValueError(f"expected (T>=1, D) frames, got shape {frames.shape}")
    frames64 = frames.astype(np.float64)
    n = frames.shape[0]
    mask = speech_mask(waveform, sample_rate, n, frame_rate)
    duration = waveform.shape[0] / sample_rate
    n_steps = int(math.floor(duration / GRID_STEP + 1e-9)) + 1
    grid_idx = np.minimum((np.arange(n_steps) * GRID_STEP * frame_rate).astype(int), n - 1)
    return {
        "mean": frames64.mean(axis=0).astype(np.float32),
        "std": frames64.std(axis=0).astype(np.float32),
        "max": frames.max(axis=0).astype(np.float32),
        "centre": frames[n // 2].astype(np.float32),
        "speech": frames64[mask].mean(axis=0).astype(np.float32),
        "grid": frames[grid_idx].astype(np.float16),
    }


def _as_stored(vector: np.ndarray) -> np.ndarray:
    """``vector`` at the store's precision, as float32 (values beyond float16 stay float32, as stored)."""
    v = np.asarray(vector, dtype=np.float32)
    finite = v[np.isfinite(v)]
    if finite.size and float(np.abs(finite).max()) > float(np.finfo(STORED_DTYPE).max):
        return v
    return v.astype(STORED_DTYPE).astype(np.float32)


def select(stored: dict[str, np.ndarray], pooling: Pooling | str) -> np.ndarray:
    """The vector of ``pooling`` from one clip's :func:`pool_frames` output, as the store returns it."""
    p = parse_pooling(pooling) if isinstance(pooling, str) else pooling
    if p.kind == "meanstd":
        return np.concatenate([_as_stored(stored["mean"]), _as_stored(stored["std"])])
    if p.kind == "time":
        grid = stored["grid"]
        return _as_stored(grid[min(p.grid_index, grid.shape[0] - 1)])
    return _as_stored(stored[p.kind])
