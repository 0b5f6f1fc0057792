"""Extraction in a background thread, so the page stays responsive and can cancel it.

Why a thread: while a Streamlit script run is busy, a click on "Cancel" in the same
session only queues a rerun that starts after the busy run ends, i.e. too late. So the
Extract button starts an :class:`ExtractionJob` on a worker thread and returns at once;
the job object lives in ``st.session_state``. A fragment that re-runs every
:data:`PROGRESS_REFRESH_S` seconds (``st.fragment(run_every=...)``) draws its progress bar and
a Cancel button. Cancel sets a
``threading.Event``; the library's progress callback returns it, so extraction stops
after the batch in flight (finished batches are already in the store and are never
recomputed) and :func:`embedviz.pipeline.extract` reports ``cancelled=True``. When the
job ends the fragment triggers one full rerun, which draws the plots from the store.

Sessions share work. :data:`REGISTRY` is one process-wide table of running jobs keyed by
what they compute (:func:`job_key`: each task's extraction-settings hash and clip set, and
the store): a second session pressing Extract for the same work gets a :class:`JobHandle`
on the job already running, with its progress, instead of starting another (the clips are
computed once, the model loaded once). Different work starts its own job, but at most
:func:`max_running_jobs` jobs compute at once (``$EMBEDVIZ_MAX_JOBS``, default 2); the others
wait, shown as queued, so sessions do not starve each other on a few CPU cores. A session's
Cancel detaches only that session; the job stops when every attached session has cancelled.

Polling is cheap: a progress tick reads :meth:`JobHandle.snapshot`, a copy of a few fields
under a lock (no store access, no model call); ``bench/bench_sessions.py`` measures it.

The worker thread never calls Streamlit (no widgets, no ``st.*`` output); it only
calls library code and the model cache (``ui.cached.extractor``), and records plain
data the page reads with :meth:`ExtractionJob.snapshot`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import pandas as pd

from embedviz.errors import EmbedvizError
from embedviz.progress import ProgressEvent
from embedviz.settings import ExtractionSettings, stable_hash

if TYPE_CHECKING:
    from embedviz.extractors.base import Extractor
    from embedviz.pipeline import ExtractionReport
    from embedviz.store import EmbeddingStore

logger = logging.getLogger(__name__)

#: Seconds between redraws of the progress fragment (``ui.widgets.job_progress``) while a job
#: runs. Every redraw is a script run on the server and a re-render in the browser; at 0.5 s
#: the viewer's browser took about a quarter of a core during an extraction (headless Chromium
#: on the same 2-core machine, bench/bench_app_extract.py), which a server and browser sharing
#: a machine pay in extraction speed. At 1 s it took about a third less (docs/PERFORMANCE.md,
#: "App against CLI"), and the bar still moves every second.
PROGRESS_REFRESH_S = 1.0

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
    #: Sessions attached to the job (1: this one alone).
    sessions: int = 1

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
    #: Shared by the jobs of one registry: held while the job computes (bounded concurrency).
    slots: threading.Semaphore | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _task_index: int = 0
    _event: ProgressEvent | None = None
    _reports: list[ExtractionReport] = field(default_factory=list)
    _errors: list[tuple[str, str]] = field(default_factory=list)
    _done: bool = False
    _t0: float = field(default_factory=time.perf_counter)
    _handles: list[JobHandle] = field(default_factory=list)

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

    def attach(self) -> JobHandle | None:
        """A new session's view of this job (its own Cancel); None if the job is stopping."""
        handle = JobHandle(self)
        with self._lock:  # the same lock as _detach's decision: no attach to a job that just stopped
            if self._stop.is_set():
                return None
            self._handles.append(handle)
        return handle

    def _detach(self, handle: JobHandle) -> None:
        """``handle`` cancelled: stop the job once no attached session wants it any more."""
        with self._lock:
            if not any(not h.cancel_requested for h in self._handles):
                self._stop.set()

    @property
    def sessions(self) -> int:
        """Attached sessions that have not cancelled."""
        with self._lock:
            return sum(not h.cancel_requested for h in self._handles)

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
                sessions=max(1, sum(not h.cancel_requested for h in self._handles)),
            )

    # ------------------------------------------------------------------ worker thread

    def _progress(self, event: ProgressEvent) -> bool:
        with self._lock:
            self._event = event
        return self._stop.is_set()

    def _run(self) -> None:
        from embedviz.pipeline import ExtractionReport, extract, missing_clips

        slot = self.slots
        try:
            if slot is not None and not self._acquire(slot, "waiting for a free extraction slot (other sessions' "
                                                            "extractions are running)"):
                slot = None  # cancelled while queued: every task is reported cancelled below
                self._stop.set()
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
                    if not self._acquire(lock, f"waiting for another extraction of {task.label}"):
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
            if slot is not None:
                slot.release()
            with self._lock:
                self._done = True

    def _acquire(self, lock: threading.Lock | threading.Semaphore, message: str) -> bool:
        """Wait for ``lock`` (a job slot, or the same model busy elsewhere); False if cancelled."""
        if lock.acquire(blocking=False):
            return True
        self._progress(ProgressEvent(0, 0, "waiting", message))
        while not self._stop.is_set():
            if lock.acquire(timeout=0.25):
                return True
        return False

    def _fail(self, task: Task, message: str) -> None:
        with self._lock:
            self._errors.append((task.label, message))


