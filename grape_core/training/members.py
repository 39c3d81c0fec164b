"""One ensemble member's training, a step at a time (:class:`MemberTraining`): the optimiser,
batches, validation checks, early stopping and the best checkpoint; members one after the
other or, on a GPU, side by side (:func:`train_members`)."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import ArchitectureConfig, TrainConfig
from ..data.pseudobulk import PseudoBulk
from ..devices import resolve_device
from ..evaluation.metrics import pearson
from ..nn.grape import GRAPE, GraphInputs
from ..nn.inputs import perturbation_tensor, predict_shifts
from .step import TrainingStep, graphs_available, structure_l1_weight
from .warm import new_member


@dataclass
class FittedMember:
    """One trained member (CPU, eval mode, its best checkpoint) and how it got there."""

    model: GRAPE
    history: list[dict[str, float]]
    """One row per validation check (see :attr:`TrainResult.history`)."""
    best_step: int
    """The step of the checkpoint kept (the last step when nothing was validated)."""
    steps: int
    """Steps run before stopping."""


class MemberTraining:
    """One ensemble member's training, advanced a step at a time (:meth:`advance`) until
    :attr:`done`, so that members can train one after the other or side by side
    (:func:`train_members`).

    At most ``steps`` (default ``max_steps``) optimisation steps of ``batch_size``
    conditions, with a check of the validation MSE every ``eval_every`` steps that keeps the
    best checkpoint (none when ``val`` is empty: the last one). The warm start itself is
    the first candidate: training must beat it.

    ``on_step(member, step, max_steps)`` is called at every check (progress for the app), and
    with ``step == max_steps`` when early stopping ends training sooner: ``step ==
    max_steps`` means the member is done. An exception it raises (e.g.
    :class:`~grape_core.errors.Cancelled`) stops training.

    ``stream``: a CUDA stream that all of this member's work is queued on (side by side).
    ``keep_history``: record the training loss at each check (off for a refit, whose history
    is not kept: a check without validation then never waits on the device).
    """

    def __init__(
        self, pb: PseudoBulk, graph: GraphInputs, node_index: dict[str, int], train: list[str],
        val: list[str], *, model_config: ArchitectureConfig, train_config: TrainConfig, seed: int,
        encoder_state: dict[str, torch.Tensor] | None, encoder_args: dict | None,
        progress: bool = True, member: int = 0, steps: int | None = None,
        on_step: Callable[[int, int, int], None] | None = None, stream=None,
        keep_history: bool = True,
    ):
        from tqdm.auto import tqdm

        tc = self.train_config = train_config
        self.member, self.on_step, self.stream = member, on_step, stream
        self.keep_history = keep_history
        self.val = val
        self.total = tc.max_steps if steps is None else steps
        device = resolve_device(tc.device)
        with self._queued():
            model = new_member(pb, graph, node_index, train, model_config=model_config,
                               encoder_args=encoder_args, encoder_state=encoder_state,
                               seed=seed).to(device)
            self.model, self.graph = model, graph.to(device)
            structure = [model.structure.theta, model.structure.scale, model.structure.beta]
            # the few scalars that combine the model's parts: no pull towards 0 (a pair's
            # predicted singles would fade away where no training pair holds one)
            mixing = [model.shared_amplitude]
            for used, parameter in ((model.config.pair_mixing, model.pair_mix),
                                    (model.config.free_outflow and bool(model.self_known),
                                     model.outflow)):
                if used:
                    mixing.append(parameter)
                else:
                    parameter.requires_grad_(False)
            ids = {id(p) for p in structure + mixing}
            graphed = graphs_available(device, tc)
            opt = torch.optim.Adam([
                {"params": structure, "lr": tc.structure_lr},
                {"params": mixing, "lr": tc.lr},
                {"params": [p for p in model.parameters()
                            if id(p) not in ids and p.requires_grad], "lr": tc.lr,
                 "weight_decay": tc.weight_decay},
            ], capturable=graphed)
            self.x_val = perturbation_tensor(val, node_index).to(device)
            self.y_val = pb.shifts_of(val) if val else None
            self.optimise = TrainingStep(
                model, self.graph, opt, perturbation_tensor(train, node_index).to(device),
                torch.as_tensor(pb.shifts_of(train), dtype=torch.float32, device=device),
                train_config=tc, reg_weight=structure_l1_weight(tc, len(train),
                                                                self.graph.measured.numel()),
                graphed=graphed)
            # every step's batch drawn at once (the same draws as one batch at a time) and
            # sent to the device once: a step then never waits on a copy from the host
            generator = torch.Generator().manual_seed(seed)
            self.batches = torch.randint(
                0, len(train), (self.total, min(tc.batch_size, len(train))),
                generator=generator).to(device)
            # which measured singles of a batch's pairs are composed as if unmeasured: the
            # pairs held out have one or two such singles, and training must show them
            self.hides = (torch.rand((self.total, self.batches.size(1), 2), generator=generator)
                          < tc.hide_singles).to(device)
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_score, self.best_step, self.stale = float("inf"), self.total, 0
        self.losses: list[torch.Tensor] = []
        self.step = 0
        self.done = self.total == 0
        self.bar = tqdm(total=self.total, desc=f"member {member + 1}", leave=False,
                        disable=not progress, file=sys.stderr, mininterval=0.5,
                        position=member if stream is not None else None)
        if val:
            with self._queued():
                model.eval()
                if model.structure.learn:
                    model.refresh_structure(self.graph)
                self._validate()

    def _queued(self):
        """Queue work on this member's stream (side by side), else where it is."""
        return torch.cuda.stream(self.stream) if self.stream is not None else nullcontext()

    def advance(self) -> None:
        """One optimisation step, and the validation check when one is due."""
        model, tc = self.model, self.train_config
        with self._queued():
            self.step += 1
            model.train()
            if model.structure.learn and (self.step - 1) % model.config.gsl_refresh == 0:
                model.refresh_structure(self.graph)
            loss = self.optimise(self.batches[self.step - 1], self.hides[self.step - 1])
            if self.keep_history:
                self.losses.append(loss)
            self.bar.update()
            checked = self.step % tc.eval_every == 0 or self.step == self.total
            if checked:
                self._validate()
                self.done = (self.step == self.total
                             or bool(self.val and self.stale >= tc.patience))
        if checked and self.on_step is not None:
            self.on_step(self.member, self.step, self.total)
            if self.done and self.step < self.total:  # stopped early: say it is done
                self.on_step(self.member, self.total, self.total)

    def _validate(self) -> None:
        """Record a validation check; keep the checkpoint when it is the best so far."""
        if not (self.val or self.keep_history):
            return
        row = {"member": self.member, "step": self.step,  # losses stay on the device until now
               "train_loss": float(np.mean(torch.stack(self.losses).cpu().tolist()))
               if self.losses else float("nan")}
        self.losses = []
        if self.val:
            pred = predict_shifts(self.model, self.graph, self.x_val).numpy()
            row["val_mse"] = float(np.mean((pred - self.y_val) ** 2))
            row["val_pearson_delta"] = float(np.mean([pearson(p, t)
                                                      for p, t in zip(pred, self.y_val)]))
            self.bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_mse=f"{row['val_mse']:.5f}")
            if row["val_mse"] < self.best_score - 1e-9:
                self.best_state = copy.deepcopy(self.model.state_dict())
                self.best_score, self.best_step, self.stale = row["val_mse"], self.step, 0
            else:
                self.stale += 1
        self.history.append(row)

    def finish(self) -> FittedMember:
        """The member with its best checkpoint."""
        self.bar.close()
        with self._queued():
            if self.best_state is not None:
                self.model.load_state_dict(self.best_state)
            else:
                self.best_step = self.step
            self.model.eval()
            model = self.model.cpu()
        return FittedMember(model, self.history, int(self.best_step), int(self.step))

    def run(self) -> FittedMember:
        """Every step, then :meth:`finish`."""
        while not self.done:
            self.advance()
        return self.finish()


