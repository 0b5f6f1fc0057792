"""``extract --time-grid`` and ``$EMBEDVIZ_TIME_GRID`` are one setting, through the real CLI parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedviz.cli import build_parser, main
from embedviz.settings import TIME_GRID_ENV, ExtractionSettings, time_grid_requested
from embedviz.store import EmbeddingStore

MEL = ExtractionSettings(model="baseline:mel")


def _extract(cache: Path, *extra: str) -> int:
    return main(["extract", "--model", "baseline:mel", "--words", "yes", "--samples", "2", "--cache", str(cache),
                 *extra])


def _export_time(cache: Path, out: Path) -> int:
    return main(["export", "--model", "baseline:mel", "--layer", "mfcc", "--pooling", "time:0.3", "--cache",
                 str(cache), "--out", str(out)])


def test_the_flag_is_unset_unless_given() -> None:
    assert build_parser().parse_args(["extract", "--model", "baseline:mel"]).time_grid is None
    assert build_parser().parse_args(["extract", "--model", "baseline:mel", "--time-grid"]).time_grid is True


def test_flag_and_variable_decide_the_same_setting(monkeypatch) -> None:
    monkeypatch.delenv(TIME_GRID_ENV, raising=False)
    assert (time_grid_requested(), time_grid_requested(True)) == (False, True)
    monkeypatch.setenv(TIME_GRID_ENV, "1")
    assert time_grid_requested() and time_grid_requested(None)


def test_time_grid_flag_stores_the_grid_and_time_pooling_reads_it(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv(TIME_GRID_ENV, raising=False)
    plain, gridded = tmp_path / "plain", tmp_path / "gridded"
    assert _extract(plain) == 0
    assert _extract(gridded, "--time-grid") == 0
    assert not EmbeddingStore(plain).entry_for(MEL).has_time_grid
    assert EmbeddingStore(gridded).entry_for(MEL).has_time_grid
    capsys.readouterr()

    assert _export_time(gridded, tmp_path / "t.parquet") == 0
    assert _export_time(plain, tmp_path / "u.parquet") == 1
    err = capsys.readouterr().err
    assert "needs the time grid" in err and "--time-grid" in err and TIME_GRID_ENV in err, err

    # The flag on an entry that exists without the grid: it keeps its layout and the CLI says so.
    assert _extract(plain, "--time-grid", "--samples", "3") == 0
    assert "exists without the time grid" in capsys.readouterr().err
    assert not EmbeddingStore(plain).entry_for(MEL).has_time_grid


@pytest.mark.parametrize("value", ["1", "yes"])
def test_the_variable_alone_still_asks_for_the_grid(value, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(TIME_GRID_ENV, value)
    assert _extract(tmp_path / "store") == 0
    assert EmbeddingStore(tmp_path / "store").entry_for(MEL).has_time_grid
