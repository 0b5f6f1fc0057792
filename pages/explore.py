"""Explore: pick models, layers and words, extract once, then look at every layer.

Thin page: widgets (seeded from the URL) -> ViewSettings (written back to the URL) ->
cached library calls (ui.cached) -> plots. Only the Extract button runs models (in a
background thread, ui.jobs); every other control redraws from the embedding store.
"""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from embedviz.errors import EmbedvizError
from embedviz.settings import model_roots
from embedviz.viewstate import ALL, MAX_SEED, ViewSettings, default_words
from ui import cached, state, widgets

state.ensure_routed()  # must run before anything is drawn

POOLINGS = {
    "mean": "mean",
    "max": "max",
    "meanstd": "mean+std",
    "centre": "centre",
    "speech": "speech",
    "time": "at time",
}
POOLING_HELP = (
    "How a clip's frames become one vector: mean / max over frames, mean and standard deviation "
    "side by side, the centre frame, the mean over frames with speech energy (drops silence), "
    "or the frame at a chosen time."
)
METHODS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
PREPROCESS = {"none": "none", "standardize": "standardize", "sphereize": "sphereize"}
MODES = {"individual": "one per layer", "concatenate": "concatenated"}
CLIP_KEY = "ex_clip"
#: Browsers keep about 16 WebGL contexts per page and Plotly's Scattergl takes two per plot:
#: past this many plots on the page, every plot is drawn as SVG.
MAX_WEBGL_PANELS = 6
CLIP_SPACE_KEY = "_ev_clip_space"

widgets.collect_finished_job()
view, words_df, nav = widgets.page_start()

st.title("Explore")
st.caption(
    "Choose models, layers and words, press **Extract** once, then change pooling, projection and colours "
    "freely: the plots are redrawn from the stored embeddings. Click a point to hear its clip."
)
state.show_warnings()


def _model_options(table, view: ViewSettings) -> list[str]:
    from embedviz.catalogue import RANDOM_INIT_PREFIX, catalogue_ids

    options = list(table["model"])
    options += [RANDOM_INIT_PREFIX + i for i in catalogue_ids()]
    options += [m for m in view.models if m not in options]  # e.g. a URL folder deeper than the scan
    return options


def _model_caption(name: str, rows: dict) -> str:
    row = rows.get(name)
    if row is None and name.startswith("random-init:"):
        base = rows.get(name.split(":", 1)[1])
        params = base["params"] if base is not None else "?"
        return f"{cached.model_label(name)} · {params} · {cached.STATUS_BADGES['builtin']}"
    if row is None:
        return cached.model_label(name)
    size = "no weights" if row["params"] == "—" else row["params"]
    return f"{row['label']} · {size} · {row['status']}"


# ---------------------------------------------------------------------- steps 1 and 2

top_left, top_right = st.columns(2, gap="medium")
with top_left.container(border=True):
    st.subheader("1 · Models", divider=False)
    try:
        table = cached.model_table(tuple(str(r) for r in model_roots()))
    except EmbedvizError as error:
        st.error(str(error))
        widgets.sidebar(view, nav)
        st.stop()
    rows = {r["model"]: r for r in table.to_dict("records")}
    options = _model_options(table, view)
    state.seed("ex_models", list(view.models), options)
    models = st.multiselect(
        "Models",
        options,
        key="ex_models",
        format_func=lambda name: _model_caption(name, rows),
        placeholder="Choose one or more models",
        help="Catalogue models, local folders under EMBEDVIZ_MODEL_ROOTS, the log-mel/MFCC baseline, and "
        "random-init controls (the same architecture with random weights: what does training add?).",
    )
    for name in models:
        row = rows.get(name)
        if row is not None and not row["ready"]:
            st.warning(f"**{row['label']}** cannot be loaded now: {row['detail']}.", icon=":material/cloud_off:")
    with st.expander(f"Model catalogue ({len(table)} models)"):
        st.dataframe(
            table[["label", "family", "params", "sample rate", "layers", "status", "detail", "model"]],
            hide_index=True,
            column_config={"detail": st.column_config.TextColumn("detail", width="large")},
        )
    init_seed = view.init_seed
    if any(m.startswith("random-init:") for m in models):
        state.seed("ex_init_seed", view.init_seed)
        init_seed = int(st.number_input("Random-init seed", 0, MAX_SEED, step=1, key="ex_init_seed"))
    whisper_mode = view.whisper_mode
    families = {}
    for name in models:
        try:
            families[name] = cached.model_family(name)
        except EmbedvizError as error:
            st.error(f"{name}: {error}")
    if "whisper" in families.values():
        state.seed("ex_whisper", view.whisper_mode)
        whisper_mode = st.segmented_control(
            "Whisper input",
            ["padded", "crop"],
            key="ex_whisper",
            required=True,
            wrap=True,
            format_func={"padded": "padded to 30 s (exact)", "crop": "cropped (fast, approximate)"}.get,
            help="Whisper's encoder was trained on 30 s windows; padding is exact, cropping is much faster.",
        )

