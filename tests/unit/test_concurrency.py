"""Four sessions extracting with the same model at once (issue 9, item 5).

Each "session" is an ``ui.jobs.ExtractionJob`` on its own thread (or a handle from a
``ui.jobs.JobRegistry``, as the app's Extract button gets one), with one shared model loader
that stands in for ``st.cache_resource`` (one instance per key, created under a lock, at most
``EMBEDVIZ_MAX_MODELS`` kept). A gate on the loader holds the first job in "loading the
model" until every session has pressed Extract, so the requests really overlap.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedviz.datasets import open_dataset
from embedviz.models import load_extractor
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore, read_layers
from tests.tiny_models import save_tiny_model
from ui.jobs import ExtractionJob, JobRegistry, Task, job_key


class SharedModels:
    """A model cache like ``st.cache_resource(max_entries=budget)``: loads counted."""

    def __init__(self, budget: int = 2) -> None:
        self.budget = budget
        self.loads = 0
        self.live: dict[str, object] = {}
        self._lock = threading.Lock()
        self.gate = threading.Event()  # cleared by a test to hold loading until every session has asked
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, settings: ExtractionSettings):
        self.entered.set()
        assert self.gate.wait(120), "the test never opened the gate"
        with self._lock:
            if settings.model not in self.live:
                self.loads += 1
                self.live[settings.model] = load_extractor(settings.model, seed=settings.seed)
                assert len(self.live) <= self.budget
            return self.live[settings.model]


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny_model("wav2vec2", tmp_path_factory.mktemp("models") / "tiny-wav2vec2"))


@pytest.fixture
def manifest() -> pd.DataFrame:
    return open_dataset().sample(["yes", "no", "cat", "dog"], 4, seed=1)


def _run_sessions(n: int, manifest: pd.DataFrame, settings: ExtractionSettings, store: EmbeddingStore,
                  models: SharedModels) -> list:
    jobs = [ExtractionJob(tasks=[Task(settings, manifest, "tiny")], store=store, load=models) for _ in range(n)]
    for job in jobs:
        job.start()
    for job in jobs:
        assert job.wait(timeout=300), "a session never finished (deadlock?)"
    return [job.snapshot() for job in jobs]


def _vectors(manifest, settings, store) -> dict[str, np.ndarray]:
    layers = load_extractor(settings.model).layer_names
    return {k: v.X for k, v in read_layers(store, settings, list(layers), "mean", manifest=manifest).items()}


def test_four_sessions_share_one_model_and_one_computation(
    tiny_wav2vec2: str, manifest: pd.DataFrame, tmp_path: Path
) -> None:
    settings = ExtractionSettings(model=tiny_wav2vec2)
    shared, alone = EmbeddingStore(tmp_path / "shared"), EmbeddingStore(tmp_path / "alone")
    models = SharedModels()

    t = time.perf_counter()
    single = _run_sessions(1, manifest, settings, alone, SharedModels())
    one_s = time.perf_counter() - t
    t = time.perf_counter()
    four = _run_sessions(4, manifest, settings, shared, models)
    four_s = time.perf_counter() - t

    assert models.loads == 1
    assert all(not s.errors for s in single + four), [s.errors for s in four]
    computed = [r.computed for s in four for r in s.reports]
    # The work is shared, not repeated: the clips are computed once in all.
    assert sum(computed) == len(manifest) == single[0].reports[0].computed
    entry = next(iter(shared.entries())) if hasattr(shared, "entries") else None
    del entry
    got, want = _vectors(manifest, settings, shared), _vectors(manifest, settings, alone)
    for layer in want:
        assert got[layer].shape == want[layer].shape == (len(manifest), want[layer].shape[1])
        np.testing.assert_allclose(got[layer], want[layer], atol=1e-6)
    # No duplicated rows: one part row per (clip, layer).
    import pyarrow.parquet as pq

    parts = sorted((tmp_path / "shared").rglob("part-*.parquet"))
    table = pq.read_table(parts, columns=["clip_key", "layer"]).to_pandas() if parts else pd.DataFrame()
    assert len(table) == len(manifest) * len(want)
    assert not table.duplicated().any()
    # Speed is measured in Chromium (bench/bench_sessions.py), not asserted here.
    del one_s, four_s


def test_a_cancelled_waiting_session_returns(tiny_wav2vec2: str, manifest: pd.DataFrame, tmp_path: Path) -> None:
    settings = ExtractionSettings(model=tiny_wav2vec2)
    store, models = EmbeddingStore(tmp_path / "s"), SharedModels()
    first = ExtractionJob(tasks=[Task(settings, manifest, "tiny")], store=store, load=models).start()
    second = ExtractionJob(tasks=[Task(settings, manifest, "tiny")], store=store, load=models).start()
    second.cancel()
    assert second.wait(timeout=120) and first.wait(timeout=300)
    assert not first.snapshot().errors


def _wait_until(predicate, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_identical_requests_attach_to_one_job(tiny_wav2vec2: str, manifest: pd.DataFrame, tmp_path: Path) -> None:
    settings = ExtractionSettings(model=tiny_wav2vec2)
    store, alone = EmbeddingStore(tmp_path / "shared"), EmbeddingStore(tmp_path / "alone")
    registry, models = JobRegistry(max_running=2), SharedModels()
    models.gate.clear()
    # Four sessions, each with its own copy of the sample in another row order: the same clip set.
    handles = [
        registry.submit([Task(settings, manifest.sample(frac=1.0, random_state=i), "tiny")], store, models)
        for i in range(4)
    ]
    assert models.entered.wait(60)  # the first job is loading the model; the others asked meanwhile
    assert registry.started == 1
    assert len({id(h.job) for h in handles}) == 1
    assert handles[0].snapshot().sessions == 4
    models.gate.set()
    assert all(h.wait(300) for h in handles)
    assert models.loads == 1
    snaps = [h.snapshot() for h in handles]
    assert all(not s.errors and not s.cancelled for s in snaps), [s.errors for s in snaps]
    # Every session sees the one computation's report: each clip computed once.
    assert [[(r.computed, r.cached) for r in s.reports] for s in snaps] == [[(len(manifest), 0)]] * 4
    single = ExtractionJob(tasks=[Task(settings, manifest, "tiny")], store=alone, load=SharedModels()).start()
    assert single.wait(300) and not single.snapshot().errors
    got, want = _vectors(manifest, settings, store), _vectors(manifest, settings, alone)
    for layer in want:
        np.testing.assert_allclose(got[layer], want[layer], atol=1e-6)
    # Once finished, the same request starts a fresh job (which finds everything stored).
    again = registry.submit([Task(settings, manifest, "tiny")], store, models)
    assert again.wait(120) and registry.started == 2
    assert [(r.computed, r.cached) for r in again.snapshot().reports] == [(0, len(manifest))]


def test_job_key_tells_work_apart(tiny_wav2vec2: str, manifest: pd.DataFrame, tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "s")
    settings = ExtractionSettings(model=tiny_wav2vec2)
    key = job_key([Task(settings, manifest, "a")], store)
    assert job_key([Task(settings, manifest.iloc[::-1], "b")], store) == key  # order and label do not matter
    assert job_key([Task(settings, manifest.iloc[1:], "a")], store) != key
    assert job_key([Task(settings.replace(max_seconds=5.0), manifest, "a")], store) != key
    assert job_key([Task(settings, manifest, "a")], EmbeddingStore(tmp_path / "other")) != key


def test_different_work_waits_for_a_free_slot(tiny_wav2vec2: str, manifest: pd.DataFrame, tmp_path: Path) -> None:
    settings = ExtractionSettings(model=tiny_wav2vec2)
    store, models = EmbeddingStore(tmp_path / "s"), SharedModels()
    registry = JobRegistry(max_running=1)
    models.gate.clear()
    first = registry.submit([Task(settings, manifest.iloc[:8], "first")], store, models)
    assert models.entered.wait(60)
    second = registry.submit([Task(settings, manifest.iloc[8:], "second")], store, models)
    assert registry.started == 2 and second.job is not first.job

    def queued() -> bool:
        event = second.snapshot().event
        return event is not None and event.stage == "waiting" and "slot" in event.message

    assert _wait_until(queued), second.snapshot()
    models.gate.set()
    assert first.wait(300) and second.wait(300)
    assert [r.computed for r in first.snapshot().reports] == [8]
    assert [r.computed for r in second.snapshot().reports] == [len(manifest) - 8]


def test_one_session_cancelling_leaves_the_shared_job_to_the_others(
    tiny_wav2vec2: str, manifest: pd.DataFrame, tmp_path: Path
) -> None:
    settings = ExtractionSettings(model=tiny_wav2vec2)
    store, models = EmbeddingStore(tmp_path / "s"), SharedModels()
    registry = JobRegistry(max_running=2)
    models.gate.clear()
    a, b = (registry.submit([Task(settings, manifest, "tiny")], store, models) for _ in range(2))
    assert models.entered.wait(60) and a.job is b.job
    a.cancel()
    assert a.snapshot().done and a.snapshot().cancelled  # this session is free at once
    assert not b.snapshot().cancelled and not a.job.cancel_requested
    assert b.snapshot().sessions == 1
    models.gate.set()
    assert b.wait(300)
    assert [(r.computed, r.cancelled) for r in b.snapshot().reports] == [(len(manifest), False)]


def test_the_last_session_cancelling_stops_the_job(tiny_wav2vec2: str, manifest: pd.DataFrame, tmp_path: Path) -> None:
    settings = ExtractionSettings(model=tiny_wav2vec2)
    store, models = EmbeddingStore(tmp_path / "s"), SharedModels()
    registry = JobRegistry(max_running=2)
    models.gate.clear()
    a, b = (registry.submit([Task(settings, manifest, "tiny")], store, models) for _ in range(2))
    assert models.entered.wait(60)
    a.cancel()
    b.cancel()
    assert a.job.cancel_requested
    models.gate.set()
    assert b.wait(300) and b.snapshot().done
    # Pressing Extract again after a cancel starts a new job rather than joining the stopped one.
    c = registry.submit([Task(settings, manifest, "tiny")], store, models)
    assert c.job is not a.job
    assert c.wait(300) and not c.snapshot().errors
