"""Whole workflows made of the library's steps, with progress and a stop switch.

:func:`train_public` is what the app's "Get the full Adamson screen" runs, and what
``python -m grape_core train --data adamson --out <models>/adamson-full`` does by hand:

1. download through the dataset registry (:func:`grape_core.data.datasets.download`: resumes,
   checks the SHA-256; the only network access);
2. read and check the screen, GEARS simulation split (seed 1);
3. gene knowledge (text and DNA views, prior graphs; cached);
4. train the ensemble and evaluate it on the held-out perturbations;
5. save the model folder into the models folder.

Progress goes to a callback as :class:`Progress` (one overall fraction and a line for
people); a ``threading.Event`` stops the work at the next download block or validation
check of training (:class:`~grape_core.errors.Cancelled`). :func:`failure_kind` sorts any error into what the
user can do about it.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config import Paths, TrainConfig
from ..errors import Cancelled, DownloadError, GrapeError

log = logging.getLogger(__name__)

Stage = Literal["download", "read", "knowledge", "train", "save", "done"]
STAGE_SPAN: dict[str, tuple[float, float]] = {
    "download": (0.0, 0.25), "read": (0.25, 0.3), "knowledge": (0.3, 0.5),
    "train": (0.5, 0.95), "save": (0.95, 1.0), "done": (1.0, 1.0),
}
"""Share of the overall progress bar per stage (from the measured times of an Adamson-size
screen on a laptop CPU, download at about 10 MB/s)."""
FailureKind = Literal["cancelled", "network", "http", "disk", "checksum", "interrupted", "error"]


@dataclass(frozen=True)
class Progress:
    """Where a :func:`train_public` run is."""

    stage: Stage
    fraction: float
    """Overall, 0 to 1."""
    message: str
    """One line for people, e.g. ``Downloading adamson: 120 of 607 MB``."""


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f}" if n < 1e8 else f"{n / 1e6:,.0f}"


def public_model_name(dataset: str) -> str:
    """The folder name of the model trained on a whole registry dataset (``adamson-full``)."""
    return f"{dataset}-full"


def failure_kind(exc: BaseException) -> FailureKind:
    """What went wrong, as the app tells it: the user stopped it, no network, the server
    refused (HTTP error), a full disk, a bad download (checksum), an interrupted transfer,
    or anything else (``error``). Follows ``__cause__`` (a full disk wrapped in a
    :class:`GrapeError`)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, Cancelled):
            return "cancelled"
        if isinstance(seen, DownloadError) and seen.reason in ("network", "http", "disk",
                                                                 "checksum", "interrupted"):
            return seen.reason  # type: ignore[return-value]
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return "disk"
        seen = seen.__cause__
    return "error"


