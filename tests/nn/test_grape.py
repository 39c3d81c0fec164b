"""The GRAPE module: batch independence and exactness on a trained model, the propagation
equation, the CPU's sparse products against the per-edge form, gradients into structure
learning, the regulariser, pairs, the self-effect head, determinism, and learning a planted
network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_model, scramble

from grape_core import pseudobulk
from grape_core.config import ArchitectureConfig, SplitConfig, TrainConfig
from grape_core.data.splits import make_split
from grape_core.nn import gsl
from grape_core.nn.grape import GRAPE, ModelSizes
from grape_core.nn.inputs import graph_inputs, perturbation_tensor, predict_shifts
from grape_core.training.plan import train_grape
from grape_core.training.warm import new_member


def test_prediction_does_not_depend_on_the_rest_of_the_batch(adamson_graph):
    _, pb, graph, node_index = adamson_graph
    model = scramble(make_model(adamson_graph))
    conds = ["HSPA5+ctrl", "TARS+ctrl", "HSPA5+TARS", "SEC61A1+ctrl", "GBF1+IARS2", "YIPF5+ctrl"]
    perts = perturbation_tensor(conds, node_index)
    together = predict_shifts(model, graph, perts)
    alone = torch.cat([predict_shifts(model, graph, perts[i:i + 1]) for i in range(len(conds))])
    reversed_ = predict_shifts(model, graph, perts.flip(0)).flip(0)
    in_pairs = predict_shifts(model, graph, perts, batch_size=2)
    assert together.abs().max() > 0.1  # the outputs really vary
    for other in (alone, reversed_, in_pairs):
        torch.testing.assert_close(together, other, rtol=0, atol=1e-5)


@pytest.mark.parametrize("outputs", [[0], [3, 7, 100, 159]])
def test_requested_outputs_equal_the_full_prediction(adamson_graph, outputs):
    _, _, graph, node_index = adamson_graph
    model = scramble(make_model(adamson_graph))
    perts = perturbation_tensor(["HSPA5+ctrl", "GBF1+IARS2"], node_index)
    full = predict_shifts(model, graph, perts)
    part = predict_shifts(model, graph, perts, outputs=torch.tensor(outputs))
    torch.testing.assert_close(part, full[:, outputs], rtol=0, atol=1e-6)


def test_linear_propagation_is_the_truncated_steady_state(adamson_graph):
    _, _, graph, node_index = adamson_graph
    model = scramble(make_model(adamson_graph, nonlinear_messages=False, gene_correction=False,
                                global_path=False, propagation_steps=3))
    with torch.no_grad():
        z, edges = model.graph(graph)
        n = graph.n_nodes
        w = torch.zeros(n, n)
        w.index_put_((edges.dst, edges.src), edges.weight, accumulate=True)
        perts = perturbation_tensor(["HSPA5+ctrl"], node_index)
        x0, source = model.own_and_source(perts, z, graph)
        torch.testing.assert_close(source, x0 * model.outflow)
        expected = source + w @ source + w @ w @ source + w @ w @ w @ source
        got = model.propagate(perts, z, edges, graph)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_a_perturbation_only_moves_genes_it_reaches_plus_the_shared_response(adamson_graph):
    _, _, graph, node_index = adamson_graph
    model = scramble(make_model(adamson_graph, global_path=False, propagation_steps=1))
    with torch.no_grad():
        z, edges = model.graph(graph)
        perts = perturbation_tensor(["HSPA5+ctrl"], node_index)
        delta = model.propagate(perts, z, edges, graph)[:, 0]
    hspa5 = node_index["HSPA5"]
    reached = set(edges.dst[edges.src == hspa5].tolist()) | {hspa5}
    moved = set(torch.nonzero(delta).flatten().tolist())
    assert moved <= reached and hspa5 in moved


def _losses(model, graph, node_index, pb):
    """The training objective's parts, weighted as in training."""
    from grape_core.nn.loss import grape_loss

    conds = ["HSPA5+ctrl", "SEC61A1+ctrl", "GBF1+ctrl"]
    perts = perturbation_tensor(conds, node_index)
    target = torch.as_tensor(pb.shifts[pb.rows(conds)], dtype=torch.float32)
    out = model(graph, perts)
    consistency = model.consistency_loss(graph, perts, target)
    reg_weight = TrainConfig().structure_l1 / (9 * graph.measured.numel())
    fit = grape_loss(out.shift, target, scale=model.scale, reg=out.reg, consistency=consistency,
                     gains=model.gain).fit
    return fit, consistency, reg_weight * out.reg


