"""Data & cache: the dataset (words, speakers, durations), switching datasets, and the
embedding store (what is stored, how big, delete)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from embedviz.datasets import demo_root
from embedviz.errors import EmbedvizError
from embedviz.settings import data_roots
from embedviz.roots import check_dataset_path
from embedviz.viewstate import keep_words
from ui import cached, data_panels, state, widgets

state.ensure_routed()  # must run before anything is drawn

PENDING_DELETE = "_dc_pending_delete"
FLASH = "_dc_flash"
OPENED = "_dc_opened"
READ_DURATIONS = "_dc_read_durations"
#: Datasets up to this many clips have every duration read when shown (about 0.1 ms a clip).
READ_ALL_DURATIONS_UP_TO = 5000

view, words_df, nav = widgets.page_start(need_dataset=False)


def _open(root: str) -> None:
    """Make ``root`` (checked; ``""`` = demo) the view's dataset, keeping the chosen words it has."""
    try:
        new_words = cached.dataset_words(root)
    except EmbedvizError as error:
        st.error(f"Cannot use {root or 'the demo'} as a dataset: {error}")
        return
    kept, dropped = keep_words(view.words, new_words)
    state.commit(view.replace(dataset=root, words=kept, clip="", nn_model="", nn_layers=(), selected=(), hide=()))
    message = f"Opened {widgets.dataset_label(root)}: {len(new_words)} words. Explore now uses it."
    if dropped:
        message += (f" Not in this dataset, so dropped from the chosen words: {', '.join(dropped)}."
                    + ("" if kept else " Its default words are used."))
    elif kept:
        message += f" Chosen words kept: {', '.join(kept)}."
    st.session_state[OPENED] = message
    st.rerun()  # redraw the page for the new dataset (the summary above was drawn for the old one)


st.title("Data & cache")
state.show_warnings()

# ---------------------------------------------------------------------- dataset
with st.container(border=True):
    st.subheader("Dataset")
    if words_df is not None:
        m = cached.manifest(view.dataset)
        # Durations are read lazily (sampled clips): all at once only when that is quick,
        # or when asked; they are kept in the dataset's index, so each header is read once.
        read_all = len(m) <= READ_ALL_DURATIONS_UP_TO or st.session_state.pop(READ_DURATIONS, False)
        if read_all and len(m) > READ_ALL_DURATIONS_UP_TO:
            bar = st.progress(0.0, text="Reading clip durations…")

            def _show(event) -> bool:
                bar.progress(event.fraction, text=f"Reading clip durations: {event.done:,} of {event.total:,}")
                return False  # never asks to stop

            known = cached.clip_durations(view.dataset, read_all=True, progress=_show)
            bar.empty()
        else:
            known = cached.clip_durations(view.dataset, read_all=read_all)
        partial = len(known) < len(m)
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Words", len(words_df))
        c2.metric("Clips", len(m))
        c3.metric("Speakers", m["speaker"].nunique())
        unreadable = int(known.isna().sum())
        c4.metric("Unreadable clips", unreadable, help="Listed but cannot be decoded; extraction skips them."
                  + (f" Counted among the {len(known):,} clips whose header has been read." if partial else ""))
        st.caption(f"Folder: `{demo_root() if not view.dataset else view.dataset}`")
        data_panels.render_dataset_problems(view.dataset)  # files discovery could not use, if any
        left, right = st.columns([2, 3], gap="medium")
        with left:
            st.dataframe(
                words_df,
                hide_index=True,
                height=320,
                column_config={"word": "word", "clips": "clips", "speakers": "speakers"},
            )
        with right:
            import plotly.graph_objects as go

            durations = known.dropna()
            if partial:
                st.caption(f"Durations read so far: {len(known):,} of {len(m):,} clips (a clip's duration is "
                           "read when it is first sampled).")
                if st.button(f"Read all {len(m):,} durations", key="dc_read_durations",
                             help="Reads every clip's header once; the durations are kept for the next time."):
                    st.session_state[READ_DURATIONS] = True
                    st.rerun()
            if durations.nunique() <= 1:
                # A histogram of one value is a single wide bar that says nothing.
                st.markdown("**Clip durations**")
                st.write(
                    f"Every readable clip{' read so far' if partial else ''} lasts {durations.iloc[0]:.2f} s."
                    if len(durations) else ("No durations read yet." if partial else "No readable clips.")
                )
            else:
                fig = go.Figure(go.Histogram(x=durations, nbinsx=30, marker={"color": "#4338ca"}))
                fig.update_layout(
                    title={"text": "Clip durations"},
                    template="plotly_white",
                    height=320,
                    xaxis={"title": {"text": "seconds"}},
                    yaxis={"title": {"text": "clips"}},
                    margin={"l": 10, "r": 10, "t": 50, "b": 10},
                    bargap=0.05,
                )
                st.plotly_chart(fig, key="dc_durations", config={"displaylogo": False})

    st.markdown("##### Open another dataset")
    roots = data_roots()
    st.caption(
        "A folder laid out like Speech Commands (`<root>/<word>/<speaker>_nohash_<n>.wav`), inside one of the "
        "configured data roots (EMBEDVIZ_DATA_ROOTS): "
        + (", ".join(f"`{r}`" for r in roots) if roots else "none configured, so only the bundled demo is allowed")
        + "."
    )
    with st.form("dc_open", border=False):
        path = st.text_input(
            "Dataset folder", value=view.dataset, key="dc_path", placeholder="/absolute/path/to/speech_commands"
        )
        c1, c2 = st.columns([1, 5])
        open_clicked = c1.form_submit_button("Open", type="primary")
        demo_clicked = c2.form_submit_button("Use the bundled demo")
    if OPENED in st.session_state:
        st.success(st.session_state.pop(OPENED))
    if demo_clicked:
        _open("")
    elif open_clicked:
        raw = (path or "").strip()
        checked, why = check_dataset_path(raw, roots, demo_root()) if raw else (None, "no folder given")
        if checked is None:
            st.error(f"Cannot use {raw or 'this'} as a dataset: {why}.")
        else:
            _open(checked)

    st.markdown("##### Fetch Speech Commands")
    data_panels.render_fetch_panel(_open)

