"""Planted-truth benchmark: does GRAPE use its graph, on screens whose network is known?

GENERATED data (never results on biology): each screen comes from a known directed network
over real gene symbols (``python -m grape_core simulate``), plus the reference screen
``planted_seed0`` of the shared data folder when it is there. For each screen, on the GEARS
simulation split (seed 1), with the same conditions for every model:

- GRAPE (an ensemble) trained with the informative prior (half the true edges plus as many
  false ones) and, separately, with a random prior of the same size;
- the baselines fitted on the same training conditions: ``train_mean``, ``linear``,
  ``additive`` (pairs) and ``propagation`` over the same prior;
- structure learning: AUPRC of the prior's true edges against its false ones, ranked by
  |learned weight| (chance = the prior's share of true edges);
- the perturbed gene's own shift: share of held-out singles with the right sign;
- the calibrated 90 % intervals: how often they held the held-out measured shifts
  (:func:`grape_core.evaluation.calibration.interval_check`);
- the in-silico screen: for target genes with planted direct regulators, how often a
  regulator is in the top 10 of the screen in the direction of its effect, against chance
  (10 / number of candidates);
- ablations (one member each, same seed and step budget): what each part buys.

    python benchmarks/bench_planted.py                    # seeds 0 and 1 + planted_seed0
    python benchmarks/bench_planted.py --quick            # one member, no ablations
    python benchmarks/bench_planted.py --seeds 0 1 2 --out benchmarks/results/planted.json

Needs the gene sources (GRAPE_GENE_SOURCES) only for DNA sequences; prints a table and
writes JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA_LABEL = "generated planted-truth screens (not biology)"
SHARED = Path(os.environ.get("GRAPE_SHARED_DATA", ROOT.parent / "shared" / "data"))
ABLATION_VARIANTS = ("grape", "no_graph", "no_structure_learning", "no_interventional_consistency",
                     "homogeneous_graph", "linear_messages", "no_text_view", "no_dna_view",
                     "with_global_path", "no_shared_head", "with_gene_correction", "no_additive_pairs",
                     "paper_flags")


def auprc(truth: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(truth, score)) if truth.any() and (~truth).any() else float("nan")


def screens(seeds: list[int], folder: Path) -> list[dict]:
    """The reference screen (when present) and one simulated screen per seed."""
    from grape_core.simulate import SimulationConfig, simulate

    out = []
    ref = SHARED / "planted_seed0"
    if (ref / "planted_screen.h5ad").exists():
        out.append({"name": "planted_seed0 (reference)", "data": ref / "planted_screen.h5ad",
                    "informative": ref / "planted_prior.csv", "random": ref / "random_prior.csv",
                    "truth": ref / "true_edges.csv", "mode": "knockdown"})
    for seed in seeds:
        path = folder / f"sim{seed}"
        if not (path / "screen.h5ad").exists():
            simulate(SimulationConfig(seed=seed)).write(path, overwrite=True)
        out.append({"name": f"simulated seed {seed}", "data": path / "screen.h5ad",
                    "informative": path / "prior_informative.csv", "random": path / "prior_random.csv",
                    "truth": path / "true_edges.csv", "mode": "knockdown"})
    return out


def structure_auprc(bundle, prior_file: Path, truth_file: Path) -> float:
    """AUPRC of the prior's true edges against its false ones, by |learned weight|."""
    from grape_core.model.inputs import learned_graph

    edges = learned_graph(bundle.members, bundle.graph, keep_fraction=0.0)
    genes = np.asarray(bundle.genes, dtype=object)
    learned = {(a, b): abs(w) for a, b, w in zip(genes[edges["src"]], genes[edges["dst"]],
                                                  edges["weight"])}
    prior = pd.read_csv(prior_file)
    truth = pd.read_csv(truth_file)
    true = set(zip(truth["source"], truth["target"]))
    is_true = np.array([(a, b) in true for a, b in zip(prior["source"], prior["target"])])
    score = np.array([learned.get((a, b), 0.0) for a, b in zip(prior["source"], prior["target"])])
    return auprc(is_true, score)


