"""Seeded splits: GEARS ``simulation`` (exactly as GEARS draws it) and the paper's 75/25."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ADAMSON_SPLIT, NORMAN_DEVEL
from hypothesis import given, settings
from hypothesis import strategies as st

from grape_core import keys
from grape_core.config import SplitConfig
from grape_core.data.conditions import genes_of
from grape_core.data.splits import (
    Split,
    grape_split,
    make_split,
    read_conditions,
    simulation_split,
)
from grape_core.errors import GrapeError, SplitError


# ----------------------------------------------------------------------------------------
# reference: GEARS DataSplitter.get_simulation_split, transcribed (gears/data_utils.py)
# ----------------------------------------------------------------------------------------
def _gears_genes_from_perts(perts):
    genes = [g for p in np.unique(perts) for g in p.split("+")]
    return list(np.unique([g for g in genes if g != "ctrl"]))


def _gears_perts_from_genes(genes, pert_list, type_):
    single = [p for p in pert_list if "ctrl" in p and p != "ctrl"]
    combo = [p for p in pert_list if "ctrl" not in p]
    pool = single if type_ == "single" else combo
    out = []
    for p in pool:
        parsed = [p.split("+")[0]] if "ctrl" in p else p.split("+")
        for g in genes:
            if g in parsed:
                out.append(p)
                break
    return out


def _gears_simulation_split(pert_list, train_gene_set_size, combo_seen2_train_frac, seed):
    unique_pert_genes = _gears_genes_from_perts(pert_list)
    pert_train, pert_test = [], []
    np.random.seed(seed=seed)
    train_gene_candidates = np.random.choice(
        unique_pert_genes, int(len(unique_pert_genes) * train_gene_set_size), replace=False)
    ood_genes = np.setdiff1d(unique_pert_genes, train_gene_candidates)
    pert_single_train = _gears_perts_from_genes(train_gene_candidates, pert_list, "single")
    pert_combo = _gears_perts_from_genes(train_gene_candidates, pert_list, "combo")
    pert_train.extend(pert_single_train)
    combo_seen1 = [x for x in pert_combo
                   if len([t for t in x.split("+") if t in train_gene_candidates]) == 1]
    pert_test.extend(combo_seen1)
    pert_combo = np.setdiff1d(pert_combo, combo_seen1)
    np.random.seed(seed=seed)
    pert_combo_train = np.random.choice(
        pert_combo, int(len(pert_combo) * combo_seen2_train_frac), replace=False)
    combo_seen2 = np.setdiff1d(pert_combo, pert_combo_train).tolist()
    pert_test.extend(combo_seen2)
    pert_train.extend(pert_combo_train)
    unseen_single = _gears_perts_from_genes(ood_genes, pert_list, "single")
    combo_ood = _gears_perts_from_genes(ood_genes, pert_list, "combo")
    pert_test.extend(unseen_single)
    combo_seen0 = [x for x in combo_ood
                   if len([t for t in x.split("+") if t in train_gene_candidates]) == 0]
    pert_test.extend(combo_seen0)
    groups = {"combo_seen0": combo_seen0, "combo_seen1": combo_seen1,
              "combo_seen2": combo_seen2, "unseen_single": unseen_single}
    return pert_train, pert_test, groups, set(train_gene_candidates.tolist())


def gears_split(unique_perts, seed=1, train_gene_set_size=0.75, combo_seen2_train_frac=0.75):
    """GEARS DataSplitter.split_data(split_type='simulation'), in the order of the file."""
    perts = [p for p in unique_perts if p != "ctrl"]
    train, test, test_groups, train_genes = _gears_simulation_split(
        perts, train_gene_set_size, combo_seen2_train_frac, seed)
    train, val, val_groups, _ = _gears_simulation_split(train, 0.9, 0.9, seed)
    return {"train": [*train, "ctrl"], "val": val, "test": test,
            "test_subgroup": test_groups, "val_subgroup": val_groups, "train_genes": train_genes}


@pytest.fixture(scope="module")
def gears_adamson():
    return json.loads(ADAMSON_SPLIT.read_text())


@pytest.fixture(scope="module")
def gears_adamson_subgroups():
    path = ADAMSON_SPLIT.with_name("adamson_simulation_1_0.75_subgroup.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def norman_conditions():
    """The Norman 2019 conditions of the PerturBench devel file, in file order, GEARS form."""
    import anndata

    from grape_core.data.conditions import canonical_map

    obs = anndata.read_h5ad(NORMAN_DEVEL).obs
    raw = obs.loc[obs["dataset"] == "norman19", "condition"].astype(str).unique().tolist()
    mapping = canonical_map(raw, control_label="control")
    return [mapping[r] for r in raw]


def _all_conditions(split: Split) -> list[str]:
    return [*split.train, *split.val, *split.test]


# ----------------------------------------------------------------------------------------
# GEARS simulation
# ----------------------------------------------------------------------------------------
def test_reproduces_published_gears_adamson_split(gears_adamson, gears_adamson_subgroups):
    conditions = gears_adamson["train"] + gears_adamson["val"] + gears_adamson["test"]
    assert len(conditions) == 87
    split = simulation_split(conditions, seed=1, train_gene_set_size=0.75)
    assert set(split.train) == set(gears_adamson["train"])
    assert set(split.val) == set(gears_adamson["val"])
    assert set(split.test) == set(gears_adamson["test"])
    assert len(split.train) == 58 and len(split.val) == 7 and len(split.test) == 22
    published = gears_adamson_subgroups
    for part in ("test", "val"):
        for group in keys.SUBGROUPS:
            assert set(split.subgroups[part][group]) == set(published[f"{part}_subgroup"][group])


def test_adamson_split_does_not_depend_on_condition_order(gears_adamson):
    conditions = gears_adamson["train"] + gears_adamson["val"] + gears_adamson["test"]
    shuffled = list(np.random.default_rng(5).permutation(conditions))
    assert simulation_split(shuffled, seed=1) == simulation_split(conditions, seed=1)


def test_adamson_split_accepts_other_label_forms(gears_adamson):
    """ctrl+GENE and plain GENE labels give the same split as GEARS' GENE+ctrl."""
    conditions = gears_adamson["train"] + gears_adamson["val"] + gears_adamson["test"]
    flipped = ["control" if c == "ctrl" else "ctrl+" + genes_of(c)[0] for c in conditions]
    plain = [c if c == "ctrl" else genes_of(c)[0] for c in conditions]
    expected = simulation_split(conditions, seed=1)
    assert simulation_split(flipped, seed=1) == expected
    assert simulation_split(plain, seed=1) == expected


