"""Every app setting in one frozen object, declared once as a table, and its URL round trip.

The app keeps its whole state in the URL so a view can be bookmarked and shared. Each
field of :class:`ViewSettings` is declared with :func:`setting`: its URL key, its label,
its codec (type and allowed values, taken from the library module that owns them), its
default and the pages that use it. From that one table come

* validation (:meth:`ViewSettings.__post_init__` asks each codec),
* parsing with warnings (:meth:`ViewSettings.from_query_params`: a value that cannot be
  used falls back to the default with a human-readable warning, never an exception),
* the URL (:meth:`ViewSettings.to_query_params`, keys in table order, defaults left out
  except the ones that decide what is computed), and the set of known keys.

A URL is untrusted: datasets and local model folders are checked by :mod:`embedviz.roots`
before anything is read. Pure library code (no Streamlit).

URL layout::

    ?data=/srv/speech_commands        (absent: the bundled demo)
    &model=baseline:mel&model=random-init:facebook/wav2vec2-base
    &layers=logmel,mfcc&layers=cnn,4,8,12   (one per model, same order; 'all', 'none' or 'default')
    &words=yes,no,up,down&n=12&seed=0
    &pool=mean&method=pca&dims=2&mode=individual&color=word&pre=none ...
    &clip=yes/ab12_nohash_0.wav&nn_model=baseline:mel&nn_layers=mfcc   (the clip and its neighbours' panel)
    &metric=knn_accuracy&cm_model=...&cka=within&measures=on   (Layer analysis)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args

from embedviz import limits
from embedviz.figures import METRIC_LABELS, ColorBy
from embedviz.metrics import SEPARABILITY_METRICS
from embedviz.pooling import POOLING_LABELS
from embedviz.reduction import METHOD_LABELS, METHODS, PREPROCESSING
from embedviz.roots import check_dataset_path, check_model_name, contained_path
from embedviz.settings import WHISPER_MODE_LABELS, WHISPER_MODES, ExtractionSettings, stable_hash

#: Models selected when the URL names none. ``baseline:mel`` runs in ~1 s and needs no
#: weights; the random-init wav2vec2-base control (95M parameters, built from the
#: embedded config, no download) shows a real 13-layer network and extracts the default
#: 48 clips in ~30 s on 2 CPU cores, so the first run shows plots within a minute offline.
DEFAULT_MODELS: tuple[str, ...] = ("baseline:mel", "random-init:facebook/wav2vec2-base")
#: Preferred default words (the classic Speech Commands keywords), when the dataset has them.
PREFERRED_WORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right")
DEFAULT_N_WORDS = 4
DEFAULT_SAMPLES = 12
MAX_SEED = 2**31 - 1
#: Clip ids kept in the URL for a box/lasso selection (more stay in the session only).
MAX_URL_SELECTION = 50
#: How many layers a model shows by default (spread over its depth).
DEFAULT_N_LAYERS = 4
ALL = "all"
#: URL value for "no layers of this model" (the model is listed but not plotted).
NONE = "none"

EXPLORE, ANALYSIS, DATA = "explore", "layer_analysis", "data_cache"

# View concepts this module owns (the projection, pooling, metric options are the library's).
LAYER_MODES = {"individual": "one per layer", "concatenate": "concatenated"}
COLOR_BY = {c: c for c in get_args(ColorBy)}
ALIGN = {"on": "on", "off": "off"}
CKA_MODES = {"within": "layers of one model", "across": "two models"}
#: Layer analysis's "Compute the measures" toggle (PWCCA, NMI, ABX take seconds per layer,
#: so they run only when asked; a shared link that shows them must ask again).
MEASURES = {"off": "not computed", "on": "computed"}
ANALYSIS_METRICS: tuple[str, ...] = SEPARABILITY_METRICS


# ---------------------------------------------------------------------- parse context


@dataclass
class _Context:
    """What a codec may consult while parsing: allowlists, the dataset, earlier fields."""

    params: Mapping[str, Any]
    catalogue_ids: frozenset[str]
    data_roots: Sequence[Path | str]
    model_roots: Sequence[Path | str]
    demo_root: Path | str
    dataset_words: Sequence[str] | Callable[[str], Sequence[str]] | None
    model_layers: Callable[[str], Sequence[str]]
    values: dict[str, Any]
    warnings: list[str]
    #: (index in the URL's model list, model name, its layers) for every accepted model.
    slots: list[tuple[int, str, tuple[str, ...]]] = field(default_factory=list)

    def raws(self, key: str) -> list[str]:
        value = self.params.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        try:
            return [str(v) for v in value]
        except TypeError:
            return [str(value)]

    def chosen_models(self) -> tuple[str, ...]:
        return self.values.get("models", DEFAULT_MODELS)


_KEEP = object()  # a codec's "use the default" answer


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n] + "…"


# ---------------------------------------------------------------------- codecs


class Codec:
    """How one setting is read from / written to the URL and validated.

    ``parse`` returns the value or ``_KEEP`` (default), appending warnings to ``ctx``;
    ``check`` returns why a value is invalid ("" when valid); ``write`` returns the URL
    value (a string, a list for repeated keys, or None to leave the key out).
    """

    options: tuple[Any, ...] = ()
    labels: Mapping[Any, str] = {}

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        raise NotImplementedError

    def check(self, value: Any) -> str:
        return ""

    def write(self, value: Any, view: ViewSettings) -> str | list[str] | None:
        return str(value)


class Choice(Codec):
    """One of a fixed list of options (strings or ints), with display labels."""

    def __init__(self, options: Sequence[Any] | Mapping[Any, str], labels: Mapping[Any, str] | None = None) -> None:
        self.options = tuple(options)
        self.labels = dict(labels) if labels is not None else (dict(options) if isinstance(options, Mapping) else {})

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        raw = raws[-1]
        value = raw.strip().lower()
        for option in self.options:
            if value == str(option):
                return option
        shown = ", ".join(str(o) for o in self.options)
        ctx.warnings.append(f"The {s.label.lower()} {_short(raw)!r} in the URL is not one of {shown}; using {s.default!r}.")
        return _KEEP

    def check(self, value: Any) -> str:
        return "" if value in self.options else f"must be one of {', '.join(map(str, self.options))}, got {value!r}"


class Integer(Codec):
    """A whole number in ``low..high`` (``high`` may be a function: a configured cap)."""

    def __init__(self, low: int, high: int | Callable[[], int]) -> None:
        self.low, self._high = low, high

    @property
    def high(self) -> int:
        return self._high() if callable(self._high) else self._high

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        raw = raws[-1]
        try:
            value = int(raw.strip())
        except ValueError:
            ctx.warnings.append(f"The {s.label.lower()} {_short(raw, 40)!r} in the URL is not a whole number; using {s.default}.")
            return _KEEP
        if not self.low <= value <= self.high:
            ctx.warnings.append(
                f"The {s.label.lower()} {_short(str(value), 40)} in the URL is outside {self.low}..{self.high}; "
                f"using {s.default}."
            )
            return _KEEP
        return value

    def check(self, value: Any) -> str:
        ok = isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high
        return "" if ok else f"must be a whole number between {self.low} and {self.high}, got {value!r}"


class PoolingName(Codec):
    """A pooling name as :func:`embedviz.pooling.parse_pooling` accepts it (``time:<s>`` too)."""

    options = tuple(POOLING_LABELS)
    labels = POOLING_LABELS

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        from embedviz.errors import ConfigError
        from embedviz.pooling import parse_pooling

        raw = raws[-1]
        try:
            return parse_pooling(raw).name
        except ConfigError as error:
            ctx.warnings.append(f"Pooling {_short(raw)!r} from the URL is not valid ({error}); using {s.default!r}.")
            return _KEEP

    def check(self, value: Any) -> str:
        from embedviz.errors import ConfigError
        from embedviz.pooling import parse_pooling

        try:
            return "" if parse_pooling(value).name == value else f"must be written {parse_pooling(value).name!r}"
        except ConfigError as error:
            return str(error)


class Dataset(Codec):
    """The bundled demo (``""``) or a folder under a data root (:func:`roots.check_dataset_path`)."""

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        raw = raws[-1]
        if not raw:
            return _KEEP
        checked, why = check_dataset_path(raw, ctx.data_roots, ctx.demo_root)
        if checked is None:
            ctx.warnings.append(f"Dataset {_short(raw, 200)!r} from the URL cannot be used ({why}); showing the demo dataset.")
            return _KEEP
        return checked

    def check(self, value: Any) -> str:
        return "" if isinstance(value, str) else f"must be a folder name, got {value!r}"

    def write(self, value: Any, view: ViewSettings) -> str | None:
        return value or None


class Models(Codec):
    """Allowed model names (:func:`roots.check_model_name`), in display order, no repeats."""

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        models: list[str] = []
        for i, raw in enumerate(raws):
            name, why = check_model_name(raw, ctx.catalogue_ids, ctx.model_roots)
            if name is None:
                ctx.warnings.append(f"Model {_short(raw, 200)!r} from the URL is not allowed ({why}); it was left out.")
                continue
            if name in models:
                continue
            try:
                available = tuple(ctx.model_layers(name))
            except Exception as error:  # noqa: BLE001 - any failure to describe the model is a warning here
                ctx.warnings.append(f"Model {_short(raw, 200)!r} from the URL cannot be used ({error}); it was left out.")
                continue
            models.append(name)
            ctx.slots.append((i, name, available))
        if models:
            return tuple(models)
        ctx.warnings.append("None of the URL's models can be used; using the default models.")
        return _KEEP

    def check(self, value: Any) -> str:
        ok = isinstance(value, tuple) and all(isinstance(m, str) and m for m in value)
        return "" if ok else f"must be a tuple of model names, got {value!r}"

    def write(self, value: Any, view: ViewSettings) -> list[str] | None:
        return list(value) or None  # no models: left out (a URL without models means the defaults)


class Layers(Codec):
    """One layer list per URL model (aligned with ``model``): names, ``all``, ``none`` or ``default``."""

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        n_models = len(ctx.raws("model"))
        if len(raws) > n_models and n_models:
            ctx.warnings.append(
                f"The URL has {len(raws)} layer lists for {n_models} model(s); the extra ones are ignored."
            )
        pairs = []
        for i, name, available in ctx.slots:
            if i < len(raws):
                choice = _parse_layers(raws[i], name, available, ctx.warnings)
                if choice is not None:
                    pairs.append((name, choice))
        return tuple(pairs) if ctx.slots else _KEEP

    def check(self, value: Any) -> str:
        ok = isinstance(value, tuple) and all(
            isinstance(p, tuple) and len(p) == 2 and (p[1] == ALL or isinstance(p[1], tuple)) for p in value
        )
        return "" if ok else f"must be (model, layers) pairs, got {value!r}"

    def write(self, value: Any, view: ViewSettings) -> list[str] | None:
        return [_layers_text(view.layer_choice(m)) for m in view.models] or None


class Words(Codec):
    """Words of the view's dataset (unknown ones dropped with a warning; none: the defaults)."""

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        wanted = list(dict.fromkeys(w.strip() for value in raws for w in value.split(",") if w.strip()))
        known: list[str] | None
        if callable(ctx.dataset_words):
            try:
                known = list(ctx.dataset_words(ctx.values.get("dataset", "")))
            except Exception as error:  # noqa: BLE001 - an unreadable dataset must not break URL parsing
                ctx.warnings.append(f"The dataset's words could not be read ({error}).")
                known = None
        else:
            known = list(ctx.dataset_words) if ctx.dataset_words is not None else None
        if known is None:
            return tuple(w for w in wanted if len(w) <= 200) or _KEEP
        unknown = [w for w in wanted if w not in known]
        if unknown:
            shown = ", ".join(_short(w, 40) for w in unknown[:10]) + (" …" if len(unknown) > 10 else "")
            ctx.warnings.append(f"Unknown word(s) in the URL were left out: {shown}.")
        words = tuple(w for w in wanted if w in known)
        if wanted and not words:
            ctx.warnings.append("None of the URL's words are in the dataset; using the default words.")
        return words or default_words(known)

    def check(self, value: Any) -> str:
        ok = isinstance(value, tuple) and all(isinstance(w, str) and w for w in value)
        return "" if ok else f"must be a tuple of words, got {value!r}"

    def write(self, value: Any, view: ViewSettings) -> str | None:
        return ",".join(value) or None