def own_sign(bundle) -> float:
    """Share of held-out singles whose perturbed gene's predicted shift has the measured sign."""
    from grape_core.data.conditions import genes_of
    from grape_core.predict import Model, predict_conditions

    pb = bundle.pseudobulk
    model = Model(bundle)
    conds = [c for c in bundle.split.test if c in pb and len(genes_of(c)) == 1
             and genes_of(c)[0] in pb.genes]
    if not conds:
        return float("nan")
    mean, _ = predict_conditions(model, conds)
    col = [pb.genes.index(genes_of(c)[0]) for c in conds]
    pred = mean[np.arange(len(conds)), col] - pb.control_mean[col]
    true = pb.shifts_of(conds)[np.arange(len(conds)), col]
    return float(np.mean(np.sign(pred) == np.sign(true)))


def screen_enrichment(bundle, truth_file: Path, *, n_targets: int = 40, top: int = 10,
                      mode: str = "knockdown") -> dict[str, float]:
    """How often a planted direct regulator of a target is in the screen's top ``top`` (in the
    direction its perturbation moves the target), against chance."""
    from grape_core.predict import Model
    from grape_core.screen import screen

    model = Model(bundle)
    truth = pd.read_csv(truth_file)
    candidates = set(bundle.genes)
    truth = truth[truth["source"].isin(candidates) & truth["target"].isin(bundle.measured)]
    targets = sorted(truth["target"].unique())
    rng = np.random.default_rng(0)
    targets = list(rng.choice(targets, min(n_targets, len(targets)), replace=False))
    hits = total = 0
    sign = -1.0 if mode == "knockdown" else 1.0
    for target in targets:
        regs = truth[truth["target"] == target]
        for direction in ("up", "down"):
            want = regs[np.sign(regs["weight"] * sign) == (1 if direction == "up" else -1)]
            if not len(want):
                continue
            ranked = screen(model, [target], direction=direction, top=top).table
            found = {g for genes in ranked["perturbation"] for g in str(genes).split("+")}
            hits += int(want["source"].isin(found).sum())
            total += len(want)
    rate = hits / max(total, 1)
    chance = top / len(candidates)
    return {"targets": len(targets), "regulators": total, "hit_rate": rate, "chance": chance,
            "fold_over_chance": rate / chance}


def run_screen(spec: dict, *, ensemble: int, ablations: bool, progress: bool) -> dict:
    from grape_core.config import SplitConfig, TrainConfig
    from grape_core.data.pseudobulk import pseudobulk
    from grape_core.evaluation.calibration import COVERAGE_KEYS
    from grape_core.data.read import read_perturbseq
    from grape_core.data.splits import make_split
    from grape_core.knowledge.build import knowledge_for_adata
    from grape_core.train import run_ablations, train_bundle

    adata = read_perturbseq(spec["data"])
    pb = pseudobulk(adata)
    split = make_split(list(pb.conditions), SplitConfig(name="simulation", seed=1))
    knowledge = knowledge_for_adata(adata, progress=progress)
    out: dict = {"screen": spec["name"], "conditions": len(pb.conditions), "genes": len(pb.genes),
                 "test": len([c for c in split.test if c in pb])}
    for prior in ("informative", "random"):
        start = time.perf_counter()
        bundle = train_bundle(adata, split, train_config=TrainConfig(ensemble=ensemble),
                              knowledge=knowledge, priors=[spec[prior]], pb=pb,
                              progress=progress, name=f"{spec['name']} {prior}")
        metrics = bundle.manifest.metrics
        groups = next(iter(metrics.subgroups.values()), {})

        def by_group(metric: str) -> dict:
            return {g: {m: v.get(g, {}).get(metric) for m, v in metrics.subgroups.items()}
                    for g in groups}

        row = {"seconds": round(time.perf_counter() - start, 1),
               "models": {m: {k: v[k] for k in ("pearson_delta", "mse")}
                          for m, v in metrics.test.items()},
               "subgroups": by_group("pearson_delta"), "subgroups_mse": by_group("mse"),
               "steps": [m.to_dict() for m in bundle.manifest.training.members],
               "auprc": structure_auprc(bundle, spec[prior], spec["truth"]),
               "auprc_chance": float(pd.read_csv(spec[prior]).merge(
                   pd.read_csv(spec["truth"])[["source", "target"]], on=["source", "target"]).shape[0]
                   / max(len(pd.read_csv(spec[prior])), 1))}
        if prior == "informative":
            row["intervals"] = {k: bundle.manifest.uncertainty.get(k) for k in COVERAGE_KEYS}
            row["own_sign"] = own_sign(bundle)
            row["screen"] = screen_enrichment(bundle, spec["truth"], mode=spec["mode"])
            if ablations:
                table = run_ablations(bundle, adata, variants=ABLATION_VARIANTS, knowledge=knowledge,
                                      progress=progress, pb=pb, priors=[spec[prior]])
                row["ablations"] = table.reset_index(names="variant").to_dict(orient="records")
        out[prior] = row
    return out


