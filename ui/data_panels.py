"""Data & cache panels: the open dataset's problem files, and fetching Speech Commands.

:func:`render_dataset_problems` lists what discovery could not use in the open dataset
(:attr:`embedviz.datasets.SpeechCommandsDataset.problems`: folders named like clips, link
loops, dangling links, FIFOs, names that are not UTF-8), so nothing is dropped silently.

:func:`render_fetch_panel` runs :func:`embedviz.fetch.fetch_speech_commands` from the app.
It works like extraction (:mod:`ui.jobs`): the Fetch button starts a :class:`FetchJob` on a
worker thread that calls only library code, the job lives in ``st.session_state``, and a
fragment redrawn twice a second shows bytes, rate and ETA with a Cancel button. Cancel
sets an event the progress callback returns, so the download stops within a chunk and
keeps its ``.part`` file: pressing Fetch again resumes it with a Range request. The
destination is a new folder under an allowed data root, and the archive address (when
given) passes the same check as the CLI's ``--url`` (:func:`embedviz.fetch.check_url`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import streamlit as st

from embedviz.datasets import demo_root
from embedviz.errors import Cancelled, ConfigError, EmbedvizError
from embedviz.fetch import ARCHIVE_URLS, FetchResult, check_url
from embedviz.progress import ProgressEvent, format_eta
from embedviz.roots import check_dataset_path, contained_path
from embedviz.settings import data_roots
from ui import cached

FETCH_JOB = "_dc_fetch_job"
FETCH_DONE = "_dc_fetch_done"
#: The form's values at the last Fetch: the form is not drawn while a fetch runs (so
#: Streamlit forgets its widgets), and a cancelled fetch resumes only with the same URL and folder.
FETCH_LAST = "_dc_fetch_last"
_FORM_DEFAULTS = {"dc_fetch_folder": "speech_commands", "dc_fetch_splits": True}

#: The words of the official archives (Warden 2018, "Speech Commands", table 1): v0.02 adds
#: five to v0.01's thirty.
_V1_WORDS = (
    "bed bird cat dog down eight five four go happy house left marvin nine no off on one right "
    "seven sheila six stop three tree two up wow yes zero"
).split()
OFFICIAL_WORDS = {"v0.01": _V1_WORDS, "v0.02": sorted([*_V1_WORDS, "backward", "follow", "forward", "learn", "visual"])}

_dest_guard = threading.Lock()
_dest_locks: dict[str, threading.Lock] = {}


def _dest_lock(dest: str) -> threading.Lock:
    """One lock per destination folder for the whole server: two fetches into one folder
    would write the same ``.part`` file."""
    with _dest_guard:
        return _dest_locks.setdefault(dest, threading.Lock())


# ---------------------------------------------------------------------- problems


def render_dataset_problems(root: str) -> None:
    """Count and table (path, reason) of the entries discovery could not use in ``root``
    (``""`` = the bundled demo); nothing at all when there are none."""
    try:
        problems = cached.dataset(root).problems
    except EmbedvizError as error:
        st.error(f"Cannot list the dataset's files: {error}")
        return
    if not problems:
        return
    st.warning(
        f"{len(problems)} file(s) in this folder look like clips but cannot be used, so they are not in "
        "the dataset (nothing else is affected)."
    )
    with st.expander(f"{len(problems)} unusable file(s), with reasons"):
        st.dataframe(
            pd.DataFrame([{"path": p.path, "reason": p.reason} for p in problems]),
            hide_index=True,
            key="dc_problems",
        )


# ---------------------------------------------------------------------- fetch job


@dataclass(frozen=True)
class FetchRequest:
    """What to fetch, already checked (URL scheme, destination under an allowed root)."""

    dest: str
    version: str
    url: str | None
    words: tuple[str, ...]
    background_noise: bool = False
    split_lists: bool = True

    def __post_init__(self) -> None:
        if self.version not in ARCHIVE_URLS:
            raise ConfigError(f"version must be one of {', '.join(ARCHIVE_URLS)}, got {self.version!r}")
        if self.url is not None:
            check_url(self.url)


@dataclass(frozen=True)
class FetchStatus:
    """A consistent copy of a fetch job's state, for drawing."""

    done: bool
    cancelled: bool
    event: ProgressEvent | None
    result: FetchResult | None
    error: str
    elapsed_s: float


