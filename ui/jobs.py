"""Extraction in a background thread, so the page stays responsive and can cancel it.

Why a thread: while a Streamlit script run is busy, a click on "Cancel" in the same
session only queues a rerun that starts after the busy run ends, i.e. too late. So the
Extract button starts an :class:`ExtractionJob` on a worker thread and returns at once;
the job object lives in ``st.session_state``. A fragment that re-runs every half second
(``st.fragment(run_every=...)``) draws its progress bar and a Cancel button. Cancel sets a
``threading.Event``; the library's progress callback returns it, so extraction stops
after the batch in flight (finished batches are already in the store and are never
recomputed) and :func:`embedviz.pipeline.extract` reports ``cancelled=True``. When the
job ends the fragment triggers one full rerun, which draws the plots from the store.

The worker thread never calls Streamlit (no widgets, no ``st.*`` output); it only
calls library code and the model cache (``ui.cached.extractor``), and records plain
data the page reads with :meth:`ExtractionJob.snapshot`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from embedviz.errors import EmbedvizError
from embedviz.progress import ProgressEvent
from embedviz.settings import ExtractionSettings

if TYPE_CHECKING:
    from embedviz.extractors.base import Extractor
    from embedviz.pipeline import ExtractionReport
    from embedviz.store import EmbeddingStore

logger = logging.getLogger(__name__)

#: Clips per forward pass: None = the family's measured size
#: (``embedviz.pipeline.PREFERRED_BATCH_SIZE``, the one table). Cancel takes effect between batches.
BATCH_SIZE: int | None = None


_locks_guard = threading.Lock()
_model_locks: dict[str, threading.Lock] = {}


def _model_lock(settings_key: str) -> threading.Lock:
    """One lock per model and options, shared by every session of this server process.

    Two sessions pressing Extract for the same model would otherwise both compute the
    same missing clips; with the lock the second one waits, then finds them stored.
    """
    with _locks_guard:
        return _model_locks.setdefault(settings_key, threading.Lock())


@dataclass(frozen=True)
class Task:
    """One model to extract for one sample of clips."""

    settings: ExtractionSettings
    manifest: pd.DataFrame
    label: str


@dataclass(frozen=True)
class JobStatus:
    """A consistent copy of a job's state, for drawing."""

    done: bool
    cancelled: bool
    task_index: int
    n_tasks: int
    label: str
    event: ProgressEvent | None
    reports: tuple[ExtractionReport, ...]
    errors: tuple[tuple[str, str], ...]
    elapsed_s: float

    @property
    def fraction(self) -> float:
        """Overall progress: finished models plus the current model's share."""
        if self.n_tasks <= 0:
            return 1.0
        # A download is most of a first run's wait for a pretrained model: show it too.
        shown = ("extracting", "downloading")
        current = self.event.fraction if self.event is not None and self.event.stage in shown else 0.0
        return min(1.0, (len(self.reports) + len(self.errors) + current) / self.n_tasks)


@dataclass
class ExtractionJob:
    """Runs :func:`embedviz.pipeline.extract` for each task on a daemon thread."""

    tasks: list[Task]
    store: EmbeddingStore
    load: Callable[[ExtractionSettings], Extractor]
    batch_size: int | None = BATCH_SIZE
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _task_index: int = 0
    _event: ProgressEvent | None = None
    _reports: list[ExtractionReport] = field(default_factory=list)
    _errors: list[tuple[str, str]] = field(default_factory=list)
    _done: bool = False
    _t0: float = field(default_factory=time.perf_counter)

    def start(self) -> ExtractionJob:
        self._thread = threading.Thread(target=self._run, name="embedviz-extract", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop after the batch in flight (finished batches are kept)."""
        self._stop.set()

    @property
    def cancel_requested(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (tests); True if it did."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.snapshot().done

    def snapshot(self) -> JobStatus:
        with self._lock:
            label = self.tasks[self._task_index].label if self._task_index < len(self.tasks) else ""
            return JobStatus(
                done=self._done,
                cancelled=self._stop.is_set(),
                task_index=self._task_index,
                n_tasks=len(self.tasks),
                label=label,
                event=self._event,
                reports=tuple(self._reports),
                errors=tuple(self._errors),
                elapsed_s=time.perf_counter() - self._t0,
            )

    # ------------------------------------------------------------------ worker thread

    def _progress(self, event: ProgressEvent) -> bool:
        with self._lock:
            self._event = event
        return self._stop.is_set()

    def _run(self) -> None:
        from embedviz.pipeline import ExtractionReport, extract, missing_clips

        try:
            for index, task in enumerate(self.tasks):
                with self._lock:
                    self._task_index = index
                    self._event = None
                if self._stop.is_set():
                    with self._lock:
                        self._reports.append(ExtractionReport(model=task.settings.model, cancelled=True))
                    continue
                try:
                    lock = _model_lock(task.settings.key())
                    if not self._acquire(lock, task):
                        with self._lock:
                            self._reports.append(ExtractionReport(model=task.settings.model, cancelled=True))
                        continue
                    try:
                        # Checked under the lock: another session may just have stored these clips.
                        todo = missing_clips(task.manifest, task.settings, self.store)
                        if todo.empty:
                            report = ExtractionReport(model=task.settings.model, cached=len(task.manifest))
                        else:
                            self._progress(ProgressEvent(0, len(todo), "loading model", f"loading {task.label}"))
                            model = self.load(task.settings)
                            report = extract(
                                task.manifest,
                                task.settings,
                                store=self.store,
                                extractor=model,
                                batch_size=self.batch_size,
                                progress=self._progress,
                            )
                    finally:
                        lock.release()
                    with self._lock:
                        self._reports.append(report)
                except EmbedvizError as error:
                    # ExtractionError.out_of_memory is the one OOM signal (set by extractors.base.forward_errors).
                    oom = getattr(error, "out_of_memory", False)
                    self._fail(task, f"out of memory: {error}" if oom else str(error))
                except MemoryError:
                    self._fail(task, "out of memory: choose fewer clips or a smaller model, or set a GPU free")
                except RuntimeError as error:
                    # torch reports CUDA/CPU allocation failures as RuntimeError subclasses.
                    text = str(error)
                    if "out of memory" in text.lower():
                        self._fail(task, "out of memory: choose fewer clips or a smaller model")
                    else:
                        logger.exception("extraction of %s failed", task.settings.model)
                        self._fail(task, f"unexpected error: {type(error).__name__}: {text[:300]}")
                except Exception as error:  # noqa: BLE001 - the page must show a message, not die silently
                    logger.exception("extraction of %s failed", task.settings.model)
                    self._fail(task, f"unexpected error: {type(error).__name__}: {str(error)[:300]}")
        finally:
            with self._lock:
                self._done = True

    def _acquire(self, lock: threading.Lock, task: Task) -> bool:
        """Wait for ``lock`` (another session extracting the same model); False if cancelled."""
        if lock.acquire(blocking=False):
            return True
        self._progress(ProgressEvent(0, 0, "waiting", f"waiting for another extraction of {task.label}"))
        while not self._stop.is_set():
            if lock.acquire(timeout=0.25):
                return True
        return False

    def _fail(self, task: Task, message: str) -> None:
        with self._lock:
            self._errors.append((task.label, message))
