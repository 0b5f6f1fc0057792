"""UI pieces shared by the pages: dataset opening, sidebar, extraction progress, clip player."""

from __future__ import annotations

import math
import mimetypes
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from embedviz.audio import NOTICE_KINDS
from embedviz.errors import EmbedvizError
# The ring table lives in the library, shared by the Plotly rings here and the ECharts figure.
from embedviz.figures import (  # noqa: F401 (re-exported for the pages)
    BRUSH_COLOUR,
    FOUND_COLOUR,
    NEIGHBOUR_COLOUR,
    OTHER_RING_NAME,
    RING_NAMES,
    SELECTED_COLOUR,
    Renderer,
    ring_size,
)
from embedviz.viewstate import ViewSettings
from ui import cached, state
from ui.jobs import PROGRESS_REFRESH_S

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator

JOB_KEY = "_ev_job"
REPORTS_KEY = "_ev_last_job"
_FINISHED_KEY = "_ev_job_finished"

EXPLORE_PAGE = "pages/explore.py"
ANALYSIS_PAGE = "pages/layer_analysis.py"
DATA_PAGE = "pages/data_cache.py"


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def fmt(value: float, digits: int = 2) -> str:
    """A number for display; undefined values (nan) read as an em dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def dataset_label(root: str) -> str:
    return "bundled demo" if not root else root


def open_view_dataset(view: ViewSettings) -> tuple[ViewSettings, pd.DataFrame | None]:
    """Open the view's dataset; if it cannot be opened say why and fall back to the demo.

    Returns the (possibly corrected) view and the dataset's words table (None if even
    the demo cannot be opened, after showing the error).
    """
    try:
        return view, cached.words_table(view.dataset)
    except EmbedvizError as error:
        if not view.dataset:
            st.error(f"The demo dataset cannot be opened: {error}")
            return view, None
        st.error(f"Dataset {view.dataset} cannot be opened: {error}. Showing the bundled demo instead.")
    try:
        return view.replace(dataset=""), cached.words_table("")
    except EmbedvizError as error:
        st.error(f"The demo dataset cannot be opened either: {error}")
        return view.replace(dataset=""), None


NAV = (
    (EXPLORE_PAGE, "Explore", ":material/scatter_plot:"),
    (ANALYSIS_PAGE, "Layer analysis", ":material/stacked_line_chart:"),
    (DATA_PAGE, "Data & cache", ":material/database:"),
)


def nav_slot() -> DeltaGenerator:
    """A slot at the top of the sidebar for the page links (:func:`sidebar`, :func:`nav_links`)."""
    return st.sidebar.empty()


#: Key of the hidden container holding :func:`preload_charts`' empty chart.
PRELOAD_KEY = "chart_preload"


def preload_charts(renderer: Renderer = "plotly") -> None:
    """An empty, hidden chart of ``renderer`` near the top of a page.

    Streamlit's browser side loads a chart library only when the first chart of its kind
    arrives: plotly.js (4.7 MB) takes about 1.4 s to load and start in every new tab here,
    ECharts (1.2 MB) about 0.3 s (``bench/bench_browser_floor.py``). Sent first, it loads
    while the server still reads and projects, instead of after the figure. The same spec
    on every run, so reruns do not redraw it; ``display: none`` keeps it out of the layout.
    """
    st.html(f"<style>.st-key-{PRELOAD_KEY} {{display: none}}</style>")
    with st.container(key=PRELOAD_KEY):
        if renderer == "echarts":
            st.echarts_chart({"series": []}, height=10)
        else:
            import plotly.graph_objects as go

            # A Figure, not a dict: plotly refuses a dict without traces.
            st.plotly_chart(go.Figure(layout={"template": "none", "height": 10}), config={"staticPlot": True})


def page_start(*, need_dataset: bool = True) -> tuple[ViewSettings, pd.DataFrame | None, DeltaGenerator]:
    """The start of every page: the sidebar's link slot, the view and its dataset.

    Returns ``(view, words table, nav slot)``. If the view cannot be read, or (with
    ``need_dataset``) no dataset can be opened, the error is shown with the sidebar and
    the run stops here; without ``need_dataset`` the words table may be None.
    """
    nav = nav_slot()
    view = state.view_or_error()
    if view is None:
        sidebar(ViewSettings(), nav)
        st.stop()
    view, words_df = open_view_dataset(view)
    if words_df is None and need_dataset:
        sidebar(view, nav)
        st.stop()
    return view, words_df, nav


def nav_links(view: ViewSettings, slot=None) -> None:
    """The page links carrying ``view``, in ``slot`` (a :func:`nav_slot`: drawn again, they
    replace the links there, so a page can show them early and update them once its view is final)."""
    params = view.to_query_params()
    with slot.container() if slot is not None else st.sidebar:
        for path, label, icon in NAV:
            st.page_link(path, label=label, icon=icon, query_params=params)
        st.divider()


def sidebar(view: ViewSettings, slot=None) -> None:
    """Page links that carry the view, then dataset summary and embedding-store info.

    The links are ours (``st.navigation`` runs with ``position="hidden"``) because
    Streamlit's own menu clears the query params when switching pages, which would
    leave a shared link to the second page without its state.
    """
    nav_links(view, slot)
    with st.sidebar:
        st.markdown("#### Dataset")
        try:
            words = cached.words_table(view.dataset)
            n_clips, n_speakers = cached.dataset_summary(view.dataset)
            st.markdown(
                f"**{dataset_label(view.dataset)}**  \n"
                f"{len(words)} words · {n_clips} clips · {n_speakers} speakers"
            )
        except EmbedvizError as error:
            st.error(str(error))
        st.markdown("#### Embedding store")
        try:
            entries = cached.store_entries(str(cached.store_root()))
            total = int(entries["bytes"].sum()) if len(entries) else 0
            st.markdown(
                f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} · {human_bytes(total)}  \n"
                f"`{cached.store_root()}`"
            )
        except (EmbedvizError, OSError) as error:
            st.error(f"The embedding store cannot be read: {error}")


# ---------------------------------------------------------------------- extraction job


def start_extraction(tasks: Sequence[object]) -> None:
    """Start a background extraction of ``tasks``, or join the same one another session runs (:mod:`ui.jobs`)."""
    from ui.jobs import REGISTRY

    def load(settings):  # looked up at call time, so the model cache is the shared one
        return cached.extractor(settings.model, settings.whisper_mode, settings.seed)

    st.session_state[JOB_KEY] = REGISTRY.submit(list(tasks), cached.get_store(), load)
    st.session_state[_FINISHED_KEY] = 0
    st.session_state.pop(REPORTS_KEY, None)


def job_running() -> bool:
    job = st.session_state.get(JOB_KEY)
    return job is not None and not job.snapshot().done


def collect_finished_job() -> None:
    """Move a finished job's outcome to session state (shown by :func:`last_job_report`)."""
    job = st.session_state.get(JOB_KEY)
    if job is not None and job.snapshot().done:
        st.session_state[REPORTS_KEY] = job.snapshot()
        del st.session_state[JOB_KEY]
        cached.store_entries.clear()  # the sidebar's store summary counts what the job wrote


