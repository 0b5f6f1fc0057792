"""Every app setting in one frozen object, and its round trip through URL query params.

The app keeps its whole state in the URL so a view can be bookmarked and shared. A URL
is untrusted input: :meth:`ViewSettings.from_query_params` validates every value, and a
value it cannot use falls back to that field's default with a human-readable warning
(never an exception). Allowlists:

* a dataset must be the bundled demo or a folder under one of the configured data roots
  (checked lexically first, then again after resolving symlinks, so neither ``..`` nor a
  symlink can lead outside);
* a model must be a catalogue id, ``random-init:<catalogue id>``, ``baseline:mel`` or a
  model folder under one of the configured model roots (same containment rules).

Nothing named by the URL is read from disk, and no model is loaded, before it has passed
the lexical checks. This module is pure (no Streamlit).

URL layout (keys in this order; fields at their default are left out, except the ones
that decide what is computed: models, layers, words, samples)::

    ?data=/srv/speech_commands        (absent: the bundled demo)
    &model=baseline:mel&model=random-init:facebook/wav2vec2-base
    &layers=logmel,mfcc&layers=cnn,4,8,12   (one per model, same order; 'all', 'none' or 'default')
    &words=yes,no,up,down&n=12&seed=0
    &pool=mean&method=pca&dims=2&mode=individual&color=word&pre=none ...
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from embedviz.settings import WHISPER_MODES, ExtractionSettings, stable_hash

#: Models selected when the URL names none. ``baseline:mel`` runs in ~1 s and needs no
#: weights; the random-init wav2vec2-base control (95M parameters, built from the
#: embedded config, no download) shows a real 13-layer network and extracts the default
#: 48 clips in ~30 s on 2 CPU cores, so the first run shows plots within a minute offline.
DEFAULT_MODELS: tuple[str, ...] = ("baseline:mel", "random-init:facebook/wav2vec2-base")
#: Preferred default words (the classic Speech Commands keywords), when the dataset has them.
PREFERRED_WORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right")
DEFAULT_N_WORDS = 4
DEFAULT_SAMPLES = 12
MAX_SAMPLES = 1000
MAX_SEED = 2**31 - 1
#: How many layers a model shows by default (spread over its depth).
DEFAULT_N_LAYERS = 4
ALL = "all"
#: URL value for "no layers of this model" (the model is listed but not plotted).
NONE = "none"

METHODS: tuple[str, ...] = ("pca", "tsne", "umap")
PREPROCESS: tuple[str, ...] = ("none", "standardize", "sphereize")
LAYER_MODES: tuple[str, ...] = ("individual", "concatenate")
COLOR_BY: tuple[str, ...] = ("word", "speaker")
#: Procrustes alignment of one model's layer panels to their neighbours (individual mode).
ALIGN: tuple[str, ...] = ("on", "off")
ANALYSIS_METRICS: tuple[str, ...] = ("knn_accuracy", "speaker_disjoint_knn", "silhouette", "probe_accuracy")
CKA_MODES: tuple[str, ...] = ("within", "across")


@dataclass(frozen=True)
class ViewSettings:
    """Everything the pages show, as one hashable value.

    Attributes:
        dataset: dataset root as an absolute path string; ``""`` is the bundled demo.
        models: model names, in display order.
        layers: ``(model, layers)`` pairs; ``layers`` is a tuple of layer names or
            ``"all"``. A model without a pair uses :func:`default_layers`.
        words: words to sample; ``()`` means the dataset's default words.
        samples: clips per word.
        seed: sampling seed, also the t-SNE / UMAP seed.
        init_seed: seed of ``random-init:`` models' weights.
        pooling: ``mean``, ``max``, ``meanstd``, ``centre``, ``speech`` or ``time:<s>``.
        method, dims, preprocess: the projection (see :class:`embedviz.reduction.ReductionSettings`).
        layer_mode: ``individual`` (one plot per model x layer) or ``concatenate`` (one per model).
        color_by: ``word`` or ``speaker``.
        align: ``on`` rotates each layer's projection onto the previous layer's (Procrustes),
            so clusters keep their place from panel to panel; ``off`` shows raw projections.
        whisper_mode: ``padded`` or ``crop`` (Whisper models only).
        clip: the clip picked in a plot (Explore), ``""`` for none.
        metric: the layer-curve metric (Layer analysis).
        cm_model, cm_layer: the confusion matrix's model and layer (``""``: first chosen).
        cka_mode: ``within`` (layers of one model) or ``across`` (two models).
        cka_models: the model(s) of the CKA heatmap (``()``: the first one or two chosen).
    """

    dataset: str = ""
    models: tuple[str, ...] = DEFAULT_MODELS
    layers: tuple[tuple[str, Any], ...] = ()
    words: tuple[str, ...] = ()
    samples: int = DEFAULT_SAMPLES
    seed: int = 0
    init_seed: int = 0
    pooling: str = "mean"
    method: str = "pca"
    dims: int = 2
    preprocess: str = "none"
    layer_mode: str = "individual"
    color_by: str = "word"
    align: str = "on"
    whisper_mode: str = "padded"
    clip: str = ""
    metric: str = "knn_accuracy"
    cm_model: str = ""
    cm_layer: str = ""
    cka_mode: str = "within"
    cka_models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from embedviz.errors import ConfigError

        choices = {
            "method": METHODS, "preprocess": PREPROCESS, "layer_mode": LAYER_MODES, "color_by": COLOR_BY,
            "align": ALIGN, "whisper_mode": WHISPER_MODES, "metric": ANALYSIS_METRICS, "cka_mode": CKA_MODES,
        }
        for name, options in choices.items():
            if getattr(self, name) not in options:
                raise ConfigError(f"{name} must be one of {', '.join(options)}, got {getattr(self, name)!r}")
        if self.dims not in (2, 3):
            raise ConfigError(f"dims must be 2 or 3, got {self.dims!r}")
        if not 1 <= int(self.samples) <= MAX_SAMPLES:
            raise ConfigError(f"samples per word must be between 1 and {MAX_SAMPLES}, got {self.samples!r}")

    # ------------------------------------------------------------------ helpers

    def layer_choice(self, model: str) -> tuple[str, ...] | str | None:
        """The layers chosen for ``model``: a tuple, ``'all'``, or None (use the default)."""
        for name, choice in self.layers:
            if name == model:
                return choice
        return None

    def layers_for(self, model: str, available: Sequence[str]) -> tuple[str, ...]:
        """Concrete layer names for ``model`` (``'all'`` and the default expanded)."""
        choice = self.layer_choice(model)
        if choice == ALL:
            return tuple(available)
        if choice is None:
            return default_layers(available)
        return tuple(layer for layer in available if layer in choice)  # () = this model is not plotted

    def with_layers(self, model: str, choice: Sequence[str] | str) -> ViewSettings:
        """A copy with ``model``'s layers set (other models' choices kept)."""
        value: Any = ALL if choice == ALL else tuple(choice)
        pairs = [(m, c) for m, c in self.layers if m != model] + [(model, value)]
        order = {m: i for i, m in enumerate(self.models)}
        pairs.sort(key=lambda pair: order.get(pair[0], len(order)))
        return replace(self, layers=tuple(pairs))

    def replace(self, **changes: Any) -> ViewSettings:
        return replace(self, **changes)

    def extraction_settings(self, model: str) -> ExtractionSettings:
        """What decides the stored numbers of ``model`` (the store key)."""
        return ExtractionSettings(model=model, whisper_mode=self.whisper_mode, seed=self.init_seed)  # type: ignore[arg-type]

    def reduction_settings(self) -> Any:
        """The :class:`embedviz.reduction.ReductionSettings` of this view."""
        from embedviz.reduction import ReductionSettings

        return ReductionSettings(
            method=self.method,  # type: ignore[arg-type]
            n_components=self.dims,  # type: ignore[arg-type]
            seed=self.seed,
            preprocess=self.preprocess,  # type: ignore[arg-type]
        )

    def key(self) -> str:
        """Stable hash of every field (a cache key)."""
        return stable_hash(asdict(self))

    # ------------------------------------------------------------------ URL

    def to_query_params(self) -> dict[str, str | list[str]]:
        """Compact, readable query params in a stable order (defaults left out where safe)."""
        default = ViewSettings()
        out: dict[str, str | list[str]] = {}
        if self.dataset:
            out["data"] = self.dataset
        if self.models:  # no models: the key is left out (a URL without models means the defaults)
            out["model"] = list(self.models)
            out["layers"] = [_layers_text(self.layer_choice(m)) for m in self.models]
        if self.words:
            out["words"] = ",".join(self.words)
        out["n"] = str(self.samples)
        optional: list[tuple[str, Any, Any]] = [
            ("seed", self.seed, default.seed),
            ("init_seed", self.init_seed, default.init_seed),
            ("pool", self.pooling, default.pooling),
            ("method", self.method, default.method),
            ("dims", self.dims, default.dims),
            ("pre", self.preprocess, default.preprocess),
            ("mode", self.layer_mode, default.layer_mode),
            ("color", self.color_by, default.color_by),
            ("align", self.align, default.align),
            ("whisper", self.whisper_mode, default.whisper_mode),
            ("clip", self.clip, default.clip),
            ("metric", self.metric, default.metric),
            ("cm_model", self.cm_model, default.cm_model),
            ("cm_layer", self.cm_layer, default.cm_layer),
            ("cka", self.cka_mode, default.cka_mode),
        ]
        for key, value, dflt in optional:
            if value != dflt:
                out[key] = str(value)
        if self.cka_models:
            out["cka_model"] = list(self.cka_models)
        return out

    @classmethod
    def from_query_params(
        cls,
        params: Mapping[str, str | Sequence[str]],
        *,
        catalogue: Mapping[str, Any] | Iterable[str],
        data_roots: Sequence[Path | str],
        model_roots: Sequence[Path | str],
        dataset_words: Sequence[str] | Callable[[str], Sequence[str]] | None = None,
        demo_root: Path | str | None = None,
        model_layers: Callable[[str], Sequence[str]] | None = None,
    ) -> tuple[ViewSettings, list[str]]:
        """Parse and validate URL query params; invalid values fall back with a warning.

        Args:
            params: query params (a value may be a string or a list of strings, as
                repeated keys give).
            catalogue: the model catalogue (ids are its keys).
            data_roots: folders under which datasets may be opened (the demo always may).
            model_roots: folders under which local model folders may be loaded.
            dataset_words: the words of the chosen dataset, or a function from the
                (validated) dataset path (``""`` = demo) to them; ``None`` skips word
                validation. Unknown words are dropped with a warning; no words means
                :func:`default_words`.
            demo_root: the bundled demo folder (default: :func:`embedviz.datasets.demo_root`).
            model_layers: model name -> its layer names (default: the catalogue's
                :func:`~embedviz.catalogue.model_spec`); called only for allowed models.

        Returns:
            ``(settings, warnings)``.
        """
        warnings: list[str] = []
        default = cls()
        get = _Getter(params, warnings)
        values: dict[str, Any] = {}

        # Dataset: lexical containment first, then resolved containment, then is_dir.
        if demo_root is None:
            from embedviz.datasets import demo_root as _demo_root

            demo_root = _demo_root()
        raw_data = get.one("data")
        if raw_data:
            checked, why = check_dataset_path(raw_data, data_roots, demo_root)
            if checked is None:
                warnings.append(f"Dataset {raw_data!r} from the URL cannot be used ({why}); showing the demo dataset.")
            else:
                values["dataset"] = checked

        # Models, with their aligned layer choices.
        ids = set(catalogue.keys() if isinstance(catalogue, Mapping) else catalogue)
        raw_models = get.many("model")
        raw_layers = get.many("layers")
        if "model" in params and not raw_models:
            warnings.append("The URL names no model; using the default models.")
        models: list[str] = []
        layer_pairs: list[tuple[str, Any]] = []
        lookup = model_layers or _spec_layers
        for i, raw in enumerate(raw_models):
            name, why = check_model_name(raw, ids, model_roots)
            if name is None:
                warnings.append(f"Model {raw!r} from the URL is not allowed ({why}); it was left out.")
                continue
            if name in models:
                continue
            try:
                available = tuple(lookup(name))
            except Exception as error:  # noqa: BLE001 - any failure to describe the model is a warning here
                warnings.append(f"Model {raw!r} from the URL cannot be used ({error}); it was left out.")
                continue
            models.append(name)
            if i < len(raw_layers):
                choice = _parse_layers(raw_layers[i], name, available, warnings)
                if choice is not None:
                    layer_pairs.append((name, choice))
        if raw_models:
            if models:
                values["models"] = tuple(models)
                values["layers"] = tuple(layer_pairs)
            else:
                warnings.append("None of the URL's models can be used; using the default models.")
        if len(raw_layers) > len(raw_models) and raw_models:
            warnings.append(
                f"The URL has {len(raw_layers)} layer lists for {len(raw_models)} model(s); the extra ones are ignored."
            )

        # Words: validated against the dataset when it is known.
        raw_words = [w.strip() for value in get.many("words") for w in value.split(",") if w.strip()]
        raw_words = list(dict.fromkeys(raw_words))
        known: Sequence[str] | None
        if callable(dataset_words):
            try:
                known = list(dataset_words(values.get("dataset", "")))
            except Exception as error:  # noqa: BLE001 - an unreadable dataset must not break URL parsing
                warnings.append(f"The dataset's words could not be read ({error}).")
                known = None
        else:
            known = list(dataset_words) if dataset_words is not None else None
        if known is not None:
            unknown = [w for w in raw_words if w not in known]
            if unknown:
                warnings.append(f"Unknown word(s) in the URL were left out: {', '.join(unknown)}.")
            words = [w for w in raw_words if w in known]
            if raw_words and not words:
                warnings.append("None of the URL's words are in the dataset; using the default words.")
            values["words"] = tuple(words) if words else default_words(known)
        elif raw_words:
            values["words"] = tuple(raw_words)

        values["samples"] = get.integer("n", "samples per word", 1, MAX_SAMPLES, default.samples)
        values["seed"] = get.integer("seed", "seed", 0, MAX_SEED, default.seed)
        values["init_seed"] = get.integer("init_seed", "random-init seed", 0, MAX_SEED, default.init_seed)

        raw_pool = get.one("pool")
        if raw_pool is not None:
            from embedviz.errors import ConfigError
            from embedviz.pooling import parse_pooling

            try:
                values["pooling"] = parse_pooling(raw_pool).name
            except ConfigError as error:
                warnings.append(f"Pooling {raw_pool!r} from the URL is not valid ({error}); using {default.pooling!r}.")

        values["method"] = get.choice("method", "projection method", METHODS, default.method)
        dims = get.choice("dims", "dimensions", ("2", "3"), str(default.dims))
        values["dims"] = int(dims)
        values["preprocess"] = get.choice("pre", "preprocessing", PREPROCESS, default.preprocess)
        values["layer_mode"] = get.choice("mode", "layer mode", LAYER_MODES, default.layer_mode)
        values["color_by"] = get.choice("color", "colour by", COLOR_BY, default.color_by)
        values["align"] = get.choice("align", "layer alignment", ALIGN, default.align)
        values["whisper_mode"] = get.choice("whisper", "Whisper mode", WHISPER_MODES, default.whisper_mode)
        values["metric"] = get.choice("metric", "metric", ANALYSIS_METRICS, default.metric)
        values["cka_mode"] = get.choice("cka", "CKA mode", CKA_MODES, default.cka_mode)

        chosen = values.get("models", default.models)
        clip = get.one("clip")
        if clip:
            # Only a shape check: the page looks the clip up in its sample (never as a path).
            if len(clip) > 500 or "\x00" in clip or clip.count("/") != 1 or ".." in clip:
                warnings.append(f"Clip {clip[:60]!r} from the URL is not a clip id like 'word/file.wav'; ignored.")
            else:
                values["clip"] = clip
        cm_model = get.one("cm_model")
        if cm_model:
            if cm_model in chosen:
                values["cm_model"] = cm_model
            else:
                warnings.append(f"Confusion-matrix model {cm_model!r} is not one of the chosen models; ignored.")
        cm_layer = get.one("cm_layer")
        if cm_layer:
            if _is_layer_token(cm_layer):
                values["cm_layer"] = cm_layer
            else:
                warnings.append(f"Confusion-matrix layer {cm_layer[:60]!r} is not a layer name; ignored.")
        cka_models = [m for m in get.many("cka_model") if m]
        kept = [m for m in dict.fromkeys(cka_models) if m in chosen][:2]
        if len(kept) < len(cka_models):
            warnings.append("CKA model(s) in the URL that are not among the chosen models were ignored.")
        values["cka_models"] = tuple(kept)

        unknown_keys = sorted(set(params) - _KNOWN_KEYS)
        if unknown_keys:
            warnings.append(f"Unknown URL parameter(s) ignored: {', '.join(unknown_keys)}.")
        return cls(**{**{f.name: getattr(default, f.name) for f in fields(cls)}, **values}), warnings


_KNOWN_KEYS = frozenset(
    {
        "data",
        "model",
        "layers",
        "words",
        "n",
        "seed",
        "init_seed",
        "pool",
        "method",
        "dims",
        "pre",
        "mode",
        "color",
        "align",
        "whisper",
        "clip",
        "metric",
        "cm_model",
        "cm_layer",
        "cka",
        "cka_model",
    }
)


# ---------------------------------------------------------------------- defaults


def default_words(available: Sequence[str], n: int = DEFAULT_N_WORDS) -> tuple[str, ...]:
    """The preferred keywords the dataset has, topped up with its first words (sorted)."""
    available = list(available)
    picked = [w for w in PREFERRED_WORDS if w in available][:n]
    for word in sorted(available):
        if len(picked) >= n:
            break
        if word not in picked:
            picked.append(word)
    return tuple(picked)


def default_layers(available: Sequence[str], n: int = DEFAULT_N_LAYERS) -> tuple[str, ...]:
    """``n`` layers spread evenly over depth, first and last included.

    DAC's per-codebook layers are left out of the default (there can be 32 of them, and
    the encoder blocks and latents tell the depth story).
    """
    candidates = [layer for layer in available if not layer.startswith("codebook")] or list(available)
    if len(candidates) <= n:
        return tuple(candidates)
    picks = sorted({round(i * (len(candidates) - 1) / (n - 1)) for i in range(n)})
    return tuple(candidates[i] for i in picks)


# ---------------------------------------------------------------------- allowlists


def _lexical(raw: str) -> Path | None:
    """An absolute, normalised path without ``..`` parts, or None (no disk access)."""
    if not raw or len(raw) > 4096 or "\x00" in raw:
        return None
    path = Path(raw)
    if not path.is_absolute() or ".." in path.parts:
        return None
    return Path(os.path.normpath(raw))


def _within(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def contained_path(raw: str, roots: Sequence[Path | str]) -> tuple[str | None, str]:
    """``(resolved path, "")`` when ``raw`` lies inside one of ``roots``, else ``(None, why)``.

    The check is lexical first (absolute, no ``..``); only a path that passes it is
    resolved (following symlinks) and checked again, so a symlink inside a root cannot
    point outside it.
    """
    if not roots:
        return None, "no folders are allowed for this"
    path = _lexical(raw)
    if path is None:
        return None, "it must be an absolute path without '..'"
    lexical_roots = [Path(os.path.normpath(str(r))) for r in roots]
    if not _within(path, lexical_roots):
        return None, "it is outside the allowed folders"
    resolved_roots = [Path(r).resolve() for r in roots]
    resolved = path.resolve()
    if not _within(resolved, resolved_roots):
        return None, "it leads outside the allowed folders (symlink)"
    return str(resolved), ""


def check_dataset_path(raw: str, data_roots: Sequence[Path | str], demo_root: Path | str) -> tuple[str | None, str]:
    """``(value, "")`` for an allowed dataset folder (``""`` for the demo), else ``(None, why)``."""
    demo = Path(demo_root).resolve()
    if raw.strip().lower() == "demo":
        return "", ""
    checked, why = contained_path(raw, [*data_roots, demo])
    if checked is None:
        if not data_roots and why.startswith("it is outside"):
            why = "only the demo dataset is allowed; set EMBEDVIZ_DATA_ROOTS to allow more folders"
        return None, why
    if Path(checked) == demo:
        return "", ""
    if not Path(checked).is_dir():
        return None, "no such folder"
    return checked, ""


def check_model_name(
    raw: str, catalogue_ids: Iterable[str], model_roots: Sequence[Path | str]
) -> tuple[str | None, str]:
    """``(name, "")`` for an allowed model name, else ``(None, why)``. No model is loaded."""
    from embedviz.catalogue import BASELINE_ID, RANDOM_INIT_PREFIX

    ids = set(catalogue_ids)
    name = (raw or "").strip()
    if not name or len(name) > 4096 or "\x00" in name:
        return None, "empty or malformed name"
    if name == BASELINE_ID or (name in ids and not name.startswith("baseline:")):
        return name, ""
    if name.startswith(RANDOM_INIT_PREFIX):
        base = name[len(RANDOM_INIT_PREFIX) :].strip()
        if base in ids and not base.startswith("baseline:"):
            return f"{RANDOM_INIT_PREFIX}{base}", ""
        return None, f"random-init needs a catalogue model after 'random-init:'; {base!r} is not one"
    if name.startswith("/"):
        if not model_roots:
            return None, "local model folders are only allowed under EMBEDVIZ_MODEL_ROOTS, and none is set"
        checked, why = contained_path(name, model_roots)
        if checked is None:
            return None, why
        if not Path(checked).is_dir():
            return None, "no such model folder"
        return checked, ""
    return None, "not in the catalogue, not 'baseline:mel', not 'random-init:<catalogue id>' and not a model folder"


def _spec_layers(name: str) -> tuple[str, ...]:
    from embedviz.catalogue import model_spec

    return model_spec(name).layers


# ---------------------------------------------------------------------- parsing helpers


def _is_layer_token(text: str) -> bool:
    return 0 < len(text) <= 64 and all(ch.isalnum() or ch in "_-." for ch in text)


def _layers_text(choice: tuple[str, ...] | str | None) -> str:
    if choice is None:
        return "default"
    if choice == ALL:
        return ALL
    return ",".join(choice) or NONE


def _parse_layers(text: str, model: str, available: Sequence[str], warnings: list[str]) -> tuple[str, ...] | str | None:
    text = (text or "").strip()
    if text in ("", "default"):
        return None
    if text == ALL:
        return ALL
    if text == NONE:
        return ()
    wanted = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [t for t in wanted if t not in available]
    if unknown:
        shown = ", ".join(u[:40] for u in unknown[:5])
        warnings.append(f"{model} has no layer(s) {shown}; they were left out.")
    kept = tuple(t for t in available if t in wanted)  # network order
    if not kept:
        warnings.append(f"No valid layers for {model} in the URL; using its default layers.")
        return None
    return kept


class _Getter:
    """Reads str / list values from a query-param mapping and records warnings."""

    def __init__(self, params: Mapping[str, Any], warnings: list[str]) -> None:
        self.params = params
        self.warnings = warnings

    def many(self, key: str) -> list[str]:
        value = self.params.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return [str(v) for v in value]

    def one(self, key: str) -> str | None:
        values = self.many(key)
        return values[-1] if values else None  # like st.query_params: the last one wins

    def integer(self, key: str, label: str, low: int, high: int, default: int) -> int:
        raw = self.one(key)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            self.warnings.append(f"The {label} {raw[:40]!r} in the URL is not a whole number; using {default}.")
            return default
        if not low <= value <= high:
            self.warnings.append(f"The {label} {value} in the URL is outside {low}..{high}; using {default}.")
            return default
        return value

    def choice(self, key: str, label: str, options: Sequence[str], default: str) -> str:
        raw = self.one(key)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in options:
            return value
        self.warnings.append(
            f"The {label} {raw[:40]!r} in the URL is not one of {', '.join(options)}; using {default!r}."
        )
        return default


__all__ = [
    "ALL",
    "ANALYSIS_METRICS",
    "DEFAULT_MODELS",
    "ViewSettings",
    "check_dataset_path",
    "check_model_name",
    "contained_path",
    "default_layers",
    "default_words",
]
