"""Merging small parts: same answers before and after, crash-safe, no duplicated rows, readers unharmed."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from embedviz import store as store_mod
from embedviz.errors import StoreError
from embedviz.pooling import STORED_VECTORS
from embedviz.store import EmbeddingStore
from tests.unit.test_store import LAYERS, OpenLog, rows_for, write

POOLINGS = ["mean", "meanstd", "max", "centre", "speech"]


@pytest.fixture
def store(tmp_path: Path):
    s = EmbeddingStore(tmp_path)
    return s, s.open_for_writing("model@abc", {"max_seconds": 30.0}, {"model": "m", "layers": LAYERS})


def snapshot(e) -> dict:
    out = {}
    for pooling in POOLINGS:
        for layer, lv in e.read(LAYERS, pooling).items():
            order = np.argsort(lv.clip_keys)
            out[(pooling, layer)] = (sorted(lv.clip_keys), lv.X[order], lv.clips.sort_values("clip_key").to_dict("list"))
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k][0] == b[k][0], k
        np.testing.assert_array_equal(a[k][1], b[k][1], err_msg=str(k))
        assert a[k][2] == b[k][2], k


def rows_in_parts(e) -> list[tuple[str, str]]:
    found = []
    for part in e.path.glob("part-*.parquet"):
        found += [tuple(r.values()) for r in pq.read_table(part, columns=["clip_key", "layer"]).to_pylist()]
    return found


def test_small_parts_are_merged_into_one_sorted_part_with_the_same_answers(store, monkeypatch) -> None:
    monkeypatch.setattr(store_mod, "COMPACT_FANOUT", 10**6)
    _, e = store
    for i in range(8):
        write(e, rows_for([f"k{i}a", f"k{i}b"], seed=i))
    write(e, rows_for(["k3a"], seed=99))  # written again later: this row must keep winning
    before = snapshot(e)
    assert len(e.parts()) == 9
    assert e.compact(force=True) == 9
    assert len(e.parts()) == 1 and len(list(e.path.glob("part-*.parquet"))) == 1
    assert_same(before, snapshot(e))
    rows = rows_in_parts(e)
    assert len(rows) == len(set(rows)) == 16 * len(LAYERS), "one row per (clip, layer)"
    table = pq.read_table(e.parts()[0], columns=["layer", "clip_key"]).to_pylist()
    assert [(r["layer"], r["clip_key"]) for r in table] == sorted((r["layer"], r["clip_key"]) for r in table)
    md = pq.read_metadata(e.parts()[0])
    for g in range(md.num_row_groups):  # a row group never spans two layers: the others are skipped
        stats = md.row_group(g).column(5).statistics
        assert md.schema.column(5).name == "layer" and stats.min == stats.max


def test_writes_merge_by_size_tier(store) -> None:
    _, e = store
    fanout = store_mod.COMPACT_FANOUT
    for i in range(fanout * fanout):  # single-clip batches
        write(e, rows_for([f"k{i:03d}"], seed=i))
        assert len(e.parts()) < 2 * fanout, "never more than about fanout parts per tier"
    assert len(e.stored_keys()) == fanout * fanout
    rows = rows_in_parts(e)
    assert len(rows) == len(set(rows))
    assert len(e.parts()) <= 2


def test_large_merge_is_split_by_clip_key(store, monkeypatch) -> None:
    monkeypatch.setattr(store_mod, "COMPACT_FANOUT", 10**6)
    monkeypatch.setattr(store_mod, "MAX_PART_CLIPS", 5)
    _, e = store
    keys = [f"k{i:02d}" for i in range(12)]
    for i in range(0, 12, 3):
        write(e, rows_for(keys[i : i + 3], seed=i))
    before = snapshot(e)
    e.compact(force=True)
    parts = e.parts()
    assert len(parts) == 3 and [len(e.part_keys()[p]) for p in parts] == [5, 5, 2]
    assert_same(before, snapshot(e))


def test_a_crash_between_the_merged_write_and_the_deletes_leaves_no_duplicates(store, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(store_mod, "COMPACT_FANOUT", 10**6)
    s, e = store
    for i in range(4):
        write(e, rows_for([f"k{i}"], seed=i))
    before = snapshot(e)
    backup = tmp_path.parent / f"{tmp_path.name}-backup"
    shutil.copytree(e.path, backup)
    e.compact(force=True)
    for part in backup.glob("part-*.parquet"):  # as if the process died before deleting its sources
        shutil.copy2(part, e.path / part.name)
    assert len(list(e.path.glob("part-*.parquet"))) == 5
    assert len(e.parts()) == 1, "the merged part supersedes the parts it names"
    assert_same(before, snapshot(e))
    assert e.stored_keys() == {f"k{i}" for i in range(4)}
    s.open_for_writing("model@abc", {"max_seconds": 30.0}, {"model": "m", "layers": LAYERS})
    assert len(list(e.path.glob("part-*.parquet"))) == 1, "the next writer deletes the leftovers"


def test_a_crash_while_writing_the_merged_part_keeps_the_small_parts(store, monkeypatch) -> None:
    monkeypatch.setattr(store_mod, "COMPACT_FANOUT", 10**6)
    _, e = store
    for i in range(4):
        write(e, rows_for([f"k{i}"], seed=i))
    before = snapshot(e)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", crash)
    with pytest.raises(StoreError, match="disk full"):
        e.compact(force=True)
    monkeypatch.undo()
    assert len(e.parts()) == 4 and not list(e.path.glob(".*.tmp"))
    assert_same(before, snapshot(e))


def test_readers_see_every_clip_while_another_thread_writes_and_merges(store) -> None:
    s, e = store
    n = 60
    for i in range(4):
        write(e, rows_for([f"k{i:02d}"], seed=i))
    done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(4, n):
                write(e, rows_for([f"k{i:02d}"], seed=i))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    seen = 4
    reads = 0
    while not done.is_set() or reads == 0:
        reader = s.entry("model@abc", {"max_seconds": 30.0})
        got = reader.read(["0"], "mean")["0"]
        keys = got.clip_keys
        assert len(keys) == len(set(keys)), "no clip twice"
        expected = [f"k{i:02d}" for i in range(len(keys))]
        assert sorted(keys) == expected, "every clip written so far, none lost mid-merge"
        assert len(keys) >= seen
        seen = len(keys)
        reads += 1
    thread.join()
    assert not errors
    assert sorted(e.read(["0"], "mean")["0"].clip_keys) == [f"k{i:02d}" for i in range(n)]
    rows = rows_in_parts(e)
    assert len(rows) == len(set(rows)) == n * len(LAYERS)


def test_reading_some_clips_reads_only_their_row_groups_and_columns(store, monkeypatch) -> None:
    monkeypatch.setattr(store_mod, "COMPACT_FANOUT", 10**6)
    monkeypatch.setattr(store_mod, "ROW_GROUP_CLIPS", 4)
    _, e = store
    keys = [f"k{i:02d}" for i in range(40)]
    for i in range(0, 40, 8):
        write(e, rows_for(keys[i : i + 8], seed=i))
    e.compact(force=True)
    (part,) = e.parts()
    n_groups = pq.read_metadata(part).num_row_groups
    assert n_groups == len(LAYERS) * 10
    log = OpenLog(monkeypatch)
    got = e.read(["1"], "max", clip_keys=["k05", "k06"], clip_columns=False)["1"]
    assert sorted(got.clip_keys) == ["k05", "k06"]
    (path, groups, columns), = log.reads
    assert len(groups) == 1, "one row group of one layer, not all of them"
    assert set(columns) == {"clip_key", "layer", "max"}, "only the asked pooling's column"
    # The vectors are right, too.
    full = e.read(["1"], "max")["1"]
    index = {k: i for i, k in enumerate(full.clip_keys)}
    np.testing.assert_array_equal(got.X, full.X[[index[k] for k in got.clip_keys]])


def test_every_vector_is_stored_once_in_float16(store) -> None:
    _, e = store
    write(e, rows_for(["k1"]))
    schema = pq.read_schema(e.parts()[0])
    vector_columns = [n for n in schema.names if n in (*STORED_VECTORS, "meanstd", "grid")]
    assert sorted(vector_columns) == sorted([*STORED_VECTORS, "grid"]), "meanstd is assembled, not stored"
    row = pq.read_table(e.parts()[0]).to_pylist()[0]
    assert len(row["mean"]) == 6 * 2, "6 dims x 2 bytes"
    assert row["grid"] is None and row["grid_steps"] == 0, "no time grid unless asked for"


def test_values_beyond_float16_are_kept_in_float32(store) -> None:
    _, e = store
    rows = rows_for(["k1", "k2"])
    for r in rows:
        r["max"] = r["max"] * 0 + 1.0e6  # float16 would make this inf
    write(e, rows)
    got = e.read(["0"], "max")["0"]
    np.testing.assert_array_equal(got.X, 1.0e6)
    np.testing.assert_allclose(e.read(["0"], "mean")["0"].X, np.stack([r["mean"] for r in rows if r["layer"] == "0"]),
                               rtol=2.0**-11)


def test_time_grid_only_when_asked(tmp_path: Path, monkeypatch) -> None:
    s = EmbeddingStore(tmp_path)
    plain = s.open_for_writing("a@1", {}, {"model": "a", "layers": LAYERS})
    write(plain, rows_for(["k1"]))
    with pytest.raises(StoreError, match="time grid.*EMBEDVIZ_TIME_GRID=1"):
        plain.read(["0"], "time:0.2")
    monkeypatch.setenv("EMBEDVIZ_TIME_GRID", "1")
    gridded = s.open_for_writing("b@1", {}, {"model": "b", "layers": LAYERS})
    assert gridded.has_time_grid
    rows = rows_for(["k1"])
    write(gridded, rows)
    expected = rows[1]["_frames"][10]  # layer "0", 0.2 s at 50 frames/s
    np.testing.assert_allclose(gridded.read(["0"], "time:0.2")["0"].X[0], expected, rtol=2.0**-11, atol=1e-7)
    # An existing entry keeps what it was created with.
    assert not s.open_for_writing("a@1", {}, {"model": "a", "layers": LAYERS}).has_time_grid
    table = s.entries().set_index("model")
    assert table.loc["b", "time_grid"] and not table.loc["a", "time_grid"]


def test_temporaries_of_crashed_writes_are_removed_when_old(store) -> None:
    s, e = store
    old, fresh = e.path / ".part-1-a.parquet.tmp", e.path / ".part-2-b.parquet.tmp"
    old.write_bytes(b"half a part")
    fresh.write_bytes(b"a write in flight")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    s.open_for_writing("model@abc", {"max_seconds": 30.0}, {"model": "m", "layers": LAYERS})
    assert not old.exists() and fresh.exists(), "only temporaries older than STALE_TMP_SECONDS"


def test_entries_count_damaged_parts(store) -> None:
    s, e = store
    write(e, rows_for(["k1"]))
    write(e, rows_for(["k2"]))
    e.parts()[0].write_bytes(b"garbage")
    table = s.entries()  # counting the clips finds it
    assert table.loc[0, "damaged"] == 1 and table.loc[0, "clips"] == 1


def test_one_merge_reads_at_most_max_merge_bytes(store, monkeypatch) -> None:
    monkeypatch.setattr(store_mod, "COMPACT_FANOUT", 10**6)
    _, e = store
    for i in range(6):
        write(e, rows_for([f"k{i}"], seed=i))
    size = max(p.stat().st_size for p in e.parts())
    monkeypatch.setattr(store_mod, "MAX_MERGE_BYTES", 2 * size)
    merged_sizes: list[int] = []
    real = store_mod.StoreEntry._merge
    monkeypatch.setattr(store_mod.StoreEntry, "_merge",
                        lambda self, group: merged_sizes.append(sum(p.stat().st_size for p in group)) or real(self, group))
    before = snapshot(e)
    e.compact(force=True)
    assert merged_sizes and max(merged_sizes) <= 2 * size
    assert_same(before, snapshot(e))