layers_by_model: dict[str, tuple[str, ...]] = {}
new_view = view.replace(models=tuple(models), init_seed=init_seed, whisper_mode=whisper_mode, layers=())
with top_right.container(border=True):
    st.subheader("2 · Layers", divider=False)
    if not models:
        st.info("Choose a model in step 1.")
    for name in models:
        if name not in families:
            continue
        available = cached.model_layers(name)
        key = f"ex_layers::{name}"
        state.seed(key, list(view.layers_for(name, available)), available)
        chosen = st.multiselect(
            cached.model_label(name),
            available,
            key=key,
            placeholder="No layers: this model is not plotted",
            help="Layer names: 'cnn' is the convolutional front end, numbers are transformer layers "
            "(0 = input to the first), DAC has encoder blocks and latents.",
        )
        ordered = tuple(layer for layer in available if layer in chosen)
        layers_by_model[name] = ordered
        new_view = new_view.with_layers(name, ALL if len(ordered) == len(available) else ordered)

# ---------------------------------------------------------------------- steps 3 and 4
counts = dict(zip(words_df["word"], words_df["clips"], strict=True))
bottom_left, bottom_right = st.columns(2, gap="medium")
with bottom_left.container(border=True):
    st.subheader("3 · Words", divider=False)
    word_options = list(counts)
    state.seed("ex_words", list(view.words or default_words(word_options)), word_options)
    words = st.multiselect(
        "Words",
        word_options,
        key="ex_words",
        format_func=lambda w: f"{w} ({counts[w]})",
        placeholder="Choose words",
        help="Clips per word in the dataset in brackets.",
    )
    max_n = int(max(counts.values())) if counts else 1
    c1, c2 = st.columns([3, 1])
    state.seed("ex_n", min(view.samples, max_n))
    if st.session_state["ex_n"] > max_n:
        st.session_state["ex_n"] = max_n
    with c1:
        samples = int(
            st.slider(
                "Clips per word",
                1,
                max(2, max_n),
                key="ex_n",
                help="Sampled across speakers; words with fewer clips use all of theirs.",
            )
        )
    with c2:
        state.seed("ex_seed", view.seed)
        seed = int(
            st.number_input(
                "Seed", 0, MAX_SEED, step=1, key="ex_seed", help="Which clips are sampled, and the t-SNE / UMAP seed."
            )
        )