def test_the_prediction_loss_reaches_structure_learning_unless_detached(adamson_graph):
    _, pb, graph, node_index = adamson_graph
    for detach in (False, True):
        model = make_model(adamson_graph, detach_structure=detach)
        with torch.no_grad():
            model.structure.scale.fill_(0.5)  # the prior carries the signal
            model.structure.theta.normal_(0, 0.05)
        model.train()
        fit, _, reg = _losses(model, graph, node_index, pb)
        grad_fit = torch.autograd.grad(fit, model.structure.theta, allow_unused=True)[0]
        if detach:
            assert grad_fit is None or float(grad_fit.abs().max()) == 0.0
        else:
            grad_reg = torch.autograd.grad(reg, model.structure.theta)[0]
            # per edge, the task's gradient is not negligible next to the regulariser's (the
            # first model got 1e-4 of it: it learned nothing from the task)
            assert float(grad_fit.abs().max()) > 0.05 * float(grad_reg.abs().max())


@pytest.mark.parametrize("changes", [{}, {"heterogeneous": False},
                                     {"nonlinear_messages": False}])
def test_objective_gradients_and_predictions_equal_the_per_edge_form(adamson_graph, monkeypatch,
                                                                   changes):
    _, pb, graph, node_index = adamson_graph
    model = scramble(make_model(adamson_graph, **changes)).train()
    params = [p for p in model.parameters() if p.requires_grad]

    def objective():
        fit, consistency, reg = _losses(model, graph, node_index, pb)
        total = fit + consistency + reg
        return torch.stack([fit, consistency, reg]).detach(), torch.autograd.grad(
            total, params, allow_unused=True)

    def predictions():  # eval mode, no autograd: elsewhere, the per-type COO products
        shifts = predict_shifts(model, graph, perturbation_tensor(["HSPA5+ctrl", "GBF1+IARS2"],
                                                                  node_index))
        model.train()
        return shifts

    sparse_losses, sparse_grads = objective()
    sparse_predictions = predictions()
    assert model.structure._layouts is not None  # the CPU took the sparse form
    monkeypatch.setattr(gsl, "sparse_products", lambda device: False)
    model.structure._layouts = None
    edge_losses, edge_grads = objective()
    torch.testing.assert_close(predictions(), sparse_predictions, rtol=1e-5, atol=1e-6)
    assert float(sparse_losses[0]) > 0
    torch.testing.assert_close(sparse_losses, edge_losses, rtol=1e-5, atol=1e-7)
    n_compared = 0
    for s, e in zip(sparse_grads, edge_grads):
        if s is None or e is None:
            assert s is None and e is None
            continue
        torch.testing.assert_close(s, e, rtol=1e-4, atol=1e-6)
        n_compared += 1
    assert n_compared > 5


def test_consistency_loss_trains_the_edges(adamson_graph):
    _, pb, graph, node_index = adamson_graph
    model = make_model(adamson_graph)
    model.train()
    _, consistency, _ = _losses(model, graph, node_index, pb)
    grad = torch.autograd.grad(consistency, model.structure.theta)[0]
    assert float(grad.abs().max()) > 0


def test_regulariser_is_zero_at_the_prior_and_learned_only_edges_start_at_zero(adamson_graph):
    _, _, graph, _ = adamson_graph
    model = make_model(adamson_graph, gsl_top_k=3)
    model.eval()
    with torch.no_grad():
        _, edges = model.graph(graph)
    assert float(edges.change) == 0.0
    assert edges.src.numel() > edges.n_prior  # learned-only candidates exist ...
    assert float(edges.weight[edges.n_prior:].abs().max()) == 0.0  # ... and carry nothing yet
    with torch.no_grad():
        model.structure.theta[0] = 0.3
        model._cache = None
        assert float(model.graph(graph)[1].change) == pytest.approx(0.3)