def train_public(
    dataset: str,
    *,
    models_dir: str | Path | None = None,
    model_name: str | None = None,
    train_config: TrainConfig | None = None,
    data_dir: str | Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
) -> Path:
    """Download a registry screen, train a GRAPE ensemble on all of it and save the model.

    Parameters
    ----------
    dataset
        A registry name (``adamson``, ``norman``; :func:`~grape_core.data.datasets.registry`).
    models_dir
        Where the model folder goes (default ``GRAPE_MODELS_DIR``).
    model_name
        Its folder name (default :func:`public_model_name`); an existing folder is refused.
    train_config
        Ensemble size, maximum steps... (default :class:`TrainConfig`).
    data_dir
        Download cache (default ``GRAPE_DATA_DIR``).
    on_progress
        Receives a :class:`Progress` at every download block, stage and validation check.
    stop
        Set it to stop at the next download block or validation check of training: the
        partial download is kept (the next run resumes it), nothing is saved.

    Returns
    -------
    Path
        The saved model folder (``models_dir / model_name``).

    Raises
    ------
    DownloadError
        No network, HTTP error, full disk, bad checksum... (``reason``; see
        :func:`failure_kind`).
    Cancelled
        ``stop`` was set.
    GrapeError
        The model folder exists, the data fail their checks, the disk is full when saving.

    Examples
    --------
    >>> from grape_core.training.public import train_public
    >>> folder = train_public("adamson", on_progress=print)  # doctest: +SKIP
    """
    from ..data.datasets import cache_hint, download, registry
    from ..data.pseudobulk import pseudobulk
    from ..data.read import read_perturbseq
    from ..knowledge.build import knowledge_for_adata
    from .recipe import default_split, save_model, train_bundle

    known = registry()
    if dataset not in known:
        raise DownloadError(f"unknown dataset {dataset!r}; known: {', '.join(known)}")
    paths = Paths.from_env()
    root = Path(models_dir if models_dir is not None else paths.models_dir).expanduser()
    name = model_name or public_model_name(dataset)
    folder = root / name
    if folder.exists():
        raise GrapeError(f"a model named {name!r} already exists in {root}; choose it in the "
                         "model list, or delete that folder to train it again")
    config = train_config or TrainConfig()

    def report(stage: Stage, within: float, message: str) -> None:
        if on_progress is not None:
            lo, hi = STAGE_SPAN[stage]
            on_progress(Progress(stage, lo + (hi - lo) * min(max(within, 0.0), 1.0), message))

    def check_stop(what: str) -> None:
        if stop is not None and stop.is_set():
            raise Cancelled(f"{what} cancelled; nothing was saved")

    def downloaded(received: int, total: int | None) -> None:
        shown = f"{_mb(received)} of {_mb(total)} MB" if total else f"{_mb(received)} MB"
        report("download", received / total if total else 0.0, f"Downloading {dataset}: {shown}")

    begin = time.perf_counter()
    report("download", 0.0, f"Connecting to the {dataset} download")
    path = download(dataset, data_dir=data_dir, progress=False, on_progress=downloaded, stop=stop)
    check_stop("the run")
    report("read", 0.0, f"Reading and checking the {dataset} screen")
    with cache_hint(dataset, path):  # a bad cached file: which one to delete
        adata = read_perturbseq(path)
    pb = pseudobulk(adata)
    split = default_split(pb, seed=config.seed)
    check_stop("the run")
    report("knowledge", 0.0, f"Building gene knowledge for {adata.n_vars:,} genes (text and DNA "
                             "views, prior graphs; cached for the next time)")
    knowledge = knowledge_for_adata(adata, paths=paths, progress=False)
    check_stop("the run")

    done = [0.0] * config.ensemble  # per member: on a GPU they train side by side

    def step_done(member: int, step: int, max_steps: int) -> None:
        if stop is not None and stop.is_set():
            raise Cancelled(f"training cancelled (model {member + 1} of {config.ensemble}, "
                            f"step {step}); nothing was saved")
        done[member] = step / max(max_steps, 1)
        if step == max_steps:
            report("train", sum(done) / config.ensemble,
                   f"Model {member + 1} of {config.ensemble} trained")
            return
        report("train", sum(done) / config.ensemble,
               f"Training model {member + 1} of {config.ensemble}: step {step} (at most "
               f"{max_steps}, stops early when the held-back perturbations stop improving)")

    report("train", 0.0, f"Training {config.ensemble} model(s) on {len(split.train)} perturbations")
    command = (f"python -m grape_core train --data {dataset} --split simulation --seed "
               f"{split.seed} --ensemble {config.ensemble} --max-steps {config.max_steps} "
               f"--out {name}")
    bundle = train_bundle(adata, split, train_config=config, knowledge=knowledge, paths=paths,
                          progress=False, name=name, command=command, pb=pb, on_step=step_done)
    check_stop("the run")
    report("save", 0.0, f"Saving model {name}")
    save_model(bundle, folder)
    seconds = time.perf_counter() - begin
    log.info("trained %s on the full %s screen in %.0f s", name, dataset, seconds)
    report("done", 1.0, f"Model {name} trained on the full {dataset} screen in {seconds / 60:.1f} min")
    return folder