def test_norman_simulation_matches_gears_reference(norman_conditions):
    assert len(norman_conditions) == 34  # ctrl + 18 singles + 15 pairs
    for seed in (1, 2, 3):
        ref = gears_split(norman_conditions, seed=seed)
        split = simulation_split(norman_conditions, seed=seed)
        for part in ("train", "val", "test"):
            assert set(getattr(split, part)) == set(ref[part]), (seed, part)
        for group in keys.SUBGROUPS:
            assert set(split.subgroups["test"][group]) == set(ref["test_subgroup"][group])
            assert set(split.subgroups["val"][group]) == set(ref["val_subgroup"][group])


def test_norman_simulation_partition_and_subgroups(norman_conditions):
    split = simulation_split(norman_conditions, seed=1)
    everything = _all_conditions(split)
    assert sorted(everything) == sorted(norman_conditions)  # each exactly once
    assert keys.CTRL in split.train
    # subgroups are exactly the test set, and follow their definition
    test_groups = split.subgroups["test"]
    assert sorted(c for g in test_groups.values() for c in g) == sorted(split.test)
    train_genes = gears_split(norman_conditions, seed=1)["train_genes"]
    seen_in_training = {g for c in [*split.train, *split.val] for g in genes_of(c)}
    for cond in test_groups["unseen_single"]:
        assert len(genes_of(cond)) == 1
        assert genes_of(cond)[0] not in train_genes and genes_of(cond)[0] not in seen_in_training
    for k in (0, 1, 2):
        for cond in test_groups[f"combo_seen{k}"]:
            assert len(genes_of(cond)) == 2
            assert sum(g in train_genes for g in genes_of(cond)) == k
            # an unseen gene never appears in any training or validation condition
            assert sum(g in seen_in_training for g in genes_of(cond)) <= k
    # with seed 1 every subgroup occurs in the real Norman subset
    assert all(test_groups[g] for g in keys.SUBGROUPS)
    # train pairs are all "seen 2"
    for cond in split.train:
        if len(genes_of(cond)) == 2:
            assert all(g in train_genes for g in genes_of(cond))