@dataclass
class FetchJob:
    """Runs :func:`embedviz.fetch.fetch_speech_commands` on a daemon thread (no Streamlit there)."""

    request: FetchRequest
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _event: ProgressEvent | None = None
    _result: FetchResult | None = None
    _error: str = ""
    _done: bool = False
    _t0: float = field(default_factory=time.perf_counter)

    def start(self) -> FetchJob:
        self._thread = threading.Thread(target=self._run, name="embedviz-fetch", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop within the chunk in flight; the partial download is kept for a resume."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (tests); True if it did."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.snapshot().done

    def snapshot(self) -> FetchStatus:
        with self._lock:
            return FetchStatus(self._done, self._stop.is_set(), self._event, self._result, self._error,
                               time.perf_counter() - self._t0)

    def _progress(self, event: ProgressEvent) -> bool:
        with self._lock:
            self._event = event
        return self._stop.is_set()

    def _run(self) -> None:
        from embedviz.fetch import fetch_speech_commands

        r = self.request
        lock = _dest_lock(r.dest)
        try:
            if not lock.acquire(blocking=False):
                with self._lock:
                    self._error = f"another session is fetching into {r.dest} right now; wait for it, then open it"
                return
            try:
                result = fetch_speech_commands(
                    r.dest, version=r.version, url=r.url, words=list(r.words) or None,
                    background_noise=r.background_noise, split_lists=r.split_lists, progress=self._progress,
                )
                with self._lock:
                    self._result = result
            finally:
                lock.release()
        except Cancelled:
            pass  # snapshot().cancelled says so; the .part file stays for a resume
        except EmbedvizError as error:
            with self._lock:
                self._error = str(error)
        except Exception as error:  # noqa: BLE001 - the page must show a message, not die silently
            with self._lock:
                self._error = f"unexpected error: {type(error).__name__}: {str(error)[:300]}"
        finally:
            with self._lock:
                self._done = True


# ---------------------------------------------------------------------- fetch panel


def _progress_text(snap: FetchStatus) -> str:
    event = snap.event
    if snap.cancelled:
        return "Stopping…"
    if event is None:
        return "Connecting…"
    if event.stage == "downloading":
        # The library's message: "<MB> of <MB>, <rate> MB/s, ETA <m:ss>".
        return f"Downloading: {event.message}" if event.message else "Downloading…"
    if event.stage == "extracting":
        return f"Unpacking: {event.message} · ETA {format_eta(event.eta_s)}"
    return event.message or event.stage


@st.fragment(run_every=0.5)
def _fetch_progress() -> None:
    """Progress bar (bytes, rate, ETA) and Cancel, redrawn twice a second while fetching."""
    job: FetchJob | None = st.session_state.get(FETCH_JOB)
    if job is None:
        return
    snap = job.snapshot()
    if snap.done:
        st.session_state[FETCH_DONE] = snap
        del st.session_state[FETCH_JOB]
        st.rerun()  # the whole page: the result, and the dataset it offers to open
        return
    with st.container(border=True):
        fraction = snap.event.fraction if snap.event is not None and snap.event.total > 0 else 0.0
        st.progress(fraction, text=_progress_text(snap))
        st.button("Cancel", key="dc_fetch_cancel", icon=":material/stop_circle:", on_click=job.cancel,
                  disabled=snap.cancelled, help="Stop now; Fetch again later resumes the download where it stopped.")


def _show_outcome(snap: FetchStatus, on_open: Callable[[str], None]) -> None:
    if snap.error:
        st.error(f"Fetch failed: {snap.error}")
        return
    result = snap.result
    if result is None:
        st.warning("Fetch cancelled. The partial download is kept: press Fetch again to resume it.")
        return
    how = " (resumed a partial download)" if result.resumed else ""
    how = " (the server ignored the resume request, so it started over)" if result.restarted else how
    st.success(f"Fetched {result.clips} clips of {len(result.counts)} words into `{result.dest}`{how}. "
               "The folder is now an allowed data root.")
    if result.missing_words:
        st.warning(f"Not in the archive: {', '.join(result.missing_words)}.")
    if result.refused:
        with st.expander(f"{len(result.refused)} archive member(s) refused, not written"):
            st.dataframe(pd.DataFrame(result.refused, columns=["member", "reason"]), hide_index=True)
    left, _ = st.columns([1, 2])
    left.dataframe(pd.DataFrame(list(result.counts.items()), columns=["word", "clips"]), hide_index=True,
                   key="dc_fetch_counts", height=min(320, 38 + 35 * len(result.counts)))
    if st.button("Open this dataset", type="primary", key="dc_fetch_open", icon=":material/folder_open:"):
        checked, why = check_dataset_path(result.dest, data_roots(), demo_root())
        if checked is None:
            st.error(f"Cannot open {result.dest}: {why}.")
            return
        st.session_state.pop(FETCH_DONE, None)
        for fn in (cached.dataset, cached.words_table, cached.manifest):
            fn.clear()  # the folder may have been opened before this fetch changed it
        on_open(checked)


def _request(roots: list[Path], root: str, folder: str, version: str, words: list[str], url: str,
             background_noise: bool, split_lists: bool) -> tuple[FetchRequest | None, str]:
    """The checked request, or (None, why) naming the field to fix."""
    name = folder.strip()
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        return None, "Folder name: give one new folder name (no '/', not starting with '.')"
    dest, why = contained_path(str(Path(root) / name), roots)
    if dest is None:
        return None, f"Destination {Path(root) / name}: {why}"
    if Path(dest).exists() and not Path(dest).is_dir():
        return None, f"Destination {dest} exists and is not a folder"
    url = url.strip()
    try:
        chosen = tuple(w.strip() for w in words if w.strip())
        return FetchRequest(dest=dest, version=version, url=url or None, words=chosen,
                            background_noise=background_noise, split_lists=split_lists), ""
    except ConfigError as error:
        return None, f"Archive address: {error}".replace("--url ", "")


def render_fetch_panel(on_open: Callable[[str], None]) -> None:
    """Fetch Speech Commands into a folder under an allowed data root, with progress and cancel;
    at the end the clip count per word and "Open this dataset", which calls ``on_open(path)``."""
    job: FetchJob | None = st.session_state.get(FETCH_JOB)
    if job is not None:
        _fetch_progress()
        return
    if FETCH_DONE in st.session_state:
        _show_outcome(st.session_state[FETCH_DONE], on_open)
    roots = data_roots()
    if not roots:
        st.info("Fetching writes into a folder under an allowed data root, and none is configured: "
                "set EMBEDVIZ_DATA_ROOTS (for example `EMBEDVIZ_DATA_ROOTS=~/data`) and restart the app.")
        return
    st.caption("Downloads the official Speech Commands archive (v0.02: 2.3 GB, 105,829 clips of 35 words; CC BY 4.0) "
               "and unpacks only the chosen words. A dropped or cancelled download resumes where it stopped.")
    root_options = [str(r) for r in roots]
    for key, value in {**_FORM_DEFAULTS, **st.session_state.get(FETCH_LAST, {})}.items():
        if key not in st.session_state and (key != "dc_fetch_root" or value in root_options):
            st.session_state[key] = value
    with st.form("dc_fetch", border=False):
        c1, c2, c3 = st.columns([1, 2, 2])
        version = c1.selectbox("Version", list(ARCHIVE_URLS), key="dc_fetch_version")
        root = c2.selectbox("Under the data root", root_options, key="dc_fetch_root")
        folder = c3.text_input("New folder", key="dc_fetch_folder")
        words = st.multiselect(
            "Words (none chosen: all of them)", OFFICIAL_WORDS["v0.02"], key="dc_fetch_words",
            accept_new_options=True, placeholder="all words",
            help="Only these words' folders are unpacked, while the archive streams.",
        )
        url = st.text_input("Archive address (optional)", key="dc_fetch_url",
                            placeholder="default: the official archive of the chosen version (download.tensorflow.org)",
                            help="Any http or https address of a Speech Commands .tar.gz (a mirror); "
                                 "other schemes are refused.")
        c1, c2 = st.columns(2)
        background_noise = c1.checkbox("Also `_background_noise_`", key="dc_fetch_noise")
        split_lists = c2.checkbox("Split lists (validation, testing)", key="dc_fetch_splits")
        clicked = st.form_submit_button("Fetch", type="primary", icon=":material/download:")
    if not clicked:
        return
    st.session_state[FETCH_LAST] = {
        key: st.session_state[key] for key in ("dc_fetch_version", "dc_fetch_root", "dc_fetch_folder",
                                               "dc_fetch_words", "dc_fetch_url", "dc_fetch_noise", "dc_fetch_splits")
    }
    request, why = _request(roots, root, folder, version, words, url, background_noise, split_lists)
    if request is None:
        st.error(why + ".")
        return
    st.session_state.pop(FETCH_DONE, None)
    st.session_state[FETCH_JOB] = FetchJob(request).start()
    st.rerun()  # draw the progress at once
