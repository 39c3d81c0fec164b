"""Dataset registry and download, against an HTTP server started on 127.0.0.1 by the test."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import ADAMSON, one_error
from servers import Hostile, Server, zip_of

from grape_core import keys
from grape_core.cli import main
from grape_core.data import datasets, read, read_perturbseq
from grape_core.data.datasets import (
    REGISTRY,
    RegistryEntry,
    cached_path,
    download,
    resolve_dataset,
)
from grape_core.errors import DataFormatError, DownloadError

H5AD = ADAMSON.read_bytes()
H5AD_SHA = hashlib.sha256(H5AD).hexdigest()


@pytest.fixture
def server():
    with Server() as srv:
        srv.files["/adamson.h5ad"] = H5AD
        srv.files["/adamson.zip"] = zip_of(H5AD, "adamson/perturb_processed.h5ad")
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
    server.files["/empty.zip"] = zip_of(b"nothing", "adamson/notes.txt")
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


@pytest.fixture
def no_network(monkeypatch):
    """Refuse every connection that leaves the machine."""
    real_connect = socket.socket.connect
    attempts = []

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and "/" not in host:
            attempts.append(address)
            raise OSError(f"network blocked in test: {address}")
        return real_connect(self, address)

    real_getaddrinfo = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host not in (None, "127.0.0.1", "::1", "localhost"):
            attempts.append(host)
            raise socket.gaierror(f"network blocked in test: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return attempts


def test_cli_works_offline(no_network, adamson_model, tmp_path, capsys):
    assert main(["describe", str(ADAMSON)]) == 0
    assert main(["benchmark", "--data", str(ADAMSON), "--json", str(tmp_path / "b.json")]) == 0
    assert main(["predict", "--model", str(adamson_model), "--perturbation", "HSPA5+TARS"]) == 0
    assert main(["screen", "--model", str(adamson_model), "--target", "DDIT4"]) == 0
    assert no_network == []


def test_only_an_explicit_download_uses_the_network(no_network, tmp_path, capsys):
    assert main(["describe", "norman"]) == 1  # registry name: a download, refused here
    err = capsys.readouterr().err
    assert err.startswith("error: download of https://dataverse.harvard.edu") and "resume" not in err
    assert no_network == ["dataverse.harvard.edu"]


LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>log in</body></html>"


@pytest.fixture
def hostile():
    with Hostile() as srv:
        yield srv


def _entry(url, **fields):
    from grape_core.data.datasets import RegistryEntry

    return RegistryEntry(name="norman", url=url, description="test", **fields)


def test_a_login_page_is_never_cached(hostile, tmp_path):
    from grape_core.data.datasets import cached_path, download
    from grape_core.errors import DownloadError

    hostile.routes["/norman"] = {"body": LOGIN_PAGE}
    with pytest.raises(DownloadError) as info:  # no checksum, no size in this entry
        download("norman", data_dir=tmp_path, entry=_entry(hostile.url("/norman")), progress=False)
    text = str(info.value)
    assert "is not an AnnData .h5ad file (it is an HTML or XML page" in text
    assert "discarded" in text and info.value.reason == "checksum"
    assert not (tmp_path / "norman").exists() or list((tmp_path / "norman").iterdir()) == []
    # an h5ad of another shape than the registry's, or without a condition column
    hostile.routes["/other"] = {"body": ADAMSON.read_bytes()}
    with pytest.raises(DownloadError, match="holds 320 cells x 160 genes, not the 91205 x 5045"):
        download("norman", data_dir=tmp_path, entry=_entry(hostile.url("/other"), cells=91_205,
                                                        genes=5_045), progress=False)
    assert not cached_path("norman", data_dir=tmp_path).exists()
    # the right file (its shape) is kept
    path = download("norman", data_dir=tmp_path, entry=_entry(hostile.url("/other"), cells=320,
                                                           genes=160), progress=False)
    assert path.read_bytes() == ADAMSON.read_bytes()


def test_a_bad_cached_file_names_the_file_to_delete(tmp_path, capsys, monkeypatch):
    from grape_core.data import datasets

    monkeypatch.setenv("GRAPE_DATA_DIR", str(tmp_path))
    cached = datasets.cached_path("norman", data_dir=tmp_path)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(LOGIN_PAGE)  # left by an older version
    monkeypatch.setitem(datasets.REGISTRY, "norman", _entry("http://127.0.0.1:9/unused"))
    line = one_error(capsys, ["describe", "norman"])
    assert f"the cached file {cached} is not an AnnData .h5ad file" in line
    assert f"delete {cached} and run again" in line
    # an HDF5 file that is not a screen: the reader's message, plus which file to delete
    import h5py

    cached.unlink()
    with h5py.File(cached, "w") as fh:
        fh["x"] = [1, 2, 3]
    line = one_error(capsys, ["describe", "norman"])
    assert f"this is the download cache of 'norman': delete {cached}" in line


def test_norman_has_a_checksum_and_size():
    from grape_core.data.datasets import REGISTRY

    norman = REGISTRY["norman"]
    assert norman.sha256 == "23ffb0fac6a847ff927cf7509d80d85052bfefbfb97610786a2dafaaefa0b6a0"
    assert norman.size == 2_228_610_012 and (norman.cells, norman.genes) == (91_205, 5_045)


def test_endless_and_oversized_downloads_are_stopped(hostile, tmp_path):
    from grape_core.data.datasets import download
    from grape_core.errors import DownloadError

    hostile.routes["/endless"] = {"endless": True, "length": None}
    small = len(LOGIN_PAGE)
    with pytest.raises(DownloadError) as info:  # a 45 KB entry: stopped near 1 MB, not GBs
        download("norman", data_dir=tmp_path, entry=_entry(hostile.url("/endless"), size=45_000),
              progress=False)
    assert "the server sent" in str(info.value) and "stopped and discarded" in str(info.value)
    assert list((tmp_path / "norman").iterdir()) == []
    hostile.routes["/big"] = {"body": LOGIN_PAGE, "length": 10**12}
    with pytest.raises(DownloadError, match="announces 1.0 TB"):
        download("norman", data_dir=tmp_path, entry=_entry(hostile.url("/big"), size=small),
              progress=False)
    # no size in the registry: GRAPE_DOWNLOAD_MAX_GB caps it
    os.environ["GRAPE_DOWNLOAD_MAX_GB"] = "0.001"
    try:
        with pytest.raises(DownloadError, match="GRAPE_DOWNLOAD_MAX_GB"):
            download("norman", data_dir=tmp_path, entry=_entry(hostile.url("/endless")),
                  progress=False)
    finally:
        del os.environ["GRAPE_DOWNLOAD_MAX_GB"]


def test_an_invalid_content_length_is_ignored(hostile, tmp_path):
    from grape_core.data.datasets import download

    data = ADAMSON.read_bytes()
    hostile.routes["/abc"] = {"body": data, "length": "abc"}
    path = download("norman", data_dir=tmp_path, entry=_entry(hostile.url("/abc")), progress=False)
    assert path.read_bytes() == data


def test_a_zip_bomb_is_refused_before_unpacking(hostile, tmp_path):

    from grape_core.data.datasets import download
    from grape_core.errors import DownloadError

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("norman/perturb_processed.h5ad", b"\0" * (64 << 20))  # 64 MiB of zeros
    bomb = buffer.getvalue()
    assert len(bomb) < 1 << 20
    hostile.routes["/bomb.zip"] = {"body": bomb}
    with pytest.raises(DownloadError, match="unpacks to 67.1 MB, more than the 45.0 KB"):
        download("norman", data_dir=tmp_path, entry=_entry(hostile.url("/bomb.zip"), size=45_000),
              progress=False)
    assert list((tmp_path / "norman").iterdir()) == []