with bottom_right.container(border=True):
    st.subheader("4 · Visualisation", divider=False)
    c1, c2 = st.columns(2)
    with c1:
        state.seed("ex_method", view.method)
        method = st.segmented_control(
            "Projection", list(METHODS), key="ex_method", required=True, wrap=True, format_func=METHODS.get
        )
        state.seed("ex_dims", view.dims)
        dims = st.segmented_control(
            "Dimensions", [2, 3], key="ex_dims", required=True, wrap=True, format_func=lambda d: f"{d}D"
        )
        state.seed("ex_pre", view.preprocess)
        preprocess = st.segmented_control(
            "Preprocess",
            list(PREPROCESS),
            key="ex_pre",
            required=True,
            wrap=True,
            format_func=PREPROCESS.get,
            help="Standardize: z-score each feature. Sphereize: centre, then scale every vector to unit length "
            "(cosine geometry).",
        )
    with c2:
        kind = view.pooling.split(":", 1)[0]
        state.seed("ex_pool", kind)
        pool_kind = st.segmented_control(
            "Pooling",
            list(POOLINGS),
            key="ex_pool",
            required=True,
            wrap=True,
            format_func=POOLINGS.get,
            help=POOLING_HELP,
        )
        pooling = pool_kind
        if pool_kind == "time":
            # Up to the longest clip of the dataset (later times give each clip's last frame).
            longest = float(cached.manifest(view.dataset)["duration"].max() or 1.0)
            t_max = max(0.1, min(30.0, math.ceil(longest * 10) / 10))
            t0 = float(view.pooling.split(":", 1)[1]) if view.pooling.startswith("time:") else min(0.5, t_max)
            state.seed("ex_pool_t", min(t0, t_max))
            t = st.slider(
                "Time (s)",
                0.0,
                t_max,
                step=0.1,
                key="ex_pool_t",
                format="%.1f s",
                help="The frame at this time in each clip (clips shorter than this use their last frame).",
            )
            pooling = f"time:{t:g}"
        state.seed("ex_mode", view.layer_mode)
        layer_mode = st.segmented_control(
            "Layers", list(MODES), key="ex_mode", required=True, wrap=True, format_func=MODES.get
        )
        if layer_mode == "individual":
            state.seed("ex_align", view.align == "on")
            align = st.toggle(
                "Align layers",
                key="ex_align",
                help="Rotate each layer's projection onto the previous layer's (orthogonal Procrustes) so "
                "clusters keep their place from one panel to the next. Distances are unchanged.",
            )
        else:
            align = view.align == "on"
        state.seed("ex_color", view.color_by)
        color_by = st.segmented_control("Colour by", ["word", "speaker"], key="ex_color", required=True, wrap=True)

# The clip picked in a plot (or in the list beside the plots); only clips of this sample.
try:
    sample_ids = list(cached.sample(view.dataset, tuple(words), samples, seed)["clip_id"]) if words else []
except EmbedvizError as error:
    st.error(str(error))
    sample_ids = []
if view.clip and view.clip not in sample_ids and state.reseeding():
    st.warning(f"Clip {view.clip!r} from the URL is not among the sampled clips; no clip is selected.")
state.seed(CLIP_KEY, view.clip, [""] + sample_ids)
new_view = new_view.replace(
    words=tuple(words),
    samples=samples,
    seed=seed,
    method=method,
    dims=int(dims),
    preprocess=preprocess,
    pooling=pooling,
    layer_mode=layer_mode,
    color_by=color_by,
    align="on" if align else "off",
    clip=st.session_state[CLIP_KEY],
)
state.commit(new_view)
view = new_view

# ---------------------------------------------------------------------- extract
plotted = [m for m in view.models if layers_by_model.get(m)]
word_tuple = tuple(view.words)
clip_sel = cached.ClipSelection.of(view)
status: dict[str, tuple[cached.ModelSelection, int, int]] = {}  # model -> (selection, missing, total)
with st.container(border=True):
    if not word_tuple:
        st.info("Choose at least one word in step 3.")
    lines = []
    for name in view.models if word_tuple else []:
        if name not in families:
            continue
        try:
            model_sel = cached.ModelSelection.of(view, name)
            missing, total = cached.missing_count(model_sel)
        except EmbedvizError as error:
            st.error(f"{cached.model_label(name)}: {error}")
            continue
        status[name] = (model_sel, missing, total)
        mark = ":green[:material/check_circle:]" if missing == 0 else ":orange[:material/pending:]"
        lines.append(
            f"{mark} **{cached.model_label(name)}**: {missing} clip(s) to compute, {total - missing} already stored"
        )
    if lines:
        st.markdown("  \n".join(lines))
    to_do = [m for m, (_, missing, _) in status.items() if missing]
    running = widgets.job_running()
    if st.button(
        "Extract",
        type="primary",
        icon=":material/play_arrow:",
        disabled=running or not to_do,
        help="Runs the models on the clips that are not stored yet; stored clips are never recomputed."
        if to_do
        else "Everything this view needs is stored.",
    ):
        from ui.jobs import Task

        sample = clip_sel.sample()
        tasks = [Task(view.extraction_settings(m), sample, cached.model_label(m)) for m in to_do]
        widgets.start_extraction(tasks)
        st.rerun()  # redraw at once with Extract disabled and the progress bar showing
    if widgets.job_running():
        widgets.job_progress()
    widgets.last_job_report()

