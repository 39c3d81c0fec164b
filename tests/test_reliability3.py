"""Reliability round 3 (issue 26): never overwrite what is not ours, never cache a bad
download, check every number we store.

One section per class of the issue (1 to 13). Every CLI case ends in one ``error:`` line
(or the right result) with nothing of the user's lost, changed or left half-written.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from conftest import ADAMSON, ROOT, copy_model

from grape_core.cli import main
from grape_core.errors import GrapeError

MODEL = ROOT / "assets" / "models" / "adamson"


def one_error(capsys, argv, code: int = 1) -> str:
    """Run the CLI; the single ``error:`` line it prints (no traceback, nothing unexpected)."""
    assert main(argv) == code, argv
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and not lines[0].startswith("error: unexpected"), err
    return lines[0]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to show nothing changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if a command starts training."""
    import grape_core.training.recipe

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(grape_core.training.recipe, "train_bundle", refuse)


# ----------------------------------------------------------------------------------------
# 1. outputs never replace a link, a FIFO, a device or a folder
# ----------------------------------------------------------------------------------------
def test_1_outputs_refuse_links_fifos_and_folders(tmp_path, capsys):
    target = tmp_path / "thesis.html"
    target.write_text("my thesis")
    link = tmp_path / "link.html"
    link.symlink_to(target)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [("--report", link, "is a symbolic link"), ("--h5ad", fifo, "is a FIFO"),
             ("--json", link, "is a symbolic link"), ("--report", folder, "is a folder"),
             ("--h5ad", folder, "is a folder")]
    for flag, path, phrase in cases:
        line = one_error(capsys, ["predict", "--model", str(MODEL), "--perturbation", "HSPA5",
                                  flag, str(path)])
        assert f"{flag} {path} {phrase}" in line, line
    assert link.is_symlink() and target.read_text() == "my thesis"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and list(folder.iterdir()) == []
    # screen --report was not checked before the work at all
    line = one_error(capsys, ["screen", "--model", str(MODEL), "--target", "HSPA5",
                              "--report", str(link)])
    assert "is a symbolic link" in line and link.is_symlink()


def test_1_a_device_is_refused_before_anything_is_written():
    from grape_core.io import check_output

    with pytest.raises(GrapeError, match="is a character device, not a regular file"):
        check_output("/dev/null", what="--h5ad")


def test_1_the_one_writer_refuses_them_too(tmp_path):
    from grape_core.io import write_json, write_text

    target = tmp_path / "real.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(GrapeError, match="symbolic link"):
        write_json(link, {"a": 1})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(GrapeError, match="FIFO"):
        write_text(fifo, "x")
    assert link.is_symlink() and target.read_text() == "{}"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------------------
# 2. --overwrite replaces only a folder of ours, in every command
# ----------------------------------------------------------------------------------------
def test_2_train_overwrite_keeps_a_folder_of_the_users(tmp_path, capsys, no_training):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("four years")
    line = one_error(capsys, ["train", "--data", str(ADAMSON), "--out", str(mine), "--overwrite"])
    assert "is not a model folder (it holds thesis.txt)" in line and "refusing" in line
    assert (mine / "thesis.txt").read_text() == "four years"

    model = copy_model(tmp_path, "model")  # a model folder with a file of the user's in it
    (model / "notes.md").write_text("why this model")
    line = one_error(capsys, ["train", "--data", str(ADAMSON), "--out", str(model), "--overwrite"])
    assert "holds notes.md, which is not part of a model folder" in line
    fake = tmp_path / "web"  # another tool's manifest.json
    fake.mkdir()
    (fake / "manifest.json").write_text('{"name": "my extension"}')
    line = one_error(capsys, ["train", "--data", str(ADAMSON), "--out", str(fake), "--overwrite"])
    assert "is not a model folder" in line and (fake / "manifest.json").exists()
    link = tmp_path / "link"
    link.symlink_to(copy_model(tmp_path, "real"))
    line = one_error(capsys, ["train", "--data", str(ADAMSON), "--out", str(link), "--overwrite"])
    assert "is a symbolic link" in line and link.is_symlink()
    # the data inside --out: refused before it is read
    data_in = tmp_path / "empty"
    data_in.mkdir()
    (data_in / "data.h5ad").write_bytes(ADAMSON.read_bytes())
    line = one_error(capsys, ["train", "--data", str(data_in / "data.h5ad"), "--out",
                              str(data_in), "--overwrite"])
    assert "not a model folder" in line or "which this command reads" in line
    # a previous model, or an empty folder, goes ahead
    empty = tmp_path / "new"
    empty.mkdir()
    for out in (copy_model(tmp_path, "previous"), empty):
        with pytest.raises(AssertionError, match="training started"):
            main(["--debug", "train", "--data", str(ADAMSON), "--out", str(out), "--overwrite"])


