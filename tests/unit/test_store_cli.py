"""The CLI's extract summary names damaged store parts that were set aside, and their clips' fate."""

from __future__ import annotations

from pathlib import Path

from embedviz.cli import main
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore

ARGS = ["extract", "--model", "baseline:mel", "--words", "yes,no", "--samples", "3", "--batch-size", "3"]


def test_extract_summary_says_when_parts_were_set_aside(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    assert main([*ARGS, "--cache", str(cache)]) == 0
    assert "damaged" not in capsys.readouterr().out
    entry = EmbeddingStore(cache).entry_for(ExtractionSettings(model="baseline:mel"))
    entry.parts()[0].write_bytes(b"garbage")
    assert main([*ARGS, "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "3 computed, 3 already stored" in out
    assert f"1 damaged store part set aside in {entry.path / 'damaged'}; its clips were recomputed in this run" in out
    assert main([*ARGS, "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "0 computed, 6 already stored" in out and "1 part set aside earlier is in" in out