def _progress_text(snap) -> str:
    text = _progress_line(snap)
    if snap.sessions > 1:  # other sessions pressed Extract for the same work and follow this job
        text += f" · shared with {snap.sessions - 1} other session(s)"
    return text


def _progress_line(snap) -> str:
    from embedviz.progress import format_eta

    event = snap.event
    prefix = f"{snap.label} ({snap.task_index + 1}/{snap.n_tasks})"
    if snap.cancelled:
        return f"{prefix}: stopping after the batch in flight…"
    if event is None:
        return f"{prefix}: checking the store…"
    if event.stage == "loading model":
        return f"{prefix}: loading the model…"
    if event.stage == "downloading":
        return f"{prefix}: downloading the model · {event.message} · {format_eta(event.eta_s)} left"
    if event.stage == "waiting":
        return f"{prefix}: {event.message or 'waiting for another extraction'}…"
    return f"{prefix}: {event.done}/{event.total} clips · {format_eta(event.eta_s)} left"


@st.fragment(run_every=PROGRESS_REFRESH_S)
def job_progress() -> None:
    """Progress bar with ETA and a Cancel button, redrawn every ``ui.jobs.PROGRESS_REFRESH_S`` while a job runs."""
    job = st.session_state.get(JOB_KEY)
    if job is None:
        return
    snap = job.snapshot()
    finished = len(snap.reports) + len(snap.errors)
    if snap.done or finished > st.session_state.get(_FINISHED_KEY, 0):
        # Redraw the whole page: plots of every model finished so far come from the store.
        st.session_state[_FINISHED_KEY] = finished
        st.rerun()
        return
    with st.container(border=True):
        st.progress(snap.fraction, text=_progress_text(snap))
        st.button(
            "Cancel",
            key="ex_cancel",
            icon=":material/stop_circle:",
            on_click=job.cancel,
            disabled=snap.cancelled,
            help="Stop after the batch in flight; finished clips stay stored and are not recomputed.",
        )