def test_pair_is_composed_from_its_singles_own_parts_and_the_predicted_interaction(adamson_graph):
    _, pb, graph, node_index = adamson_graph
    model = scramble(make_model(adamson_graph))
    kappa_m, kappa_p, eta, kappa_b = model.pair_mix.detach().unbind()
    r = model.mean_shift
    perts = perturbation_tensor(["HSPA5+SEC61A1", "HSPA5+ctrl", "SEC61A1+ctrl"], node_index)
    with torch.no_grad():
        z, edges = model.graph(graph)
        outputs = torch.arange(graph.measured.numel())
        alpha, delta = model.parts(perts, z, edges, graph, outputs)
        shift = model(graph, perts).shift
    measured = torch.as_tensor(pb.shifts[pb.rows(["HSPA5+ctrl", "SEC61A1+ctrl"])], dtype=torch.float32)
    dose = model.dose_of(measured)
    own = measured - dose.unsqueeze(1) * r  # less the shared response held
    # no training pair: a pair holds its singles' doses of the shared response (additive)
    assert not bool(model.pair_fitted)
    expected = (dose.sum() * r + kappa_m * own.sum(0) + kappa_b * (delta[1] + delta[2])
                + eta * (delta[0] - delta[1] - delta[2]))
    torch.testing.assert_close(shift[0], torch.maximum(expected, -model.node_control[graph.measured]),
                               rtol=0, atol=1e-5)
    # a single is the model's own prediction, never looked up
    torch.testing.assert_close(shift[1], torch.maximum(alpha[1] * r + delta[1],
                                                       -model.node_control[graph.measured]),
                               rtol=0, atol=1e-6)
    # TARS was kept out of training: its single's own part and dose are predicted
    tars = perturbation_tensor(["HSPA5+TARS", "TARS+ctrl"], node_index)
    with torch.no_grad():
        pair = model(graph, tars).shift[0]
        alpha, delta = model.parts(torch.cat([tars, perts[1:2]]), z, edges, graph, outputs)
    expected = ((dose[0] + alpha[1]) * r + kappa_m * own[0] + kappa_b * delta[2]
                + kappa_p * delta[1] + eta * (delta[0] - delta[1] - delta[2]))
    torch.testing.assert_close(pair, torch.maximum(expected, -model.node_control[graph.measured]),
                               rtol=0, atol=1e-5)
    # hidden in training: the measured single is composed as if unseen
    hide = torch.tensor([[True, False]])
    with torch.no_grad():
        hidden = model(graph, perts[:1], hide=hide).shift[0]
        alpha, delta = model.parts(perts, z, edges, graph, outputs)
    expected = ((alpha[1] + dose[1]) * r + kappa_p * delta[1] + kappa_m * own[1]
                + kappa_b * delta[2] + eta * (delta[0] - delta[1] - delta[2]))
    torch.testing.assert_close(hidden, torch.maximum(expected, -model.node_control[graph.measured]),
                               rtol=0, atol=1e-5)


def test_shared_self_effect_head_covers_genes_never_perturbed(adamson_graph):
    _, _, graph, _ = adamson_graph
    shared = scramble(make_model(adamson_graph))
    table = scramble(make_model(adamson_graph, shared_head=False), std=0.0)
    with torch.no_grad():
        z, _ = shared.graph(graph)
        assert float(shared.self_effect(z, graph).abs().min()) > 0  # every gene gets one
        assert float(table.self_effect(z, graph).abs().max()) == 0.0  # a table starts empty


def test_paper_encoding_differs_between_training_and_inference(adamson_graph):
    _, _, graph, _ = adamson_graph
    model = scramble(make_model(adamson_graph, perturbation_encoding="paper"))
    z, _ = model.graph(graph)
    model.train()
    training = model.self_effect(z, graph)
    model.eval()
    inference = model.self_effect(z, graph)
    assert not torch.allclose(training, inference)


def test_model_sizes_fix_every_tensor_shape(adamson_graph):
    knowledge, _, graph, _ = adamson_graph
    sizes = ModelSizes(n_nodes=graph.n_nodes, n_measured=graph.measured.numel(),
                       n_prior_edges=int(graph.prior_index.size(1)), n_known=4)
    a = GRAPE(ArchitectureConfig(), sizes, encoder_args=knowledge.encoder_args)
    b = GRAPE(ArchitectureConfig(), sizes, encoder_args=knowledge.encoder_args)
    assert {k: v.shape for k, v in a.state_dict().items()} == \
        {k: v.shape for k, v in b.state_dict().items()}
    assert a.state_dict()["known_shift"].shape == (4, graph.measured.numel())


def test_training_is_seeded_and_counts_steps(adamson, adamson_graph):
    knowledge, pb, graph, node_index = adamson_graph
    split = make_split(list(pb.conditions), SplitConfig(name="grape", seed=1))
    config = TrainConfig(ensemble=1, max_steps=60, eval_every=20, threads=1)
    runs = [train_grape(pb, split, graph, node_index, train_config=config,
                        encoder_state=knowledge.encoder_state,
                        encoder_args=knowledge.encoder_args, progress=False) for _ in range(2)]
    perts = perturbation_tensor(list(split.test), node_index)
    a, b = (predict_shifts(r.members[0], graph, perts) for r in runs)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    record = runs[0].member_records[0]
    assert 0 <= record.best_step <= record.steps <= 60
    # the warm start (step 0) is the first candidate, then every eval_every steps
    assert [row["step"] for row in runs[0].history][:3] == [0, 20, 40]