class JobHandle:
    """One session's view of a (possibly shared) :class:`ExtractionJob`.

    What the page keeps in ``st.session_state``: :meth:`snapshot` and :meth:`wait` follow the
    job. :meth:`cancel` stops the job after the batch in flight if no other attached session
    still wants it (this view then follows the job until it has stopped, as before); if
    others do, it only detaches this session, whose view reads done and cancelled at once.
    """

    def __init__(self, job: ExtractionJob) -> None:
        self.job = job
        self._cancelled = threading.Event()
        self._detached = False

    @property
    def cancel_requested(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()
        self._detached = self.job.sessions > 0  # others still want it: it goes on without us
        self.job._detach(self)

    def snapshot(self) -> JobStatus:
        snap = self.job.snapshot()
        if not self._cancelled.is_set():
            return snap
        return replace(snap, cancelled=True, done=snap.done or self._detached)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until this session's view is done (tests); True if it is."""
        return True if self._detached else self.job.wait(timeout)


def max_running_jobs() -> int:
    """How many extraction jobs compute at once in this server (``$EMBEDVIZ_MAX_JOBS``, default 2).

    Extraction is CPU- (or GPU-) bound: more jobs than cores only split the same machine,
    so two sessions with different work each still move, and a third waits its turn.
    """
    try:
        return max(1, int(os.environ.get("EMBEDVIZ_MAX_JOBS", "2")))
    except ValueError:
        return 2


def clip_set_key(manifest: pd.DataFrame) -> str:
    """Identity of a clip set: its clip paths, order ignored (a session's sample is a set)."""
    return stable_hash(sorted(str(p) for p in manifest["path"]))


def job_key(tasks: list[Task], store: EmbeddingStore) -> str:
    """What a job computes: per task the extraction settings' hash and the clip set, and the store."""
    return stable_hash({
        "store": str(getattr(store, "root", store)),
        "tasks": [(task.settings.key(), clip_set_key(task.manifest)) for task in tasks],
    })


class JobRegistry:
    """The process-wide table of extraction jobs: identical requests share one job.

    Args:
        max_running: jobs that compute at once (default :func:`max_running_jobs`); the rest
            wait for a slot, shown as queued.
    """

    def __init__(self, max_running: int | None = None) -> None:
        self.max_running = max_running if max_running is not None else max_running_jobs()
        self._slots = threading.BoundedSemaphore(self.max_running)
        self._lock = threading.Lock()
        self._jobs: dict[str, ExtractionJob] = {}
        #: Jobs started (not attached to): what the sharing tests count.
        self.started = 0

    def submit(
        self,
        tasks: list[Task],
        store: EmbeddingStore,
        load: Callable[[ExtractionSettings], Extractor],
        batch_size: int | None = BATCH_SIZE,
    ) -> JobHandle:
        """A handle on the running job for exactly this work, or on a new job started for it."""
        key = job_key(tasks, store)
        with self._lock:
            self._jobs = {k: j for k, j in self._jobs.items() if not j.snapshot().done}
            running = self._jobs.get(key)
            shared = running.attach() if running is not None else None
            if shared is not None:
                logger.info("extraction job %s shared with another session", key[:12])
                return shared
            # Nothing running for this work, or it is stopping (every session cancelled): a new job.
            job = ExtractionJob(tasks=list(tasks), store=store, load=load, batch_size=batch_size, slots=self._slots)
            self._jobs[key] = job
            self.started += 1
            handle = job.attach()
            assert handle is not None  # a job that has not started cannot be stopping
            job.start()
            logger.info("extraction job %s started (%d task(s))", key[:12], len(tasks))
            return handle

    def running(self) -> list[ExtractionJob]:
        """Jobs not finished yet."""
        with self._lock:
            return [j for j in self._jobs.values() if not j.snapshot().done]


#: The one registry of this server process (every session's Extract goes through it).
REGISTRY = JobRegistry()
