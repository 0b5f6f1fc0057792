"""A small Speech Commands shaped archive and a local HTTP server for it (127.0.0.1 only).

Shared by the fetcher's unit tests and the Data & cache panel's AppTests. The server
honours ``Range`` (unless told not to), sends an ETag, can cut the first transfer off
half-way, and can send slowly in pieces so a fetch can be cancelled while it runs.
"""

from __future__ import annotations

import io
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import soundfile as sf

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


def make_archive(hostile: bool = False, big_seconds: float = 0.0, license_file: bool = True) -> bytes:
    """A Speech Commands shaped .tar.gz (members prefixed './' as in the real archive).

    ``big_seconds`` of noise in one extra 'cat' clip make it large enough to be cancelled
    while it downloads; ``hostile`` adds members that must be refused.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        seed = 0
        for word, n in WORDS.items():
            for i in range(n):
                seed += 1
                add_file(tar, f"./{word}/spk{i}_nohash_0.wav", wav_bytes(seed))
        if big_seconds:
            add_file(tar, "./cat/big_nohash_0.wav", wav_bytes(123, big_seconds))
        add_file(tar, "./_background_noise_/white_noise.wav", wav_bytes(99, 1.0))
        add_file(tar, "./validation_list.txt", b"yes/spk0_nohash_0.wav\n")
        add_file(tar, "./testing_list.txt", b"no/spk1_nohash_0.wav\n")
        if license_file:
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
    """What the server sends and what it saw."""

    data: bytes
    cut_first_after: int | None = None  # the first transfer stops after this many bytes
    ignore_range: bool = False  # answer every request with the whole file (200)
    piece: int = 0  # bytes per write when sending slowly (0: all at once)
    delay_s: float = 0.0
    requests: list[dict[str, str]] = field(default_factory=list)
    ranges: list[str] = field(default_factory=list)
    sent: int = 0
    url: str = ""


def start_server(state: Server) -> ThreadingHTTPServer:
    """Serve ``state.data`` on a free loopback port (``state.url`` is set); shut it down when done."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            state.requests.append(dict(self.headers))
            first = len(state.requests) == 1
            start_at = 0
            rng = self.headers.get("Range")
            state.ranges.append(rng or "")
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
            cut = first and state.cut_first_after is not None
            if cut:
                body = body[: state.cut_first_after]
            step = state.piece or len(body) or 1
            try:
                for i in range(0, len(body), step):
                    self.wfile.write(body[i : i + step])
                    self.wfile.flush()
                    state.sent += len(body[i : i + step])
                    time.sleep(state.delay_s)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client cancelled
            if cut:
                self.close_connection = True

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/speech_commands_test.tar.gz"
    return httpd