# ---------------------------------------------------------------------- results


def _select_clip(chart_key: str, model: str, layers: tuple[str, ...]) -> None:
    """Plot selection callback: the clicked point's clip id is in customdata[0]."""
    event = st.session_state.get(chart_key)
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    for point in points:
        data = point.get("customdata")
        if data:
            st.session_state[CLIP_KEY] = str(data[0])
            st.session_state[CLIP_SPACE_KEY] = (model, layers)
            return


def _clear_clip() -> None:
    st.session_state[CLIP_KEY] = ""


if plotted and word_tuple and status:
    from embedviz.figures import scatter_figure, title_for, word_colors

    reduction = view.reduction_settings()
    # Colours from the dataset's whole word list: a word keeps its colour whatever else is chosen.
    colors = word_colors(words_df["word"]) if view.color_by == "word" else None
    results, side = st.columns([3, 1], gap="medium")
    spaces: list[tuple[str, tuple[str, ...]]] = []

    def _draw_panel(name: str, layers: tuple[str, ...], coords: np.ndarray | None = None) -> None:
        """One plot: projection of a model's layer (or concatenated layers) with its numbers.

        ``coords`` replaces the panel's own projection (the Procrustes-aligned one)."""
        label = cached.model_label(name)
        try:
            p = cached.panel(cached.LayerSelection(status[name][0], layers, view.pooling), reduction)
        except EmbedvizError as error:
            st.error(f"{label} · {'+'.join(layers)}: {error}")
            return
        spaces.append((name, layers))
        coords = p.coords if coords is None else coords
        title = title_for(label, "+".join(layers), view.pooling, p.projection or reduction)
        fig = scatter_figure(
            coords,
            p.clips["clip_id"],
            p.clips["word"],
            p.clips["speaker"],
            color_by=view.color_by,
            # model / layer and pooling / projection on three lines: narrow panels cut long titles.
            title="<br>".join(title.split(" · ", 1)).replace(" pooling · ", " pooling<br>", 1),
            colors=colors,
            webgl=None if n_panels <= MAX_WEBGL_PANELS else False,
        )
        fig.update_layout(
            height=440,
            title={"font": {"size": 12}},
            legend={"orientation": "h", "yanchor": "top", "y": -0.1, "title": {"text": ""}},
            # 24+ speakers would bury the plot under its legend; hover names them.
            showlegend=view.color_by == "word",
            margin={"l": 10, "r": 10, "t": 80, "b": 30},
        )
        if view.dims == 2:
            # Projection axes have no units worth a title in a small multiple.
            fig.update_xaxes(title_text=None)
            fig.update_yaxes(title_text=None)
        widgets.mark_clip(fig, coords, p.clips["clip_id"].to_numpy(), view.clip)
        chart_key = f"plot::{name}::{'+'.join(layers)}"
        st.plotly_chart(
            fig,
            key=chart_key,
            on_select=lambda k=chart_key, m=name, ls=layers: _select_clip(k, m, ls),
            selection_mode="points",
            config={"displaylogo": False},
        )
        note = f" · {p.n_clips} of {p.n_clips + p.n_missing} clips stored" if p.n_missing else ""
        st.caption(
            f"k-NN accuracy **{widgets.fmt(p.knn)}** · silhouette **{widgets.fmt(p.silhouette)}** · "
            f"chance {widgets.fmt(p.chance)} · trust {widgets.fmt(p.trust)}{note}",
            help="Leave-one-out 5-NN word accuracy and silhouette, both with cosine distance in the "
            "original embedding space (not the picture). Trust is the projection's trustworthiness "
            "(1 = the picture's 5 nearest neighbours are neighbours in the original space too).",
        )

    # Individual: a section per model, one plot per layer. Concatenated: one plot per model.
    extracted = [m for m in plotted if m in status and status[m][1] < status[m][2]]
    if view.layer_mode == "individual":
        sections = [(cached.model_label(m), [(m, (layer,)) for layer in layers_by_model[m]]) for m in plotted]
    else:
        sections = [("Layers concatenated", [(m, layers_by_model[m]) for m in plotted])]
    n_panels = sum(len(panels) for _, panels in sections)
    with results:
        for header, panels in sections:
            st.markdown(f"#### {header}")
            for name in dict.fromkeys(m for m, _ in panels):
                if name in status and name not in extracted:
                    if widgets.job_running():
                        st.info(f"{cached.model_label(name)}: extracting… (progress above); plots appear when done.")
                    else:
                        st.info(
                            f"{cached.model_label(name)}: not extracted yet; press **Extract** to compute "
                            f"{status[name][2]} clip(s)."
                        )
            panels = [(m, ls) for m, ls in panels if m in extracted]
            if not panels:
                continue
            # 2 or 4 panels as 2 per row (no orphan), otherwise 3; 3D scenes need more room.
            n_cols = 2 if len(panels) in (2, 4) or view.dims == 3 else min(len(panels), 3)
            aligned: list[np.ndarray | None] = [None] * len(panels)
            if view.layer_mode == "individual" and view.align == "on" and len(panels) > 1:
                sels = tuple(cached.LayerSelection(status[m][0], ls, view.pooling) for m, ls in panels)
                try:
                    aligned = list(cached.aligned_coords(sels, reduction))
                except EmbedvizError:
                    pass  # each panel reports its own error below
            cols = st.columns(n_cols)
            for i, (name, layers) in enumerate(panels):
                with cols[i % n_cols]:
                    _draw_panel(name, layers, aligned[i])

    with side:
        with st.container(border=True):
            st.markdown("#### Selected clip")
            clip_id = view.clip
            sample_df = clip_sel.sample()
            match = sample_df[sample_df["clip_id"] == clip_id] if clip_id else sample_df.iloc[0:0]
            st.selectbox(
                "Clip",
                [""] + list(sample_df["clip_id"]),
                key=CLIP_KEY,
                format_func=lambda c: c or "click a point, or choose a clip",
                help="Clicking a point in a plot picks its clip (in 3D plots a click may not register in "
                "every browser; choose the clip here instead).",
            )
            if not clip_id:
                st.caption("Click a point in any plot to hear its clip and its 5 nearest neighbours.")
            elif not match.empty:
                widgets.clip_card(match.iloc[0])
                space = st.session_state.get(CLIP_SPACE_KEY)
                if space not in spaces:
                    space = spaces[0] if spaces else None
                if space is not None:
                    model, layers = space
                    try:
                        nn = cached.neighbours(cached.LayerSelection(status[model][0], layers, view.pooling), clip_id)
                    except EmbedvizError as error:
                        st.error(str(error))
                        nn = None
                    if nn is not None and len(nn):
                        st.markdown(
                            f"**Nearest neighbours** in {cached.model_label(model)} · layer {'+'.join(layers)} "
                            f"({view.pooling} pooling, cosine distance in the original space)"
                        )
                        for _, row in nn.iterrows():
                            widgets.clip_card(row, caption=f"distance {row['distance']:.3f}")
                st.button("Clear selection", on_click=_clear_clip, key="ex_clear_clip")

widgets.sidebar(view, nav)
