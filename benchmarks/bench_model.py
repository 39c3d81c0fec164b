"""GRAPE training, prediction and screening at full scale, on GENERATED data.

Generated screens (:func:`grape_core.simulation.generated_screen`: random gene knowledge of the
real widths, a random prior with 20 in-edges per gene, of which the model keeps its 15
strongest, low-rank shifts plus noise) shaped like the GEARS files:

- ``adamson``: 86 singles x 5,060 measured genes;
- ``norman``: 105 singles + 131 pairs x 5,045 measured genes;
- ``genome``: 2,000 singles + 300 pairs x 20,000 genes, a quarter of them non-coding.

Only timings and memory mean anything here; quality is measured by
``benchmarks/bench_planted.py`` (planted truth) and ``python -m grape_core evaluate`` (real
slices). Measured, through the same code the command line runs (``train_bundle``):

- ``train_s``: the ensemble (default TrainConfig: 3 members, early stopping on a carved
  validation set when the split has none), plus storing every single's prediction and the
  held-out evaluation; ``ensemble_s``: the ensemble's training alone, ``singles_s``
  and ``evaluation_s`` the other two;
- ``load_s``: loading the saved model folder (every checksum and tensor checked);
- ``predict_ms_median``: one warm prediction (one condition, the whole ensemble);
- ``screen_all_singles_cold_s``: the first screen of every single on the freshly loaded model
  (a lookup in the stored predictions; genome-scale models store none and compute them);
  ``screen_all_singles_next_s``: a second screen, of another target;
- ``peak_rss_gb`` of the process, and the device.

Goals on a 2-core CPU: Adamson < 60 s, Norman < 120 s, prediction < 50 ms, screen < 2 s,
< 2 GB. On an H100: Norman < 5 s.

    python benchmarks/bench_model.py                        # adamson and norman, CPU
    python benchmarks/bench_model.py --size genome --ensemble 1 --max-steps 100
    python benchmarks/bench_model.py --device cuda --size norman genome
    python benchmarks/bench_model.py --device cuda --size norman --eager   # no CUDA graphs
    python benchmarks/bench_model.py --device cuda --size norman --one-by-one --warm-up

``warmed_up``: false for the first size of a run without ``--warm-up``, which also pays the
device libraries' one-time start-up.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA_LABEL = "generated data (random gene knowledge and prior, low-rank shifts)"
SIZES = {"adamson": {"genes": 5060, "singles": 86, "pairs": 0},
         "norman": {"genes": 5045, "singles": 105, "pairs": 131},
         "genome": {"genes": 20000, "singles": 2000, "pairs": 300}}
GOALS = {"adamson": 60.0, "norman": 120.0, "genome": None}
GPU_GOALS = {"norman": 5.0}
"""On an H100."""


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run(size: str, *, device: str, ensemble: int, threads: int, max_steps: int | None,
        screen_too: bool = True, cuda_graphs: bool = True, side_by_side: bool = True) -> dict:
    import scipy.stats  # noqa: F401 (imported by the evaluation: a one-time cost, not training's)
    import torch

    from grape_core.config import TrainConfig
    from grape_core.devices import resolve_device
    from grape_core.serving.model import load
    from grape_core.serving.predict import predict_conditions
    from grape_core.serving.screen import screen
    from grape_core.simulation import generated_screen
    from grape_core.training.recipe import train_bundle
    from grape_core.training.step import graphs_available

    torch.set_num_threads(threads)
    target = resolve_device(device)
    spec = SIZES[size]
    t0 = time.perf_counter()
    gen = generated_screen(spec["genes"], spec["singles"], spec["pairs"])
    setup = time.perf_counter() - t0
    config = TrainConfig(ensemble=ensemble, threads=threads, device=str(target),
                         cuda_graphs=cuda_graphs, side_by_side=side_by_side,
                         **({"max_steps": max_steps} if max_steps else {}))
    if target.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    bundle = train_bundle(gen.adata, gen.split, knowledge=gen.knowledge, pb=gen.pseudobulk,
                          train_config=config, progress=False, name=f"generated-{size}")
    train_s = time.perf_counter() - t0
    gpu_peak = torch.cuda.max_memory_allocated() / 1024**3 if target.type == "cuda" else None
    members = bundle.manifest.training.members
    folder = Path(tempfile.mkdtemp(prefix="grape-bench-"))
    try:
        saved = bundle.save(folder / "model")
        size_mb = sum(f.stat().st_size for f in saved.iterdir()) / 1024**2
        t0 = time.perf_counter()
        model = load(saved, device=str(target))
        load_s = time.perf_counter() - t0
        cond = next(c for c in gen.split.test if c in gen.pseudobulk)
        predict_conditions(model, [cond])  # warm-up (copies to the device, caches the graph)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            predict_conditions(model, [cond])
            times.append(time.perf_counter() - t)
        screen_cold = screen_next = None
        if screen_too:
            t0 = time.perf_counter()
            screen(model, [gen.pseudobulk.genes[0]])
            screen_cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            screen(model, [gen.pseudobulk.genes[1]], direction="down")
            screen_next = time.perf_counter() - t0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "size": size, "data": DATA_LABEL, "genes": spec["genes"],
        "noncoding_fraction": round(float(1 - gen.knowledge.table["is_coding"].mean()), 3),
        "conditions": len(gen.pseudobulk.conditions), "singles": spec["singles"],
        "pairs": spec["pairs"], "nodes": bundle.graph.n_nodes,
        "prior_edges_used": int(bundle.graph.prior_index.shape[1]),
        "train_conditions": len(bundle.manifest.training.train_conditions),
        "ensemble": ensemble, "steps": [m.refit_steps or m.steps for m in members],
        "best_steps": [m.best_step for m in members], "setup_s": round(setup, 2),
        "train_s": round(train_s, 1),
        "ensemble_s": round(bundle.manifest.training.seconds, 1),
        "singles_s": bundle.manifest.training.singles_seconds,
        "evaluation_s": bundle.manifest.training.evaluation_seconds,
        "train_goal_s": GPU_GOALS.get(size) if target.type == "cuda" else GOALS[size],
        "model_folder_mb": round(size_mb, 1), "singles_stored": bundle.singles is not None,
        "load_s": round(load_s, 2),
        "predict_ms_median": round(1000 * float(np.median(times)), 1),
        "screen_all_singles_cold_s": round(screen_cold, 2) if screen_cold is not None else None,
        "screen_all_singles_next_s": round(screen_next, 3) if screen_next is not None else None,
        "peak_rss_gb": round(peak_gb(), 2),
        "gpu_peak_gb": round(gpu_peak, 2) if gpu_peak is not None else None,
        "device": str(target), "device_name": device_name(target), "threads": threads,
        # as run: a failed capture turns both off for the rest of the process
        "cuda_graphs": graphs_available(target, config) if target.type == "cuda" else None,
        "side_by_side": (side_by_side and graphs_available(target, config)
                         if target.type == "cuda" else None),
    }


def warm_up(*, device: str, ensemble: int, threads: int, cuda_graphs: bool,
            side_by_side: bool) -> None:
    """Train a small generated screen the same way, untimed: the device libraries' one-time
    start-up (CUDA context, kernels loaded at their first use) is then not in a timed size."""
    import torch

    from grape_core.config import TrainConfig
    from grape_core.simulation import generated_screen
    from grape_core.training.recipe import train_bundle

    torch.set_num_threads(threads)
    gen = generated_screen(600, 30, 20)
    train_bundle(gen.adata, gen.split, knowledge=gen.knowledge, pb=gen.pseudobulk,
                 train_config=TrainConfig(ensemble=ensemble, threads=threads, device=device,
                                          cuda_graphs=cuda_graphs, side_by_side=side_by_side,
                                          max_steps=30),
                 progress=False, name="warm-up")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", nargs="+", choices=list(SIZES), default=["adamson", "norman"])
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda, mps")
    parser.add_argument("--ensemble", type=int, default=3)
    parser.add_argument("--max-steps", type=int, help="cap on optimisation steps per member")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-screen", action="store_true",
                        help="skip the screens (a genome-scale model's first one predicts every "
                        "single: half a minute per member on a 2-core CPU)")
    parser.add_argument("--eager", action="store_true",
                        help="on CUDA, launch every operation of a step (no CUDA graph replay)")
    parser.add_argument("--one-by-one", action="store_true",
                        help="on CUDA, train the members one after the other, not side by side")
    parser.add_argument("--warm-up", action="store_true",
                        help="first train a small screen, untimed, so that no timed size pays "
                             "the device libraries' one-time start-up (recorded as warmed_up)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "model.json"))
    args = parser.parse_args(argv)
    options = dict(device=args.device, ensemble=args.ensemble, threads=args.threads,
                   cuda_graphs=not args.eager, side_by_side=not args.one_by_one)
    if args.warm_up:
        warm_up(**options)
    rows = [{**run(s, max_steps=args.max_steps, screen_too=not args.no_screen, **options),
             "warmed_up": bool(args.warm_up or i)} for i, s in enumerate(args.size)]
    print(f"GRAPE at full scale on {DATA_LABEL}; {rows[0]['device_name']}")
    print(f"{'size':8} {'conds':>5} {'nodes':>6} {'edges':>7} {'steps':>16} {'train s':>8} "
          f"{'goal':>5} {'load s':>6} {'predict ms':>10} {'screen s':>8} {'folder MB':>9} "
          f"{'peak GB':>7}")
    for r in rows:
        goal = f"{r['train_goal_s']:5.0f}" if r["train_goal_s"] else "    -"
        print(f"{r['size']:8} {r['conditions']:5d} {r['nodes']:6d} {r['prior_edges_used']:7d} "
              f"{str(r['steps']):>16} {r['train_s']:8.1f} {goal} {r['load_s']:6.2f} "
              f"{r['predict_ms_median']:10.1f} {_number(r['screen_all_singles_cold_s']):>8} "
              f"{r['model_folder_mb']:9.1f} {r['peak_rss_gb']:7.2f}")
    from grape_core.io import write_json

    write_json(args.out, {"data": DATA_LABEL, "results": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
