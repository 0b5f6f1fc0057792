"""Every CLI argument is validated, and a bad one gets a message that names it (no traceback)."""

from __future__ import annotations

import pytest

from embedviz.cli import main

EXTRACT = ["extract", "--model", "baseline:mel"]
NEAREST = ["nearest", "--model", "baseline:mel", "--clip", "x.wav"]
EXPORT = ["export", "--model", "baseline:mel", "--layer", "mfcc", "--out", "x.parquet"]

BAD = [
    (EXTRACT + ["--samples", "0"], "--samples", "1 or more"),
    (EXTRACT + ["--samples", "-3"], "--samples", "1 or more"),
    (EXTRACT + ["--samples", "many"], "--samples", "whole number"),
    (EXTRACT + ["--seed", "-1"], "--seed", "0 or more"),
    (EXTRACT + ["--model-seed", "-1"], "--model-seed", "0 or more"),
    (EXTRACT + ["--batch-size", "0"], "--batch-size", "1 or more"),
    (EXTRACT + ["--batch-size", "-2"], "--batch-size", "1 or more"),
    (EXTRACT + ["--device", "tpu"], "--device", "unknown device 'tpu'"),
    (EXTRACT + ["--device", "cuda:x"], "--device", "unknown device"),
    (EXTRACT + ["--whisper-mode", "fast"], "--whisper-mode", "invalid choice"),
    (EXTRACT + ["--engine", "spark"], "--engine", "invalid choice"),
    (EXTRACT + ["--ray-actors", "0"], "--ray-actors", "1 or more"),
    (EXTRACT + ["--ray-gpus-per-actor", "-1"], "--ray-gpus-per-actor", "at least 0"),
    (EXTRACT + ["--ray-cpus-per-actor", "0"], "--ray-cpus-per-actor", "more than 0"),
    (EXTRACT + ["--ray-cpus-per-actor", "nan"], "--ray-cpus-per-actor", "more than 0"),
    (EXPORT + ["--pooling", "median"], "--pooling", "unknown pooling 'median'"),
    (EXPORT + ["--pooling", "time:9999"], "--pooling", "beyond any clip"),
    (NEAREST + ["--k", "0"], "--k", "1 or more"),
    (NEAREST + ["--device", "gpu"], "--device", "unknown device"),
    (["analyse", "--model", "baseline:mel", "--out", "t.csv", "--reduction", "lda"], "--reduction", "invalid choice"),
    (["fetch-speech-commands", "--dest", "d", "--retries", "-1"], "--retries", "0 or more"),
    (["fetch-speech-commands", "--dest", "d", "--version", "v9"], "--version", "invalid choice"),
]


@pytest.mark.parametrize("argv,flag,why", BAD, ids=[" ".join(a[0][-2:]) for a in BAD])
def test_a_bad_argument_is_refused_with_its_name(argv, flag, why, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and why in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv,says",
    [
        (EXTRACT + ["--words", "zzz"], "unknown word(s) zzz"),
        (EXPORT[:4] + ["nope", "--out", "x.parquet"], "has no layer nope"),
        (["words", "--dataset", "/nonexistent/folder"], "dataset folder not found: /nonexistent/folder"),
        (["extract", "--model", "nosuch/model"], "'nosuch/model' is not in the catalogue"),
    ],
)
def test_a_bad_value_found_later_names_the_value(argv, says, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("EMBEDVIZ_CACHE", str(tmp_path / "store"))
    if argv[0] == "export":  # something stored, so the layer check is what fails
        assert main(EXTRACT + ["--words", "yes", "--samples", "2", "--cache", str(tmp_path / "store")]) == 0
        argv = argv + ["--cache", str(tmp_path / "store")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert says in err, err
    assert "Traceback" not in err


def test_good_arguments_still_pass() -> None:
    from embedviz.cli import build_parser

    args = build_parser().parse_args(EXTRACT + ["--samples", "3", "--device", "CUDA:1", "--batch-size", "8"])
    assert (args.samples, args.device, args.batch_size) == (3, "CUDA:1", 8)
    args = build_parser().parse_args(EXPORT + ["--pooling", "time:0.5"])
    assert args.pooling == "time:0.5"
