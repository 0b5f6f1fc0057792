"""The Explore page's steps, each drawing its widgets and returning what the user chose.

``pages/explore.py`` calls them top to bottom, in the order the user sees them::

    models = choose_models(view)            # 1 · models (+ random-init seed, Whisper input)
    layers = choose_layers(view, models)    # 2 · layers per model
    clips = choose_words(view, words_df)    # 3 · words, clips per word, seed
    look = choose_visualisation(view, ...)  # 4 · projection, pooling, layer mode, colours
    status = extract_step(view, models)     # what is stored, the Extract button, progress
    render_results(view, ...)               # the panels, the selected clip and its neighbours

Every option list and label comes from the view table (:mod:`embedviz.viewstate`), which
takes them from the library modules that own them. No numbers are computed here: they
come from :mod:`ui.cached`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import streamlit as st

from embedviz import limits
from embedviz.errors import EmbedvizError
from embedviz.figures import Renderer, renderer_for
from embedviz.settings import model_roots
from embedviz.viewstate import ALL, MAX_SEED, ViewSettings, default_words, spec
from ui import cached, state, widgets

CLIP_KEY = "ex_clip"
#: The panel (model, layers) whose neighbours are listed; seeded from the URL's nn_model / nn_layers.
SPACE_KEY = "ex_nn_space"
BRUSH_KEY = "ex_brush"
POOLING_HELP = (
    "How a clip's frames become one vector: mean / max over frames, mean and standard deviation "
    "side by side, the centre frame, the mean over frames with speech energy (drops silence), "
    "or the frame at a chosen time."
)


@dataclass(frozen=True)
class ModelChoice:
    models: tuple[str, ...]
    families: dict[str, str]
    init_seed: int
    whisper_mode: str


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


def choose_models(view: ViewSettings) -> ModelChoice | None:
    """Step 1: the models (with availability and size), their seed and Whisper input. None: no catalogue."""
    st.subheader("1 · Models", divider=False)
    try:
        table = cached.model_table(tuple(str(r) for r in model_roots()))
    except EmbedvizError as error:
        st.error(str(error))
        return None
    rows = {r["model"]: r for r in table.to_dict("records")}
    options = _model_options(table, view)
    state.seed("ex_models", list(view.models), options)
    models = st.multiselect(
        spec("models").label,
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
    # Drawn only while open: a closed expander's table is still sent and mounted in the browser
    # (a data grid on every new view), for a table most views never show.
    catalogue = st.expander(f"Model catalogue ({len(table)} models)", key="ex_catalogue", on_change="rerun")
    if catalogue.open:
        catalogue.dataframe(
            table[["label", "family", "params", "sample rate", "layers", "status", "detail", "model"]],
            hide_index=True,
            column_config={"detail": st.column_config.TextColumn("detail", width="large")},
        )
    init_seed = view.init_seed
    if any(m.startswith("random-init:") for m in models):
        state.seed("ex_init_seed", view.init_seed)
        init_seed = int(st.number_input(spec("init_seed").label, 0, MAX_SEED, step=1, key="ex_init_seed"))
    families: dict[str, str] = {}
    for name in models:
        try:
            families[name] = cached.model_family(name)
        except EmbedvizError as error:
            st.error(f"{name}: {error}")
    whisper_mode = view.whisper_mode
    if "whisper" in families.values():
        whisper_mode = widgets.choice(
            view, "whisper_mode", "ex_whisper",
            help="Whisper's encoder was trained on 30 s windows; padding is exact, cropping is much faster.",
        )
    return ModelChoice(tuple(models), families, init_seed, whisper_mode)


def choose_layers(view: ViewSettings, chosen: ModelChoice) -> dict[str, tuple[str, ...]]:
    """Step 2: the layers of every usable model, in network order (``()``: not plotted)."""
    st.subheader("2 · Layers", divider=False)
    if not chosen.models:
        st.info("Choose a model in step 1.")
    layers: dict[str, tuple[str, ...]] = {}
    for name in chosen.models:
        if name not in chosen.families:
            continue
        available = cached.model_layers(name)
        key = f"ex_layers::{name}"
        state.seed(key, list(view.layers_for(name, available)), available)
        picked = st.multiselect(
            cached.model_label(name),
            available,
            key=key,
            placeholder="No layers: this model is not plotted",
            help="Layer names: 'cnn' is the convolutional front end, numbers are transformer layers "
            "(0 = input to the first), DAC has encoder blocks and latents.",
        )
        layers[name] = tuple(layer for layer in available if layer in picked)
    return layers


def with_layers(view: ViewSettings, layers: dict[str, tuple[str, ...]]) -> ViewSettings:
    """``view`` with each model's layer choice (``all`` when every layer is chosen)."""
    view = view.replace(layers=())
    for name, picked in layers.items():
        view = view.with_layers(name, ALL if picked == cached.model_layers(name) else picked)
    return view