def test_simulation_seeds(norman_conditions):
    a = simulation_split(norman_conditions, seed=1)
    assert simulation_split(norman_conditions, seed=1) == a
    assert any(simulation_split(norman_conditions, seed=s).test != a.test for s in (2, 3, 4))


def test_simulation_train_gene_set_size():
    conditions = [f"G{i}+ctrl" for i in range(40)]
    split = simulation_split(conditions, seed=0, train_gene_set_size=0.5)
    # 20 genes drawn for training (of which 10% go to validation), 20 held out
    assert len(split.test) == 20
    assert len(split.train) + len(split.val) == 20
    assert split.subgroups["test"]["unseen_single"] == sorted(split.test)


def test_simulation_needs_perturbations():
    with pytest.raises(SplitError, match="no perturbation"):
        simulation_split(["ctrl"])


# ----------------------------------------------------------------------------------------
# the paper's split
# ----------------------------------------------------------------------------------------
def test_grape_split_is_75_25_of_singles():
    singles = [f"G{i}+ctrl" for i in range(40)]
    split = grape_split(["ctrl", *singles], seed=3)
    assert len(split.test) == 10  # 25 % of 40
    assert len(split.val) == 3  # 10 % of the remaining 30
    assert len(split.train) == 27 + 1  # plus ctrl
    assert sorted(_all_conditions(split)) == sorted(["ctrl", *singles])
    assert split.subgroups["test"]["unseen_single"] == list(split.test)
    assert grape_split(singles, seed=3) == grape_split(list(reversed(singles)), seed=3)
    assert grape_split(singles, seed=3).test != grape_split(singles, seed=4).test


def test_grape_split_with_pairs(norman_conditions):
    split = grape_split(norman_conditions, seed=1)
    assert sorted(_all_conditions(split)) == sorted(norman_conditions)
    singles_test = [c for c in split.test if len(genes_of(c)) == 1]
    pairs_test = [c for c in split.test if len(genes_of(c)) == 2]
    assert len(singles_test) == 5  # 18 * 0.25 = 4.5, halves round up
    assert len(pairs_test) == 4  # 15 * 0.25 = 3.75
    train_genes = {genes_of(c)[0] for c in split.train if len(genes_of(c)) == 1}
    for k in (0, 1, 2):
        for cond in split.subgroups["test"][f"combo_seen{k}"]:
            assert sum(g in train_genes for g in genes_of(cond)) == k


def test_make_split_dispatch():
    conds = [f"G{i}+ctrl" for i in range(12)]
    assert make_split(conds, SplitConfig(name="grape", seed=2)) == grape_split(conds, seed=2)
    assert make_split(conds, SplitConfig(seed=2)) == simulation_split(conds, seed=2)
    with pytest.raises(GrapeError, match="'name' must be one of 'simulation', 'grape'"):
        make_split(conds, SplitConfig(name="random"))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# saved splits
# ----------------------------------------------------------------------------------------
def test_split_json_round_trip(tmp_path, norman_conditions):
    split = simulation_split(norman_conditions, seed=2)
    path = tmp_path / "split.json"
    split.save(path)
    data = json.loads(path.read_text())
    assert {"train", "val", "test", "subgroups", "seed", "name"} <= set(data)
    loaded = Split.load(path)
    assert loaded == split
    assert loaded.part_of("ctrl") == "train"
    for cond in split.test:
        assert loaded.part_of(cond) == "test"
        assert loaded.subgroup_of(cond) in keys.SUBGROUPS