def train_member(pb: PseudoBulk, graph: GraphInputs, node_index: dict[str, int], train: list[str],
                 val: list[str], **kwargs) -> FittedMember:
    """Train one ensemble member (arguments: :class:`MemberTraining`)."""
    return MemberTraining(pb, graph, node_index, train, val, **kwargs).run()


def train_members(start: Callable[[int, Any], MemberTraining], n: int, *,
                  side_by_side: bool = False, device: torch.device | None = None,
                  ) -> list[FittedMember]:
    """``n`` members, ``start(m, stream)`` beginning member ``m``
    (:class:`MemberTraining`), each finished (:meth:`MemberTraining.finish`).

    One after the other, or ``side_by_side``: a step of each member in turn, each on its
    own CUDA stream when ``device`` is a GPU, so that the GPU runs their steps at the same
    time. A member's work stays in order on its own stream and each member draws its
    batches from its own generator, so side by side trains the same members.
    """
    if not side_by_side:  # started one at a time: one member's state in memory
        return [start(m, None).run() for m in range(n)]
    runs = []
    for m in range(n):
        stream = None
        if device is not None and device.type == "cuda":
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))  # what the caller queued
        runs.append(start(m, stream))
    active = [run for run in runs if not run.done]
    while active:
        for run in active:
            run.advance()
        active = [run for run in active if not run.done]
    return [run.finish() for run in runs]
