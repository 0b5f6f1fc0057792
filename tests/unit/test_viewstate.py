"""ViewSettings <-> URL query params: round trips, fallbacks with warnings, allowlists."""

from __future__ import annotations

import os
import pathlib
from pathlib import Path

import pytest

from embedviz.catalogue import CATALOGUE
from embedviz.datasets import demo_root
from embedviz.viewstate import (
    ALL,
    DEFAULT_MODELS,
    ViewSettings,
    check_dataset_path,
    check_model_name,
    contained_path,
    default_layers,
    default_words,
)

DEMO_WORDS = ["cat", "dog", "down", "left", "no", "one", "right", "three", "two", "up", "yes", "zero"]


def parse(params, *, data_roots=(), model_roots=(), words=DEMO_WORDS, layers=None):
    return ViewSettings.from_query_params(
        params,
        catalogue=CATALOGUE,
        data_roots=list(data_roots),
        model_roots=list(model_roots),
        dataset_words=words,
        model_layers=layers,
    )


def test_defaults_parse_from_an_empty_url_without_warnings() -> None:
    view, warnings = parse({})
    assert warnings == []
    assert view.models == DEFAULT_MODELS
    assert view.words == ("yes", "no", "up", "down")
    assert view.dataset == "" and view.samples == 12 and view.pooling == "mean"


@pytest.mark.parametrize(
    "view",
    [
        ViewSettings(words=("yes", "no")),
        ViewSettings(
            models=("baseline:mel", "random-init:facebook/wav2vec2-base", "openai/whisper-tiny"),
            layers=(
                ("baseline:mel", ("mfcc",)),
                ("random-init:facebook/wav2vec2-base", ALL),
                ("openai/whisper-tiny", ()),
            ),
            words=("cat", "dog", "zero"),
            samples=3,
            seed=9,
            init_seed=4,
            pooling="time:0.7",
            method="umap",
            dims=3,
            preprocess="sphereize",
            layer_mode="concatenate",
            color_by="speaker",
            whisper_mode="crop",
            clip="cat/x_nohash_0.wav",
            metric="probe_accuracy",
            cm_model="baseline:mel",
            cm_layer="mfcc",
            cka_mode="across",
            cka_models=("baseline:mel", "openai/whisper-tiny"),
            measures="on",
        ),
    ],
)
def test_round_trip_is_exact(view: ViewSettings) -> None:
    params = view.to_query_params()
    again, warnings = parse(params)
    assert warnings == []
    assert again == view
    assert again.key() == view.key()


def test_query_params_are_compact_readable_and_ordered() -> None:
    view = ViewSettings(
        models=("baseline:mel", "random-init:facebook/wav2vec2-base"),
        layers=(("baseline:mel", ALL), ("random-init:facebook/wav2vec2-base", ("cnn", "6"))),
        words=("yes", "no"),
        method="tsne",
    )
    params = view.to_query_params()
    assert list(params) == ["model", "layers", "words", "n", "method"]
    assert params["model"] == ["baseline:mel", "random-init:facebook/wav2vec2-base"]
    assert params["layers"] == ["all", "cnn,6"]
    assert params["words"] == "yes,no"


def test_key_is_stable_and_sensitive() -> None:
    a = ViewSettings(words=("yes",))
    assert a.key() == ViewSettings(words=("yes",)).key()
    assert a.key() != a.replace(pooling="max").key()
    assert len(a.key()) == 16


def test_layer_choices() -> None:
    spec = CATALOGUE["facebook/wav2vec2-base"].layers
    view = ViewSettings(models=("facebook/wav2vec2-base",))
    assert view.layers_for("facebook/wav2vec2-base", spec) == default_layers(spec)
    view = view.with_layers("facebook/wav2vec2-base", ("12", "cnn"))
    assert view.layers_for("facebook/wav2vec2-base", spec) == ("cnn", "12")  # network order
    assert view.with_layers("facebook/wav2vec2-base", ALL).layers_for("facebook/wav2vec2-base", spec) == spec
    assert view.with_layers("facebook/wav2vec2-base", ()).layers_for("facebook/wav2vec2-base", spec) == ()


def test_defaults_for_layers_and_words() -> None:
    assert default_layers(("logmel", "mfcc")) == ("logmel", "mfcc")
    assert default_layers(tuple(["cnn"] + [str(i) for i in range(13)])) == ("cnn", "3", "8", "12")
    dac = CATALOGUE["descript/dac_16khz"].layers
    assert not any(layer.startswith("codebook") for layer in default_layers(dac))
    assert default_words(DEMO_WORDS) == ("yes", "no", "up", "down")
    assert default_words(["b", "a", "yes"]) == ("yes", "a", "b")