def _clip_shape_ok(clip: str) -> bool:
    # Only a shape check: the page looks the clip up in its sample (never as a path).
    return 0 < len(clip) <= 500 and "\x00" not in clip and clip.count("/") == 1 and ".." not in clip


class Token(Codec):
    """One short string of a known shape (a clip id, a layer name); the page checks that it
    exists. ``warning`` formats the message for a malformed value (``{label}``, ``{value}``)."""

    def __init__(self, shape_ok: Callable[[str], bool], what: str, warning: str) -> None:
        self.shape_ok, self.what, self.warning = shape_ok, what, warning

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        raw = raws[-1]
        if not raw:
            return _KEEP
        if not self.shape_ok(raw):
            ctx.warnings.append(self.warning.format(label=s.label, value=repr(_short(raw))))
            return _KEEP
        return raw

    def check(self, value: Any) -> str:
        ok = value == "" or (isinstance(value, str) and self.shape_ok(value))
        return "" if ok else f"not a {self.what}: {value!r}"

    def write(self, value: Any, view: ViewSettings) -> str | None:
        return value or None


class ClipIds(Codec):
    """Up to :data:`MAX_URL_SELECTION` clip ids (a box or lasso selection)."""

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        ids = [c for c in dict.fromkeys(raws) if c]
        good = tuple(c for c in ids if _clip_shape_ok(c))[:MAX_URL_SELECTION]
        if len(good) < len(ids):
            ctx.warnings.append(
                f"{len(ids) - len(good)} selected clip id(s) in the URL were malformed or over {MAX_URL_SELECTION}; ignored."
            )
        return good

    def check(self, value: Any) -> str:
        ok = isinstance(value, tuple) and all(isinstance(c, str) and _clip_shape_ok(c) for c in value)
        return "" if ok else f"must be a tuple of clip ids, got {_short(repr(value))}"

    def write(self, value: Any, view: ViewSettings) -> list[str] | None:
        return list(value) if 0 < len(value) <= MAX_URL_SELECTION else None