def test_2_library_saves_refuse_too(tmp_path):
    from grape_core.bundle import Bundle
    from grape_core.errors import BundleError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("four years")
    bundle = Bundle.load(MODEL)
    with pytest.raises(BundleError, match="not a model folder"):
        bundle.save(mine, overwrite=True)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(BundleError, match="is a file, not a folder"):
        bundle.save(a_file, overwrite=True)
    assert (mine / "thesis.txt").read_text() == "four years" and a_file.read_text() == "x"
    bundle.save(tmp_path / "model")
    bundle.save(tmp_path / "model", overwrite=True)  # a model of ours is replaced


def test_2_genes_never_writes_into_a_folder_of_the_users(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "genes.csv").write_text("my,own,table\n")
    for extra in ([], ["--overwrite"]):
        line = one_error(capsys, ["genes", "--data", str(ADAMSON), "--out", str(mine), *extra])
        assert "is not a gene-knowledge folder" in line
    assert (mine / "genes.csv").read_text() == "my,own,table\n"


# ----------------------------------------------------------------------------------------
# 4. files follow the user's umask
# ----------------------------------------------------------------------------------------
@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_4_files_follow_the_umask(tmp_path, umask_027):
    from grape_core.bundle import Bundle
    from grape_core.io import umask, write_text

    assert umask() == 0o027
    write_text(tmp_path / "report.html", "<p>hi</p>")
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o640
    folder = Bundle.load(MODEL).save(tmp_path / "model")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert set(modes.values()) == {0o640}, modes


# ----------------------------------------------------------------------------------------
# 3 and 7. a download is kept only when proved, within a size limit
# ----------------------------------------------------------------------------------------
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>log in</body></html>"


