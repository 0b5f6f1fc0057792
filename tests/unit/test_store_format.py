"""Data written by store format 1 is detected and rebuilt, never misread."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedviz import store as store_mod
from embedviz.datasets import open_dataset
from embedviz.pipeline import _with_keys, extract
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore, read_layers

MEL = ExtractionSettings(model="baseline:mel")
V1_VECTORS = ("mean", "std", "max", "centre", "speech")


def v1_schema() -> pa.Schema:
    """The format-1 part schema, as embedviz wrote it before format 2 (float32 lists, grid)."""
    vec = pa.list_(pa.float32())
    return pa.schema(
        [("clip_key", pa.string()), ("clip_id", pa.string()), ("path", pa.string()), ("word", pa.string()),
         ("speaker", pa.string()), ("layer", pa.string()), ("n_frames", pa.int32()),
         *[(name, vec) for name in V1_VECTORS], ("grid", pa.list_(pa.float16())), ("grid_steps", pa.int32())],
        metadata={b"embedviz_format": b"1"},
    )


def write_v1_part(path: Path, manifest, layers) -> None:
    rows = {name: [] for name in v1_schema().names}
    for _, clip in manifest.iterrows():
        for layer in layers:
            for name, value in [("clip_key", clip["clip_key"]), ("clip_id", clip["clip_id"]), ("path", str(clip["path"])),
                                ("word", clip["word"]), ("speaker", clip["speaker"]), ("layer", layer), ("n_frames", 3),
                                ("grid", [0.0] * 4), ("grid_steps", 1)]:
                rows[name].append(value)
            for name in V1_VECTORS:
                rows[name].append([7.0] * 4)  # not what the model computes: must never be read
    pq.write_table(pa.Table.from_pydict(rows, schema=v1_schema()), path)


@pytest.fixture
def manifest():
    return _with_keys(open_dataset().sample(["yes", "no"], 3, seed=0))


def test_a_format_1_entry_is_missing_to_reads_and_rebuilt_by_extract(manifest, tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    target = store.entry_for(MEL)
    target.path.mkdir(parents=True)
    layers = ["logmel", "mfcc"]
    (target.path / "meta.json").write_text(json.dumps(
        {"model": MEL.model, "model_key": target.model_key, "options": target.options, "layers": layers,
         "format_version": 1}))
    old_part = target.path / "part-00000000000000000001-abcdef01.parquet"
    write_v1_part(old_part, manifest, layers)

    old = store.entry_for(MEL)
    assert not old.is_current and old.stored_keys() == set() and old.parts() == []
    got = read_layers(store, MEL, ["logmel"], manifest=manifest.drop(columns=["clip_key"]))["logmel"]
    assert got.X.shape[0] == 0 and len(got.missing) == len(manifest), "every clip missing, none misread"
    assert store.entries().loc[0, "current"] == False  # noqa: E712 - numpy bool

    report = extract(manifest.drop(columns=["clip_key"]), MEL, store=store)
    assert report.computed == len(manifest) and report.cached == 0
    fresh = store.entry_for(MEL)
    assert fresh.is_current and fresh.meta["format_version"] == store_mod.FORMAT_VERSION
    assert not old_part.exists(), "the format-1 part is gone"
    got = read_layers(store, MEL, ["logmel"], manifest=manifest.drop(columns=["clip_key"]))["logmel"]
    assert got.missing == () and got.X.shape == (len(manifest), got.X.shape[1]) and not np.any(got.X == 7.0)


def test_a_format_1_part_inside_a_format_2_entry_is_set_aside(manifest, tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    extract(manifest.iloc[:2].drop(columns=["clip_key"]), MEL, store=store)
    entry = store.entry_for(MEL)
    stray = entry.path / "part-99999999999999999999-abcdef01.parquet"  # sorts last: it would win
    write_v1_part(stray, manifest, ["logmel", "mfcc"])
    assert entry.stored_keys() == set(manifest["clip_key"].iloc[:2])
    assert [p.name for p in entry.damaged_parts()] == [stray.name]
    assert not np.any(entry.read(["logmel"], "mean")["logmel"].X == 7.0)
