"""Property-based fuzzing of the URL parser: any query params give a valid view or a warning.

Hypothesis generates huge numbers, negative counts, unknown words and models, repeated
keys, unicode and path-traversal strings for every key the app knows (and unknown ones).
The parser must never raise; whatever it returns is a valid, round-trippable
:class:`ViewSettings`, and every value it could not use is named in a warning.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedviz.catalogue import CATALOGUE
from embedviz.viewstate import KNOWN_KEYS, SETTINGS, ViewSettings

DEMO_WORDS = ["cat", "dog", "down", "left", "no", "one", "right", "three", "two", "up", "yes", "zero"]
LAYERS = {"baseline:mel": ("logmel", "mfcc")}

nasty = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(
        [
            "../../etc/passwd", "/etc/../root", "..", "/", "\x00", "demo", "baseline:mel", "random-init:x/y",
            "random-init:facebook/wav2vec2-base", "facebook/wav2vec2-base", "9" * 5000, "-1", "1e9", "nan",
            "time:0.5", "time:9999", "tsne", "3", "all", "none", "default", "yes,no,zzz", "yes/x_nohash_0.wav",
            "ｙｅｓ", "😀", "cnn,99", "\u202e", "%2e%2e%2f", "C:\\Windows", "~/.ssh",
        ]
    ),
)
keys = st.one_of(st.sampled_from(sorted(KNOWN_KEYS)), st.text(min_size=1, max_size=12))
params = st.dictionaries(keys, st.one_of(nasty, st.lists(nasty, min_size=0, max_size=5)), max_size=12)


def layers(name: str):
    if name in LAYERS:
        return LAYERS[name]
    return CATALOGUE[name.split(":", 1)[1] if name.startswith("random-init:") else name].layers


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params)
def test_any_query_params_give_a_valid_view_or_a_warning(tmp_path_factory, raw) -> None:
    root = Path("/nonexistent-data-root")
    view, warnings = ViewSettings.from_query_params(
        raw, catalogue=CATALOGUE, data_roots=[root], model_roots=[root], dataset_words=DEMO_WORDS,
        model_layers=layers,
    )
    assert isinstance(view, ViewSettings)
    assert all(isinstance(w, str) and w for w in warnings)
    # Nothing outside the allowlists got in.
    assert view.dataset == ""
    assert all(m == "baseline:mel" or m in CATALOGUE or m.startswith("random-init:") for m in view.models)
    assert set(view.words) <= set(DEMO_WORDS)
    # The view writes a URL that parses back to itself without a warning.
    again, more = ViewSettings.from_query_params(
        view.to_query_params(), catalogue=CATALOGUE, data_roots=[root], model_roots=[root],
        dataset_words=DEMO_WORDS, model_layers=layers,
    )
    assert again == view and more == []
    # Every key given with a value that was not used is accounted for by some warning.
    if set(raw) - KNOWN_KEYS:
        assert any("Unknown URL parameter" in w for w in warnings)


def test_every_setting_has_a_key_a_label_and_a_valid_default() -> None:
    assert len({s.key for s in SETTINGS}) == len(SETTINGS)
    for s in SETTINGS:
        assert s.key and s.label and s.pages
        assert s.codec.check(s.default) == "", s.name
