"""Configured caps (embedviz.limits) and how the URL parser applies them."""

from __future__ import annotations

import pytest

from embedviz import limits
from embedviz.catalogue import CATALOGUE
from embedviz.errors import ConfigError
from embedviz.viewstate import ViewSettings

WORDS = ["yes", "no", "up", "down"]


def parse(params):
    return ViewSettings.from_query_params(params, catalogue=CATALOGUE, data_roots=[], model_roots=[], dataset_words=WORDS)


def test_defaults_and_bad_values_fall_back(monkeypatch) -> None:
    assert limits.max_samples() == 1000 and limits.max_clips() == 25000
    monkeypatch.setenv("EMBEDVIZ_MAX_SAMPLES", "-5")
    assert limits.max_samples() == 1000  # a typo cannot switch a cap off
    monkeypatch.setenv("EMBEDVIZ_MAX_SAMPLES", "40")
    assert limits.max_samples() == 40


def test_samples_per_word_cap_applies_to_the_url(monkeypatch) -> None:
    monkeypatch.setenv("EMBEDVIZ_MAX_SAMPLES", "40")
    view, warnings = parse({"n": "41"})
    assert view.samples == 12 and any("outside 1..40" in w for w in warnings)
    assert parse({"n": "40"})[0].samples == 40


def test_total_clips_cap_lowers_clips_per_word_with_a_message(monkeypatch) -> None:
    monkeypatch.setenv("EMBEDVIZ_MAX_CLIPS", "100")
    view, warnings = parse({"words": "yes,no,up,down", "n": "30"})
    assert view.samples == 25
    assert any("EMBEDVIZ_MAX_CLIPS" in w and "using 25 per word" in w for w in warnings)
    assert limits.clip_budget(4, 25) == (25, "")


def test_uploads_are_limited_in_size_and_duration(monkeypatch) -> None:
    monkeypatch.setenv("EMBEDVIZ_MAX_UPLOAD_MB", "1")
    monkeypatch.setenv("EMBEDVIZ_MAX_UPLOAD_SECONDS", "5")
    limits.check_upload(1024, 4.9)
    with pytest.raises(ConfigError, match="EMBEDVIZ_MAX_UPLOAD_MB"):
        limits.check_upload(2 * 1024 * 1024, 1.0)
    with pytest.raises(ConfigError, match="EMBEDVIZ_MAX_UPLOAD_SECONDS"):
        limits.check_upload(1024, 6.0)