def choose_words(view: ViewSettings, words_df) -> tuple[tuple[str, ...], int, int]:
    """Step 3: ``(words, clips per word, seed)``, within the configured caps."""
    st.subheader("3 · Words", divider=False)
    counts = dict(zip(words_df["word"], words_df["clips"], strict=True))
    options = list(counts)
    state.seed("ex_words", list(view.words or default_words(options)), options)
    words = st.multiselect(
        spec("words").label,
        options,
        key="ex_words",
        format_func=lambda w: f"{w} ({counts[w]})",
        placeholder="Choose words",
        help="Clips per word in the dataset in brackets.",
    )
    max_n = min(int(max(counts.values())) if counts else 1, limits.max_samples())
    c1, c2 = st.columns([3, 1])
    state.seed("ex_n", min(view.samples, max_n))
    if st.session_state["ex_n"] > max_n:
        st.session_state["ex_n"] = max_n
    with c1:
        samples = int(st.slider(spec("samples").label, 1, max(2, max_n), key="ex_n",
                                help="Sampled across speakers; words with fewer clips use all of theirs. "
                                f"At most {limits.max_samples()} per word (EMBEDVIZ_MAX_SAMPLES)."))
    with c2:
        state.seed("ex_seed", view.seed)
        seed = int(st.number_input(spec("seed").label, 0, MAX_SEED, step=1, key="ex_seed",
                                   help="Which clips are sampled, and the t-SNE / UMAP seed."))
    allowed, message = limits.clip_budget(len(words), samples)
    if message:
        st.warning(message, icon=":material/block:")
    return tuple(words), allowed, seed


def choose_visualisation(view: ViewSettings) -> dict:
    """Step 4: projection, dimensions, preprocessing, pooling, layer mode, alignment, colours."""
    st.subheader("4 · Visualisation", divider=False)
    c1, c2 = st.columns(2)
    with c1:
        method = widgets.choice(view, "method", "ex_method")
        dims = widgets.choice(view, "dims", "ex_dims")
        preprocess = widgets.choice(
            view, "preprocess", "ex_pre",
            help="Standardize: z-score each feature. Sphereize: centre, then scale every vector to unit length "
            "(cosine geometry).",
        )
    with c2:
        kind = view.pooling.split(":", 1)[0]
        pool_kind = widgets.choice(view, "pooling", "ex_pool", value=kind, help=POOLING_HELP)
        pooling = pool_kind
        if pool_kind == "time":
            # Up to the longest sampled clip (later times give each clip's last frame).
            longest = cached.longest_clip(view.dataset, view.words, view.samples, view.seed)
            t_max = max(0.1, min(30.0, math.ceil(longest * 10) / 10))
            t0 = float(view.pooling.split(":", 1)[1]) if view.pooling.startswith("time:") else min(0.5, t_max)
            state.seed("ex_pool_t", min(t0, t_max))
            t = st.slider("Time (s)", 0.0, t_max, step=0.1, key="ex_pool_t", format="%.1f s",
                          help="The frame at this time in each clip (clips shorter than this use their last frame).")
            pooling = f"time:{t:g}"
        layer_mode = widgets.choice(view, "layer_mode", "ex_mode")
        align = view.align
        if layer_mode == "individual":
            state.seed("ex_align", view.align == "on")
            align = "on" if st.toggle(
                spec("align").label, key="ex_align",
                help="Rotate each layer's projection onto the previous layer's (orthogonal Procrustes) so "
                "clusters keep their place from one panel to the next. Distances are unchanged.",
            ) else "off"
        color_by = widgets.choice(view, "color_by", "ex_color")
    return {"method": method, "dims": int(dims), "preprocess": preprocess, "pooling": pooling,
            "layer_mode": layer_mode, "align": align, "color_by": color_by}


def planned_panels(view: ViewSettings, layers: dict[str, tuple[str, ...]]) -> list[tuple[str, list]]:
    """``(section header, [(model, layers)])``: one plot per layer, or one per model (concatenated)."""
    plotted = [m for m in view.models if layers.get(m)]
    if view.layer_mode == "individual":
        return [(cached.model_label(m), [(m, (layer,)) for layer in layers[m]]) for m in plotted]
    return [("Layers concatenated", [(m, layers[m]) for m in plotted])] if plotted else []


