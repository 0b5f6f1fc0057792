"""The Parquet embedding store: round trip, poolings, atomicity, old formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedviz import store as store_mod
from embedviz.errors import ConfigError, StoreError
from embedviz.pooling import pool_frames
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore, read_layers

LAYERS = ["cnn", "0", "1"]


def rows_for(keys: list[str], seed: int = 0, d: int = 6) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for key in keys:
        for layer in LAYERS:
            frames = rng.standard_normal((20, d)).astype(np.float32)
            pooled = pool_frames(frames, 50.0, np.ones(6400, np.float32), 16000)
            grid = pooled.pop("grid")
            rows.append({"clip_key": key, "clip_id": f"w/{key}.wav", "path": f"/x/{key}.wav", "word": "w",
                         "speaker": key[:2], "layer": layer, "n_frames": 20, **pooled,
                         "grid": grid.reshape(-1), "grid_steps": grid.shape[0], "_frames": frames})
    return rows


def write(entry, rows):
    entry.write_batch([{k: v for k, v in r.items() if k != "_frames"} for r in rows])


@pytest.fixture
def entry(tmp_path: Path):
    s = EmbeddingStore(tmp_path)
    return s, s.open_for_writing("model@abc", {"max_seconds": 30.0}, {"model": "m", "layers": LAYERS, "time_grid": True})


def test_round_trip_every_pooling(entry) -> None:
    s, e = entry
    rows = rows_for(["k1", "k2"])
    write(e, rows)
    assert e.stored_keys() == {"k1", "k2"}
    for pooling, fn in [("mean", lambda f: f.mean(0)), ("max", lambda f: f.max(0)),
                        ("meanstd", lambda f: np.r_[f.mean(0), f.std(0)]), ("centre", lambda f: f[10]),
                        ("time:0.2", lambda f: f[10])]:
        got = e.read(["1"], pooling)["1"]
        assert got.clip_keys == ["k1", "k2"]
        expected = np.stack([fn(r["_frames"].astype(np.float64)) for r in rows if r["layer"] == "1"])
        # Every stored vector is float16: within half a float16 step of the float32 value.
        np.testing.assert_allclose(got.X, expected, rtol=2.0**-11, atol=1e-7)
        assert list(got.clips["clip_id"]) == ["w/k1.wav", "w/k2.wav"]


def test_read_filters_clips_and_missing_layers_are_empty(entry) -> None:
    _, e = entry
    write(e, rows_for(["k1", "k2", "k3"]))
    got = e.read(["0", "nope"], "mean", clip_keys=["k3", "k1"])
    assert sorted(got["0"].clip_keys) == ["k1", "k3"]
    assert got["nope"].X.shape[0] == 0


def test_duplicates_keep_last_written(entry) -> None:
    _, e = entry
    write(e, rows_for(["k1"], seed=1))
    second = rows_for(["k1"], seed=2)
    write(e, second)
    got = e.read(["0"], "mean")["0"]
    assert got.clip_keys == ["k1"]
    np.testing.assert_allclose(got.X[0], second[1]["mean"], rtol=2.0**-11)


def test_write_is_atomic_when_interrupted(entry, monkeypatch) -> None:
    _, e = entry
    write(e, rows_for(["k1"]))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    import pyarrow.parquet as pq

    monkeypatch.setattr(pq.ParquetWriter, "write_table", crash)  # the temporary file exists by then
    with pytest.raises(StoreError, match="disk full"):
        write(e, rows_for(["k2"]))
    monkeypatch.undo()
    assert e.stored_keys() == {"k1"}
    assert not list(e.path.glob(".*tmp")), "no temporary file left behind"


def test_old_format_is_rebuilt_not_misread(entry, monkeypatch) -> None:
    s, e = entry
    write(e, rows_for(["k1"]))
    meta = json.loads((e.path / "meta.json").read_text())
    meta["format_version"] = 0
    (e.path / "meta.json").write_text(json.dumps(meta))
    old = s.entry("model@abc", {"max_seconds": 30.0})
    assert not old.is_current
    assert old.stored_keys() == set() and old.read(["0"], "mean")["0"].X.shape[0] == 0
    fresh = s.open_for_writing("model@abc", {"max_seconds": 30.0}, {"model": "m", "layers": LAYERS})
    assert fresh.is_current and fresh.parts() == [] and not list(fresh.path.glob("part-*"))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped"])
def test_damaged_part_is_set_aside_and_its_clips_count_as_missing(entry, damage, caplog) -> None:
    _, e = entry
    write(e, rows_for(["k1"]))
    write(e, rows_for(["k2", "k3"], seed=1))
    bad = e.parts()[1]
    data = bytearray(bad.read_bytes())
    if damage == "garbage":
        data = bytearray(b"not parquet at all")
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:  # the footer (and so the clip_key column) stays readable; a vector page does not
        mid = len(data) // 2
        data[mid - 200 : mid + 200] = bytes(400)
    bad.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        got = e.read(LAYERS, "mean")
        keys = e.stored_keys()
    assert got["0"].clip_keys == ["k1"] and keys == {"k1"}, "the damaged part's clips are missing, not stored"
    assert e.damaged_parts() == [e.path / "damaged" / bad.name] and not bad.exists()
    assert "recomputed by the next extract" in caplog.text and bad.name in caplog.text


def test_entries_and_delete(entry) -> None:
    s, e = entry
    write(e, rows_for(["k1", "k2"]))
    table = s.entries()
    assert table.loc[0, "clips"] == 2 and table.loc[0, "bytes"] > 0 and table.loc[0, "model"] == "m"
    with pytest.raises(StoreError):
        s.delete("../etc")
    s.delete(e.id)
    assert s.entries().empty


def test_options_change_the_entry(tmp_path: Path) -> None:
    s = EmbeddingStore(tmp_path)
    assert s.entry_id("m@1", {"whisper_mode": "padded"}) != s.entry_id("m@1", {"whisper_mode": "crop"})
    assert s.entry_id("m@1", {"a": 1, "b": 2}) == s.entry_id("m@1", {"b": 2, "a": 1})
    assert store_mod.FORMAT_VERSION >= 1


def _write_for(s: EmbeddingStore, settings: ExtractionSettings, keys: list[str]):
    target = s.entry_for(settings)
    e = s.open_for_writing(target.model_key, target.options, {"model": settings.model, "layers": LAYERS})
    write(e, rows_for(keys))
    return e


def test_read_layers_with_and_without_a_manifest(tmp_path: Path, monkeypatch) -> None:
    import pandas as pd

    from embedviz import key_cache

    s = EmbeddingStore(tmp_path)
    mel = ExtractionSettings(model="baseline:mel")
    _write_for(s, mel, ["k1", "k2", "k3"])
    every = read_layers(s, mel)
    assert set(every) == set(LAYERS) and every["0"].clip_keys == ["k1", "k2", "k3"]
    assert list(every["0"].clips.columns) == ["clip_key", "clip_id", "path", "word", "speaker"]
    # A manifest: its order, its rows; a clip not stored is listed as missing.
    manifest = pd.DataFrame({"clip_id": ["w/k3.wav", "w/zz.wav", "w/k1.wav"], "path": ["/x/k3", "/x/zz", "/x/k1"],
                             "word": "w", "speaker": ["k3", "zz", "k1"]})
    monkeypatch.setattr(key_cache, "content_keys", lambda paths: [Path(p).name for p in paths])
    got = read_layers(s, mel, ["1"], "mean", manifest=manifest)["1"]
    assert got.clip_keys == ["k3", "k1"] and got.missing == ("w/zz.wav",)
    np.testing.assert_array_equal(got.X, every["1"].X[[2, 0]])
    with pytest.raises(ConfigError, match="no layer 7"):
        read_layers(s, mel, ["7"])
    nothing = read_layers(s, ExtractionSettings(model="baseline:mel", max_seconds=5.0), ["0"], manifest=manifest)
    assert nothing["0"].X.shape[0] == 0 and len(nothing["0"].missing) == 3


def test_nothing_stored_names_the_options_that_are_stored(tmp_path: Path) -> None:
    from tests.tiny_models import save_tiny_model

    whisper = str(save_tiny_model("whisper", tmp_path / "whisper"))
    s = EmbeddingStore(tmp_path / "store")
    with pytest.raises(StoreError, match="nothing stored") as plain:
        read_layers(s, ExtractionSettings(model=whisper))
    assert "--whisper-mode" not in str(plain.value)
    _write_for(s, ExtractionSettings(model=whisper, whisper_mode="crop"), ["k1"])
    with pytest.raises(StoreError, match="whisper_mode=crop.*'--whisper-mode crop'"):
        read_layers(s, ExtractionSettings(model=whisper))
    assert read_layers(s, ExtractionSettings(model=whisper, whisper_mode="crop"))["0"].clip_keys == ["k1"]


def test_two_writers_on_one_entry_resolve_to_the_last_written_part(entry) -> None:
    import threading

    import pyarrow.parquet as pq

    s, e = entry
    keys = [f"k{i}" for i in range(40)]
    batches = {seed: rows_for(keys, seed=seed) for seed in (1, 2)}

    def writer(seed: int) -> None:
        for i in range(0, len(keys) * len(LAYERS), 6):  # many small parts, interleaved with the other writer
            write(e, batches[seed][i : i + 6])

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in batches]
    [t.start() for t in threads]
    [t.join() for t in threads]
    got = s.entry("model@abc", {"max_seconds": 30.0}).read(["0"], "mean")["0"]
    assert sorted(got.clip_keys) == sorted(keys), "every clip once"
    # The winner of each clip is the row in the part whose name sorts last (write order).
    winner: dict[str, np.ndarray] = {}
    for part in e.parts():
        t = pq.read_table(part, columns=["clip_key", "layer", "mean"]).to_pylist()
        winner.update({r["clip_key"]: np.frombuffer(r["mean"], np.float16) for r in t if r["layer"] == "0"})
    for key, x in zip(got.clip_keys, got.X):
        np.testing.assert_array_equal(x, winner[key])
    assert e.read(["0"], "mean")["0"].clip_keys == got.clip_keys, "reading again gives the same rows"


class OpenLog:
    """Records every part the store opens, and the row groups and columns it reads from it."""

    def __init__(self, monkeypatch) -> None:
        self.opened: list[str] = []
        self.reads: list[tuple[str, list[int], list[str]]] = []
        real = store_mod._open_parquet
        log = self

        class Recorder:
            def __init__(self, path, metadata=None):
                self._pf, self._path = real(path, metadata), str(path)
                log.opened.append(self._path)

            def read_row_groups(self, groups, columns=None, **kw):
                log.reads.append((self._path, list(groups), list(columns or [])))
                return self._pf.read_row_groups(groups, columns=columns, **kw)

            def __getattr__(self, name):
                return getattr(self._pf, name)

        monkeypatch.setattr(store_mod, "_open_parquet", Recorder)


def test_reading_some_clips_opens_only_the_parts_that_hold_them(entry, monkeypatch) -> None:
    monkeypatch.setattr(store_mod, "COMPACT_FANOUT", 10**6)  # keep one part per batch here
    _, e = entry
    for i in range(30):
        write(e, rows_for([f"k{i}"], seed=i))
    assert len(e.stored_keys()) == 30  # the keys of every part are now known
    log = OpenLog(monkeypatch)
    got = e.read(["0"], "mean", clip_keys=["k7", "k21"])["0"]
    assert sorted(got.clip_keys) == ["k21", "k7"]
    assert len(log.opened) == 2  # not 30: reading grows with what is asked, not with what is stored
    assert e.stored_keys() == {f"k{i}" for i in range(30)} and len(log.opened) == 2  # keys come from the memo
    # A part written later is picked up (its keys are read once).
    write(e, rows_for(["k30"], seed=30))
    assert "k30" in e.stored_keys() and len(log.opened) == 3
