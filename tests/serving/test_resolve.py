"""What users type, as the model names it: gene symbols with odd characters or clashing
case, signatures, lists of perturbations and ``top``; each mistake one clear line."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import (
    MODEL,
    ROOT,
    copy_model,
    make_adata,
    one_error,
    rename_gene,
    unperturbed_measured_genes,
    write_adata,
)

from grape_core.cli import main


def test_symbols_with_underscore_dot_dash_space_are_read(tmp_path):
    from grape_core import read_perturbseq
    from grape_core.errors import DataFormatError

    a = make_adata({"ctrl": 10, "Y_RNA+ctrl": 5, "HLA-A+my gene": 5, "MT.CO1": 5}, n_genes=6)
    a.var["gene_name"] = ["Y_RNA", "HLA-A", "my gene", "MT.CO1", "G4", "G5"]
    out = read_perturbseq(write_adata(a, tmp_path / "symbols.h5ad"))
    assert set(out.obs["condition"].cat.categories) == {"ctrl", "Y_RNA+ctrl", "HLA-A+my gene",
                                                          "MT.CO1+ctrl"}
    wrong = make_adata({"ctrl": 10, "G4_G5": 5})  # a pair of measured genes with '_': a typo
    wrong.var["gene_name"] = ["G0", "G1", "G2", "G3", "G4", "G5"]
    with pytest.raises(DataFormatError, match="unexpected '_' in 'G4_G5'"):
        read_perturbseq(write_adata(wrong, tmp_path / "typo.h5ad"))


def test_symbols_with_underscore_work_in_predict_and_screen(tmp_path, capsys):
    from grape_core import load, predict, screen

    folder = copy_model(tmp_path)
    free = unperturbed_measured_genes(folder)
    rename_gene(folder, free[0], "Y_RNA")
    rename_gene(folder, free[1], "my gene")
    rename_gene(folder, free[2], "AC000061.1")
    model = load(folder)
    result = screen(model, ["Y_RNA", "my gene"], direction="up", top=5)
    assert result.targets == ("Y_RNA", "my gene") and len(result.table) == 5
    ranked = screen(model, ["HSPA5"], top=200).table["perturbation"]  # the same model's cache
    assert {"Y_RNA+ctrl", "my gene+ctrl", "AC000061.1+ctrl"} <= set(ranked)
    assert predict(model, "Y_RNA+HSPA5").perturbed == ("Y_RNA", "HSPA5")
    assert predict(model, ["my gene", "AC000061.1"]).condition == "my gene+AC000061.1"
    assert main(["predict", "--model", str(folder), "--perturbation", "Y_RNA+AC000061.1"]) == 0
    sig = tmp_path / "sig.tsv"
    sig.write_text("gene\tweight\nmy gene\t1\nY_RNA\t-0.5\n")
    assert main(["screen", "--model", str(folder), "--signature", str(sig), "--top", "3"]) == 0
    captured = capsys.readouterr()
    assert "error" not in captured.err and "raise my gene, Y_RNA" in captured.out


def test_case_only_clashes_are_ambiguous(tmp_path, capsys):
    from grape_core import load, predict, read_perturbseq

    folder = copy_model(tmp_path)
    rename_gene(folder, unperturbed_measured_genes(folder)[0], "hspa5")
    assert main(["predict", "--model", str(folder), "--perturbation", "HSPA5"]) == 0  # exact
    assert main(["predict", "--model", str(folder), "--perturbation", "hspa5"]) == 0
    capsys.readouterr()
    line = one_error(capsys, ["predict", "--model", str(folder), "--perturbation", "Hspa5"])
    assert "'Hspa5' is ambiguous" in line and "HSPA5 and hspa5" in line and "exact symbol" in line
    line = one_error(capsys, ["screen", "--model", str(folder), "--target", "Hspa5"])
    assert "HSPA5 and hspa5" in line
    model = load(folder)
    assert predict(model, "hspa5").perturbed == ("hspa5",)

    a = make_adata({"ctrl": 10, "G1+ctrl": 10})
    a.var["gene_name"] = ["HSPA5", "hspa5", "G1", "G3", "G4", "G5"]
    out = read_perturbseq(write_adata(a, tmp_path / "case.h5ad"))
    assert any("differ only in case" in w and "HSPA5 and hspa5" in w
               for w in out.uns["grape_source"]["warnings"])


@pytest.mark.parametrize("text, phrase", [
    ("HSPA5 nan\n", "weight 'nan' of 'HSPA5' is not a finite number"),
    ("HSPA5 inf\n", "weight 'inf' of 'HSPA5' is not a finite number"),
    ("HSPA5 1e400\n", "weight '1e400' of 'HSPA5' is not a finite number"),
    ("HSPA5 1\nhspa5 -1\n", "line 2: 'hspa5' is listed as 'HSPA5' on line 1 too; give each gene once"),
    ("HSPA5 1\nHSPA5 2\n", "line 2: 'HSPA5' is listed again (first on line 1)"),
    ("HSPA5 0\n", "weight of 'HSPA5' is 0"),
])
def test_signature_weights(tmp_path, capsys, text, phrase):
    sig = tmp_path / "signature.txt"
    sig.write_text(text)
    line = one_error(capsys, ["screen", "--model", str(ROOT / "assets" / "models" / "adamson"),
                              "--signature", str(sig)])
    assert phrase in line and str(sig) in line


def test_signature_weights_in_the_api():
    from grape_core import load, screen
    from grape_core.errors import GrapeError

    model = load(ROOT / "assets" / "models" / "adamson")
    for bad, phrase in (({"HSPA5": float("nan")}, "not a finite number"),
                        ({"HSPA5": 1.0, "hspa5": -1.0}, "are the same gene (HSPA5)"),
                        ({"HSPA5": 0.0}, "all signature weights are zero")):
        with pytest.raises(GrapeError, match=re.escape(phrase)):
            screen(model, bad)
    huge = screen(model, {"HSPA5": 1e308, "DDIT4": -1e308}).table  # merged: still finite
    assert np.isfinite(huge["effect"]).all() and len(huge)


@pytest.mark.parametrize("command", ["predict", "screen"])
@pytest.mark.parametrize("top", ["-5", "0", "two"])
def test_top_must_be_at_least_one(capsys, command, top):
    target = ["--perturbation", "HSPA5"] if command == "predict" else ["--target", "HSPA5"]
    line = one_error(capsys, [command, "--model", str(ROOT / "assets" / "models" / "adamson"),
                              *target, "--top", top], code=2)
    assert f"argument --top: must be" in line and "1 or more" in line


def test_top_in_the_api():
    from grape_core import load, predict, screen
    from grape_core.errors import GrapeError

    model = load(ROOT / "assets" / "models" / "adamson")
    with pytest.raises(GrapeError, match="top must be"):
        screen(model, ["HSPA5"], top=0)
    with pytest.raises(GrapeError, match="top must be"):
        predict(model, "HSPA5", baselines=False).to_frame(top=-5)


def test_binary_and_folder_signatures(tmp_path, capsys):
    model = str(ROOT / "assets" / "models" / "adamson")
    binary = tmp_path / "signature.xlsx"
    binary.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    line = one_error(capsys, ["screen", "--model", model, "--signature", str(binary)])
    assert f"signature file {binary} is not text" in line
    line = one_error(capsys, ["screen", "--model", model, "--signature", str(tmp_path)])
    assert f"signature file {tmp_path} is a folder" in line


def test_a_huge_perturbation_is_not_echoed_whole(capsys):
    genes = "+".join(f"GENE{i}" for i in range(10_000))
    line = one_error(capsys, ["predict", "--model", str(ROOT / "assets" / "models" / "adamson"),
                              "--perturbation", genes])
    assert len(line) < 300 and "perturbs 10000 genes" in line and "characters)" in line
    line = one_error(capsys, ["predict", "--model", str(ROOT / "assets" / "models" / "adamson"),
                              "--perturbation", "X" * 10_000])
    assert len(line) < 300 and "unknown gene" in line


@pytest.mark.parametrize("text, phrase", [
    ("HSPA5\nATF4,DDIT3\n", "list.txt, line 2: 'ATF4,DDIT3' holds a comma"),
    ("ATF4\tDDIT3\n", "list.txt, line 1: 'ATF4\\tDDIT3' holds a tab"),
    ("perturbation\nATF4,DDIT3\n", "line 2: 'ATF4,DDIT3' holds a comma"),  # a header alone
    ("ATF4;DDIT3\n", "list.txt, line 1"),
])
def test_list_lines_with_other_separators(tmp_path, capsys, text, phrase):
    listed = tmp_path / "list.txt"
    listed.write_text(text)
    line = one_error(capsys, ["predict", "--model", str(MODEL), "--perturbations", str(listed)])
    assert phrase in line, line


def test_a_table_with_a_header_reads_its_first_column():
    from grape_core.serving.resolve import parse_perturbations

    listed, where = parse_perturbations("perturbation\tscore\nATF4\t1.5\nATF4+DDIT3\t2\n",
                                        source="t.tsv")
    assert listed == ["ATF4", "ATF4+DDIT3"] and where == ["t.tsv, line 2", "t.tsv, line 3"]
    listed, _ = parse_perturbations('"condition",why\n"HSPA5",control\n')
    assert listed == ["HSPA5"]
