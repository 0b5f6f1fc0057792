"""Speech Commands fetcher against a real HTTP server on 127.0.0.1 (no internet).

The server serves a small generated ``.tar.gz`` in the Speech Commands layout, honours
``Range`` (or ignores it, on request), and can cut the first transfer off half-way.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import soundfile as sf

from embedviz import cli, settings
from embedviz.errors import Cancelled, ConfigError
from embedviz.fetch import extract_archive, fetch_speech_commands, fetched_roots

WORDS = {"yes": 3, "no": 2, "cat": 4}


def wav_bytes(seed: int, seconds: float = 0.25) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    sf.write(buf, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_archive(hostile: bool = False) -> bytes:
    """A Speech Commands shaped .tar.gz (members prefixed './' as in the real archive)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        seed = 0
        for word, n in WORDS.items():
            for i in range(n):
                seed += 1
                add_file(tar, f"./{word}/spk{i}_nohash_0.wav", wav_bytes(seed))
        add_file(tar, "./_background_noise_/white_noise.wav", wav_bytes(99, 1.0))
        add_file(tar, "./validation_list.txt", b"yes/spk0_nohash_0.wav\n")
        add_file(tar, "./testing_list.txt", b"no/spk1_nohash_0.wav\n")
        add_file(tar, "./LICENSE", b"CC BY 4.0\n")
        if hostile:
            add_file(tar, "../evil.wav", b"evil")
            add_file(tar, "/tmp/embedviz-absolute-evil.wav", b"evil")
            link = tarfile.TarInfo("./yes/link_nohash_0.wav")
            link.type = tarfile.SYMTYPE
            link.linkname = "../../../../etc/passwd"
            tar.addfile(link)
            hard = tarfile.TarInfo("./yes/hard_nohash_0.wav")
            hard.type = tarfile.LNKTYPE
            hard.linkname = "/etc/passwd"
            tar.addfile(hard)
            dev = tarfile.TarInfo("./yes/dev_nohash_0.wav")
            dev.type = tarfile.CHRTYPE
            tar.addfile(dev)
    return buf.getvalue()


@dataclass
class Server:
    data: bytes
    cut_first_after: int | None = None
    ignore_range: bool = False
    requests: list[dict[str, str]] = field(default_factory=list)
    sent: int = 0
    url: str = ""


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    monkeypatch.setenv("EMBEDVIZ_FETCHED_ROOTS_FILE", str(tmp_path / "config" / "fetched_roots.json"))
    servers: list[ThreadingHTTPServer] = []

    def start(data: bytes, **options) -> Server:
        state = Server(data, **options)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                state.requests.append(dict(self.headers))
                first = len(state.requests) == 1
                start_at = 0
                rng = self.headers.get("Range")
                if rng and not state.ignore_range:
                    start_at = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start_at}-{len(state.data) - 1}/{len(state.data)}")
                else:
                    self.send_response(200)
                body = state.data[start_at:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"v1"')
                self.end_headers()
                if first and state.cut_first_after is not None:
                    body = body[: state.cut_first_after]
                self.wfile.write(body)
                self.wfile.flush()
                state.sent += len(body)
                if first and state.cut_first_after is not None:
                    self.close_connection = True

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(httpd)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        state.url = f"http://127.0.0.1:{httpd.server_address[1]}/speech_commands_test.tar.gz"
        return state

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


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