def _is_layer_token(text: str) -> bool:
    return 0 < len(text) <= 64 and all(ch.isascii() and (ch.isalnum() or ch in "_-.") for ch in text)


class LayerNames(Codec):
    """Comma-separated layer names (e.g. the concatenated layers of a panel)."""

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        names = tuple(dict.fromkeys(t.strip() for t in raws[-1].split(",") if t.strip()))
        if not names:
            return _KEEP
        if not all(_is_layer_token(n) for n in names) or len(names) > 256:
            ctx.warnings.append(f"{s.label} {_short(raws[-1])!r} are not layer names; ignored.")
            return _KEEP
        return names

    def check(self, value: Any) -> str:
        ok = isinstance(value, tuple) and all(isinstance(n, str) and _is_layer_token(n) for n in value)
        return "" if ok else f"must be a tuple of layer names, got {_short(repr(value))}"

    def write(self, value: Any, view: ViewSettings) -> str | None:
        return ",".join(value) or None


class ChosenModel(Codec):
    """One of the view's chosen models (``""``: the page picks)."""

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        raw = raws[-1]
        if not raw:
            return _KEEP
        if raw in ctx.chosen_models():
            return raw
        ctx.warnings.append(f"{s.label} {_short(raw)!r} is not one of the chosen models; ignored.")
        return _KEEP

    def check(self, value: Any) -> str:
        return "" if isinstance(value, str) else f"must be a model name, got {value!r}"

    def write(self, value: Any, view: ViewSettings) -> str | None:
        return value or None


