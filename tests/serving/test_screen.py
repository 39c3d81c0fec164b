"""In-silico screen: a constructed model whose best perturbation is known, the real
bundled-style model, the CLI and the honest check."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import ROOT, one_error, read_manifest

from grape_core import GrapeError, UnknownGeneError
from grape_core.bundle import Bundle
from grape_core.cli import main
from grape_core.nn.grape import ModelOutput
from grape_core.serving.evaluate import screen_check
from grape_core.serving.model import Model
from grape_core.serving.resolve import read_signature
from grape_core.serving.screen import screen
from grape_core.training.recipe import stored_singles


class KnownEffects(torch.nn.Module):
    """Stand-in member: perturbing gene node ``g`` shifts measured gene ``j`` by
    ``effects[g, j]``; a pair adds its singles plus ``interaction``."""

    def __init__(self, effects: torch.Tensor, interaction: dict[tuple[int, int], torch.Tensor]):
        super().__init__()
        self.effects, self.interaction = effects, interaction

    def forward(self, graph, perts, outputs=None):
        out = []
        for row in perts.tolist():
            nodes = [n for n in row if n >= 0]
            shift = sum(self.effects[n] for n in nodes)
            shift = shift + self.interaction.get(tuple(sorted(nodes)), 0)
            out.append(shift)
        shift = torch.stack(out)
        return ModelOutput(shift=shift if outputs is None else shift[:, outputs], reg=torch.zeros(()))


@pytest.fixture(scope="module")
def constructed(adamson_model):
    bundle = Bundle.load(adamson_model)
    n_nodes, n_measured = len(bundle.genes), len(bundle.measured)
    rng = np.random.default_rng(0)
    effects = torch.as_tensor(rng.normal(0, 0.01, (n_nodes, n_measured)), dtype=torch.float32)
    target = bundle.measured.index("DDIT4")
    best = bundle.node_index["SCYL1"]
    effects[best, target] = 1.0  # SCYL1 raises DDIT4 most
    worst = bundle.node_index["GBF1"]
    effects[worst, target] = -1.0  # GBF1 lowers it most
    a, b = bundle.node_index["HSPA9"], bundle.node_index["YIPF5"]
    effects[a, target] = effects[b, target] = 0.3
    synergy = torch.zeros(n_measured)
    synergy[target] = 2.0
    members = [KnownEffects(effects + 0.001 * k, {tuple(sorted((a, b))): synergy}) for k in range(2)]
    bundle = replace(bundle, members=members)
    return Model(replace(bundle, singles=stored_singles(bundle)))  # what training stores


def test_known_best_single_ranks_first(constructed):
    up = screen(constructed, ["DDIT4"], direction="up").table
    assert up.loc[0, "perturbation"] == "SCYL1+ctrl" and up.loc[0, "rank"] == 1
    assert up["effect"].is_monotonic_decreasing
    down = screen(constructed, ["DDIT4"], direction="down").table
    assert down.loc[0, "perturbation"] == "GBF1+ctrl"
    assert down.loc[0, "effect"] == pytest.approx(1.0, abs=0.05)  # signed: higher is better
    assert "DDIT4+ctrl" not in set(up["perturbation"])  # a target is not its own candidate


def test_pairs_rank_synergy_first_with_additive_beside(constructed):
    frame = screen(constructed, ["DDIT4"], direction="up", pairs=True, pair_candidates=5).table
    top = frame.iloc[0]
    assert top["kind"] == "pair" and set(top["genes"].split(" + ")) == {"HSPA9", "YIPF5"}
    assert top["effect"] == pytest.approx(2.6, abs=0.05)
    assert top["additive_effect"] == pytest.approx(0.6, abs=0.05)


def test_uncertainty_and_measured_columns(constructed):
    frame = screen(constructed, ["DDIT4"], top=200).table
    assert np.allclose(frame["effect_std"], np.std([0.0, 0.001], ddof=1), atol=1e-6)
    measured = frame[frame["measured"]]
    assert set(measured["perturbation"]) == set(constructed.bundle.pseudobulk.conditions)
    pb = constructed.bundle.pseudobulk
    j = pb.genes.index("DDIT4")
    row = measured.set_index("perturbation").loc["HSPA5+ctrl"]
    assert row["measured_effect"] == pytest.approx(pb.shifts[pb.index("HSPA5+ctrl"), j], abs=1e-6)


def test_signature_weights(constructed, tmp_path):
    sig = tmp_path / "sig.tsv"
    sig.write_text("gene\tweight\nDDIT4\t1\nHBZ\t-1\n")
    weights = read_signature(sig)
    assert weights == {"DDIT4": 1.0, "HBZ": -1.0}
    frame = screen(constructed, weights, direction="up").table
    assert frame.loc[0, "perturbation"] == "SCYL1+ctrl"
    assert frame.loc[0, "effect"] == pytest.approx(0.5, abs=0.05)  # weights normalised to |w| = 1


def test_bad_targets(constructed, tmp_path):
    with pytest.raises(UnknownGeneError, match="did you mean"):
        screen(constructed, ["DDIT44"])
    with pytest.raises(GrapeError, match="at least one target"):
        screen(constructed, [])
    with pytest.raises(GrapeError, match="direction"):
        screen(constructed, ["DDIT4"], direction="sideways")  # type: ignore[arg-type]
    bad = tmp_path / "bad.tsv"
    bad.write_text("DDIT4\tmuch\n")
    with pytest.raises(GrapeError, match="line 1: weight 'much' is not a number"):
        read_signature(bad)


def test_screen_on_a_trained_model_and_cli(norman_model, tmp_path, capsys):
    bundle = Bundle.load(norman_model)
    frame = screen(bundle, ["HBG2"], direction="up", pairs=True, top=10).table
    assert len(frame) == 10 and set(frame["kind"]) <= {"single", "pair"}
    assert frame["vs_typical"].is_monotonic_decreasing  # ranked by what is specific to each
    out = tmp_path / "screen.json"
    assert main(["screen", "--model", str(norman_model), "--target", "HBG2", "--direction", "up",
                 "--top", "5", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["targets"] == ["HBG2"] and len(data["candidates"]) == 5
    assert main(["screen", "--model", str(norman_model)]) == 1
    assert "give target genes" in capsys.readouterr().err


def test_screen_check_compares_with_baselines(norman_model):
    check = screen_check(Bundle.load(norman_model))
    assert {"grape", "train_mean", "linear"} <= set(check.index)
    # the same prediction for every condition cannot rank conditions
    assert check.loc["train_mean", "spearman"] == 0.0
    assert -1 <= check.loc["grape", "spearman"] <= 1 and check.loc["grape", "n_conditions"] >= 3


def test_large_model_samples_off_target_genes(constructed, monkeypatch):
    import importlib

    screen_module = importlib.import_module("grape_core.serving.singles")
    full = screen(constructed, ["DDIT4"], top=20).table
    monkeypatch.setattr(screen_module, "OFF_TARGET_GENES", 50)
    monkeypatch.setattr(screen_module, "EXACT_OFF_TARGET_MAX", 100)
    sampled = screen(constructed, ["DDIT4"], top=20).table
    # the targets' effects are exact; only the off-target cost is estimated on the sample
    assert sampled["perturbation"].tolist() == full["perturbation"].tolist()
    assert np.allclose(sampled["effect"], full["effect"], atol=1e-6)
    assert not np.allclose(sampled["off_target"], full["off_target"])


def test_stored_singles_are_the_models_own_predictions(norman_model):
    """A screen reads every single's shift from the bundle (computed once at training): it
    must be exactly what the members predict now."""
    from grape_core.data.conditions import format_condition

    model = Model(Bundle.load(norman_model))
    conditions, stored = model.singles.shifts(np.arange(len(model.measured)))
    assert conditions == [format_condition((g,)) for g in model.genes]
    fresh = model.member_shifts(conditions)
    np.testing.assert_allclose(stored, fresh, atol=1e-5)


def test_float16_singles_are_converted_from_the_float32_predictions(constructed):
    """Large models store singles as float16, converted a chunk at a time where they are
    predicted: the same values as converting the float32 predictions."""
    conditions = [f"{g}+ctrl" for g in constructed.genes]
    full = constructed.member_shifts(conditions, chunk=7)
    half = constructed.member_shifts(conditions, chunk=7, dtype=np.float16)
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, full.astype(np.float16))


@pytest.mark.parametrize("bad", [float("nan"), 1e5])
def test_non_finite_predictions_are_refused_not_stored(constructed, bad):
    """A damaged member (NaN weights) must not be stored or screened; nor may a value that
    float16 cannot hold (above 65,504) become infinite in the stored singles."""
    bundle = constructed.bundle
    effects = bundle.members[0].effects.clone()
    effects[3, 5] = bad
    damaged = replace(bundle, manifest=bundle.manifest.replace(name="damaged"),
                      members=[KnownEffects(effects, {})] + list(bundle.members[1:]))
    with pytest.raises(GrapeError, match="model 'damaged' predicts non-finite values"):
        Model(damaged).member_shifts([f"{g}+ctrl" for g in bundle.genes], dtype=np.float16)


def test_a_model_without_stored_singles_keeps_them_after_its_first_screen(constructed, monkeypatch):
    """Genome-scale models store no singles: where they fit in GRAPE_SCREEN_MEMORY_GB, the
    first screen (or prepare_screen, which the app runs to show the pass's progress)
    predicts every single once, as float16 like a stored bundle, and later screens are
    lookups."""
    from grape_core.serving.screen import prepare_screen

    computed, reports = [], []
    real = Model.member_shifts

    def counting(self, conditions, **kwargs):
        computed.append(kwargs.get("outputs"))
        return real(self, conditions, **kwargs)

    monkeypatch.setattr(Model, "member_shifts", counting)
    model = Model(replace(constructed.bundle, singles=None))
    prepare_screen(model, ["DDIT4"], on_progress=lambda done, total: reports.append(
        (done, total, model.singles.progress)))  # what another session waiting for it reads
    assert computed == [None] and model.singles.computed.dtype == np.float16
    assert all(shown == (done, total) for done, total, shown in reports)
    assert model.singles.progress is None
    assert reports[-1][:2] == (2, 2) == (len(model.bundle.members),) * 2  # a chunk per member
    np.testing.assert_array_equal(model.singles.computed,
                                  constructed.bundle.singles.astype(np.float16))
    first = screen(model, ["DDIT4"], top=20).table
    again = screen(model, ["SCYL1"], direction="down", top=5).table
    assert computed == [None] and not model.singles.columns  # no second pass
    expected = screen(constructed, ["DDIT4"], top=20).table
    assert first["perturbation"].tolist() == expected["perturbation"].tolist()
    np.testing.assert_allclose(first["effect"], expected["effect"], atol=2e-3)  # float16
    assert again["perturbation"].tolist() == \
        screen(constructed, ["SCYL1"], direction="down", top=5).table["perturbation"].tolist()
    prepare_screen(constructed, ["DDIT4"])  # a model that stores its singles: nothing to do
    assert computed == [None]


@pytest.mark.parametrize("value", ["lots", "-1", "nan"])
def test_a_bad_screen_memory_setting_is_one_error(constructed, monkeypatch, value):
    monkeypatch.setenv("GRAPE_SCREEN_MEMORY_GB", value)
    with pytest.raises(GrapeError, match=r"GRAPE_SCREEN_MEMORY_GB=.* is not a size in GB"):
        screen(Model(replace(constructed.bundle, singles=None)), ["DDIT4"])


def test_a_model_without_stored_singles_computes_each_column_once(constructed, monkeypatch):
    """Where a genome-scale model's singles do not fit in GRAPE_SCREEN_MEMORY_GB, a screen
    computes the columns it reads, the same values as the stored ones, and a second screen
    only those it has not seen."""
    monkeypatch.setenv("GRAPE_SCREEN_MEMORY_GB", "0")
    model = Model(replace(constructed.bundle, singles=None))
    computed = []
    real = Model.member_shifts

    def counting(self, conditions, *, outputs=None, **kwargs):
        computed.append(0 if outputs is None else len(outputs))
        return real(self, conditions, outputs=outputs, **kwargs)

    monkeypatch.setattr(Model, "member_shifts", counting)
    first = screen(model, ["DDIT4"], top=20).table
    assert computed and computed[0] == len(model.measured)
    expected = screen(constructed, ["DDIT4"], top=20).table
    assert first["perturbation"].tolist() == expected["perturbation"].tolist()
    np.testing.assert_allclose(first["effect"], expected["effect"], atol=1e-6)
    n_calls = len(computed)
    screen(model, ["SCYL1"], direction="down", top=5)
    assert len(computed) == n_calls  # every column was computed by the first screen


# ----------------------------------------------------------------------------- pairs vs pairs, agreement
def _shared_response_model(constructed, *, shared: float, lone: float | None = None,
                           flat: bool = False) -> Model:
    """The constructed model with a shared response: every perturbed gene shifts DDIT4 by
    ``shared`` (a pair gets it twice, as GRAPE's dose per gene does); ``lone``: SCYL1's
    effect in the second member only (the first has none); ``flat``: no single does more
    than the shared response (the HSPA9 + YIPF5 synergy stays)."""
    bundle = constructed.bundle
    target = bundle.measured.index("DDIT4")
    members = []
    for k, member in enumerate(bundle.members):
        effects = member.effects.clone()
        effects[:, target] += shared
        if flat:  # HSPA9 and YIPF5 barely above the others: the best singles, not hits
            for gene, extra in (("SCYL1", 0.0), ("GBF1", 0.0), ("HSPA9", 0.03), ("YIPF5", 0.03)):
                effects[bundle.node_index[gene], target] = shared + extra
        if lone is not None:
            effects[bundle.node_index["SCYL1"], target] = shared + (lone if k == 1 else 0.0)
        members.append(KnownEffects(effects, member.interaction))
    changed = replace(bundle, members=members)
    return Model(replace(changed, singles=stored_singles(changed)))


def test_pairs_are_scored_against_pairs(constructed):
    """With a shared response a pair gets twice, pairs are compared with a typical pair:
    a pair of two plain genes is not a hit, the synergy still is, and the ranking follows
    what is specific to each candidate."""
    model = _shared_response_model(constructed, shared=0.5)
    result = screen(model, ["DDIT4"], direction="up", pairs=True, pair_candidates=6, top=200)
    frame = result.table
    assert result.typical_effect == pytest.approx(0.5, abs=0.05)
    assert result.typical_pair_effect == pytest.approx(1.0, abs=0.05)
    singles, pairs = frame[frame["kind"] == "single"], frame[frame["kind"] == "pair"]
    assert np.allclose(singles["vs_typical"], singles["effect"] - result.typical_effect)
    assert np.allclose(pairs["vs_typical"], pairs["effect"] - result.typical_pair_effect)
    assert frame["vs_typical"].is_monotonic_decreasing
    top = frame.iloc[0]
    assert set(top["genes"].split(" + ")) == {"HSPA9", "YIPF5"}
    assert top["vs_typical"] == pytest.approx(2.6, abs=0.05)
    # SCYL1 with a plain gene: SCYL1's own 1.0 beyond a typical pair, not 1.5
    scyl1 = pairs[pairs["genes"].str.contains("SCYL1") & ~pairs["genes"].str.contains("HSPA9|YIPF5")]
    assert len(scyl1) and np.allclose(scyl1["vs_typical"], 1.0, atol=0.06)
    assert set(result.leaders["kind"]) == {"single", "pair"}
    assert result.to_dict()["typical_pair_effect"] == pytest.approx(result.typical_pair_effect)


def test_a_pair_screen_keeps_the_noise_warning_of_its_singles(constructed):
    from grape_core.serving.trust import ranking_is_noise

    model = _shared_response_model(constructed, shared=0.5, flat=True)
    result = screen(model, ["DDIT4"], direction="up", pairs=True, pair_candidates=6)
    noise = ranking_is_noise(result)
    assert result.table.iloc[0]["genes"] in ("HSPA9 + YIPF5", "YIPF5 + HSPA9")
    assert noise and noise.startswith("Among the single genes, no candidate stands out")
    assert "Among the pairs" not in noise  # the HSPA9 + YIPF5 synergy stands out
    assert ranking_is_noise(screen(model, ["DDIT4"], direction="up")).startswith("No candidate")


def test_a_hit_from_one_member_says_so(constructed):
    from grape_core.serving.trust import screen_trust

    model = _shared_response_model(constructed, shared=0.0, lone=1.0)
    result = screen(model, ["DDIT4"], direction="up")
    top = result.table.iloc[0]
    assert top["genes"] == "SCYL1" and top["members_agree"] == 1 and result.n_members == 2
    assert any("SCYL1 ranks above a typical perturbation in at most one of the 2" in n
               for n in result.notes)
    assert "in 1 of the 2 ensemble members: it rests on one member" in screen_trust(model, result).text
    agreed = screen(constructed, ["DDIT4"], direction="up").table.iloc[0]
    assert agreed["members_agree"] == 2


def test_members_agree_is_counted_per_member(constructed):
    result = screen(constructed, ["DDIT4", "HERPUD1"], direction="down", top=500)
    conditions, members = constructed.singles.shifts()
    pos = [constructed.bundle.measured.index(g) for g in ("DDIT4", "HERPUD1")]
    keep = [i for i, c in enumerate(conditions) if c.split("+")[0] not in ("DDIT4", "HERPUD1")]
    scores = -members[:, keep][:, :, pos].mean(-1)  # (n_members, n_candidates), signed "down"
    beats = (scores > np.median(scores, axis=1, keepdims=True)).sum(0)
    expected = dict(zip([conditions[i] for i in keep], beats))
    table = result.table.set_index("perturbation")
    assert all(table.loc[c, "members_agree"] == expected[c] for c in table.index)


def test_a_direction_nobody_moves_says_so(constructed):
    model = _shared_response_model(constructed, shared=0.5, flat=True)  # GBF1 lowers nothing
    result = screen(model, ["DDIT4"], direction="down")
    assert (result.table["effect"] < 0).all()
    assert any(n.startswith("No perturbation is predicted to lower DDIT4: every candidate raises it")
               for n in result.notes)
    assert not any(n.startswith("No perturbation") for n in screen(model, ["DDIT4"]).notes)


def _with_an_unmeasured_node(model):
    """The adamson model with its last measured gene made unmeasured (a graph node that is
    not an output), in memory: a model of the kind where every measured gene can be a target
    and perturbations are left to rank (a real one, norman, takes a minute to screen)."""
    import dataclasses

    from grape_core.data.pseudobulk import PseudoBulk
    from grape_core.serving.model import Model

    b = model.bundle
    pb = b.pseudobulk
    n = len(pb.genes) - 1
    fewer = PseudoBulk(genes=pb.genes[:n], conditions=pb.conditions, means=pb.means[:, :n],
                       control_mean=pb.control_mean[:n], n_cells=pb.n_cells,
                       n_control=pb.n_control, de_idx=np.minimum(pb.de_idx, n - 1))
    graph = dataclasses.replace(b.graph, measured=b.graph.measured[:n])
    return Model(b.replace(graph=graph, pseudobulk=fewer, singles=b.singles[:, :, :n]))


def test_every_measured_gene_as_target(capsys, monkeypatch):
    import importlib
    import warnings as w

    from grape_core import load, screen

    model = _with_an_unmeasured_node(load(ROOT / "assets" / "models" / "adamson"))
    with w.catch_warnings():
        w.simplefilter("error", RuntimeWarning)  # no "Mean of empty slice"
        result = screen(model, list(model.measured))
    assert len(result.table) == 1 and np.isfinite(result.table["off_target"]).all()
    assert any("no other gene is left to measure the off-target cost" in n for n in result.notes)
    monkeypatch.setattr(importlib.import_module("grape_core.serving.model"), "load",
                        lambda path, unverified=False, device="cpu": model)
    assert main(["screen", "--model", "in-memory", "--target", ",".join(model.measured)]) == 0
    captured = capsys.readouterr()
    assert "warning: every measured gene is a target" in captured.err
    assert "nan" not in captured.out.lower() and len(captured.out.splitlines()[0]) < 300
    monkeypatch.undo()
    adamson = ROOT / "assets" / "models" / "adamson"  # every node measured: nothing to rank
    line = one_error(capsys, ["screen", "--model", str(adamson), "--target",
                              ",".join(read_manifest(adamson)["genes"]["nodes"])])
    assert "no perturbation is left to rank" in line