@pytest.mark.parametrize(
    ("params", "needle", "field", "fallback"),
    [
        ({"n": "abc"}, "not a whole number", "samples", 12),
        ({"n": "0"}, "outside 1..1000", "samples", 12),
        ({"seed": "-3"}, "outside", "seed", 0),
        ({"pool": "median"}, "median", "pooling", "mean"),
        ({"pool": "time:9999"}, "time:9999", "pooling", "mean"),
        ({"method": "lda"}, "lda", "method", "pca"),
        ({"dims": "4"}, "dimensions", "dims", 2),
        ({"pre": "whiten"}, "whiten", "preprocess", "none"),
        ({"mode": "stack"}, "stack", "layer_mode", "individual"),
        ({"color": "gender"}, "gender", "color_by", "word"),
        ({"align": "maybe"}, "maybe", "align", "on"),
        ({"whisper": "long"}, "long", "whisper_mode", "padded"),
        ({"metric": "auc"}, "auc", "metric", "knn_accuracy"),
        ({"cka": "both"}, "both", "cka_mode", "within"),
        ({"measures": "yes"}, "yes", "measures", "off"),
        ({"words": "nope"}, "nope", "words", ("yes", "no", "up", "down")),
        ({"model": "evil/model"}, "evil/model", "models", DEFAULT_MODELS),
        ({"model": "random-init:evil/model"}, "random-init", "models", DEFAULT_MODELS),
        ({"model": "/etc"}, "EMBEDVIZ_MODEL_ROOTS", "models", DEFAULT_MODELS),
        ({"clip": "../../etc/passwd"}, "clip id", "clip", ""),
        ({"cm_model": "openai/whisper-tiny"}, "not one of the chosen", "cm_model", ""),
        ({"cm_layer": "<script>"}, "not a layer name", "cm_layer", ""),
        ({"data": "/etc"}, "only the demo dataset is allowed", "dataset", ""),
        ({"data": "relative/path"}, "absolute", "dataset", ""),
        ({"hack": "1"}, "hack", "dataset", ""),
    ],
)
def test_invalid_values_warn_and_fall_back(params, needle, field, fallback) -> None:
    view, warnings = parse(params)
    assert any(needle in w for w in warnings), warnings
    assert getattr(view, field) == fallback


def test_bad_layers_are_dropped_per_model_and_alignment_is_kept() -> None:
    view, warnings = parse(
        {
            "model": ["evil/x", "baseline:mel", "random-init:facebook/wav2vec2-base"],
            "layers": ["all", "mfcc,zzz", "cnn,99"],
        }
    )
    assert view.models == ("baseline:mel", "random-init:facebook/wav2vec2-base")
    assert view.layer_choice("baseline:mel") == ("mfcc",)
    assert view.layer_choice("random-init:facebook/wav2vec2-base") == ("cnn",)
    assert any("zzz" in w for w in warnings) and any("99" in w for w in warnings)


def test_dataset_must_be_inside_a_data_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sc" / "yes").mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "yes").mkdir(parents=True)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    demo = demo_root()

    assert check_dataset_path(str(root / "sc"), [root], demo) == (str((root / "sc").resolve()), "")
    assert check_dataset_path(str(demo), [root], demo) == ("", "")
    assert check_dataset_path("demo", [root], demo) == ("", "")
    for bad, why in [
        (str(outside), "outside"),
        (str(root / "sc" / ".." / ".." / "outside"), ".."),
        (str(root / "escape"), "symlink"),
        (str(root / "missing"), "no such folder"),
        ("sc", "absolute"),
        ("/x\x00y", "absolute"),
    ]:
        checked, reason = check_dataset_path(bad, [root], demo)
        assert checked is None and why in reason, (bad, reason)


def test_models_allowlist(tmp_path: Path) -> None:
    ids = set(CATALOGUE)
    root = tmp_path / "models"
    (root / "mine").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "link").symlink_to(elsewhere, target_is_directory=True)

    assert check_model_name("facebook/wav2vec2-base", ids, [root]) == ("facebook/wav2vec2-base", "")
    assert check_model_name("baseline:mel", ids, []) == ("baseline:mel", "")
    assert check_model_name("random-init:openai/whisper-tiny", ids, [])[0] == "random-init:openai/whisper-tiny"
    assert check_model_name(str(root / "mine"), ids, [root])[0] == str((root / "mine").resolve())
    for bad in [
        "someone/else",
        "random-init:baseline:mel",
        "random-init:x/y",
        str(elsewhere),
        str(root / "link"),
        str(root / "mine" / ".." / ".." / "elsewhere"),
        "mine",
        "",
        "baseline:mfcc",
    ]:
        assert check_model_name(bad, ids, [root])[0] is None, bad