class ChosenModels(Codec):
    """Up to ``most`` of the view's chosen models."""

    def __init__(self, most: int) -> None:
        self.most = most

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        wanted = [m for m in raws if m]
        kept = [m for m in dict.fromkeys(wanted) if m in ctx.chosen_models()][: self.most]
        if len(kept) < len(wanted):
            ctx.warnings.append(f"{s.label}: model(s) in the URL that are not among the chosen models were ignored.")
        return tuple(kept)

    def check(self, value: Any) -> str:
        ok = isinstance(value, tuple) and len(value) <= self.most and all(isinstance(m, str) for m in value)
        return "" if ok else f"must be up to {self.most} model names, got {value!r}"

    def write(self, value: Any, view: ViewSettings) -> list[str] | None:
        return list(value) or None


class FreeText(Codec):
    """A short search text (printable, at most ``most`` characters)."""

    def __init__(self, most: int = 100) -> None:
        self.most = most

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        raw = raws[-1].strip()
        text = "".join(ch for ch in raw if ch.isprintable())[: self.most].strip()
        if text != raw:
            ctx.warnings.append(f"{s.label} from the URL was shortened or had unprintable characters removed.")
        return text or _KEEP

    def check(self, value: Any) -> str:
        ok = isinstance(value, str) and len(value) <= self.most and value == value.strip() and value.isprintable()
        return "" if ok else f"must be printable text up to {self.most} characters"

    def write(self, value: Any, view: ViewSettings) -> str | None:
        return value or None