# ---------------------------------------------------------------------- store
with st.container(border=True):
    st.subheader("Stored embeddings")
    root = cached.store_root()
    st.caption(
        f"Store folder: `{root}` (set EMBEDVIZ_CACHE to move it). Every layer and pooling of a clip is "
        "stored once per model and options; nothing stored is ever recomputed."
    )
    try:
        entries = cached.store_entries(str(root))
    except (EmbedvizError, OSError) as error:
        st.error(f"The embedding store cannot be read: {error}")
        entries = pd.DataFrame()
    if entries.empty:
        if FLASH in st.session_state:
            st.success(st.session_state.pop(FLASH))
        st.info("Nothing stored yet: press Extract on the Explore page.")
    else:
        shown = entries.assign(
            size=entries["bytes"].map(widgets.human_bytes),
            model=entries["model"].map(cached.model_label),
        )[["model", "options", "clips", "layers", "size", "current", "entry"]]
        st.caption(f"{len(entries)} entries, {widgets.human_bytes(float(entries['bytes'].sum()))} in total.")
        st.dataframe(shown, hide_index=True, key="dc_entries")
        labels = {
            row["entry"]: f"{cached.model_label(row['model'])} · {row['clips']} clips · "
            f"{widgets.human_bytes(row['bytes'])} · {row['entry'][:8]}"
            for row in entries.to_dict("records")
        }
        chosen = st.multiselect(
            "Entries to delete",
            list(labels),
            key="dc_chosen",
            format_func=labels.get,
            placeholder="Choose stored entries",
        )
        if FLASH in st.session_state:
            st.success(st.session_state.pop(FLASH))
        if st.button("Delete…", disabled=not chosen, key="dc_delete", icon=":material/delete:"):
            st.session_state[PENDING_DELETE] = chosen
        pending = [e for e in st.session_state.get(PENDING_DELETE, []) if e in set(entries["entry"])]
        if pending:
            size = float(entries[entries["entry"].isin(pending)]["bytes"].sum())
            st.warning(
                f"Delete {len(pending)} stored entr{'y' if len(pending) == 1 else 'ies'} "
                f"({widgets.human_bytes(size)})? Plots that need them will ask to extract again."
            )
            c1, c2 = st.columns([1, 5])
            if c1.button("Yes, delete", type="primary", key="dc_confirm"):
                store = cached.get_store()
                try:
                    for entry in pending:
                        store.delete(entry)
                except EmbedvizError as error:
                    st.error(str(error))
                else:
                    st.session_state[FLASH] = (
                        f"Deleted {len(pending)} stored entr{'y' if len(pending) == 1 else 'ies'}."
                    )
                st.session_state.pop(PENDING_DELETE, None)
                cached.store_entries.clear()
                st.rerun()
            if c2.button("Cancel", key="dc_cancel"):
                st.session_state.pop(PENDING_DELETE, None)
                st.rerun()

state.commit(view)
widgets.sidebar(view, nav)
