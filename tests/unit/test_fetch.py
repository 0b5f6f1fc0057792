"""Speech Commands fetcher against a real HTTP server on 127.0.0.1 (no internet).

The server serves a small generated ``.tar.gz`` in the Speech Commands layout, honours
``Range`` (or ignores it, on request), and can cut the first transfer off half-way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedviz import cli, settings
from embedviz.errors import Cancelled, ConfigError
from embedviz.fetch import extract_archive, fetch_speech_commands, fetched_roots
from tests.archive_server import make_archive

def test_fetch_extracts_counts_and_registers_root(tmp_path: Path, serve) -> None:
    server = serve(make_archive())
    dest = tmp_path / "sc"
    events = []
    result = fetch_speech_commands(dest, url=server.url, progress=lambda e: events.append(e), backoff_s=0.01)
    assert result.counts == {"cat": 4, "no": 2, "yes": 3}
    assert (dest / "validation_list.txt").read_text() == "yes/spk0_nohash_0.wav\n"
    assert not (dest / "_background_noise_").exists()
    assert not (dest / ".download").exists()  # archive removed after extraction
    assert {e.stage for e in events} == {"downloading", "extracting"}
    last = [e for e in events if e.stage == "downloading"][-1]
    assert last.done == last.total == len(server.data) and "MB/s" in last.message
    assert dest.resolve() in fetched_roots()
    assert dest.resolve() in settings.data_roots()


def test_dropped_transfer_is_resumed_with_range(tmp_path: Path, serve) -> None:
    data = make_archive()
    server = serve(data, cut_first_after=len(data) // 2)
    result = fetch_speech_commands(tmp_path / "sc", url=server.url, backoff_s=0.01)
    assert result.resumed and not result.restarted
    assert len(server.requests) == 2
    assert "Range" not in server.requests[0]
    assert server.requests[1]["Range"] == f"bytes={len(data) // 2}-"
    assert server.sent < 2 * len(data)
    assert server.sent == len(data)  # not a byte twice
    assert result.counts["cat"] == 4


def test_rerun_resumes_the_part_file(tmp_path: Path, serve) -> None:
    data = make_archive()
    server = serve(data, cut_first_after=len(data) // 3)
    dest = tmp_path / "sc"
    with pytest.raises(Exception, match="run the same command again to resume"):
        fetch_speech_commands(dest, url=server.url, retries=0, backoff_s=0.01)
    part = dest / ".download" / "speech_commands_test.tar.gz.part"
    assert part.stat().st_size == len(data) // 3
    result = fetch_speech_commands(dest, url=server.url, retries=0)
    assert result.resumed and result.downloaded_bytes == len(data) - len(data) // 3
    assert server.requests[-1]["Range"] == f"bytes={len(data) // 3}-"
    assert server.requests[-1]["If-Range"] == '"v1"'


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, serve) -> None:
    data = make_archive()
    server = serve(data, cut_first_after=len(data) // 2, ignore_range=True)
    result = fetch_speech_commands(tmp_path / "sc", url=server.url, backoff_s=0.01)
    assert result.restarted and not result.resumed
    assert "Range" in server.requests[1]
    assert result.counts == {"cat": 4, "no": 2, "yes": 3}


def test_cancel_keeps_the_partial_download(tmp_path: Path, serve) -> None:
    data = make_archive() + b""  # small archive: cancel at the first report
    server = serve(data)
    dest = tmp_path / "sc"
    with pytest.raises(Cancelled):
        fetch_speech_commands(dest, url=server.url, progress=lambda e: e.stage == "downloading")
    assert (dest / ".download" / "speech_commands_test.tar.gz.part").is_file()
    assert not (dest / "yes").exists()


def test_words_subset_with_background_noise(tmp_path: Path, serve) -> None:
    server = serve(make_archive())
    dest = tmp_path / "sc"
    result = fetch_speech_commands(dest, url=server.url, words=["yes", "dog"], background_noise=True,
                                   split_lists=False)
    assert result.counts == {"dog": 0, "yes": 3}
    assert result.missing_words == ("dog",)
    assert not (dest / "cat").exists() and not (dest / "no").exists()
    assert (dest / "_background_noise_" / "white_noise.wav").is_file()
    assert not (dest / "validation_list.txt").exists()


def test_hostile_members_are_refused_and_named(tmp_path: Path) -> None:
    archive = tmp_path / "hostile.tar.gz"
    archive.write_bytes(make_archive(hostile=True))
    dest = tmp_path / "inner" / "dest"
    dest.mkdir(parents=True)
    before = set((tmp_path).rglob("*"))
    written, refused, _ = extract_archive(archive, dest)
    names = dict(refused)
    assert set(names) == {"../evil.wav", "/tmp/embedviz-absolute-evil.wav", "./yes/link_nohash_0.wav",
                          "./yes/hard_nohash_0.wav", "./yes/dev_nohash_0.wav"}
    assert "outside" in names["../evil.wav"] and "absolute" in names["/tmp/embedviz-absolute-evil.wav"]
    assert "link" in names["./yes/link_nohash_0.wav"] and "link" in names["./yes/hard_nohash_0.wav"]
    assert not Path("/tmp/embedviz-absolute-evil.wav").exists()
    assert not (tmp_path / "inner" / "evil.wav").exists() and not (tmp_path / "evil.wav").exists()
    new = set(tmp_path.rglob("*")) - before
    assert all(p.resolve().is_relative_to(dest.resolve()) for p in new)
    assert not any(p.is_symlink() for p in dest.rglob("*"))
    assert written == 9 + 3  # 9 clips, 2 split lists, LICENSE


def test_bad_urls_are_refused_before_touching_disk(tmp_path: Path) -> None:
    dest = tmp_path / "never"
    for url in ["file:///etc/passwd", "ftp://example.org/a.tar.gz", "javascript:alert(1)", "http:///nohost"]:
        with pytest.raises(ConfigError, match="url"):
            fetch_speech_commands(dest, url=url)
    assert not dest.exists()
    with pytest.raises(ConfigError, match="version"):
        fetch_speech_commands(dest, version="v9")


def test_cli_end_to_end(tmp_path: Path, serve, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_archive(hostile=True)
    server = serve(data, cut_first_after=len(data) // 2)
    dest = tmp_path / "sc"
    rc = cli.main(["fetch-speech-commands", "--url", server.url, "--dest", str(dest), "--words", "yes,no"])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.split()[:1] in (["yes"], ["no"])}
    assert lines == {"yes": "3", "no": "2"}
    assert "resumed" in out and "refused archive member '../evil.wav'" in out
    assert json.loads((tmp_path / "config" / "fetched_roots.json").read_text())["roots"] == [str(dest.resolve())]
    # The fetched folder is a dataset root the other commands accept.
    assert cli.main(["words", "--dataset", str(dest)]) == 0
    assert "2 words, 5 clips" in capsys.readouterr().out
    assert cli.main(["fetch-speech-commands", "--url", "file:///etc/passwd", "--dest", str(dest)]) == 1
    assert "http or https" in capsys.readouterr().err
