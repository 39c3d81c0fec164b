"""A small HTTP server on 127.0.0.1 that the download tests point the dataset registry at
(Range requests, aborted and trickled transfers, HTTP errors), a hostile one (login pages,
endless streams, lying lengths), and zips like GEARS'."""

from __future__ import annotations

import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def zip_of(data: bytes, member: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("adamson/README.txt", "GEARS processed data")
        zf.writestr(member, data)
    return buffer.getvalue()


class Loopback:
    """An HTTP server on 127.0.0.1 (a free port) in a thread, for a ``with`` block."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class Server(Loopback):
    """Serves ``files`` (path -> bytes) with Range support; ``abort`` paths send only half;
    ``refuse`` paths answer their HTTP status; ``hold`` paths send half, then trickle 64 bytes
    every 50 ms until their event is set, then the rest."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.abort: set[str] = set()
        self.refuse: dict[str, int] = {}
        self.hold: dict[str, threading.Event] = {}
        self.requests: list[tuple[str, str | None]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                rng = self.headers.get("Range")
                owner.requests.append((self.path, rng))
                if self.path in owner.refuse:
                    self.send_error(owner.refuse[self.path])
                    return
                data = owner.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and rng.startswith("bytes="):
                    start = int(rng[len("bytes="):].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if self.path in owner.abort:
                    # promise the whole body, send half of it, then drop the connection
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                gate = owner.hold.get(self.path)
                if gate is not None:
                    sent = len(body) // 2
                    self.wfile.write(body[:sent])
                    try:
                        while not gate.is_set() and sent < len(body):
                            self.wfile.write(body[sent:sent + 64])
                            self.wfile.flush()
                            sent += 64
                            gate.wait(0.05)
                        self.wfile.write(body[sent:])
                    except OSError:  # the client gave up (cancelled)
                        pass
                    return
                self.wfile.write(body)

            def log_message(self, *args):  # keep test output clean
                pass

        self._serve(Handler)


class Hostile(Loopback):
    """A loopback server whose paths answer as told: ``body`` (bytes), ``length`` (the
    Content-Length header to send, or None for none), ``endless`` (a stream that never
    ends)."""

    def __init__(self) -> None:
        self.routes: dict[str, dict] = {}
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                owner.requests += 1
                route = owner.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                length = route.get("length", len(route.get("body", b"")))
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                try:
                    if route.get("endless"):
                        block = b"\0" * 65536
                        for _ in range(100_000):  # 6.5 GB at most, if the client never stops
                            self.wfile.write(block)
                    else:
                        self.wfile.write(route["body"])
                except OSError:  # the client hung up: what a refusal looks like
                    pass
                self.close_connection = True

            def log_message(self, *args):
                pass

        self._serve(Handler)
