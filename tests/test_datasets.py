"""Dataset registry and download, against an HTTP server started on 127.0.0.1 by the test."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import ADAMSON

from grape_core import keys
from grape_core.data import datasets
from grape_core.cli import main
from grape_core.data import read, read_perturbseq
from grape_core.data.datasets import REGISTRY, RegistryEntry, cached_path, download, resolve_dataset
from grape_core.errors import DataFormatError, DownloadError

H5AD = ADAMSON.read_bytes()
H5AD_SHA = hashlib.sha256(H5AD).hexdigest()


def _zip_of(data: bytes, member: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("adamson/README.txt", "GEARS processed data")
        zf.writestr(member, data)
    return buffer.getvalue()


class Server:
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

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    with Server() as srv:
        srv.files["/adamson.h5ad"] = H5AD
        srv.files["/adamson.zip"] = _zip_of(H5AD, "adamson/perturb_processed.h5ad")
        yield srv


def entry_for(url: str, *, sha256: str | None = H5AD_SHA, size: int | None = len(H5AD),
              name: str = "adamson") -> RegistryEntry:
    return RegistryEntry(name=name, url=url, description="real Adamson slice (test)",
                         sha256=sha256, size=size)


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ----------------------------------------------------------------------------------------
def test_registry_entries():
    assert REGISTRY["adamson"].url.endswith("/6154417")
    assert REGISTRY["adamson"].sha256.startswith("a737244a")
    assert REGISTRY["adamson"].size == 606_502_516
    assert REGISTRY["norman"].url.endswith("/6154020")
    assert all(e.url.startswith("https://dataverse.harvard.edu/") for e in REGISTRY.values())


def test_fetch_plain_h5ad_into_data_dir(server, tmp_path):
    path = download("adamson", data_dir=tmp_path, entry=entry_for(server.url("/adamson.h5ad")),
                 progress=False)
    assert path == tmp_path / "adamson" / "perturb_processed.h5ad"
    assert path.read_bytes() == H5AD
    assert leftovers(path.parent) == ["perturb_processed.h5ad"]  # no .part, no temp file
    # a second call uses the cache: no request
    n = len(server.requests)
    assert download("adamson", data_dir=tmp_path, entry=entry_for(server.url("/adamson.h5ad"))) == path
    assert len(server.requests) == n


def test_fetch_gears_zip_uses_grape_data_dir(server, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPE_DATA_DIR", str(tmp_path / "cache"))
    path = download("adamson", entry=entry_for(server.url("/adamson.zip")), progress=False)
    assert path == tmp_path / "cache" / "adamson" / "perturb_processed.h5ad"
    assert path.read_bytes() == H5AD  # unpacked; the checksum is that of the .h5ad
    assert leftovers(path.parent) == ["perturb_processed.h5ad"]
    adata = read_perturbseq(path)
    assert adata.shape == (320, 160)


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    entry = entry_for(server.url("/adamson.h5ad"), sha256="0" * 64)
    with pytest.raises(DownloadError) as info:
        download("adamson", data_dir=tmp_path, entry=entry, progress=False)
    assert "checksum mismatch" in str(info.value) and H5AD_SHA in str(info.value)
    assert "discarded" in str(info.value)
    assert not cached_path("adamson", data_dir=tmp_path).exists()
    assert leftovers(tmp_path / "adamson") == []  # no temp file, no .part to resume from


def test_wrong_size_leaves_nothing(server, tmp_path):
    entry = entry_for(server.url("/adamson.zip"), size=len(H5AD) + 1)
    with pytest.raises(DownloadError, match=f"file has {len(H5AD)} bytes, expected"):
        download("adamson", data_dir=tmp_path, entry=entry, progress=False)
    assert leftovers(tmp_path / "adamson") == []


def test_aborted_transfer_then_resume(server, tmp_path):
    entry = entry_for(server.url("/adamson.h5ad"))
    server.abort.add("/adamson.h5ad")
    with pytest.raises(DownloadError) as info:
        download("adamson", data_dir=tmp_path, entry=entry, progress=False)
    assert "interrupted" in str(info.value) and "run the same command again" in str(info.value)
    target = cached_path("adamson", data_dir=tmp_path)
    assert not target.exists()  # never a partial file under the final name
    part = target.parent / "download.part"
    assert part.exists() and 0 < part.stat().st_size < len(H5AD)
    assert not any(name.endswith(".tmp") for name in leftovers(target.parent))
    half = part.stat().st_size

    server.abort.clear()
    path = download("adamson", data_dir=tmp_path, entry=entry, progress=False)
    assert server.requests[-1] == ("/adamson.h5ad", f"bytes={half}-")  # resumed, not restarted
    assert path.read_bytes() == H5AD
    assert leftovers(path.parent) == ["perturb_processed.h5ad"]


def test_complete_part_file_is_not_downloaded_again(server, tmp_path):
    """A run that died after the transfer but before the rename: the server answers 416."""
    folder = tmp_path / "adamson"
    folder.mkdir()
    (folder / "download.part").write_bytes(H5AD)
    path = download("adamson", data_dir=tmp_path, entry=entry_for(server.url("/adamson.h5ad")),
                 progress=False)
    assert path.read_bytes() == H5AD
    assert server.requests == [("/adamson.h5ad", f"bytes={len(H5AD)}-")]


def test_http_error_and_unreachable_server(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download("adamson", data_dir=tmp_path, entry=entry_for(server.url("/missing")),
              progress=False)
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens on this port now
    with pytest.raises(DownloadError, match="check the network"):
        download("adamson", data_dir=tmp_path / "other",
              entry=entry_for(f"http://127.0.0.1:{port}/x.h5ad"), progress=False, timeout=5)
    assert not cached_path("adamson", data_dir=tmp_path).exists()


def test_zip_without_h5ad(server, tmp_path):
    server.files["/empty.zip"] = _zip_of(b"nothing", "adamson/notes.txt")
    with pytest.raises(DownloadError, match="holds no .h5ad"):
        download("adamson", data_dir=tmp_path, entry=entry_for(server.url("/empty.zip"), sha256=None,
                                                            size=None), progress=False)
    assert leftovers(tmp_path / "adamson") == []


def test_cached_file_of_wrong_size_is_reported(tmp_path):
    target = cached_path("adamson", data_dir=tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(H5AD[:1000])
    with pytest.raises(DownloadError, match="delete .* and run again"):
        download("adamson", data_dir=tmp_path, entry=entry_for("http://127.0.0.1:9/unused"))


def test_unknown_registry_name(tmp_path):
    with pytest.raises(DownloadError, match="unknown dataset 'replogle'"):
        download("replogle", data_dir=tmp_path)


def test_resolve_dataset_local_paths(tmp_path):
    assert resolve_dataset(ADAMSON) == ADAMSON
    with pytest.raises(DataFormatError) as info:
        resolve_dataset(tmp_path / "nothing.h5ad")
    assert "file not found" in str(info.value) and "adamson, norman" in str(info.value)
    folder = tmp_path / "gears" / "adamson"
    folder.mkdir(parents=True)
    (folder / "perturb_processed.h5ad").write_bytes(H5AD)
    assert resolve_dataset(folder) == folder / "perturb_processed.h5ad"  # a GEARS folder


def test_registry_name_resolves_via_download(server, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPE_DATA_DIR", str(tmp_path))
    monkeypatch.setitem(datasets.REGISTRY, "adamson", entry_for(server.url("/adamson.zip")))
    monkeypatch.setattr(datasets, "download", _quiet(datasets.download))
    assert resolve_dataset("Adamson") == tmp_path / "adamson" / "perturb_processed.h5ad"
    adata = read(resolve_dataset("adamson"))
    assert adata.uns[keys.UNS_SOURCE]["sha256"] == H5AD_SHA
    assert len(server.requests) == 1  # downloaded once, then read from the cache
    with pytest.raises(DataFormatError, match="reading never downloads"):
        read("adamson")  # two verbs: download, then read


def test_cli_accepts_a_registry_name(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRAPE_DATA_DIR", str(tmp_path))
    monkeypatch.setitem(datasets.REGISTRY, "adamson", entry_for(server.url("/adamson.h5ad")))
    monkeypatch.setattr(datasets, "download", _quiet(datasets.download))
    out_json = tmp_path / "report.json"
    assert main(["benchmark", "--data", "adamson", "--seed", "1", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "train_mean" in out and "linear" in out
    # named after the dataset, not after GEARS' file name perturb_processed.h5ad
    assert json.loads(out_json.read_text())["dataset"] == "adamson"


def _quiet(fn):
    def wrapped(*args, **kwargs):
        kwargs["progress"] = False
        return fn(*args, **kwargs)

    return wrapped


# ----------------------------------------------------------------------------------------
# registry override, progress, stop, and the reasons the app tells apart
def test_registry_override_file(tmp_path, monkeypatch, server):
    override = tmp_path / "registry.json"
    override.write_text(json.dumps({
        "Adamson": {"url": server.url("/adamson.h5ad"), "sha256": H5AD_SHA, "size": len(H5AD)},
        "mini": {"url": server.url("/adamson.zip"), "description": "a local mirror"}}))
    monkeypatch.setenv(datasets.REGISTRY_ENV, str(override))
    known = datasets.registry()
    assert known["adamson"].url == server.url("/adamson.h5ad") and known["adamson"].size == len(H5AD)
    assert known["adamson"].citation == REGISTRY["adamson"].citation  # other fields kept
    assert known["mini"].name == "mini" and known["mini"].sha256 is None
    assert REGISTRY["adamson"].url.startswith("https://")  # the built-in registry is unchanged
    path = download("adamson", data_dir=tmp_path / "data", progress=False)
    assert path.read_bytes() == H5AD and server.requests == [("/adamson.h5ad", None)]

    override.write_text(json.dumps({"adamson": {"link": "x"}}))
    with pytest.raises(DownloadError, match="unknown field.*link.*GRAPE_REGISTRY"):
        datasets.registry()
    override.write_text(json.dumps({"other": {"size": 3}}))
    with pytest.raises(DownloadError, match="adds 'other' without a url"):
        datasets.registry()
    override.write_text(json.dumps({"adamson": {"size": "big"}}))
    with pytest.raises(DownloadError, match="adamson.size must be a positive whole number"):
        datasets.registry()
    override.write_text("{not json")
    with pytest.raises(DownloadError, match="cannot read the registry override"):
        datasets.registry()


def test_progress_callback_and_reasons(server, tmp_path):
    seen = []
    download("adamson", data_dir=tmp_path, entry=entry_for(server.url("/adamson.h5ad")), progress=False,
          on_progress=lambda got, total: seen.append((got, total)))
    assert seen[0] == (0, len(H5AD)) and seen[-1] == (len(H5AD), len(H5AD))
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))

    server.refuse["/forbidden"] = 403
    with pytest.raises(DownloadError) as info:
        download("adamson", data_dir=tmp_path / "b", entry=entry_for(server.url("/forbidden")),
              progress=False)
    assert info.value.reason == "http" and info.value.status == 403 and "HTTP 403" in str(info.value)
    with pytest.raises(DownloadError) as info:
        download("adamson", data_dir=tmp_path / "c", entry=entry_for(server.url("/adamson.h5ad"),
                                                                   sha256="0" * 64), progress=False)
    assert info.value.reason == "checksum"


def test_full_disk_keeps_the_part_and_says_so(server, tmp_path, monkeypatch):
    import errno

    def full(fh, block):
        fh.write(block[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(datasets, "_write_block", full)
    with pytest.raises(DownloadError) as info:
        download("adamson", data_dir=tmp_path, entry=entry_for(server.url("/adamson.h5ad")), progress=False)
    assert info.value.reason == "disk"
    text = str(info.value)
    assert text.startswith("the disk is full") and "GRAPE_DATA_DIR" in text and "\n" not in text
    assert (tmp_path / "adamson" / "download.part").exists()  # resumed once there is space
    monkeypatch.undo()
    path = download("adamson", data_dir=tmp_path, entry=entry_for(server.url("/adamson.h5ad")), progress=False)
    assert path.read_bytes() == H5AD and server.requests[-1] == ("/adamson.h5ad", "bytes=10-")


def test_stop_cancels_and_the_next_run_resumes(server, tmp_path):
    from grape_core.errors import Cancelled

    stop = threading.Event()
    gate = server.hold["/adamson.h5ad"] = threading.Event()

    def halfway(got, total):
        if got >= total // 2:
            stop.set()

    entry = entry_for(server.url("/adamson.h5ad"))
    with pytest.raises(Cancelled, match="cancelled after .* MB; they are kept"):
        download("adamson", data_dir=tmp_path, entry=entry, progress=False, on_progress=halfway,
              stop=stop)
    part = tmp_path / "adamson" / "download.part"
    kept = part.stat().st_size
    assert len(H5AD) // 2 <= kept < len(H5AD)
    gate.set()
    path = download("adamson", data_dir=tmp_path, entry=entry, progress=False)
    assert path.read_bytes() == H5AD
    assert server.requests[-1] == ("/adamson.h5ad", f"bytes={kept}-")  # resumed, not restarted
