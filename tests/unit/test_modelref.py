"""ModelRef: every model name parsed once, with a text form that round-trips."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from embedviz.errors import ExtractionError, ModelLoadError
from embedviz.modelref import ModelRef, is_allowed


def test_each_kind_is_recognised_and_round_trips(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    cases = {
        "baseline:mel": "baseline",
        "facebook/wav2vec2-base": "catalogue",
        "random-init:openai/whisper-tiny": "random_init",
        "someone/other-model": "hub",
        str(folder): "local_folder",
    }
    for text, kind in cases.items():
        ref = ModelRef.parse(f"  {text} ")
        assert ref.kind == kind, text
        assert str(ref) == text
        assert ModelRef.parse(str(ref)) == ref
    assert ModelRef.parse("random-init:openai/whisper-tiny").id == "openai/whisper-tiny"


@pytest.mark.parametrize("bad", ["", "   ", "random-init:nobody/nothing", "./missing-folder", "/no/such/dir",
                                 "not a model", "x" * 5000, "a\x00b"])
def test_bad_names_are_model_load_errors(bad: str) -> None:
    with pytest.raises(ModelLoadError):
        ModelRef.parse(bad)


def test_is_allowed_checks_catalogue_and_model_roots(tmp_path: Path) -> None:
    root = tmp_path / "models"
    inside = root / "a"
    inside.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "link").symlink_to(outside)  # a symlink leading out of the root is refused
    ids = ["facebook/wav2vec2-base"]
    assert is_allowed(ModelRef.parse("facebook/wav2vec2-base"), ids, [root]) == (True, "")
    assert is_allowed(ModelRef.parse("baseline:mel"), ids, [])[0]
    assert not is_allowed(ModelRef.parse("random-init:openai/whisper-tiny"), ids, [root])[0]
    assert not is_allowed(ModelRef.parse("someone/other-model"), ids, [root])[0]
    assert is_allowed(ModelRef.parse(str(inside)), ids, [root]) == (True, "")
    assert not is_allowed(ModelRef.parse(str(root / "link")), ids, [root])[0]
    assert "EMBEDVIZ_MODEL_ROOTS" in is_allowed(ModelRef.parse(str(inside)), ids, [])[1]


def test_out_of_memory_flag_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(ExtractionError("boom", out_of_memory=True)))
    assert error.out_of_memory is True and str(error) == "boom"
    assert ExtractionError("plain").out_of_memory is False