def expected_renderer(view: ViewSettings, panels: list[tuple[str, list]]) -> Renderer:
    """The chart library the view's figure will most likely need (before its clips are
    sampled: every shown word with ``samples`` clips in every panel)."""
    shown = len([w for w in view.words if w not in view.hide])
    return renderer_for(view.dims, shown * view.samples * sum(len(section) for _, section in panels))


def choose_clip(view: ViewSettings, panels: list[tuple[str, list]]) -> ViewSettings:
    """The clicked clip and the panel its neighbours come from, both kept in the URL.

    A recipient of the URL gets the sender's clip *and* panel; a panel that is not drawn
    any more falls back to the first one, and that fallback is what the URL then says.
    """
    try:
        sample_ids = list(cached.sample(view.dataset, view.words, view.samples, view.seed)["clip_id"]) if view.words else []
    except EmbedvizError as error:
        st.error(str(error))
        sample_ids = []
    if view.clip and view.clip not in sample_ids and state.reseeding():
        st.warning(f"Clip {view.clip!r} from the URL is not among the sampled clips; no clip is selected.")
    state.seed(CLIP_KEY, view.clip, [""] + sample_ids)
    state.seed(SPACE_KEY, (view.nn_model, tuple(view.nn_layers)))
    state.seed(BRUSH_KEY, list(view.selected))
    spaces = [space for _, section in panels for space in section]
    clip = st.session_state[CLIP_KEY]
    space = tuple(st.session_state[SPACE_KEY])
    if not clip or not spaces:
        space = ("", ())
    elif space not in spaces:
        space = spaces[0]
    selected = tuple(c for c in st.session_state[BRUSH_KEY] if c in set(sample_ids))
    return view.replace(clip=clip, nn_model=space[0], nn_layers=tuple(space[1]), selected=selected)


def _whisper_eta_line(model_sel: cached.ModelSelection, missing: int, mode: str) -> str:
    """Both Whisper input modes' estimated time for the clips to compute, so the choice is informed."""
    from embedviz.progress import format_eta

    etas = cached.whisper_etas(model_sel, missing)
    if not etas:
        return "&emsp;Whisper input: no time estimate for this model"
    labels = spec("whisper_mode").format
    parts = [f"{'**' if m == mode else ''}{labels(m)} ≈ {format_eta(s)}{'**' if m == mode else ''}" for m, s in etas.items()]
    return "&emsp;:material/timer: estimated on this machine: " + " · ".join(parts)


def _start_extraction(view: ViewSettings, models: tuple[str, ...]) -> None:
    """The Extract button's callback: one task per model with clips to compute, on the view's sample."""
    from ui.jobs import Task

    if widgets.job_running():  # a double click: the first one's job is already running
        return
    sample = cached.ClipSelection.of(view).sample()
    widgets.start_extraction([Task(view.extraction_settings(m), sample, cached.model_label(m)) for m in models])


def extract_step(view: ViewSettings, chosen: ModelChoice) -> dict:
    """What each model still needs, the Extract button, progress. Returns model -> (selection, missing, total)."""
    status: dict = {}
    if not view.words:
        st.info("Choose at least one word in step 3.")
    lines = []
    for name in view.models if view.words else []:
        if name not in chosen.families:
            continue
        try:
            model_sel = cached.ModelSelection.of(view, name)
            missing, total = cached.missing_count(model_sel)
        except EmbedvizError as error:
            st.error(f"{cached.model_label(name)}: {error}")
            continue
        status[name] = (model_sel, missing, total)
        mark = ":green[:material/check_circle:]" if missing == 0 else ":orange[:material/pending:]"
        unusable = cached.unusable_count(model_sel)
        stored = total - missing - unusable
        line = f"{mark} **{cached.model_label(name)}**: {missing} clip(s) to compute, {stored} already stored"
        lines.append(line + (f", {unusable} unusable (named in the extraction report)" if unusable else ""))
        if missing and chosen.families.get(name) == "whisper":
            lines.append(_whisper_eta_line(model_sel, missing, view.whisper_mode))
    if lines:
        st.markdown("  \n".join(lines))
    to_do = [m for m, (_, missing, _) in status.items() if missing]
    # The job starts in the button's callback, which Streamlit runs before the script: the
    # model starts loading at once, and this very run draws Extract disabled and the progress
    # bar (no second full-page run before the work starts, as st.rerun() after the click cost).
    st.button(
        "Extract", type="primary", icon=":material/play_arrow:", disabled=widgets.job_running() or not to_do,
        help="Runs the models on the clips that are not stored yet; stored clips are never recomputed."
        if to_do else "Everything this view needs is stored.",
        on_click=_start_extraction, args=(view, tuple(to_do)),
    )
    if widgets.job_running():
        widgets.job_progress()
    widgets.last_job_report(view.dataset)
    return status