@pytest.mark.slow
def test_learns_a_planted_network(tmp_path):
    """On a small simulated screen: beats train_mean, ranks true prior edges above false
    ones, and gets the perturbed gene's own shift right."""
    from grape_core.nn.inputs import learned_graph
    from grape_core.simulation import SimulationConfig, simulate
    from grape_core.training.recipe import train_bundle

    screen = simulate(SimulationConfig(seed=3, n_genes=120, n_singles=60, n_pairs=0,
                                       cells_per_condition=30, n_control_cells=200))
    screen.write(tmp_path / "sim")
    from grape_core import read_perturbseq

    adata = read_perturbseq(tmp_path / "sim" / "screen.h5ad")
    pb = pseudobulk(adata)
    split = make_split(list(pb.conditions), SplitConfig(name="simulation", seed=1))
    bundle = train_bundle(adata, split, train_config=TrainConfig(ensemble=1, threads=1, max_steps=600),
                          priors=[tmp_path / "sim" / "prior_informative.csv"], pb=pb, progress=False)
    test = bundle.manifest.metrics.test
    assert test["grape"]["pearson_delta"] > test["train_mean"]["pearson_delta"] + 0.05
    assert test["grape"]["mse"] < test["train_mean"]["mse"]
    from sklearn.metrics import average_precision_score

    edges = learned_graph(bundle.members, bundle.graph, keep_fraction=0.0)
    genes = np.asarray(bundle.genes, dtype=object)
    weight = {(a, b): abs(w) for a, b, w in zip(genes[edges["src"]], genes[edges["dst"]], edges["weight"])}
    prior = screen.priors["informative"]
    true = set(zip(screen.edges["source"], screen.edges["target"]))
    is_true = np.array([(a, b) in true for a, b in zip(prior["source"], prior["target"])])
    score = np.array([weight.get((a, b), 0.0) for a, b in zip(prior["source"], prior["target"])])
    assert average_precision_score(is_true, score) > is_true.mean() + 0.2


# ----------------------------------------------------------------------------------------
# what the data decide: the self-effect's sign, unknown own changes, the floor, pair mixing
# ----------------------------------------------------------------------------------------
def test_a_knock_down_screen_never_predicts_a_gene_raising_itself(adamson_graph):
    """Adamson is CRISPRi: the warm start reads a negative self-effect from the measured
    training knock-downs, and however the head moves (scrambled here) every gene keeps it."""
    _, _, graph, _ = adamson_graph
    model = make_model(adamson_graph)
    assert float(model.self_scale) < 0 and bool(model.self_known)
    scrambled = scramble(model, std=0.5)
    with torch.no_grad():
        z, _ = scrambled.graph(graph)
        assert float(scrambled.self_effect(z, graph).max()) < 0
    free = scramble(make_model(adamson_graph, signed_self_effect=False), std=0.5)
    with torch.no_grad():  # the unsigned head of versions before 3 could, once trained
        assert float(free.self_effect(free.graph(graph)[0], graph).max()) > 0


def test_an_own_change_the_data_cannot_tell_is_not_invented(adamson_graph):
    """With no training perturbation of a measured gene the warm start cannot size the
    self-effect: the perturbed gene's own value is then what the others give it, not +1."""
    knowledge, pb, graph, node_index = adamson_graph
    model = make_model(adamson_graph)
    perts = perturbation_tensor(["TARS+ctrl"], node_index)
    tars = pb.genes.index("TARS")
    with torch.no_grad():
        z, edges = model.graph(graph)
        _, source = model.own_and_source(perts, z, graph)
        state = model.propagation(source, edges)
        known = model(graph, perts).shift[0, tars]
        model.self_known.fill_(False)
        model._cache = None
        unknown = model(graph, perts).shift[0, tars]
    alpha = float(model.amplitude_of(perts, z).detach()[0, 0])
    expected = alpha * float(model.mean_shift[tars]) + float(state[graph.measured[tars], 0] - source[graph.measured[tars], 0])
    assert float(unknown) == pytest.approx(max(expected, -float(model.node_control[graph.measured[tars]])), abs=1e-5)
    assert float(known) < float(unknown)  # the known knock-down lowers it further