class WordSubset(Codec):
    """Some of the view's words (e.g. those hidden in every panel)."""

    def parse(self, s: Setting, raws: list[str], ctx: _Context) -> Any:
        wanted = list(dict.fromkeys(w.strip() for value in raws for w in value.split(",") if w.strip()))
        words = ctx.values.get("words", ())
        kept = tuple(w for w in wanted if w in words)
        if len(kept) < len(wanted):
            ctx.warnings.append(f"{s.label}: word(s) in the URL that are not among the chosen words were ignored.")
        return kept

    def check(self, value: Any) -> str:
        return "" if isinstance(value, tuple) and all(isinstance(w, str) for w in value) else f"must be words, got {value!r}"

    def write(self, value: Any, view: ViewSettings) -> str | None:
        return ",".join(value) or None


# ---------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Setting:
    """One row of the view table: a :class:`ViewSettings` field and its URL form."""

    name: str
    key: str
    label: str
    codec: Codec
    default: Any
    pages: tuple[str, ...]
    #: Written to the URL even at its default (it decides what is computed).
    always: bool = False

    @property
    def options(self) -> tuple[Any, ...]:
        return self.codec.options

    def format(self, option: Any) -> str:
        """The display label of one of :attr:`options`."""
        return self.codec.labels.get(option, str(option))


def setting(key: str, label: str, codec: Codec, default: Any, pages: Sequence[str], *, always: bool = False) -> Any:
    """A :class:`ViewSettings` field carrying its :class:`Setting` (name filled in from the field)."""
    meta = {"key": key, "label": label, "codec": codec, "default": default, "pages": tuple(pages), "always": always}
    return field(default=default, metadata={"view": meta})