class Hostile:
    """A loopback server whose paths answer as told: ``body`` (bytes), ``length`` (the
    Content-Length header to send, or None for none), ``endless`` (a stream that never
    ends)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def hostile():
    with Hostile() as srv:
        yield srv


def _entry(url, **fields):
    from grape_core.data.datasets import RegistryEntry

    return RegistryEntry(name="norman", url=url, description="test", **fields)


def test_3_a_login_page_is_never_cached(hostile, tmp_path):
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


def test_3_a_bad_cached_file_names_the_file_to_delete(tmp_path, capsys, monkeypatch):
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


def test_3_norman_has_a_checksum_and_size():
    from grape_core.data.datasets import REGISTRY

    norman = REGISTRY["norman"]
    assert norman.sha256 == "23ffb0fac6a847ff927cf7509d80d85052bfefbfb97610786a2dafaaefa0b6a0"
    assert norman.size == 2_228_610_012 and (norman.cells, norman.genes) == (91_205, 5_045)


def test_7_endless_and_oversized_downloads_are_stopped(hostile, tmp_path):
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


def test_7_an_invalid_content_length_is_ignored(hostile, tmp_path):
    from grape_core.data.datasets import download

    data = ADAMSON.read_bytes()
    hostile.routes["/abc"] = {"body": data, "length": "abc"}
    path = download("norman", data_dir=tmp_path, entry=_entry(hostile.url("/abc")), progress=False)
    assert path.read_bytes() == data


def test_7_a_zip_bomb_is_refused_before_unpacking(hostile, tmp_path):
    import io
    import zipfile

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


# ----------------------------------------------------------------------------------------
# 5, 6, 13. prior files: weights in their stored width, case folding, no FIFO or device
# ----------------------------------------------------------------------------------------
GENES = ("HSPA5", "DDIT3", "ATF4", "TP53", "MALAT1")


def _prior(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["source", "target", "weight"])


def test_5_weights_are_checked_as_they_are_stored():
    import numpy as np

    from grape_core.knowledge.graphs import prior_from_table

    edges, _ = prior_from_table(_prior([("ATF4", "DDIT3", 1e39), ("HSPA5", "ATF4", 5e38)]), GENES)
    assert np.isfinite(edges["weight"]).all()  # relative confidences: scaled to 1 and 0.5
    assert sorted(edges["weight"].tolist()) == [0.5, 1.0]
    edges, _ = prior_from_table(_prior([("ATF4", "DDIT3", 0.25), ("HSPA5", "ATF4", 1.0)]), GENES)
    assert sorted(edges["weight"].tolist()) == [0.25, 1.0]  # weights up to 1: as given
    for rows, phrase in (([("ATF4", "DDIT3", 1e-50)], "too small to store"),
                         ([("ATF4", "DDIT3", 1e39), ("HSPA5", "ATF4", 1.0)],
                          r"too small to store beside the largest, 1e\+39 \(e.g. row 3: 1;"),
                         ([("ATF4", "DDIT3", float("inf"))], "not finite"),
                         ([("ATF4", "DDIT3", True)], "true/false")):
        with pytest.raises(GrapeError, match=phrase):
            prior_from_table(_prior(rows), GENES, name="mine.csv")


def test_6_case_only_duplicates_and_self_loops_are_refused():
    from grape_core.knowledge.graphs import prior_from_table

    with pytest.raises(GrapeError, match=r"lists 1 edge\(s\) twice \(ATF4->ddit3\).*row 3, "
                                         r"ATF4->ddit3, repeats row 2"):
        prior_from_table(_prior([("ATF4", "DDIT3", 1.0), ("ATF4", "ddit3", 1.0)]), GENES)
    with pytest.raises(GrapeError, match=r"1 self-loop\(s\) \(ATF4->atf4\)"):
        prior_from_table(_prior([("ATF4", "atf4", 1.0), ("TP53", "ATF4", 1.0)]), GENES)
    with pytest.raises(GrapeError, match="twice"):  # unknown genes fold too
        prior_from_table(_prior([("XBP1", "ERN1", 1.0), ("xbp1", "ern1", 1.0),
                                 ("TP53", "ATF4", 1.0)]), GENES)
    # two genes of the model that differ only in case stay two genes
    edges, report = prior_from_table(_prior([("ATF4", "Ddit3", 1.0), ("ATF4", "DDIT3", 1.0)]),
                                     GENES + ("Ddit3",))
    assert report["edges"] == len(edges) == 2


def test_13_a_fifo_or_a_device_as_prior_is_refused_at_once(tmp_path):
    from grape_core.knowledge.graphs import read_prior_table

    fifo = tmp_path / "prior.csv"
    os.mkfifo(fifo)
    with pytest.raises(GrapeError, match="is a FIFO"):
        read_prior_table(fifo)  # would block forever
    link = tmp_path / "zero.csv"
    link.symlink_to("/dev/zero")
    with pytest.raises(GrapeError, match="is a character device"):
        read_prior_table(link)  # would read forever
    listed = tmp_path / "list.txt"
    os.mkfifo(listed)
    from grape_core.serving.resolve import read_perturbations

    with pytest.raises(GrapeError, match="is a FIFO"):
        read_perturbations(listed)


# ----------------------------------------------------------------------------------------
# 8. simulate: every setting bounded, memory estimated before any allocation
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, phrase", [
    (["--noise", "1e300"], "cell_noise (1e+300, --noise) must be a number between 0 and 100"),
    (["--shared-std", "1e300"], "shared_std (1e+300, --shared-std) must be a number between"),
    (["--network-noise", "inf"], "network_noise (inf, --network-noise) must be a number"),
    (["--strength", "nan,1,1,1"], "relation_strength ((nan, 1.0, 1.0, 1.0), --strength) must be "
                                  "4 numbers in [0, 1000]"),
    (["--propensity", "1,1,1,1e300"], "relation_propensity"),
    (["--efficiency", "1.5,2"], "efficiency ((1.5, 2.0), --efficiency) must be two numbers "
                                "(low, high) with 0 <= low <= high <= 1"),
    (["--saturation", "inf"], "saturation (inf, --saturation) must be a number > 0"),
    (["--cells", "100000000"], "of memory (15,000,000,500 cells x 300 genes), more than"),
])
def test_8_simulate_settings_are_bounded(tmp_path, capsys, flags, phrase):
    out = tmp_path / "screen"
    line = one_error(capsys, ["simulate", "--out", str(out), *flags])
    assert phrase in line, line
    assert not out.exists()


def test_8_simulate_config_files(tmp_path, capsys):
    out = tmp_path / "screen"
    for content, phrase in ((b"\xff\xfe{}", "is not text (byte 0 is not UTF-8"),
                            (b'{"config": 5}', "must hold a JSON object of settings"),
                            (b'{"cell_noise": NaN}', "cell_noise (nan, --noise)"),
                            (b'{"n_genes": "many"}', "n_genes ('many', --genes) must be a whole"),
                            (b"[[[[" * 10, "not JSON")):
        config = tmp_path / "config.json"
        config.write_bytes(content)
        line = one_error(capsys, ["simulate", "--out", str(out), "--config", str(config)])
        assert phrase in line, line
    assert not out.exists()


def test_8_the_memory_limit_is_a_setting(tmp_path, capsys, monkeypatch):
    from grape_core.simulate import SimulationConfig, simulate

    monkeypatch.setenv("GRAPE_SIMULATE_MEMORY_GB", "0.01")
    line = one_error(capsys, ["simulate", "--out", str(tmp_path / "s"), "--genes", "40",
                              "--singles", "5", "--pairs", "2"])
    assert "more than the 0.0 GB allowed (GRAPE_SIMULATE_MEMORY_GB" in line
    with pytest.raises(GrapeError, match="raise GRAPE_SIMULATE_MEMORY_GB"):
        simulate(SimulationConfig(n_genes=40, n_singles=5, n_pairs=2))
    monkeypatch.setenv("GRAPE_SIMULATE_MEMORY_GB", "lots")
    line = one_error(capsys, ["simulate", "--out", str(tmp_path / "s")])
    assert "GRAPE_SIMULATE_MEMORY_GB='lots' is not a size in GB" in line
    config = SimulationConfig(n_genes=20_000, n_singles=2_000, n_pairs=300,
                              cells_per_condition=3, n_control_cells=100)
    assert 1.4 * 2**30 < config.memory_bytes() < 2.0 * 2**30  # measured peak: 1.4 GB


# ----------------------------------------------------------------------------------------
# 9. output mistakes are found before the work; a full disk names the file and the space
# ----------------------------------------------------------------------------------------
def test_9_outputs_that_collide_with_each_other_or_an_input(tmp_path, capsys):
    model = copy_model(tmp_path, "model")
    before = tree(model)
    same = tmp_path / "x.out"
    line = one_error(capsys, ["predict", "--model", str(model), "--perturbation", "HSPA5",
                              "--report", str(same), "--h5ad", str(same)])
    assert f"--h5ad {same} is also --report" in line and not same.exists()
    line = one_error(capsys, ["evaluate", "--model", str(model), "--json",
                              str(model / "manifest.json")])
    assert "lies inside --model" in line and "which this command reads" in line
    line = one_error(capsys, ["screen", "--model", str(model), "--target", "HSPA5", "--json",
                              str(model / "metrics.csv")])
    assert "lies inside --model" in line
    listed = tmp_path / "list.txt"
    listed.write_text("HSPA5\n")
    line = one_error(capsys, ["predict", "--model", str(model), "--perturbations", str(listed),
                              "--json", str(listed)])
    assert "is --perturbations" in line and listed.read_text() == "HSPA5\n"
    assert tree(model) == before  # the model is untouched


def _no_space(*args, **kwargs):
    raise RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                       'message: "No space left on device" })')


def test_9_a_full_disk_names_the_file_and_the_space(tmp_path, capsys, monkeypatch):
    import errno

    import safetensors.torch

    from grape_core import io
    from grape_core.bundle import Bundle

    bundle = Bundle.load(MODEL)
    monkeypatch.setattr(safetensors.torch, "save_file", _no_space)  # as safetensors says it
    with pytest.raises(GrapeError) as info:
        bundle.save(tmp_path / "model")
    text = str(info.value)
    assert text.startswith(f"the disk is full: cannot write {tmp_path / 'model'} (it needs about")
    assert "MB" in text and "free there" in text and "\n" not in text
    assert list(tmp_path.iterdir()) == []  # no temporary folder left
    monkeypatch.undo()

    old = tmp_path / "r.html"
    old.write_text("the previous report")

    def full(self, data):  # a plain OSError, half-way through
        with open(self, "wb") as fh:
            fh.write(data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(GrapeError, match=r"cannot write .*r.html \(it needs about 7 bytes"):
        io.write_text(old, "new one")
    monkeypatch.undo()
    assert old.read_text() == "the previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_9_a_full_disk_during_simulate(tmp_path, capsys, monkeypatch):
    import errno

    import anndata

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(anndata.AnnData, "write_h5ad", full)
    out = tmp_path / "screen"
    line = one_error(capsys, ["simulate", "--out", str(out), "--genes", "40", "--singles", "5",
                              "--pairs", "2"])
    assert line.startswith(f"error: the disk is full: cannot write {out} (it needs about")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------
# 10. every number of a model folder is checked; the manifest has its own checksum
# ----------------------------------------------------------------------------------------
def _edit(folder: Path, path: tuple, value, *, sign: bool = True) -> None:
    from conftest import read_manifest, write_manifest

    manifest = read_manifest(folder)
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    write_manifest(folder, manifest, sign=sign)


def _predict(capsys, folder, *extra) -> str:
    return one_error(capsys, ["predict", "--model", str(folder), "--perturbation", "HSPA5",
                              *extra])


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """The bundled Adamson model saved by this version (format 3, with its own checksum)."""
    from grape_core.bundle import Bundle

    folder = tmp_path_factory.mktemp("v3") / "model"
    Bundle.load(MODEL).save(folder)
    return folder


def _copy(folder: Path, parent: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, parent / "copy"))


@pytest.mark.parametrize("path, value, phrase", [
    (("uncertainty", "within_interval_top"), "x", "'uncertainty.within_interval_top' must be a "
                                                  "number between 0 and 1 (or null)"),
    (("uncertainty", "within_interval_top"), 7.5, "not 7.5"),
    (("uncertainty", "spearman_std_vs_error"), -3, "between -1 and 1"),
    (("training", "seconds"), float("nan"), "'training.seconds' is nan, not a finite number"),
    (("training", "seconds"), -1, "'training.seconds' must be a number >= 0"),
    (("training", "members", 0, "steps"), -5, "'training.members[0].steps' must be a whole"),
    (("training", "members", 0, "best_step"), 10**6, "at most its steps"),
    (("calibration", "rest", "floor"), 1e308, "'calibration.rest.floor' must be finite, "
                                              "between 0 and 10000"),
    (("graph", "prior_sources"), [{"name": "mine.csv", "kind": "file", "unknown_genes": "many"}],
     "'graph.prior_sources[0].unknown_genes' must be a whole number >= 0"),
    (("metrics", "test", "grape", "pearson_delta"), 4.0, "between -1 and 1"),
    (("dataset", "cells"), -10, "'dataset.cells' must be a whole number >= 0"),
])
def test_10_tampered_manifest_numbers(tmp_path, capsys, path, value, phrase):
    folder = copy_model(tmp_path)  # format 2: no checksum of its own, every number checked
    _edit(folder, path, value)
    assert phrase in _predict(capsys, folder)


def test_10_the_manifest_checksum(saved_model, tmp_path, capsys):
    from conftest import read_manifest

    from grape_core.bundle import FORMAT_VERSION, manifest_digest, verify_bundle

    data = read_manifest(saved_model)
    assert data["format_version"] == FORMAT_VERSION == 3
    assert data["manifest_sha256"] == manifest_digest(data)
    verify_bundle(saved_model)
    folder = _copy(saved_model, tmp_path)
    _edit(folder, ("uncertainty", "within_interval_top"), 0.99, sign=False)  # plausible, unsigned
    assert "manifest.json was edited: its SHA-256 does not match" in _predict(capsys, folder)
    _edit(folder, ("manifest_sha256",), "0" * 64, sign=False)
    assert "was edited" in _predict(capsys, folder)
    data = read_manifest(folder)
    del data["manifest_sha256"]
    (folder / "manifest.json").write_text(json.dumps(data))
    line = _predict(capsys, folder)
    assert "has no checksum of its manifest" in line and "--unverified" in line
    assert main(["--quiet", "predict", "--model", str(folder), "--perturbation", "HSPA5",
                 "--unverified"]) == 0
    capsys.readouterr()


def _edit_table(folder: Path, name: str, change) -> None:
    import pandas as pd
    from conftest import rehash

    frame = pd.read_parquet(folder / name)
    frame = change(frame)
    frame.to_parquet(folder / name, index=False)
    rehash(folder)  # every checksum updated, the manifest's own too


@pytest.mark.parametrize("name, change, phrase", [
    ("prior_edges.parquet", lambda f: f.assign(weight=f["weight"].where(f.index > 0)),
     "prior_edges.parquet: column 'weight' holds 1 non-finite value(s)"),
    ("prior_edges.parquet", lambda f: f.drop(columns=["source"]),
     "prior_edges.parquet has no 'source' column"),
    ("learned_edges.parquet", lambda f: f.assign(weight=float("nan")),
     "learned_edges.parquet: column 'weight' holds"),
    ("learned_edges.parquet", lambda f: f.assign(target="NOTAGENE"),
     "learned_edges.parquet: target \"NOTAGENE\" (row 0) is not a gene of the model"),
])
def test_10_tampered_tables_with_their_checksums_updated(saved_model, tmp_path, capsys, name,
                                                         change, phrase):
    folder = _copy(saved_model, tmp_path)
    _edit_table(folder, name, change)
    assert phrase in _predict(capsys, folder)


# ----------------------------------------------------------------------------------------
# 11. gene names with <, > or & are escaped once in the report's charts
# ----------------------------------------------------------------------------------------
def test_11_report_charts_escape_once(tmp_path, capsys):
    from conftest import rename_gene, unperturbed_measured_genes

    from grape_core.viz import charts
    from grape_core import load, predict

    pred = predict(load(MODEL), "HSPA5", baselines=False)
    top = pred.to_frame(top=20)["gene"].tolist()
    gene = next(g for g in top if g in set(unperturbed_measured_genes(MODEL)))
    folder = copy_model(tmp_path)
    odd = "A<B>&C"
    rename_gene(folder, gene, odd)
    twice = charts.esc(charts.esc(odd))
    for perturbation in ("HSPA5", odd):  # the gene in the chart's bars, then in its title
        report = tmp_path / "r.html"
        assert main(["--quiet", "predict", "--model", str(folder), "--perturbation",
                     perturbation, "--report", str(report)]) == 0
        capsys.readouterr()
        # the network view is a page of its own in the frame's srcdoc (escaped once more as
        # an attribute, as it must be): the charts are the rest
        page = re.sub(r'srcdoc="[^"]*"', "", report.read_text())
        assert charts.esc(odd) in page  # plotly shows it as typed
        assert twice not in page and twice.replace("&", "\\u0026") not in page
    assert "Top 20 predicted shifts: A&lt;B&gt;&amp;C" in page


def test_11_safe_figure_is_idempotent():
    import plotly.graph_objects as go

    from grape_core.viz import charts
    from grape_core.viz.report_charts import safe_figure

    fig = go.Figure(go.Bar(x=charts.esc(["A<B", "raw<b>"]), y=[1, 2]))
    fig.update_xaxes(categoryorder="array", categoryarray=charts.esc(["A<B", "raw<b>"]))
    out = safe_figure(safe_figure(fig))
    assert list(out.data[0].x) == ["A&lt;B", "raw&lt;b&gt;"]
    assert list(out.layout.xaxis.categoryarray) == ["A&lt;B", "raw&lt;b&gt;"]
    raw = safe_figure(go.Figure(go.Bar(x=["<i>x</i>"], y=[1])))  # unescaped input: escaped once
    assert list(raw.data[0].x) == ["&lt;i&gt;x&lt;/i&gt;"]


# ----------------------------------------------------------------------------------------
# 12. a list line with a comma or a tab is refused with its line number
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, phrase", [
    ("HSPA5\nATF4,DDIT3\n", "list.txt, line 2: 'ATF4,DDIT3' holds a comma"),
    ("ATF4\tDDIT3\n", "list.txt, line 1: 'ATF4\\tDDIT3' holds a tab"),
    ("perturbation\nATF4,DDIT3\n", "line 2: 'ATF4,DDIT3' holds a comma"),  # a header alone
    ("ATF4;DDIT3\n", "list.txt, line 1"),
])
def test_12_list_lines_with_other_separators(tmp_path, capsys, text, phrase):
    listed = tmp_path / "list.txt"
    listed.write_text(text)
    line = one_error(capsys, ["predict", "--model", str(MODEL), "--perturbations", str(listed)])
    assert phrase in line, line


def test_12_a_table_with_a_header_reads_its_first_column():
    from grape_core.serving.resolve import parse_perturbations

    listed, where = parse_perturbations("perturbation\tscore\nATF4\t1.5\nATF4+DDIT3\t2\n",
                                        source="t.tsv")
    assert listed == ["ATF4", "ATF4+DDIT3"] and where == ["t.tsv, line 2", "t.tsv, line 3"]
    listed, _ = parse_perturbations('"condition",why\n"HSPA5",control\n')
    assert listed == ["HSPA5"]