def test_nothing_outside_the_roots_is_touched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disallowed paths are rejected lexically: never resolved, stat'ed or opened."""
    root = tmp_path / "root"
    root.mkdir()
    seen: list[str] = []
    real_resolve = pathlib.Path.resolve
    real_stat = os.stat

    def spy_resolve(self, *args, **kwargs):
        seen.append(str(self))
        return real_resolve(self, *args, **kwargs)

    def spy_stat(path, *args, **kwargs):
        seen.append(str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "resolve", spy_resolve)
    monkeypatch.setattr(os, "stat", spy_stat)
    called: list[str] = []

    def layers(name: str):
        called.append(name)
        raise AssertionError("must not describe a disallowed model")

    def words(path: str):
        called.append(path)
        return DEMO_WORDS

    view, warnings = ViewSettings.from_query_params(
        {"data": "/secret/data", "model": ["/secret/model", "/etc/../secret"]},
        catalogue=CATALOGUE,
        data_roots=[root],
        model_roots=[root],
        dataset_words=words,
        demo_root=demo_root(),
        model_layers=layers,
    )
    assert len(warnings) >= 3
    assert view.models == DEFAULT_MODELS and view.dataset == ""
    assert not any("secret" in s for s in seen), seen
    assert called == [""]  # the words of the demo (the fallback), nothing else


def test_contained_path_needs_roots() -> None:
    assert contained_path("/tmp", [])[0] is None


def test_unreadable_dataset_words_warn() -> None:
    def broken(path: str):
        from embedviz.errors import DatasetError

        raise DatasetError("no word folders")

    view, warnings = ViewSettings.from_query_params(
        {"words": "yes"},
        catalogue=CATALOGUE,
        data_roots=[],
        model_roots=[],
        dataset_words=broken,
    )
    assert any("no word folders" in w for w in warnings)
    assert view.words == ("yes",)


def test_extraction_and_reduction_settings() -> None:
    view = ViewSettings(whisper_mode="crop", init_seed=3, method="tsne", dims=3, seed=5, preprocess="standardize")
    ext = view.extraction_settings("random-init:facebook/wav2vec2-base")
    assert (ext.model, ext.whisper_mode, ext.seed) == ("random-init:facebook/wav2vec2-base", "crop", 3)
    red = view.reduction_settings()
    assert (red.method, red.n_components, red.seed, red.preprocess) == ("tsne", 3, 5, "standardize")


def test_align_round_trips_and_is_omitted_when_default() -> None:
    off = ViewSettings(align="off")
    assert off.to_query_params()["align"] == "off"
    assert "align" not in ViewSettings().to_query_params()
    parsed, warnings = parse(off.to_query_params())
    assert parsed.align == "off" and warnings == []  # a key the URL writes is never "unknown"


def test_measures_toggle_round_trips_and_changes_the_key() -> None:
    """Layer analysis's "Compute the measures" is in the URL: a shared link shows them computed."""
    on = ViewSettings(words=("yes", "no"), measures="on")
    assert on.to_query_params()["measures"] == "on"
    assert "measures" not in ViewSettings().to_query_params()  # off: the default, left out
    parsed, warnings = parse(on.to_query_params())
    assert parsed == on and parsed.measures == "on" and warnings == []
    assert on.key() != on.replace(measures="off").key()


@pytest.mark.parametrize("field,value", [("measures", True), ("align", "sideways"), ("method", "lda"), ("dims", 4), ("samples", 0),
                                         ("color_by", "gender")])
def test_invalid_settings_are_rejected_on_construction(field, value) -> None:
    from embedviz.errors import ConfigError

    with pytest.raises(ConfigError, match=field.split("_")[0]):
        ViewSettings(**{field: value})


def test_the_neighbours_panel_and_selection_round_trip() -> None:
    view = ViewSettings(
        models=("baseline:mel",), words=("yes", "no"), clip="yes/a_nohash_0.wav", nn_model="baseline:mel",
        nn_layers=("mfcc",), selected=("yes/a_nohash_0.wav", "no/b_nohash_1.wav"), find="up", hide=("no",),
    )
    params = view.to_query_params()
    assert params["nn_model"] == "baseline:mel" and params["nn_layers"] == "mfcc"
    again, warnings = parse(params)
    assert again == view and warnings == []
    # A neighbours model that is not chosen is refused; a big selection stays out of the URL.
    bad, warnings = parse({**params, "nn_model": "openai/whisper-tiny"})
    assert bad.nn_model == "" and any("Neighbours model" in w for w in warnings)
    many = view.replace(selected=tuple(f"yes/{i}_nohash_0.wav" for i in range(51)))
    assert "sel" not in many.to_query_params()


def test_options_and_labels_come_from_the_owning_modules() -> None:
    from embedviz.figures import METRIC_LABELS
    from embedviz.pooling import POOLINGS
    from embedviz.reduction import METHOD_LABELS, METHODS, PREPROCESSING
    from embedviz.settings import WHISPER_MODES
    from embedviz.viewstate import spec

    assert spec("method").options == METHODS and spec("method").format("tsne") == METHOD_LABELS["tsne"]
    assert spec("preprocess").options == PREPROCESSING
    assert spec("pooling").options == POOLINGS
    assert spec("whisper_mode").options == WHISPER_MODES
    assert spec("metric").format("silhouette") == METRIC_LABELS["silhouette"]