def test_the_warm_start_reads_no_self_effect_without_a_measured_perturbed_gene(norman):
    """Norman's training perturbations hit no measured gene: b is a unit, not a size."""
    from grape_core.knowledge.build import knowledge_for_adata
    from grape_core.training.warm import warm_start

    pb = pseudobulk(norman)
    knowledge = knowledge_for_adata(norman, progress=False)
    graph, node_index, _ = graph_inputs(knowledge, pb.genes, knowledge.priors["union"])
    train = [c for c in pb.conditions if c != "ctrl" and not set(c.split("+")) & set(pb.genes)]
    model = new_member(pb, graph, node_index, train, model_config=ArchitectureConfig(),
                       encoder_args=knowledge.encoder_args, encoder_state=knowledge.encoder_state,
                       seed=0)
    info = warm_start(model, graph, pb, train, node_index)
    assert info["self_known"] is False and info["self_effect"] == 1.0
    assert not bool(model.self_known)


def test_no_predicted_expression_below_zero(adamson_graph):
    _, pb, graph, node_index = adamson_graph
    model = scramble(make_model(adamson_graph), std=2.0)  # wild weights: big negative shifts
    perts = perturbation_tensor(list(pb.conditions[:6]), node_index)
    with torch.no_grad():
        shift = model(graph, perts).shift
    floor = -torch.as_tensor(pb.control_mean, dtype=torch.float32)
    assert bool((shift >= floor - 1e-6).all()) and bool((shift <= floor + 1e-6).any())


def test_warm_start_fits_how_pairs_combine():
    """Pairs whose singles were measured in training, built as one dose of the shared
    response plus 0.6 of their singles' own parts: the warm start finds 0.6 and the dose
    (the own parts stand for what saturation or noisy singles do), and a pair is then
    composed that way."""

    rng = np.random.default_rng(0)
    n = 40
    genes = tuple(f"G{i}" for i in range(n))
    shared = rng.normal(0, 0.3, n)
    own = {g: np.where(np.arange(n) == i, -1.0, 0.0) + rng.normal(0, 0.2, n) * (rng.random(n) < 0.2)
           for i, g in enumerate(genes[:12])}
    shifts = {f"{g}+ctrl": shared + o for g, o in own.items()}
    pairs = [(genes[i], genes[j]) for i in range(12) for j in range(i + 1, 12)][:30]
    for a, b in pairs:
        shifts[f"{a}+{b}"] = shared + 0.6 * (own[a] + own[b])
    pb, graph, node_index = _screen(shifts, n, rng=rng, edges=80, weight=1.0)
    conds = pb.conditions
    model = new_member(pb, graph, node_index, list(conds), model_config=ArchitectureConfig(),
                       encoder_args={"text_dim": 8, "dna_dim": 6}, encoder_state=None, seed=0)
    assert bool(model.pair_fitted)
    kappa_m = float(model.pair_mix.detach()[0])
    assert kappa_m == pytest.approx(0.6, abs=0.1)
    with torch.no_grad():
        dose = float(model.amplitude_of(perturbation_tensor(["G0+G1"], node_index), None)[0, 0])
    assert dose * float(model.mean_shift @ model.mean_shift) == pytest.approx(
        float(torch.as_tensor(shared, dtype=torch.float32) @ model.mean_shift), rel=0.15)


def _screen(shifts: dict[str, np.ndarray], n: int, *, rng: np.random.Generator, edges: int,
            weight: float):
    """A small screen of ``shifts`` over genes G0..G{n-1}, all measured, with a prior of
    ``edges`` random edges (``weight`` each): its pseudo-bulk, graph and node index."""
    from grape_core.data import PseudoBulk
    from grape_core.knowledge.graphs import edge_frame
    from grape_core.nn.grape import GraphInputs

    genes = tuple(f"G{i}" for i in range(n))
    conds = tuple(sorted(shifts))
    control = np.full(n, 2.0)
    pb = PseudoBulk(genes=genes, conditions=conds, means=control + np.stack([shifts[c] for c in conds]),
                    control_mean=control, n_cells=np.full(len(conds), 50), n_control=500,
                    de_idx=np.zeros((len(conds), 5), dtype=int), dataset="test")
    src, dst = rng.integers(0, n, edges), rng.integers(0, n, edges)
    keep = src != dst
    prior = edge_frame(src[keep], dst[keep], np.ones(int(keep.sum())), "test")
    graph = GraphInputs(text=torch.randn(n, 8), dna=torch.randn(n, 6),
                        dna_missing=torch.zeros(n, dtype=torch.bool),
                        is_coding=torch.ones(n, dtype=torch.bool),
                        prior_index=torch.as_tensor(np.stack([prior["src"], prior["dst"]]), dtype=torch.long),
                        prior_weight=torch.full((len(prior),), weight), measured=torch.arange(n))
    return pb, graph, {g: i for i, g in enumerate(genes)}