def test_load_gears_split_file_recomputes_subgroups(gears_adamson):
    split = Split.load(ADAMSON_SPLIT)
    assert set(split.test) == set(gears_adamson["test"])
    assert set(split.subgroups["test"]["unseen_single"]) == set(gears_adamson["test"])


def test_load_errors(tmp_path):
    with pytest.raises(SplitError, match="not found"):
        Split.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SplitError, match="not valid JSON"):
        Split.load(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"train": ["A,B"], "test": []}))
    with pytest.raises(SplitError, match="cannot be parsed"):
        Split.load(wrong)


def test_restrict_published_split_to_real_slice(adamson):
    """The GEARS Adamson split applied to the 10 conditions of the real slice."""
    split = Split.load(ADAMSON_SPLIT).restrict(adamson.obs["condition"].unique())
    assert set(split.test) == {"TARS+ctrl", "IER3IP1+ctrl"}
    assert set(split.train) == {"ctrl", "GBF1+ctrl", "HSPA5+ctrl", "HSPA9+ctrl", "IARS2+ctrl",
                                "SAMM50+ctrl", "SCYL1+ctrl", "SEC61A1+ctrl", "YIPF5+ctrl"}
    assert split.val == ()
    assert set(split.subgroups["test"]["unseen_single"]) == {"TARS+ctrl", "IER3IP1+ctrl"}
    with pytest.raises(SplitError, match="not in split"):
        Split.load(ADAMSON_SPLIT).restrict(["ctrl", "TARS+ctrl", "NOTAGENE+ctrl"])


def test_read_conditions_formats(tmp_path, gears_adamson):
    lines = tmp_path / "conds.txt"
    lines.write_text("# a comment\nctrl\n\nA+ctrl\n  B+C  \n")
    assert read_conditions(lines) == ["ctrl", "A+ctrl", "B+C"]
    as_list = tmp_path / "conds.json"
    as_list.write_text(json.dumps(["ctrl", "A+ctrl"]))
    assert read_conditions(as_list) == ["ctrl", "A+ctrl"]
    assert sorted(read_conditions(ADAMSON_SPLIT)) == sorted(
        gears_adamson["train"] + gears_adamson["val"] + gears_adamson["test"])
    with pytest.raises(SplitError, match="not found"):
        read_conditions(tmp_path / "none.txt")


# ----------------------------------------------------------------------------------------
# properties over random screens
# ----------------------------------------------------------------------------------------
_GENES = [f"G{i}" for i in range(12)]


@st.composite
def screens(draw):
    singles = draw(st.sets(st.sampled_from(_GENES), max_size=12))
    pairs = draw(st.sets(st.tuples(st.sampled_from(_GENES), st.sampled_from(_GENES))
                         .filter(lambda t: t[0] < t[1]), max_size=15))
    conds = [f"{g}+ctrl" for g in sorted(singles)] + [f"{a}+{b}" for a, b in sorted(pairs)]
    if not conds:
        conds = ["G0+ctrl"]
    if draw(st.booleans()):
        conds.append("ctrl")
    return draw(st.permutations(conds))


@settings(max_examples=60, deadline=None)
@given(screens(), st.integers(0, 10_000), st.sampled_from(["simulation", "grape"]))
def test_every_condition_lands_in_exactly_one_part(conds, seed, name):
    split = make_split(conds, SplitConfig(name=name, seed=seed))
    assert sorted(_all_conditions(split)) == sorted(conds)
    assert make_split(list(reversed(conds)), SplitConfig(name=name, seed=seed)) == split
    for part in ("test", "val"):
        members = [c for g in split.subgroups[part].values() for c in g]
        assert sorted(members) == sorted(getattr(split, part))


@settings(max_examples=60, deadline=None)
@given(screens(), st.integers(0, 10_000))
def test_simulation_matches_gears_reference_on_random_screens(conds, seed):
    ref = gears_split(conds, seed=seed)
    split = simulation_split(conds, seed=seed)
    for part in ("train", "val", "test"):
        assert set(getattr(split, part)) == set(ref[part]) - ({"ctrl"} - set(conds))
