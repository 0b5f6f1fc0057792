"""Layer analysis: which layers and models separate the chosen words best, in numbers.

Uses the models, words and clips chosen on Explore (the same URL state) and every layer
of each model. All numbers are computed in the original embedding space from the store;
nothing here runs a model.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from embedviz.errors import EmbedvizError
from embedviz.viewstate import ViewSettings, spec
from ui import cached, measures_panel, state, widgets

state.ensure_routed()  # must run before anything is drawn
widgets.preload_charts()  # plotly.js loads in the browser while the server works

METRIC = spec("metric")  # options and labels: metrics.SEPARABILITY_METRICS, figures.METRIC_LABELS
view, words_df, nav = widgets.page_start()

st.title("Layer analysis")
st.caption(
    "How well each layer separates the chosen words, measured in the original embedding space "
    "(cosine distance), for every layer of the models chosen on Explore."
)
state.show_warnings()

words = tuple(view.words)
st.markdown(
    f"**{len(view.models)} model(s)** · words {', '.join(words) or '—'} · {view.samples} clips per word · "
    f"{view.pooling} pooling · dataset: {widgets.dataset_label(view.dataset)}"
)
explore_link = st.empty()  # filled at the end, so the link carries this page's final state


def _finish(view: ViewSettings, link_label: str) -> None:
    """Write the page's final view to the URL, then the links that carry it (the sidebar's
    replace those drawn before the metrics were computed)."""
    state.commit(view)
    widgets.nav_links(view, nav)
    explore_link.page_link(
        widgets.EXPLORE_PAGE, label=link_label, icon=":material/tune:", query_params=view.to_query_params()
    )


# The sidebar now, so its links and summaries show while the metrics compute; its links
# are drawn again with the final view at the end (_finish).
widgets.sidebar(view, nav)

# Models with every clip stored; the others are listed with what is missing.
ready: dict[str, cached.LayerSelection] = {}  # model -> every layer, the view's pooling
for name in view.models:
    try:
        layers = cached.model_layers(name)
        model_sel = cached.ModelSelection.of(view, name)
        missing, total = cached.missing_count(model_sel) if words else (0, 0)
    except EmbedvizError as error:
        st.error(f"{name}: {error}")
        continue
    if total and missing == total:
        st.info(f"**{cached.model_label(name)}** has no stored clips for this selection yet: extract it on Explore.")
        continue
    if missing:
        st.caption(f"{cached.model_label(name)}: {missing} of {total} clips are not stored; they are left out.")
    ready[name] = cached.LayerSelection(model_sel, layers, view.pooling)

if not words:
    st.info("Choose words on Explore first.")
if not ready or not words:
    _finish(view, "Go to Explore")
    st.stop()

labels = {m: cached.model_label(m) for m in ready}

# ---------------------------------------------------------------------- layer curves + table
tables = widgets.layer_by_layer(ready, labels, cached.layer_metrics, "Metrics")
full = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()

with st.container(border=True):
    st.subheader("Separability by layer")
    metric = widgets.choice(
        view,
        "metric",
        "la_metric",
        help="k-NN: leave-one-out 5-NN word accuracy. Speaker-disjoint: neighbours from the same speaker may not "
        "vote. Silhouette: cluster separation (-1..1). Linear probe: 5-fold logistic-regression accuracy.",
    )
    view = view.replace(metric=metric)
    if len(full):
        from embedviz.figures import layer_curve_figure

        st.plotly_chart(layer_curve_figure(full, metric), key="la_curve", config={"displaylogo": False})
        from embedviz.metrics import METRIC_COLUMNS, SPEAKER_WORD_COLUMNS

        # Depth is the curve's x axis and the word count is in the summary line above.
        shown = full[["model", "layer", *(c for c in METRIC_COLUMNS if c not in ("depth", "n_words"))]]
        best = [
            part.loc[part[metric].idxmax()] for _, part in full.dropna(subset=[metric]).groupby("model", sort=False)
        ]
        if best:
            st.markdown(
                "Best layer by "
                + METRIC.format(metric)
                + ": "
                + "; ".join(f"**{r['model']}** layer {r['layer']} ({r[metric]:.2f})" for r in best)
            )
        with st.expander("Metrics table", expanded=False):
            st.dataframe(
                shown,
                hide_index=True,
                column_config={
                    c: st.column_config.NumberColumn(format="%.3f")
                    for c in (*METRIC.options, "chance", *SPEAKER_WORD_COLUMNS) if not c.endswith("_n")
                },
            )
    else:
        st.info("No metrics: too few stored clips.")

measures_panel.render_speaker_word(full)
view = measures_panel.render_measures(view, ready, labels)

left, right = st.columns(2, gap="medium")

# ---------------------------------------------------------------------- confusion matrix
with left.container(border=True):
    st.subheader("Confusion matrix")
    names = list(ready)
    cm_model_default = view.cm_model if view.cm_model in names else names[0]
    state.seed("la_cm_model", cm_model_default, names)
    cm_model = st.selectbox("Model", names, key="la_cm_model", format_func=labels.get)
    cm_layers = list(ready[cm_model].layers)
    cm_layer_default = view.cm_layer if view.cm_layer in cm_layers else cm_layers[-1]
    state.seed("la_cm_layer", cm_layer_default, cm_layers)
    cm_layer = st.selectbox("Layer", cm_layers, key="la_cm_layer")
    view = view.replace(cm_model=cm_model, cm_layer=cm_layer)
    try:
        from embedviz.figures import confusion_figure

        matrix, names_cm = cached.confusion(dataclasses.replace(ready[cm_model], layers=(cm_layer,)))
        fig = confusion_figure(matrix, names_cm, title=f"{labels[cm_model]} · layer {cm_layer} · 5-NN predictions")
        fig.update_layout(width=None)
        st.plotly_chart(fig, key="la_confusion", config={"displaylogo": False})
    except EmbedvizError as error:
        st.error(str(error))

# ---------------------------------------------------------------------- CKA
with right.container(border=True):
    st.subheader("Layer similarity (linear CKA)")
    modes = list(spec("cka_mode").options) if len(ready) > 1 else ["within"]
    cka_mode = widgets.choice(view, "cka_mode", "la_cka_mode", options=modes)
    names = list(ready)
    chosen = [m for m in view.cka_models if m in names]
    state.seed("la_cka_a", chosen[0] if chosen else names[0], names)
    model_a = st.selectbox(
        "Model" if cka_mode == "within" else "Model A (rows)", names, key="la_cka_a", format_func=labels.get
    )
    pair = [model_a]
    if cka_mode == "across":
        others = [m for m in names if m != model_a] or names
        state.seed("la_cka_b", chosen[1] if len(chosen) > 1 and chosen[1] in others else others[0], others)
        model_b = st.selectbox("Model B (columns)", others, key="la_cka_b", format_func=labels.get)
        pair.append(model_b)
    view = view.replace(cka_mode=cka_mode, cka_models=tuple(pair))
    try:
        from embedviz.figures import cka_figure

        df = cached.cka(tuple(ready[m] for m in pair))
        if df.empty:
            st.info("Too few clips stored for every layer to compare.")
        else:
            fig = cka_figure(df, title=f"Linear CKA · {view.pooling} pooling")
            # Model names on the axes: a title naming both would be cut off in a half-width panel.
            fig.update_layout(
                width=None,
                xaxis={"title": {"text": labels[pair[-1]]}},
                yaxis={"title": {"text": labels[pair[0]]}},
            )
            st.plotly_chart(fig, key="la_cka", config={"displaylogo": False})
    except EmbedvizError as error:
        st.error(str(error))

_finish(view, "Change models, words or pooling on Explore")
