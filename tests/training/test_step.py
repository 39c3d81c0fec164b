"""The training step's fixed-shape form, which a GPU replays as a CUDA graph: the same
objective and gradients as the default form, and nothing in it waits on the device (checked
here on the CPU through the operations it runs; the replay itself is tested on a GPU in
``test_devices.py``). Members trained side by side, as on a GPU, are those trained one after
the other."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model, scramble
from torch.profiler import ProfilerActivity, profile

from grape_core.config import ArchitectureConfig, TrainConfig
from grape_core.nn import gsl
from grape_core.nn.inputs import perturbation_tensor
from grape_core.training.members import MemberTraining, train_members
from grape_core.training.step import batch_loss, structure_l1_weight

BATCH = ["HSPA5+SEC61A1", "HSPA5+ctrl", "GBF1+IARS2", "TARS+ctrl", "HSPA5+TARS"]
WAITS = {"aten::nonzero", "aten::nonzero_numpy", "aten::_local_scalar_dense", "aten::item",
         "aten::is_nonzero", "aten::unique_dim", "aten::_unique2", "aten::masked_select"}
"""Operations whose output shape or value the host must read back from the device."""


def _objective(model, graph, node_index, pb, *, fixed_shapes: bool):
    perts = perturbation_tensor(BATCH, node_index)
    rows = pb.rows([c if c in pb else "HSPA5+ctrl" for c in BATCH])
    target = torch.as_tensor(pb.shifts[rows], dtype=torch.float32)
    return batch_loss(model, graph, perts, target, train_config=TrainConfig(),
                      reg_weight=structure_l1_weight(TrainConfig(), 9, graph.measured.numel()),
                      fixed_shapes=fixed_shapes).total


@pytest.mark.parametrize("per_edge, changes", [
    (False, {}), (True, {}),  # True: the per-edge form a GPU runs
    (True, {"gene_correction": True, "global_path": True, "finetune_encoder": True}),
    (True, {"structure_learning": False}), (True, {"heterogeneous": False}),
    (True, {"nonlinear_messages": False}), (True, {"additive_pairs": False}),
])
def test_fixed_shape_form_gives_the_same_objective_and_gradients(adamson_graph, monkeypatch,
                                                                 per_edge, changes):
    _, pb, graph, node_index = adamson_graph
    if per_edge:
        monkeypatch.setattr(gsl, "sparse_products", lambda device: False)
    model = scramble(make_model(adamson_graph, **changes)).train()
    valid = model.structure.learned_valid
    if model.structure.learn:  # unused slots exist and must not count
        assert bool(valid.any()) and not bool(valid.all())
    params = [p for p in model.parameters() if p.requires_grad]
    results = []
    for fixed in (False, True):
        model.structure._layouts = None
        torch.manual_seed(0)  # the same dropout in a fine-tuned encoder
        total = _objective(model, graph, node_index, pb, fixed_shapes=fixed)
        results.append((total.detach(), torch.autograd.grad(total, params, allow_unused=True)))
    (default, default_grads), (fixed, fixed_grads) = results
    assert float(default) > 0
    torch.testing.assert_close(fixed, default, rtol=1e-5, atol=1e-7)
    compared = 0
    for d, f in zip(default_grads, fixed_grads):
        assert (d is None) == (f is None)
        if d is not None:
            torch.testing.assert_close(f, d, rtol=1e-4, atol=1e-6)
            compared += 1
    assert compared > 5


def _operations(model, graph, node_index, pb, *, fixed_shapes: bool) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _objective(model, graph, node_index, pb, fixed_shapes=fixed_shapes).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
    return {event.name for event in prof.events()}


def test_a_fixed_shape_step_never_waits_on_the_device(adamson_graph, monkeypatch):
    _, pb, graph, node_index = adamson_graph
    monkeypatch.setattr(gsl, "sparse_products", lambda device: False)
    model = scramble(make_model(adamson_graph)).train()
    # the default form selects edges and pairs by value: it does wait
    assert _operations(model, graph, node_index, pb, fixed_shapes=False) & WAITS
    fixed = _operations(model, graph, node_index, pb, fixed_shapes=True)
    assert not fixed & WAITS
    # nor does it index with autograd: on a GPU that backward adds the edges of each
    # relation one after the other (index_select's backward adds them in parallel)
    assert not any("IndexBackward" in name for name in fixed)


def test_members_side_by_side_are_the_members_trained_one_after_the_other(adamson_graph):
    """On a GPU the members train side by side (a step of each in turn, each on its own
    stream). No member's training may depend on the others': the same weights, histories
    and stopping steps as one after the other, here on the CPU, where both are exact."""
    import numpy as np
    import pandas as pd

    knowledge, pb, graph, node_index = adamson_graph
    conditions = [c for c in pb.conditions if c != "ctrl"]
    train, val = conditions[:-5], conditions[-5:]
    config = TrainConfig(max_steps=80, eval_every=5, patience=2, device="cpu")
    reports = []

    def start(member, stream):
        return MemberTraining(pb, graph, node_index, train, val, model_config=ArchitectureConfig(),
                              train_config=config, seed=member, progress=False, member=member,
                              encoder_state=knowledge.encoder_state,
                              encoder_args=knowledge.encoder_args, stream=stream,
                              on_step=lambda *report: reports.append(report))

    apart = train_members(start, 3, side_by_side=False)
    reports.clear()
    together = train_members(start, 3, side_by_side=True)
    assert len({fit.steps for fit in apart}) > 1  # they stop at different steps
    # progress: the members' checks in turn, and each member's last report says it is done
    assert [member for member, _, _ in reports[:3]] == [0, 1, 2]
    assert all([r for r in reports if r[0] == m][-1] == (m, 80, 80) for m in range(3))
    for one, side in zip(apart, together):
        assert (one.best_step, one.steps) == (side.best_step, side.steps)
        pd.testing.assert_frame_equal(pd.DataFrame(one.history), pd.DataFrame(side.history))
        state, state_t = one.model.state_dict(), side.model.state_dict()
        assert state.keys() == state_t.keys()
        for name in state:
            np.testing.assert_array_equal(state[name].numpy(), state_t[name].numpy(), err_msg=name)


def test_a_refit_keeps_no_history_and_trains_the_same_member(adamson_graph):
    """A refit (no validation, history not kept) reads nothing back from the device at its
    checks, and trains exactly the member a run that records its losses trains."""
    import numpy as np

    knowledge, pb, graph, node_index = adamson_graph
    train = [c for c in pb.conditions if c != "ctrl"]
    reports = []

    def refit(keep_history):
        run = MemberTraining(pb, graph, node_index, train, [], model_config=ArchitectureConfig(),
                             train_config=TrainConfig(max_steps=60, eval_every=10, device="cpu"),
                             seed=3, progress=False, encoder_state=knowledge.encoder_state,
                             encoder_args=knowledge.encoder_args, steps=25,
                             keep_history=keep_history,
                             on_step=lambda *report: reports.append(report))
        while not run.done:
            run.advance()
            assert keep_history or not run.losses
        return run.finish()

    kept, dropped = refit(True), refit(False)
    assert [row["step"] for row in kept.history] == [10, 20, 25] and dropped.history == []
    assert (kept.best_step, kept.steps) == (dropped.best_step, dropped.steps) == (25, 25)
    assert reports == [(0, 10, 25), (0, 20, 25), (0, 25, 25)] * 2  # progress all the same
    for name, value in kept.model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), dropped.model.state_dict()[name].numpy(),
                                      err_msg=name)


def test_a_failed_capture_turns_replay_and_side_by_side_off(monkeypatch):
    """After a capture failed, later members train eagerly, and so not side by side."""
    from grape_core.training import step as train_step

    cuda = torch.device("cuda")
    assert train_step.graphs_available(cuda, TrainConfig())
    assert not train_step.graphs_available(cuda, TrainConfig(cuda_graphs=False))
    assert not train_step.graphs_available(torch.device("cpu"), TrainConfig())
    monkeypatch.setattr(train_step, "_capture_failed", "operation not permitted when capturing")
    assert not train_step.graphs_available(cuda, TrainConfig())


@pytest.mark.parametrize("floored", [True, False])
def test_a_knock_down_screen_trains_without_blowing_up(adamson_graph, floored):
    """On the Adamson slice's training singles the knock-downs' own changes reach the floor at
    zero expression. Floored there in what they send (``floored_own_change``), training stays
    where it started. Without it (versions before 5) nothing in the loss holds an own change
    below the floor: the self-effect grows without limit and the loss blows up within 100
    steps, which is what the bundled model's training curve showed."""
    from conftest import ADAMSON_SPLIT

    from grape_core.data.splits import Split

    knowledge, pb, graph, node_index = adamson_graph
    split = Split.load(ADAMSON_SPLIT).restrict(pb.conditions)
    train = [c for c in split.train if c in pb and c != "ctrl"]
    config = TrainConfig(max_steps=100, eval_every=25, patience=10 ** 9, device="cpu", seed=1)
    fit = MemberTraining(pb, graph, node_index, train, [], train_config=config, seed=1,
                         model_config=ArchitectureConfig(floored_own_change=floored),
                         encoder_state=knowledge.encoder_state, progress=False,
                         encoder_args=knowledge.encoder_args).run()
    losses = [row["train_loss"] for row in fit.history]  # steps 25, 50, 75 and 100
    if floored:
        assert max(losses) < 2.0 * losses[0]
    else:
        assert max(losses) > 10.0 * losses[0]