def _series_screen(graph, weight: torch.Tensor, *, b: float, outflow: float, s: float):
    """Every gene's knock-down made as the series the model runs over the prior ``weight``:
    ``b e + b outflow sum_{1 <= l <= 4} (s A)^l e``; its pseudo-bulk and the shifts."""
    n = graph.n_nodes
    adj = torch.zeros(n, n)
    adj.index_put_((graph.prior_index[1], graph.prior_index[0]), weight, accumulate=True)

    def truth(i: int) -> np.ndarray:
        e = torch.zeros(n)
        e[i] = 1.0
        passed, v = torch.zeros(n), e
        for _ in range(4):  # the model's propagation steps
            v = s * adj @ v
            passed += v
        return (b * e + b * outflow * passed).numpy()

    shifts = {f"G{i}+ctrl": truth(i) for i in range(n)}
    pb, _, _ = _screen(shifts, n, rng=np.random.default_rng(0), edges=0, weight=0.5)
    return pb, shifts


def _warm_start_error(pb, graph, node_index, shifts, held: str, config: ArchitectureConfig):
    """A member warm-started on every knock-down but ``held``, and its error there as a
    share of the held-out signal."""
    train = [c for c in pb.conditions if c != held]
    model = new_member(pb, graph, node_index, train, model_config=config,
                       encoder_args={"text_dim": 8, "dna_dim": 6}, encoder_state=None, seed=0)
    with torch.no_grad():
        got = model(graph, perturbation_tensor([held], node_index)).shift[0].numpy()
    return model, float(np.mean((got - shifts[held]) ** 2) / np.mean(shifts[held] ** 2))


def test_warm_start_sizes_a_genes_own_change_and_what_its_targets_feel_apart():
    """A knock-down that lowers its own transcript by 1 while its targets move by 3 times
    what a unit change would pass on (pi = 3): the warm start finds both, and predicts a
    held-out gene's knock-down exactly. Tied (versions before 4), the targets can only feel
    the own change itself, and the same held-out prediction misses."""
    b, outflow = -1.0, 3.0
    _, graph, node_index = _screen({"G0+ctrl": np.zeros(30)}, 30, rng=np.random.default_rng(0),
                                   edges=90, weight=0.5)
    pb, shifts = _series_screen(graph, graph.prior_weight, b=b, outflow=outflow, s=0.5)
    free, error = _warm_start_error(pb, graph, node_index, shifts, "G29+ctrl", ArchitectureConfig())
    assert float(free.self_scale) == pytest.approx(b, abs=1e-3)
    assert float(free.outflow.detach()) == pytest.approx(outflow, rel=1e-3)
    assert error < 1e-6
    tied, tied_error = _warm_start_error(pb, graph, node_index, shifts, "G29+ctrl",
                                         ArchitectureConfig(free_outflow=False))
    assert float(tied.outflow.detach()) == 1.0 and tied_error > 0.05


def test_a_signed_prior_gives_the_warm_start_its_signs():
    """A screen whose network has activations and repressions, and a prior that says which:
    the warm start fits the series the model runs over the signed prior exactly, and predicts
    a held-out knock-down exactly. The same prior without its signs misses it."""
    rng = np.random.default_rng(1)
    _, graph, node_index = _screen({"G0+ctrl": np.zeros(30)}, 30, rng=rng, edges=90, weight=0.5)
    signed = graph.prior_weight * torch.as_tensor(
        rng.choice([-1.0, 1.0], graph.prior_weight.numel()), dtype=torch.float32)
    pb, shifts = _series_screen(graph, signed, b=-1.0, outflow=2.0, s=0.5)
    errors = {}
    for name, weight in (("signed", signed), ("unsigned", signed.abs())):
        graph.prior_weight = weight
        errors[name] = _warm_start_error(pb, graph, node_index, shifts, "G29+ctrl",
                                         ArchitectureConfig())[1]
    assert errors["signed"] < 1e-6 and errors["unsigned"] > 0.05
