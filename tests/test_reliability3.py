"""Reliability round 3 (issue 26): never overwrite what is not ours, never cache a bad
download, check every number we store.

One section per class of the issue (1 to 13). Every CLI case ends in one ``error:`` line
(or the right result) with nothing of the user's lost, changed or left half-written.
"""

from __future__ import annotations

import json
import os
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
    assert "Traceback" not in err and "unexpected" not in lines[0], err
    return lines[0]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to show nothing changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if a command starts training."""
    import grape_core.train

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(grape_core.train, "train_bundle", refuse)


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