@dataclass(frozen=True)
class ViewSettings:
    """Everything the pages show, as one hashable value; each field is one row of the URL table.

    ``dataset`` ``""`` is the bundled demo; ``layers`` holds ``(model, layers)`` pairs
    (``layers`` a tuple of names or ``"all"``; a model without a pair uses
    :func:`default_layers`); ``words`` ``()`` means the dataset's default words;
    ``seed`` is the sampling and t-SNE / UMAP seed, ``init_seed`` the random-init
    weights' seed; ``clip`` the clip picked in a plot and ``nn_model`` / ``nn_layers`` the
    panel whose nearest neighbours are listed for it; ``selected`` a box/lasso selection;
    ``find`` a text highlighted everywhere; ``hide`` words hidden in every panel;
    ``measures`` ``"on"``: Layer analysis computes PWCCA, cluster NMI and ABX.
    """

    dataset: str = setting("data", "Dataset", Dataset(), "", (EXPLORE, ANALYSIS, DATA))
    models: tuple[str, ...] = setting("model", "Models", Models(), DEFAULT_MODELS, (EXPLORE, ANALYSIS), always=True)
    layers: tuple[tuple[str, Any], ...] = setting("layers", "Layers", Layers(), (), (EXPLORE,), always=True)
    words: tuple[str, ...] = setting("words", "Words", Words(), (), (EXPLORE, ANALYSIS), always=True)
    samples: int = setting(
        "n", "Clips per word", Integer(1, limits.max_samples), DEFAULT_SAMPLES, (EXPLORE, ANALYSIS), always=True
    )
    seed: int = setting("seed", "Seed", Integer(0, MAX_SEED), 0, (EXPLORE, ANALYSIS))
    init_seed: int = setting("init_seed", "Random-init seed", Integer(0, MAX_SEED), 0, (EXPLORE, ANALYSIS))
    pooling: str = setting("pool", "Pooling", PoolingName(), "mean", (EXPLORE, ANALYSIS))
    method: str = setting("method", "Projection", Choice(METHODS, METHOD_LABELS), "pca", (EXPLORE,))
    dims: int = setting("dims", "Dimensions", Choice((2, 3), {2: "2D", 3: "3D"}), 2, (EXPLORE,))
    preprocess: str = setting("pre", "Preprocess", Choice(PREPROCESSING), "none", (EXPLORE,))
    layer_mode: str = setting("mode", "Layers", Choice(LAYER_MODES), "individual", (EXPLORE,))
    color_by: str = setting("color", "Colour by", Choice(COLOR_BY), "word", (EXPLORE,))
    align: str = setting("align", "Align layers", Choice(ALIGN), "on", (EXPLORE,))
    whisper_mode: str = setting("whisper", "Whisper input", Choice(WHISPER_MODES, WHISPER_MODE_LABELS), "padded", (EXPLORE, ANALYSIS))
    clip: str = setting("clip", "Clip", Token(_clip_shape_ok, "clip id",
                                                     "Clip {value} from the URL is not a clip id like 'word/file.wav'; ignored."), "", (EXPLORE,))
    nn_model: str = setting("nn_model", "Neighbours model", ChosenModel(), "", (EXPLORE,))
    nn_layers: tuple[str, ...] = setting("nn_layers", "Neighbours layers", LayerNames(), (), (EXPLORE,))
    selected: tuple[str, ...] = setting("sel", "Selected clips", ClipIds(), (), (EXPLORE,))
    find: str = setting("find", "Highlight", FreeText(), "", (EXPLORE,))
    hide: tuple[str, ...] = setting("hide", "Hidden words", WordSubset(), (), (EXPLORE,))
    metric: str = setting("metric", "Metric", Choice(ANALYSIS_METRICS, METRIC_LABELS), "knn_accuracy", (ANALYSIS,))
    cm_model: str = setting("cm_model", "Confusion-matrix model", ChosenModel(), "", (ANALYSIS,))
    cm_layer: str = setting("cm_layer", "Confusion-matrix layer",
                           Token(_is_layer_token, "layer name", "{label} {value} is not a layer name; ignored."), "", (ANALYSIS,))
    cka_mode: str = setting("cka", "Compare", Choice(CKA_MODES), "within", (ANALYSIS,))
    cka_models: tuple[str, ...] = setting("cka_model", "CKA models", ChosenModels(2), (), (ANALYSIS,))
    measures: str = setting("measures", "Measures", Choice(MEASURES), "off", (ANALYSIS,))

    def __post_init__(self) -> None:
        from embedviz.errors import ConfigError

        for s in SETTINGS:
            why = s.codec.check(getattr(self, s.name))
            if why:
                raise ConfigError(f"{s.name} ({s.label.lower()}) {why}")

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
        return stable_hash({s.name: getattr(self, s.name) for s in SETTINGS})

    # ------------------------------------------------------------------ URL

    def to_query_params(self) -> dict[str, str | list[str]]:
        """Compact, readable query params in table order (defaults left out where safe)."""
        out: dict[str, str | list[str]] = {}
        for s in SETTINGS:
            value = getattr(self, s.name)
            if value == s.default and not s.always:
                continue
            written = s.codec.write(value, self)
            if written is not None:
                out[s.key] = written
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
                repeated keys give; for a single-valued key the last one wins).
            catalogue: the model catalogue (ids are its keys).
            data_roots / model_roots: folders datasets / local models may come from.
            dataset_words: the chosen dataset's words, or a function from the validated
                dataset (``""`` = demo) to them; ``None`` skips word validation.
            demo_root: the bundled demo folder (default: :func:`embedviz.datasets.demo_root`).
            model_layers: model name -> its layer names (default: the catalogue's); called
                only for allowed models.

        Returns:
            ``(settings, warnings)``; never raises for any input.
        """
        if demo_root is None:
            from embedviz.datasets import demo_root as _demo_root

            demo_root = _demo_root()
        ctx = _Context(
            params=params if isinstance(params, Mapping) else {},
            catalogue_ids=frozenset(catalogue.keys() if isinstance(catalogue, Mapping) else catalogue),
            data_roots=data_roots,
            model_roots=model_roots,
            demo_root=demo_root,
            dataset_words=dataset_words,
            model_layers=model_layers or _spec_layers,
            values={},
            warnings=[],
        )
        for s in SETTINGS:
            raws = ctx.raws(s.key)
            value = s.codec.parse(s, raws, ctx) if raws else _KEEP
            if s.name == "words" and not raws:
                value = s.codec.parse(s, [], ctx)  # no words: the dataset's defaults
            if value is not _KEEP:
                ctx.values[s.name] = value
        allowed, message = limits.clip_budget(len(ctx.values.get("words", ())) or DEFAULT_N_WORDS,
                                              ctx.values.get("samples", DEFAULT_SAMPLES))
        if message:
            ctx.warnings.append(f"The URL asks for too many clips: {message}")
            ctx.values["samples"] = allowed
        unknown = sorted(set(ctx.params) - KNOWN_KEYS)
        if unknown:
            shown = ", ".join(_short(str(k), 40) for k in unknown[:10]) + (" …" if len(unknown) > 10 else "")
            ctx.warnings.append(f"Unknown URL parameter(s) ignored: {shown}.")
        return cls(**ctx.values), ctx.warnings


#: The view table: one row per :class:`ViewSettings` field, in URL order.
SETTINGS: tuple[Setting, ...] = tuple(Setting(name=f.name, **f.metadata["view"]) for f in fields(ViewSettings))
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
KNOWN_KEYS = frozenset(s.key for s in SETTINGS)


def spec(name: str) -> Setting:
    """The table row of the :class:`ViewSettings` field ``name`` (options, labels, default)."""
    return BY_NAME[name]


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


def keep_words(wanted: Sequence[str], available: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(kept, dropped)``: the chosen words a (new) dataset has, and those it lacks."""
    kept = tuple(w for w in wanted if w in available)
    return kept, tuple(w for w in wanted if w not in available)


def _spec_layers(name: str) -> tuple[str, ...]:
    from embedviz.catalogue import model_spec

    return model_spec(name).layers


# ---------------------------------------------------------------------- layer lists


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
        shown = ", ".join(_short(u, 40) for u in unknown[:5])
        warnings.append(f"{model} has no layer(s) {shown}; they were left out.")
    kept = tuple(t for t in available if t in wanted)  # network order
    if not kept:
        warnings.append(f"No valid layers for {model} in the URL; using its default layers.")
        return None
    return kept


__all__ = [
    "ALL",
    "ANALYSIS_METRICS",
    "DEFAULT_MODELS",
    "SETTINGS",
    "Setting",
    "ViewSettings",
    "check_dataset_path",
    "check_model_name",
    "contained_path",
    "default_layers",
    "default_words",
    "keep_words",
    "spec",
]