def report(results: list[dict]) -> str:
    from grape_core.evaluation.calibration import COVERAGE_KEYS

    lines = [f"Planted-truth benchmark ({DATA_LABEL}); held-out conditions, GEARS simulation split seed 1",
             ""]
    for r in results:
        inf, rnd = r["informative"], r["random"]
        lines.append(f"## {r['screen']}: {r['genes']} genes, {r['conditions']} conditions, "
                     f"{r['test']} held out")
        lines.append(f"{'model':34s} {'pearson_delta':>13s} {'mse':>9s}")
        lines.append(f"{'GRAPE, informative prior':34s} {inf['models']['grape']['pearson_delta']:13.3f} "
                     f"{inf['models']['grape']['mse']:9.5f}")
        lines.append(f"{'GRAPE, random prior':34s} {rnd['models']['grape']['pearson_delta']:13.3f} "
                     f"{rnd['models']['grape']['mse']:9.5f}")
        for name, v in inf["models"].items():
            if name in ("grape", "control"):
                continue
            label = f"{name} (informative prior)" if name == "propagation" else name
            lines.append(f"{label:34s} {v['pearson_delta']:13.3f} {v['mse']:9.5f}")
        if "propagation" in rnd["models"]:
            v = rnd["models"]["propagation"]
            lines.append(f"{'propagation (random prior)':34s} {v['pearson_delta']:13.3f} {v['mse']:9.5f}")
        gap = inf["models"]["grape"]["pearson_delta"] - rnd["models"]["grape"]["pearson_delta"]
        lines.append(f"informative - random prior: {gap:+.3f} pearson_delta")
        lines.append(f"structure learning AUPRC: {inf['auprc']:.3f} (chance {inf['auprc_chance']:.2f})")
        lines.append(f"own-gene shift sign right: {inf['own_sign']:.0%} of held-out singles")
        if (inf.get("intervals") or {}).get("within_interval_top") is not None:
            shown, rest, de = (inf["intervals"][k] for k in COVERAGE_KEYS)
            lines.append(f"90 % intervals held: {shown:.0%} of the shown genes' shifts, {rest:.0%} "
                         f"of the other expressed genes', {de:.0%} of the DE genes'")
        s = inf["screen"]
        lines.append(f"screen: a planted regulator in the top 10 {s['hit_rate']:.1%} of the time "
                     f"(chance {s['chance']:.1%}, {s['fold_over_chance']:.1f}x; {s['regulators']} "
                     f"regulator-target pairs, {s['targets']} targets)")
        if "ablations" in inf:
            lines.append("ablations (one member): " + ", ".join(
                f"{a['variant']} {a['pearson_delta']:.3f}" for a in inf["ablations"]))
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--ensemble", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one member, no ablations")
    parser.add_argument("--no-reference", action="store_true", help="skip planted_seed0")
    parser.add_argument("--work", help="folder for the simulated screens (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "planted.json"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        specs = screens(args.seeds, work)
        if args.no_reference:
            specs = [s for s in specs if "reference" not in s["name"]]
        start = time.perf_counter()
        results = [run_screen(s, ensemble=1 if args.quick else args.ensemble,
                              ablations=not args.quick, progress=sys.stderr.isatty()) for s in specs]
    text = report(results)
    print(text)
    payload = {"data": DATA_LABEL, "machine": {"platform": platform.platform(),
                                               "cpus": os.cpu_count(), "threads": args.threads},
               "ensemble": 1 if args.quick else args.ensemble, "seconds": round(time.perf_counter() - start, 1),
               "results": results}
    from grape_core.io import write_json

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, payload)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
