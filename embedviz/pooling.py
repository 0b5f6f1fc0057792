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
from typing import Sequence

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
    """Frames whose share of the waveform is within SPEECH_RANGE_DB of the loudest frame.

    Frame ``i`` covers samples ``[int(i * hop), max(int(i * hop) + 1, int((i + 1) * hop)))``
    (``hop = sample_rate / frame_rate``); frames past the waveform's end have no energy.
    Vectorised: one ``np.add.reduceat`` over the squared samples instead of a Python loop
    per frame (DAC's first block has 8,000 frames per second).
    """
    hop = sample_rate / frame_rate
    wave = np.asarray(waveform).reshape(-1)
    idx = np.arange(n_frames, dtype=np.float64)
    starts = (idx * hop).astype(np.int64)  # int() of a non-negative float truncates, as floor
    ends = np.maximum(starts + 1, ((idx + 1) * hop).astype(np.int64))
    energies = np.zeros(n_frames, dtype=np.float64)
    starts_c, ends_c = np.minimum(starts, wave.size), np.minimum(ends, wave.size)
    counts = ends_c - starts_c
    if hop >= 1.0:
        # Frames tile the samples without gaps or overlaps (end_i == start_{i+1}), so one
        # reduceat over [start_0, end_last) sums every frame exactly once.
        live = int(np.count_nonzero(counts > 0))  # a prefix: starts only grow
        if live:
            squares = wave[: int(ends_c[live - 1])].astype(np.float64) ** 2
            energies[:live] = np.add.reduceat(squares, starts_c[:live]) / counts[:live]
    else:  # more frames than samples: frames overlap, so each takes its own slice
        squares = wave.astype(np.float64) ** 2
        for i in np.flatnonzero(counts > 0):
            energies[i] = squares[starts_c[i] : ends_c[i]].mean()
    db = 10 * np.log10(energies + 1e-12)
    return db >= db.max() - SPEECH_RANGE_DB


def _grid_index(n_samples: int, sample_rate: int, frame_rate: float, n_frames: int) -> np.ndarray:
    """Frame index of every time-grid step (0, GRID_STEP, ...) of a clip of ``n_samples``."""
    duration = n_samples / sample_rate
    n_steps = int(math.floor(duration / GRID_STEP + 1e-9)) + 1
    return np.minimum((np.arange(n_steps) * GRID_STEP * frame_rate).astype(int), n_frames - 1)


def pool_batch(
    frames: np.ndarray,
    lengths: Sequence[int] | np.ndarray,
    frame_rate: float,
    waveforms: Sequence[np.ndarray],
    sample_rate: int,
) -> list[dict[str, np.ndarray]]:
    """:func:`pool_frames` of every clip of one layer of a batch, computed together.

    Args:
        frames: ``(B, T, D)`` frames of one layer, zero-padded past each clip's valid length.
        lengths: ``(B,)`` valid frames of each clip (1 .. T).
        frame_rate: frames per second of the layer.
        waveforms: the ``B`` waveforms (at ``sample_rate``) the frames came from.
        sample_rate: samples per second of the waveforms.

    Clips with the same number of valid frames (all of them, in a batch of equal-length
    clips) are reduced in one numpy call per pooling instead of one per clip; the numbers
    equal :func:`pool_frames` clip by clip within float64 rounding.
    """
    frames = np.asarray(frames)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if frames.ndim != 3 or frames.shape[0] != lengths.size or len(waveforms) != lengths.size:
        raise ValueError(
            f"expected (B, T, D) frames with B lengths and B waveforms, got {frames.shape}, "
            f"{lengths.size} lengths and {len(waveforms)} waveforms"
        )
    if lengths.size and (lengths.min() < 1 or lengths.max() > frames.shape[1]):
        raise ValueError(f"valid lengths must be within 1..{frames.shape[1]}, got {lengths.tolist()}")
    out: list[dict[str, np.ndarray] | None] = [None] * lengths.size
    for n in np.unique(lengths).tolist():
        members = np.flatnonzero(lengths == n)
        group = frames[members, :n] if members.size < lengths.size or n < frames.shape[1] else frames
        group64 = group.astype(np.float64)
        mean = group64.mean(axis=1)
        std = group64.std(axis=1)
        peak = group.max(axis=1).astype(np.float32)
        centre = group[:, n // 2].astype(np.float32)
        masks = np.stack([speech_mask(waveforms[i], sample_rate, n, frame_rate) for i in members])
        # Mean over each clip's speech frames: masked sum / count, a (1, T) @ (T, D) per clip.
        speech = (masks.astype(np.float64)[:, None, :] @ group64)[:, 0] / masks.sum(axis=1)[:, None]
        mean32, std32, speech32 = mean.astype(np.float32), std.astype(np.float32), speech.astype(np.float32)
        for row, i in enumerate(members.tolist()):
            grid = _grid_index(np.asarray(waveforms[i]).shape[0], sample_rate, frame_rate, n)
            out[i] = {
                "mean": mean32[row],
                "std": std32[row],
                "max": peak[row],
                "centre": centre[row],
                "speech": speech32[row],
                "grid": group[row, grid].astype(np.float16),
            }
    return out  # type: ignore[return-value]


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
    return pool_batch(frames[None], [frames.shape[0]], frame_rate, [waveform], sample_rate)[0]


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