def last_job_report(dataset: str | None = None) -> None:
    """Outcome of the last finished extraction: per model counts, skipped clips, notices,
    errors; with ``dataset``, also how many of its files are not clips at all."""
    snap = st.session_state.get(REPORTS_KEY)
    if snap is None:
        return
    for label, message in snap.errors:
        st.error(f"{label}: {message}")
    lines = []
    skipped = []
    for report in snap.reports:
        lines.append(
            f"- **{cached.model_label(report.model)}**: {report.computed} computed, {report.cached} already stored"
            + (f", {len(report.skipped)} skipped" if report.skipped else "")
            + (f", {len(report.notices)} with notices" if report.notices else "")
            + (f" in {report.seconds:.1f} s" if report.computed else "")
            + (" (cancelled)" if report.cancelled else "")
        )
        skipped += [(report.model, s) for s in report.skipped]
    if lines:
        cancelled = any(r.cancelled for r in snap.reports) or snap.cancelled
        (st.warning if cancelled else st.success)(
            ("Extraction cancelled; finished batches are stored.\n" if cancelled else "Extraction finished.\n")
            + "\n".join(lines)
        )
    if skipped:
        with st.expander(f"{len(skipped)} clip(s) skipped, with reasons"):
            st.dataframe(
                pd.DataFrame([{"model": m, "clip": s.clip_id, "reason": s.reason, "path": s.path} for m, s in skipped]),
                hide_index=True,
            )
    try:
        problems = cached.dataset(dataset).problems if dataset is not None and snap.reports else ()
    except EmbedvizError:
        problems = ()  # the dataset itself is in trouble: the page says so where it opens it
    if problems:
        st.caption(f"{len(problems)} file(s) in the dataset folder are not clips (a folder named like one, a "
                   "broken link, a name that is not UTF-8, ...): Data & cache lists them with the reasons.")
    notices = [(report.model, n) for report in snap.reports for n in report.notices]
    if notices:
        counts = {kind: sum(1 for _, n in notices if n.kind == kind) for kind in NOTICE_KINDS}
        with st.expander(
            f"{len(notices)} notice(s) about odd but usable clips: "
            + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
        ):
            st.caption("; ".join(f"**{kind}**: {NOTICE_KINDS[kind]}" for kind, n in counts.items() if n) + ".")
            st.dataframe(
                pd.DataFrame([{"model": m, "notice": n.kind, "clip": n.clip_id, "detail": n.detail, "path": n.path}
                              for m, n in notices]),
                hide_index=True,
            )


# ---------------------------------------------------------------------- per-layer tables


