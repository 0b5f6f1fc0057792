"""`python -m embedviz`: models, words, extract (twice), export, analyse, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from embedviz.cli import main


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_models_lists_the_catalogue(capsys) -> None:
    assert main(["models", "--no-hub-check"]) == 0
    out = capsys.readouterr().out
    for model in ["facebook/wav2vec2-base", "openai/whisper-large-v3", "descript/dac_44khz", "baseline:mel"]:
        assert model in out
    assert "builtin" in out


def test_words_of_the_demo(capsys) -> None:
    assert main(["words"]) == 0
    out = capsys.readouterr().out
    assert "yes" in out and "12 words, 288 clips" in out


def test_extract_twice_then_export_and_analyse(cache: Path, tmp_path: Path, capsys) -> None:
    args = ["extract", "--model", "baseline:mel", "--words", "yes,no,cat", "--samples", "5", "--cache", str(cache)]
    assert main(args) == 0
    assert "15 computed, 0 already stored, 0 skipped" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 computed, 15 already stored, 0 skipped" in capsys.readouterr().out

    out_parquet = tmp_path / "mfcc.parquet"
    assert main(["export", "--cache", str(cache), "--model", "baseline:mel", "--layer", "mfcc",
                 "--pooling", "mean", "--out", str(out_parquet)]) == 0
    df = pd.read_parquet(out_parquet)
    assert len(df) == 15 and {"path", "word", "speaker", "embedding"} <= set(df.columns)
    assert len(df["embedding"].iloc[0]) == 39
    out_csv = tmp_path / "mfcc.csv"
    assert main(["export", "--cache", str(cache), "--model", "baseline:mel", "--layer", "mfcc",
                 "--out", str(out_csv)]) == 0
    assert len(pd.read_csv(out_csv)) == 15

    table_path, figures = tmp_path / "table.csv", tmp_path / "figures"
    assert main(["analyse", "--cache", str(cache), "--model", "baseline:mel", "--out", str(table_path),
                 "--figures", str(figures)]) == 0
    table = pd.read_csv(table_path)
    assert list(table["layer"]) == ["logmel", "mfcc"]
    assert {"knn_accuracy", "silhouette", "probe_accuracy"} <= set(table.columns)
    assert table["knn_accuracy"].between(0, 1).all()
    assert "knn_accuracy" in capsys.readouterr().out
    fast = tmp_path / "fast.csv"
    assert main(["analyse", "--cache", str(cache), "--model", "baseline:mel", "--out", str(fast), "--no-probe"]) == 0
    quick = pd.read_csv(fast)
    assert quick["probe_accuracy"].isna().all() and quick["knn_accuracy"].equals(table["knn_accuracy"])
    assert sorted(p.name for p in figures.glob("*.html")) == ["cka.html", "confusion.html", "layer_curve.html",
                                                            "projections.html"]


def test_extract_fails_only_when_nothing_could_be_done(cache: Path, capsys) -> None:
    assert main(["extract", "--model", "no-such/model-anywhere", "--words", "yes", "--samples", "1",
                 "--cache", str(cache)]) == 1
    assert "no-such/model-anywhere" in capsys.readouterr().err


def test_export_without_data_says_what_to_do(cache: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", "--cache", str(cache), "--model", "baseline:mel", "--layer", "mfcc",
                 "--out", str(tmp_path / "x.csv")]) == 1
    assert "run 'python -m embedviz extract" in capsys.readouterr().err


def test_module_entry_point_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "embedviz", "words"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "288 clips" in done.stdout
