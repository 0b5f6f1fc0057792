"""Explore: pick models, layers and words, extract once, then look at every layer.

Reads top to bottom as the user sees it: each step draws its widgets (seeded from the
URL) and returns what was chosen (``ui.explore_steps``); the new view is written back to
the URL; the results come from the embedding store (``ui.explore_results``). Only the
Extract button runs models on the dataset (in a background thread, ``ui.jobs``); a clip
the user uploads or records runs alone (``ui.own_clip``) and is starred in every plot.
Below the plots, the downloads (``ui.exports``).
"""

from __future__ import annotations

import streamlit as st

from ui import explore_results, explore_steps, exports, own_clip, state, widgets

state.ensure_routed()  # must run before anything is drawn

widgets.collect_finished_job()
view, words_df, nav = widgets.page_start()

st.title("Explore")
st.caption(
    "Choose models, layers and words, press **Extract** once, then change pooling, projection and colours "
    "freely: the plots are redrawn from the stored embeddings. Click a point to hear its clip; drag a box "
    "or lasso in a 2D plot to select clips in every plot."
)
state.show_warnings()

top_left, top_right = st.columns(2, gap="medium")
with top_left.container(border=True):
    models = explore_steps.choose_models(view)
if models is None:
    widgets.sidebar(view, nav)
    st.stop()
with top_right.container(border=True):
    layers = explore_steps.choose_layers(view, models)

bottom_left, bottom_right = st.columns(2, gap="medium")
with bottom_left.container(border=True):
    words, samples, seed = explore_steps.choose_words(view, words_df)
with bottom_right.container(border=True):
    look = explore_steps.choose_visualisation(view)

view = explore_steps.with_layers(
    view.replace(models=models.models, init_seed=models.init_seed, whisper_mode=models.whisper_mode,
                 words=words, samples=samples, seed=seed, **look),
    layers,
)
with st.expander("Highlight and hide", expanded=bool(view.find or view.hide)):
    c1, c2 = st.columns(2)
    state.seed("ex_find", view.find)
    find = c1.text_input("Highlight a word, speaker or clip", key="ex_find", max_chars=100,
                         help="Matching clips are ringed in pink in every plot.")
    state.seed("ex_hide", list(view.hide), list(view.words))
    hide = c2.multiselect("Hide words in every plot", list(view.words), key="ex_hide")
view = view.replace(find=find.strip(), hide=tuple(hide))
panels = explore_steps.planned_panels(view, layers)
widgets.preload_charts(explore_steps.expected_renderer(view, panels))  # loads while the server works
view = explore_steps.choose_clip(view, panels)
state.commit(view)
widgets.sidebar(view, nav)  # the view is final: links and summaries show while the plots compute

with st.container(border=True):
    status = explore_steps.extract_step(view, models)

own = own_clip.placed(view, status, panels) if status else None  # the user's clip, starred in every plot
if panels and view.words and status:
    explore_results.render_results(view, panels, status, words_df, own=own.points() if own else None)

if status:
    with st.container(border=True):
        st.subheader("Your own clip")
        own_clip.render_own_clip(view=view, status=status, panels=panels)
    with st.container(border=True):
        st.subheader("Export")
        exports.render_exports(view=view, status=status, panels=panels)
