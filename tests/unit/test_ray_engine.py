"""The Ray engine: same numbers and store keys as the local engine, resumable, skips bad clips.

Runs on one private local Ray instance (2 CPUs) shared by the module; select with ``-m ray``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedviz import cli
from embedviz.datasets import open_dataset
from embedviz.pipeline import extract, missing_clips
from embedviz.pooling import POOLINGS
from embedviz.ray_engine import RayConfig, extract_on_ray
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore, read_layers

ray = pytest.importorskip("ray", reason="needs requirements-ray.txt")
pytestmark = pytest.mark.ray

MEL = ExtractionSettings(model="baseline:mel")
CONFIG = RayConfig(actors=2)


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    """One local 2-CPU instance for the module; the engine joins it instead of starting its own."""
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", object_store_memory=256 * 1024 * 1024,
             # The time grid (only stored on request) is on, so time:<s> is compared too.
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                                       "EMBEDVIZ_TIME_GRID": "1"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def manifest() -> pd.DataFrame:
    return open_dataset().sample(["yes", "no", "cat"], 4, seed=0)


def _poolings() -> list[str]:
    names = [p for p in POOLINGS if not p.startswith("time")]
    return names + ["time:0.3"]


def test_ray_equals_local_for_every_layer_and_pooling(manifest, tiny_model_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EMBEDVIZ_TIME_GRID", "1")  # as the actors have it (ray_cluster)
    for model in ("baseline:mel", str(tiny_model_dir["wav2vec2"])):
        settings = ExtractionSettings(model=model)
        local_store, ray_store = EmbeddingStore(tmp_path / "local"), EmbeddingStore(tmp_path / "ray")
        local = extract(manifest, settings, store=local_store, batch_size=4)
        remote = extract_on_ray(manifest, settings, store=ray_store, ray_config=CONFIG, batch_size=4)
        assert (remote.computed, remote.cached, remote.skipped) == (12, 0, [])
        assert remote.forward_passes == local.forward_passes == 3
        assert remote.entry == local.entry, "same store entry (model key + options)"
        local_meta = local_store.entry(*_key(settings, local_store)).meta
        ray_meta = ray_store.entry(*_key(settings, ray_store)).meta
        assert local_meta["layers"] == ray_meta["layers"] and local_meta["model_key"] == ray_meta["model_key"]
        for pooling in _poolings():
            a = read_layers(local_store, settings, local_meta["layers"], pooling, manifest=manifest)
            b = read_layers(ray_store, settings, local_meta["layers"], pooling, manifest=manifest)
            for layer in local_meta["layers"]:
                assert a[layer].missing == b[layer].missing == ()
                assert a[layer].clips["clip_id"].tolist() == b[layer].clips["clip_id"].tolist()
                # Stored vectors are float16 (store format 2): equal up to one float16 step
                # (a float32 difference of 1e-7 can round either way), else within 1e-4.
                tol = {"atol": 1e-4, "rtol": 2.0**-10}
                np.testing.assert_allclose(b[layer].X, a[layer].X, **tol, err_msg=f"{model} {layer} {pooling}")
        shutil.rmtree(tmp_path / "local"), shutil.rmtree(tmp_path / "ray")


def _key(settings, store):
    entry = store.entry_for(settings)
    return entry.model_key, entry.options


def test_resume_computes_only_the_missing_half(manifest, tmp_path) -> None:
    store = EmbeddingStore(tmp_path / "store")
    first = extract_on_ray(manifest.iloc[:6], MEL, store=store, ray_config=CONFIG, batch_size=3)
    assert (first.computed, first.cached) == (6, 0)
    parts = {p: p.stat().st_mtime_ns for p in store.root.rglob("part-*.parquet")}
    assert len(parts) == 2, "one part per batch"
    second = extract_on_ray(manifest, MEL, store=store, ray_config=CONFIG, batch_size=3)
    assert (second.computed, second.cached) == (6, 6)
    assert {p: p.stat().st_mtime_ns for p in parts} == parts, "finished parts are kept untouched"
    assert missing_clips(manifest, MEL, store).empty
    third = extract_on_ray(manifest, MEL, store=store, ray_config=CONFIG, batch_size=3)
    assert (third.computed, third.cached, third.forward_passes) == (0, 12, 0)


def test_bad_clip_is_skipped_with_its_reason(manifest, tmp_path) -> None:
    root = tmp_path / "data"
    shutil.copytree(open_dataset().root / "yes", root / "yes")
    bad = root / "yes" / "badbadba_nohash_0.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    m = open_dataset(root).manifest()
    store = EmbeddingStore(tmp_path / "store")
    report = extract_on_ray(m, MEL, store=store, ray_config=CONFIG, batch_size=4)
    assert [s.path for s in report.skipped] == [str(bad)]
    assert report.skipped[0].reason
    assert report.computed == len(m) - 1
    local = extract(m, MEL, store=EmbeddingStore(tmp_path / "local"), batch_size=4)
    assert [s.reason for s in local.skipped] == [s.reason for s in report.skipped]


def test_cli_engine_ray_end_to_end(tmp_path, capsys) -> None:
    cache = tmp_path / "cache"
    argv = ["extract", "--model", "baseline:mel", "--words", "yes,no", "--samples", "3", "--cache", str(cache),
            "--engine", "ray", "--ray-actors", "2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "6 computed, 0 already stored, 0 skipped" in out
    assert cli.main(argv) == 0
    assert "0 computed, 6 already stored" in capsys.readouterr().out
    assert cli.main(argv[:-4] + ["--engine", "local"]) == 0
    assert "0 computed, 6 already stored" in capsys.readouterr().out, "the local engine reads Ray's parts"


def test_config_is_validated() -> None:
    from embedviz.errors import ConfigError

    with pytest.raises(ConfigError, match="--ray-actors"):
        RayConfig(actors=0)
    with pytest.raises(ConfigError, match="--ray-gpus-per-actor"):
        RayConfig(gpus_per_actor=-1)
    assert RayConfig(gpus_per_actor=1).device("auto") == "cuda"
    assert RayConfig().device("auto") == "cpu"


def _same_report_items(items) -> list[tuple]:
    return [tuple(vars(i).values()) for i in items]


def test_notices_and_skips_are_those_of_the_local_engine(tmp_path) -> None:
    from tests.unit.test_bad_audio_corpus import make_corpus  # the one generator of bad and odd audio

    corpus = make_corpus(tmp_path / "corpus")
    ds = open_dataset(corpus.root)
    m = ds.sample(ds.word_names, 1000)
    local_store, ray_store = EmbeddingStore(tmp_path / "local"), EmbeddingStore(tmp_path / "ray")
    local = extract(m, MEL, store=local_store, batch_size=4)
    remote = extract_on_ray(m, MEL, store=ray_store, ray_config=CONFIG, batch_size=4)
    assert {n.kind for n in local.notices} == {"downmixed", "resampled", "cut", "silent", "clipped"}
    assert _same_report_items(remote.notices) == _same_report_items(local.notices)
    assert len(local.skipped) >= 7 and _same_report_items(remote.skipped) == _same_report_items(local.skipped)
    assert (remote.computed, remote.cached) == (local.computed, local.cached)
    assert remote.notices_by_kind().keys() == local.notices_by_kind().keys()

    # Decoding rejections are remembered as locally: the next run names them without Ray.
    assert ray_store.unusable_clips() == local_store.unusable_clips()
    again, local_again = (extract_on_ray(m, MEL, store=ray_store, ray_config=CONFIG, batch_size=4),
                          extract(m, MEL, store=local_store, batch_size=4))
    assert (again.computed, again.forward_passes, again.notices) == (0, 0, [])
    assert _same_report_items(again.skipped) == _same_report_items(local_again.skipped)


def test_the_driver_decides_the_time_grid(manifest, tmp_path, monkeypatch) -> None:
    # The actors' environment asks for the grid (ray_cluster); the driver's choice wins.
    monkeypatch.delenv("EMBEDVIZ_TIME_GRID", raising=False)
    plain, gridded = EmbeddingStore(tmp_path / "plain"), EmbeddingStore(tmp_path / "gridded")
    extract_on_ray(manifest.iloc[:3], MEL, store=plain, ray_config=CONFIG, batch_size=3)
    extract_on_ray(manifest.iloc[:3], MEL, store=gridded, ray_config=CONFIG, batch_size=3, time_grid=True)
    assert not plain.entry_for(MEL).has_time_grid
    assert gridded.entry_for(MEL).has_time_grid


def test_cli_engine_ray_prints_the_local_engines_notices(tmp_path, capsys) -> None:
    import soundfile as sf

    root = tmp_path / "data"
    shutil.copytree(open_dataset().root / "yes", root / "yes")
    wave, rate = sf.read(sorted((root / "yes").glob("*.wav"))[0])
    sf.write(root / "yes" / "stereo44_nohash_0.wav", np.stack([wave, wave * 0.5], axis=1), 44100)
    argv = ["extract", "--model", "baseline:mel", "--dataset", str(root), "--samples", "1000"]
    out = {}
    for engine in ("local", "ray"):
        assert cli.main(argv + ["--cache", str(tmp_path / engine), "--engine", engine]) == 0
        out[engine] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert any("notice downmixed: 1 clip(s)" in line for line in out["local"]), out["local"]
    assert any("notice resampled: 1 clip(s)" in line for line in out["local"]), out["local"]
    assert out["ray"] == out["local"]