def layer_by_layer(ready: Mapping[str, cached.LayerSelection], labels: Mapping[str, str],
                   compute: Callable[[cached.LayerSelection, str], pd.DataFrame], what: str) -> list[pd.DataFrame]:
    """Every model's table, one cached layer at a time under one progress bar with an ETA.

    ``compute(selection, layer)`` is a cached one-layer function (``cached.layer_metrics``,
    ``cached.layer_measures``), so layers already computed come back at once and a stopped
    run keeps the layers it finished. A model whose layer fails is reported once and left
    out. Returns one table per model (its layers in order, ``model`` set to its label).
    """
    from embedviz.progress import ProgressReporter, format_eta

    steps = [(name, layer) for name, sel in ready.items() for layer in sel.layers]
    bar = st.progress(0.0, text=f"{what}: starting…")

    def show(event) -> None:
        left = "" if event.eta_s is None else f" · about {format_eta(event.eta_s)} left"
        bar.progress(event.fraction, text=f"{what} · {event.message} ({event.done + 1} of {event.total}){left}")

    reporter = ProgressReporter(show, total=len(steps), stage=what)
    rows: dict[str, list[pd.DataFrame]] = {name: [] for name in ready}
    failed: set[str] = set()
    for name, layer in steps:
        if name not in failed:
            reporter.report(f"{labels[name]} · layer {layer}")
            try:
                table = compute(ready[name], layer)
                if len(table):
                    rows[name].append(table)
            except EmbedvizError as error:
                st.error(f"{labels[name]}: {error}")
                failed.add(name)
        reporter.done += 1  # counted, not shown: the next layer's report shows it
    bar.empty()
    return [pd.concat(parts, ignore_index=True).assign(model=labels[name])
            for name, parts in rows.items() if parts and name not in failed]


# ---------------------------------------------------------------------- clip player


def mark_clips(fig, coords, clip_ids, marked: dict[str, str]) -> None:
    """Ring clips in a scatter figure: ``marked`` maps clip id -> ring colour (the clicked
    clip, its neighbours, a selection, a search hit). A non-clickable SVG overlay, so it
    takes no WebGL context. ``coords`` is a row sequence (a numpy array works as one)."""
    import plotly.graph_objects as go

    ids = [str(c) for c in clip_ids]
    by_colour: dict[str, list[int]] = {}
    for i, clip in enumerate(ids):
        if clip in marked:
            by_colour.setdefault(marked[clip], []).append(i)
    for colour, rows in by_colour.items():
        points = [[float(v) for v in coords[i]] for i in rows]
        size = ring_size(colour)
        marker = {"symbol": "circle-open", "size": size, "color": colour, "line": {"width": 2.5}}
        name = RING_NAMES.get(colour, OTHER_RING_NAME)  # the browser tests find the clicked clip's ring by name
        common = {"mode": "markers", "marker": marker, "showlegend": False, "hoverinfo": "skip", "name": name}
        if points and len(points[0]) == 3:
            fig.add_trace(go.Scatter3d(x=[p[0] for p in points], y=[p[1] for p in points], z=[p[2] for p in points], **common))
        elif points:
            fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], **common))




def choice(view: ViewSettings, name: str, key: str, *, options: Sequence | None = None, value=None, **kwargs):
    """A segmented control for the view field ``name``: options, labels and the widget label
    come from the view table (:func:`embedviz.viewstate.spec`), its value from the URL."""
    from embedviz.viewstate import spec

    row = spec(name)
    opts = list(options if options is not None else row.options)
    value = getattr(view, name) if value is None else value
    state.seed(key, value if value in opts else opts[0], opts)
    return st.segmented_control(
        kwargs.pop("label", row.label), opts, key=key, required=True, wrap=True, format_func=row.format, **kwargs
    )


def clip_card(clip: pd.Series, caption: str = "") -> None:
    """Word, speaker and a player for one clip (the path comes from the validated dataset)."""
    st.markdown(f"**{clip['word']}** · speaker `{clip['speaker']}`" + (f" · {caption}" if caption else ""))
    path = Path(str(clip["path"]))
    if path.is_file():
        st.audio(str(path), format=mimetypes.guess_type(path.name)[0] or "audio/wav")
    else:
        st.caption(f"cannot play {clip['clip_id']}: the file is gone ({path})")
