"""GRAPE training, prediction and screening at full scale, on SYNTHETIC (generated) data.

Two generated screens shaped like the GEARS files:

- Adamson size: 87 conditions (86 singles + ctrl) x 5,060 measured genes;
- Norman size: 236 conditions (105 singles + 131 pairs) x 5,045 measured genes;

each with a random gene graph of about 100k prior edges (20 in-edges per gene; the model
keeps its ``prior_max_in_degree`` strongest) and random text / DNA view features of the
real widths (384 and 342). Shifts are low-rank plus noise so that training has something
to learn. Only timings and memory mean anything here; quality on real data is measured by
``python -m grape_core evaluate`` (see the README).

Measured: ensemble training (default TrainConfig: 3 members, early stopping on a carved
validation set, at most ``--epochs`` epochs), peak RSS, one warm prediction (one condition,
the whole ensemble) and scoring every single perturbation for the screen (cold: the first
screen of a model, which computes every single's shift at the targets and the off-target
sample; new target: a later screen for a gene not computed yet; cached: nothing new). Goals on 2 cores: Adamson < 60 s, Norman < 3 min, prediction
< 100 ms, < 2 GB, screen < 2 s.

    python benchmarks/bench_model.py                # both sizes, writes results/model.json
    python benchmarks/bench_model.py --size adamson --epochs 20
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA_LABEL = "synthetic (generated) data"
SIZES = {"adamson": {"genes": 5060, "singles": 86, "pairs": 0},
         "norman": {"genes": 5045, "singles": 105, "pairs": 131}}
GOALS = {"adamson": 60.0, "norman": 180.0}


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def synthetic_screen(genes: int, singles: int, pairs: int, seed: int = 0):
    """PseudoBulk, gene graph and gene knowledge-like inputs of a generated screen."""
    import pandas as pd

    from grape_core.data.conditions import format_condition
    from grape_core.data import PseudoBulk

    rng = np.random.default_rng(seed)
    names = [f"G{i:05d}" for i in range(genes)]
    perturbed = rng.choice(genes, singles, replace=False)
    conds = [format_condition((names[g],)) for g in perturbed]
    all_pairs = list(combinations(perturbed.tolist(), 2))
    chosen = rng.choice(len(all_pairs), pairs, replace=False) if pairs else []
    conds += [format_condition((names[all_pairs[i][0]], names[all_pairs[i][1]])) for i in chosen]
    rank = 8
    gene_factors = rng.normal(0, 0.1, (genes, rank))
    pert_factors = {g: rng.normal(0, 1, rank) for g in perturbed.tolist()}
    shared = rng.normal(0, 0.05, genes)
    ctrl = rng.gamma(2.0, 0.5, genes).astype(np.float32)
    shifts = []
    for c in conds:
        idx = [names.index(x) for x in c.split("+") if x != "ctrl"]
        s = shared + sum(gene_factors @ pert_factors[i] for i in idx)
        shifts.append(s + rng.normal(0, 0.02, genes))
    shifts = np.asarray(shifts, dtype=np.float32)
    order = np.argsort(conds)
    conds = [conds[i] for i in order]
    shifts = shifts[order]
    pb = PseudoBulk(genes=tuple(names), conditions=tuple(conds), means=ctrl + shifts,
                    control_mean=ctrl, n_cells=np.full(len(conds), 500),
                    n_control=20000, de_idx=np.argsort(-np.abs(shifts), 1)[:, :20],
                    dataset=f"synthetic-{genes}")
    in_degree = 20
    src = rng.integers(0, genes, genes * in_degree)
    dst = np.repeat(np.arange(genes), in_degree)
    keep = src != dst
    edges = pd.DataFrame({"src": src[keep], "dst": dst[keep],
                          "weight": rng.random(keep.sum()).astype(np.float32)})
    coding = rng.random(genes) < 0.8
    table = pd.DataFrame({"symbol": names, "is_coding": coding,
                          "biotype": np.where(coding, "protein_coding", "lncRNA")}, index=names)
    text = rng.normal(size=(genes, 384)).astype(np.float32)
    dna = rng.random((genes, 342)).astype(np.float32)
    missing = rng.random(genes) < 0.3
    return pb, edges, table, text, dna, missing


def run(size: str, epochs: int, threads: int) -> dict:
    import torch

    from grape_core.config import ModelConfig, TrainConfig
    from grape_core.data.splits import simulation_split
    from grape_core.train import train_grape
    from grape_core.model.inputs import graph_inputs

    torch.set_num_threads(threads)
    spec = SIZES[size]
    t0 = time.perf_counter()
    pb, edges, table, text, dna, missing = synthetic_screen(spec["genes"], spec["singles"], spec["pairs"])

    class Knowledge:  # the fields graph_inputs reads
        genes = pb.genes
        priors = {"union": edges}

    Knowledge.table, Knowledge.text, Knowledge.dna, Knowledge.dna_missing = table, text, dna, missing
    graph, node_index, prior = graph_inputs(Knowledge, pb.genes)
    split = simulation_split(pb.conditions, seed=1)
    setup = time.perf_counter() - t0
    config = TrainConfig(max_epochs=epochs, threads=threads)
    t0 = time.perf_counter()
    result = train_grape(pb, split, graph, node_index, model_config=ModelConfig(),
                         train_config=config, progress=False)
    train_s = time.perf_counter() - t0
    epochs_run = [sum(1 for h in result.history if h["member"] == m) for m in range(config.ensemble)]

    from grape_core.bundle import Bundle, Manifest
    from grape_core.predict import Model, predict_conditions
    bundle = Model(Bundle(manifest=Manifest(name=size), members=result.members, graph=graph,
                          genes=pb.genes, table=table, pseudobulk=pb, split=split, prior_edges=edges,
                          learned_edges=edges, history=None, metrics=None, fused=np.zeros((1, 1))))
    cond = split.test[0]
    predict_conditions(bundle, [cond])  # warm-up
    times = []
    for _ in range(10):
        t = time.perf_counter()
        predict_conditions(bundle, [cond])
        times.append(time.perf_counter() - t)
    from grape_core.screen import screen, screened_genes
    t = time.perf_counter()
    screen(bundle, [pb.genes[0]])
    screen_cold = time.perf_counter() - t
    sampled = set(screened_genes(bundle.bundle, np.array([0])).tolist())
    new_target = next(g for g in range(len(pb.genes)) if g not in sampled)
    t = time.perf_counter()
    screen(bundle, [pb.genes[new_target]])
    screen_new_target = time.perf_counter() - t
    t = time.perf_counter()
    screen(bundle, [pb.genes[new_target]], direction="down")
    screen_cached = time.perf_counter() - t
    return {
        "size": size, "data": DATA_LABEL, "genes": spec["genes"],
        "conditions": len(pb.conditions), "singles": spec["singles"], "pairs": spec["pairs"],
        "nodes": graph.n_nodes, "prior_edges_generated": int(len(edges)),
        "prior_edges_used": int(graph.prior_index.shape[1]),
        "train_conditions": len(result.train_conditions), "ensemble": config.ensemble,
        "epochs_run": epochs_run, "setup_s": round(setup, 2), "train_s": round(train_s, 1),
        "train_goal_s": GOALS[size], "predict_ms_median": round(1000 * float(np.median(times)), 1),
        "screen_all_singles_cold_s": round(screen_cold, 2),
        "screen_all_singles_new_target_s": round(screen_new_target, 2),
        "screen_all_singles_cached_s": round(screen_cached, 3),
        "peak_rss_gb": round(peak_gb(), 2), "threads": threads,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=[*SIZES, "both"], default="both")
    parser.add_argument("--epochs", type=int, default=40, help="at most this many epochs per member")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "model.json"))
    args = parser.parse_args(argv)
    sizes = list(SIZES) if args.size == "both" else [args.size]
    rows = [run(s, args.epochs, args.threads) for s in sizes]
    print(f"GRAPE at full scale on {DATA_LABEL}, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}")
    print(f"{'size':8} {'conds':>5} {'nodes':>5} {'edges':>7} {'epochs':>12} {'train s':>8} "
          f"{'goal':>5} {'predict ms':>10} {'screen cold/new target/cached s':>31} {'peak GB':>7}")
    for r in rows:
        print(f"{r['size']:8} {r['conditions']:5d} {r['nodes']:5d} {r['prior_edges_used']:7d} "
              f"{str(r['epochs_run']):>12} {r['train_s']:8.1f} {r['train_goal_s']:5.0f} "
              f"{r['predict_ms_median']:10.1f} {r['screen_all_singles_cold_s']:13.2f}/{r['screen_all_singles_new_target_s']:.2f}/{r['screen_all_singles_cached_s']:<8.3f} "
              f"{r['peak_rss_gb']:7.2f}")
    from grape_core.io import write_json
    write_json(args.out, {"data": DATA_LABEL, "results": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
