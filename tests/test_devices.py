"""Devices: ``auto`` picks what is there, a missing device is one line, and on a GPU
(tests marked ``gpu``, skipped without one) training, prediction, screens and exactness
behave as on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ADAMSON, ADAMSON_SPLIT

from grape_core.cli import main
from grape_core.devices import resolve_device
from grape_core.errors import GrapeError

HAS_CUDA = torch.cuda.is_available()
gpu = pytest.mark.gpu


def test_auto_takes_what_the_machine_has():
    expected = "cuda" if HAS_CUDA else "cpu"
    if not HAS_CUDA and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.parametrize("name, message", [
    ("tpu", "unknown device 'tpu'"),
    ("cuda:x", "not available" if not HAS_CUDA else "numbered from 0"),
])
def test_a_bad_device_is_one_line(name, message):
    with pytest.raises(GrapeError, match=message) as info:
        resolve_device(name)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_train_on_cuda_without_cuda_is_one_error_line(tmp_path, capsys):
    code = main(["train", "--data", str(ADAMSON), "--split-file", str(ADAMSON_SPLIT),
                 "--out", str(tmp_path / "m"), "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("error: device 'cuda' is not available")
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_predict_on_cuda_without_cuda_is_one_error_line(adamson_model, capsys):
    code = main(["predict", "--model", str(adamson_model), "--perturbation", "HSPA5",
                 "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "device 'cuda' is not available" in err[0]


def test_a_generated_timing_screen_trains_and_evaluates_end_to_end():
    """What the speed benchmarks and the GPU checks run, on the CPU at a small size: a
    generated screen (no cells) trains, evaluates against every baseline, without the
    replicate row that only cells can give, and saves."""
    from grape_core.config import TrainConfig
    from grape_core.simulation import generated_screen
    from grape_core.training.recipe import train_bundle

    gen = generated_screen(200, 24, 8, seed=3)
    bundle = train_bundle(gen.adata, gen.split, knowledge=gen.knowledge, pb=gen.pseudobulk,
                          train_config=TrainConfig(ensemble=1, max_steps=10, threads=1,
                                                   calibration_folds=2),
                          progress=False, name="generated")
    test = bundle.manifest.metrics.test
    assert {"grape", "train_mean", "propagation"} <= set(test) and "replicate" not in test


# ----------------------------------------------------------------------------- on a GPU
@gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU on this machine")
def test_gpu_training_prediction_screen_and_exactness(tmp_path):
    """A generated 600-gene screen with pairs (no file reading: runs wherever torch does)."""
    import grape_core as gc
    from grape_core.config import TrainConfig
    from grape_core.nn.inputs import perturbation_tensor, predict_shifts
    from grape_core.simulation import generated_screen
    from grape_core.training.recipe import train_bundle

    gen = generated_screen(600, 60, 20, seed=3)
    bundle = train_bundle(gen.adata, gen.split, knowledge=gen.knowledge, pb=gen.pseudobulk,
                          train_config=TrainConfig(ensemble=2, max_steps=150, device="cuda"),
                          progress=False, name="gpu")
    folder = bundle.save(tmp_path / "gpu")
    on_gpu = gc.load(folder, device="cuda")
    on_cpu = gc.load(folder, device="cpu")
    members, graph = on_gpu.members_and_graph()
    assert graph.device.type == "cuda" and next(members[0].parameters()).is_cuda
    test = [c for c in gen.split.test if c in gen.pseudobulk][:6]
    for condition in test:
        np.testing.assert_allclose(gc.predict(on_gpu, condition).shift,
                                   gc.predict(on_cpu, condition).shift, atol=1e-4)
    # the stored singles (computed on the GPU at training time) are what the CPU predicts
    conditions, stored = on_cpu.singles.shifts(np.arange(len(on_cpu.measured)))
    np.testing.assert_allclose(stored, on_cpu.member_shifts(conditions), atol=1e-4)
    target = on_cpu.measured[0]
    gpu_hits = gc.screen(on_gpu, [target], pairs=True).table
    cpu_hits = gc.screen(on_cpu, [target], pairs=True).table
    np.testing.assert_allclose(gpu_hits["effect"], cpu_hits["effect"], atol=1e-4)
    # exactness on the device: a prediction does not depend on the rest of its batch
    perts = perturbation_tensor(test, on_gpu.bundle.node_index)
    together = predict_shifts(members[0], graph, perts)
    alone = torch.cat([predict_shifts(members[0], graph, perts[i:i + 1]) for i in range(len(test))])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)


@gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU on this machine")
def test_replayed_training_steps_equal_eager_steps():
    """The CUDA graph of a training step does what the eager step does, also after the
    learned-only candidates change between replays."""
    import copy

    from grape_core.config import ArchitectureConfig, TrainConfig
    from grape_core.knowledge.graphs import resolve_priors
    from grape_core.nn.inputs import graph_inputs, perturbation_tensor, predict_shifts
    from grape_core.simulation import generated_screen
    from grape_core.training.step import TrainingStep, structure_l1_weight
    from grape_core.training.warm import new_member

    gen = generated_screen(600, 60, 20, seed=3)
    pb = gen.pseudobulk
    edges, _ = resolve_priors(["union"], gen.knowledge.priors, gen.knowledge.genes)
    cpu_graph, node_index, _ = graph_inputs(gen.knowledge, pb.genes, edges)
    train = [c for c in gen.split.train if c in pb and c != "ctrl"]
    assert any("+" in c and "ctrl" not in c for c in train)  # pairs are composed in the graph
    config = TrainConfig()
    graph = cpu_graph.to("cuda")
    perts = perturbation_tensor(train, node_index).cuda()
    targets = torch.as_tensor(pb.shifts[pb.rows(train)], dtype=torch.float32).cuda()
    replayed = new_member(pb, cpu_graph, node_index, train, model_config=ArchitectureConfig(),
                          encoder_args=gen.knowledge.encoder_args,
                          encoder_state=gen.knowledge.encoder_state, seed=1).cuda()
    with torch.no_grad():  # learned-only edges that matter, so that stale ones would show
        replayed.structure.beta.fill_(0.5)
    eager = copy.deepcopy(replayed)
    steps = []
    for model, graphed in ((replayed, True), (eager, False)):
        model.train()
        model.refresh_structure(graph)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, capturable=graphed)
        steps.append(TrainingStep(model, graph, opt, perts, targets, train_config=config,
                                  reg_weight=structure_l1_weight(config, len(train), 600),
                                  graphed=graphed))
    generator = torch.Generator().manual_seed(0)
    losses = []
    for step in range(1, 31):
        if step == 16:  # new candidates, written into the buffers the graph reads (read
            # stale, they change the loss by about 17 %)
            moved = torch.roll(replayed.structure.learned_sources, 1, 0)
            assert not torch.equal(moved, replayed.structure.learned_sources)
            for model in (replayed, eager):
                model.structure.learned_sources.copy_(moved)
                model.structure.learned_valid.fill_(True)
        rows = torch.randint(0, len(train), (8,), generator=generator)
        losses.append([float(s(rows)) for s in steps])
    assert steps[0].replaying and not steps[1].replaying
    losses = np.asarray(losses)
    np.testing.assert_allclose(losses[:, 0], losses[:, 1], rtol=1e-3)
    test = perturbation_tensor([c for c in gen.split.test if c in pb][:8], node_index)
    scale = float(targets.abs().mean())
    torch.testing.assert_close(predict_shifts(replayed, graph, test),
                               predict_shifts(eager, graph, test), rtol=0, atol=0.02 * scale)


@gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU on this machine")
def test_members_side_by_side_on_streams_equal_members_one_after_the_other():
    """Side by side, each member's replayed steps run on its own stream, at the same time as
    the others': the same training as one member after the other (up to the order of the
    GPU's floating-point sums)."""
    from grape_core.config import ArchitectureConfig, TrainConfig
    from grape_core.knowledge.graphs import resolve_priors
    from grape_core.nn.inputs import graph_inputs, perturbation_tensor, predict_shifts
    from grape_core.simulation import generated_screen
    from grape_core.training import step as train_step
    from grape_core.training.members import MemberTraining, train_members

    gen = generated_screen(600, 60, 20, seed=4)
    pb = gen.pseudobulk
    edges, _ = resolve_priors(["union"], gen.knowledge.priors, gen.knowledge.genes)
    graph, node_index, _ = graph_inputs(gen.knowledge, pb.genes, edges)
    conditions = [c for c in gen.split.train if c in pb and c != "ctrl"]
    train, val = conditions[:-8], conditions[-8:]
    config = TrainConfig(max_steps=60, eval_every=10, patience=100, device="cuda")
    streams = []

    def start(member, stream):
        streams.append(stream)
        return MemberTraining(pb, graph, node_index, train, val, model_config=ArchitectureConfig(),
                              train_config=config, seed=member, progress=False, member=member,
                              encoder_state=gen.knowledge.encoder_state,
                              encoder_args=gen.knowledge.encoder_args, stream=stream)

    apart = train_members(start, 3, side_by_side=False, device=torch.device("cuda"))
    together = train_members(start, 3, side_by_side=True, device=torch.device("cuda"))
    assert train_step._capture_failed is None  # both were replayed
    assert streams[:3] == [None] * 3 and len({id(s) for s in streams[3:]}) == 3
    test = perturbation_tensor([c for c in gen.split.test if c in pb][:8], node_index)
    scale = float(np.abs(pb.shifts).mean())
    for one, side in zip(apart, together):
        np.testing.assert_allclose([row["val_mse"] for row in side.history],
                                   [row["val_mse"] for row in one.history], rtol=1e-3)
        torch.testing.assert_close(predict_shifts(side.model, graph, test),
                                   predict_shifts(one.model, graph, test), rtol=0, atol=0.02 * scale)
