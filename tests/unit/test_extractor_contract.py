"""The Extractor contract, once over every registered family (tiny models, real code path).

A new family registered in :mod:`embedviz.extractors.registry` is tested here without a
line of change, as long as ``tests/tiny_models.py`` can build its tiny model.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from embedviz.extractors.base import Extractor
from embedviz.extractors.registry import families
from embedviz.models import load_extractor
from embedviz.settings import WHISPER_MODES
from tests.tiny_models import VARIANTS

#: Values of each numeric option worth covering (every value: they change the computation).
OPTION_VALUES: dict[str, tuple[str, ...]] = {"whisper_mode": WHISPER_MODES}


def _cases() -> list[tuple[str, str, dict[str, str]]]:
    """(family, tiny_model_dir key, load options): every family, tiny variant and numeric option value."""
    cases: list[tuple[str, str, dict[str, str]]] = []
    for name, spec in families().items():
        keys = [name] + [f"{name}-{v}" for v in VARIANTS.get(name, ()) if v] if spec.has_weights else [name]
        option_sets: list[dict[str, str]] = [{}]
        for option in spec.numeric_options:
            option_sets = [{**o, option: value} for o in option_sets for value in OPTION_VALUES[option]]
        cases += [(name, key, options) for key in keys for options in option_sets]
    return cases


CASES = _cases()
ATOL = 1e-4
SR_TOLERANCE = 1e-6


def _clip(n_samples: int, seed: int, sample_rate: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / sample_rate
    wave = 0.3 * np.sin(2 * np.pi * (180 + 35 * seed) * t) + 0.05 * rng.standard_normal(n_samples)
    return wave.astype(np.float32)


def _name(family: str, key: str, tiny_model_dir: dict[str, Path]) -> str:
    return str(tiny_model_dir[key]) if families()[family].has_weights else "baseline:mel"


@pytest.fixture(scope="module", params=CASES, ids=lambda c: "-".join([c[1], *c[2].values()]))
def extractor(request: pytest.FixtureRequest, tiny_model_dir: dict[str, Path]) -> Extractor:
    family, key, options = request.param
    loaded = load_extractor(_name(family, key, tiny_model_dir), device="cpu", **options)
    yield loaded
    loaded.close()


def _lengths(extractor: Extractor) -> list[int]:
    # Unequal lengths (not multiples of any hop), with a repeat; all above wav2vec2's 400-sample minimum.
    sr = extractor.sample_rate
    return [int(sr * s) for s in (0.1013, 0.25, 0.1013, 0.0577 + 0.01, 0.2)]


def test_layer_names_match_the_family_spec(extractor: Extractor, tiny_model_dir: dict[str, Path]) -> None:
    spec = families()[extractor.info.family]
    config = None
    if spec.has_weights:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(extractor.info.name)
    assert extractor.layer_names == tuple(spec.layer_names(config))
    features = extractor.extract([_clip(_lengths(extractor)[0], 0, extractor.sample_rate)])
    assert tuple(features.layers) == extractor.layer_names
    if spec.layer_widths is not None:
        widths = spec.layer_widths(config)
        assert {n: a.shape[2] for n, a in features.layers.items()} == {n: widths[n] for n in extractor.layer_names}


def test_batched_equals_one_by_one(extractor: Extractor) -> None:
    sr = extractor.sample_rate
    clips = [_clip(n, seed, sr) for seed, n in enumerate(_lengths(extractor))]
    # Weightless families are plain numpy per clip: exactly equal. Models: float tolerance.
    atol = ATOL if families()[extractor.info.family].has_weights else 0.0
    batched = extractor.extract(clips)
    for i, clip in enumerate(clips):
        single = extractor.extract([clip])
        for name in extractor.layer_names:
            assert batched.lengths[name][i] == single.lengths[name][0], name
            np.testing.assert_allclose(batched.valid(name, i), single.valid(name, 0), atol=atol, rtol=0,
                                       err_msg=f"{extractor.info.family} layer {name} clip {i}")


def test_unequal_lengths_are_zero_padded_and_valid_lengths_positive(extractor: Extractor) -> None:
    sr = extractor.sample_rate
    lengths = _lengths(extractor)
    features = extractor.extract([_clip(n, seed, sr) for seed, n in enumerate(lengths)])
    for name in extractor.layer_names:
        array = features.layers[name]
        valid = features.lengths[name]
        assert array.dtype == np.float32 and array.ndim == 3 and array.shape[0] == len(lengths)
        assert valid.shape == (len(lengths),) and (valid >= 1).all() and (valid <= array.shape[1]).all()
        assert np.isfinite(array).all()
        for i, v in enumerate(valid.tolist()):
            assert not array[i, v:].any(), f"{name}: frames past the valid length of clip {i} are not zero"
        # A longer clip never has fewer valid frames than a shorter one.
        order = np.argsort(lengths, kind="stable")
        assert (np.diff(valid[order]) >= 0).all(), name


def test_frame_rates_agree_with_valid_lengths(extractor: Extractor) -> None:
    sr = extractor.sample_rate
    n = _lengths(extractor)[1]
    features = extractor.extract([_clip(n, 7, sr)])
    assert set(features.frame_rates) == set(extractor.layer_names)
    for name, rate in features.frame_rates.items():
        assert 0 < rate <= sr
        expected = n / sr * rate
        # Valid frames cover the clip: within two frames of duration x rate (conv edges, centring).
        assert abs(int(features.lengths[name][0]) - expected) <= max(2.0, math.ceil(0.02 * expected)), name


def test_empty_batch_gives_empty_arrays(extractor: Extractor) -> None:
    features = extractor.extract([])
    assert tuple(features.layers) == extractor.layer_names
    for name in extractor.layer_names:
        assert features.layers[name].shape[0] == 0
        assert features.lengths[name].shape == (0,)


def test_close_twice_is_safe(extractor: Extractor) -> None:
    other = load_extractor(extractor.info.name, device="cpu")
    other.close()
    other.close()
    if families()[extractor.info.family].has_weights:  # a closed model refuses work with a clear error
        from embedviz.errors import ExtractionError

        with pytest.raises(ExtractionError):
            other.extract([_clip(_lengths(other)[0], 0, other.sample_rate)])
