"""Planted-truth benchmark: does GRAPE use its graph, and does it win on dynamics it was not
built from?

GENERATED data (never results on biology): each screen comes from a known directed network
over real gene symbols (``python -m grape_core simulate --kind NAME``), one per setting of
the simulator family (:data:`grape_core.simulation.config.FAMILY`: linear, saturating,
bounded and Hill dynamics, UMI counts, several guides per gene, cells that escape the
perturbation, weak and rich priors, and harissa's bursting model, a simulator the project did
not write) and seed, plus the reference screen ``planted_seed0`` of the shared data folder
when it is there. For each screen, on the GEARS simulation split (seed 1), with the same
conditions for every model, in the same run:

- GRAPE (an ensemble) with the informative prior and, separately, with a random prior of
  the same size (what the graph's knowledge is worth);
- every baseline fitted on the same training conditions: ``train_mean``, ``linear``,
  ``additive`` and ``additive_mean`` (pairs), ``propagation`` over the same prior and
  ``embedding_ridge`` on GRAPE's own gene features;
- ``pearson_delta`` and ``mse`` overall and per held-out group (unseen singles, pairs with
  0, 1 or 2 seen singles), and the checks GRAPE must pass on each screen
  (:func:`grape_core.evaluation.planted.checks`);
- structure learning: AUPRC of the prior's true edges against its false ones, ranked by
  |learned weight| (chance = the prior's share of true edges);
- the perturbed gene's own shift: share of held-out singles with the right sign;
- the calibrated 90 % intervals: how often they held the held-out measured shifts;
- the in-silico screen: for target genes with planted direct regulators, how often a
  regulator is in the top 10 of the screen in the direction of its effect, against chance;
- with ``--ablations``, what each part buys (one member each, same seed and step budget) on
  the ``linear`` and ``bounded`` screens of the first seed.

    python benchmarks/bench_planted.py                        # the grid: 9 settings x seeds 0, 1
    python benchmarks/bench_planted.py --ablations            # ... and the ablations
    python benchmarks/bench_planted.py --settings linear bounded --seeds 0 --quick

Needs the gene sources (GRAPE_GENE_SOURCES) only for DNA sequences; prints a table and
writes JSON (``benchmarks/results/planted.json``, which the README and the app show).
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
                     "no_pair_mixing", "no_signed_self_effect", "tied_outflow", "paper_flags")


def auprc(truth: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(truth, score)) if truth.any() and (~truth).any() else float("nan")


def screens(settings: list[str], seeds: list[int], folder: Path, *,
            reference: bool = True) -> list[dict]:
    """The reference screen (when present) and one simulated screen per setting and seed."""
    from grape_core.simulation import SimulationConfig, simulate
    from grape_core.simulation.config import FAMILY

    out = []
    ref = SHARED / "planted_seed0"
    if reference and (ref / "planted_screen.h5ad").exists():
        out.append({"name": "planted_seed0 (reference)", "setting": "reference", "seed": 0,
                    "data": ref / "planted_screen.h5ad", "informative": ref / "planted_prior.csv",
                    "random": ref / "random_prior.csv", "truth": ref / "true_edges.csv",
                    "mode": "knockdown"})
    for setting in settings:
        for seed in seeds:
            path = folder / f"{setting}_{seed}"
            config = SimulationConfig(seed=seed, **FAMILY[setting])
            if not (path / "screen.h5ad").exists():
                simulate(config, progress=sys.stderr.isatty()).write(path, overwrite=True)
            out.append({"name": f"{setting} seed {seed}", "setting": setting, "seed": seed,
                        "data": path / "screen.h5ad", "informative": path / "prior_informative.csv",
                        "random": path / "prior_random.csv", "truth": path / "true_edges.csv",
                        "mode": config.mode})
    return out


def structure_auprc(bundle, prior_file: Path, truth_file: Path) -> float:
    """AUPRC of the prior's true edges against its false ones, by |learned weight|."""
    from grape_core.nn.inputs import learned_graph

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
    from grape_core.serving.model import Model
    from grape_core.serving.predict import predict_conditions

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
    from grape_core.serving.model import Model
    from grape_core.serving.screen import screen

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


def run_screen(spec: dict, *, ensemble: int, ablations: bool, random_prior: bool,
               progress: bool) -> dict:
    from grape_core.config import SplitConfig, TrainConfig
    from grape_core.data.pseudobulk import pseudobulk
    from grape_core.evaluation.calibration import COVERAGE_KEYS
    from grape_core.evaluation.planted import GROUPS
    from grape_core.data.read import read_perturbseq
    from grape_core.data.splits import make_split
    from grape_core.knowledge.build import knowledge_for_adata
    from grape_core.training.ablations import run_ablations
    from grape_core.training.recipe import train_bundle

    adata = read_perturbseq(spec["data"])
    pb = pseudobulk(adata)
    split = make_split(list(pb.conditions), SplitConfig(name="simulation", seed=1))
    knowledge = knowledge_for_adata(adata, progress=progress)
    out: dict = {"screen": spec["name"], "setting": spec["setting"], "seed": spec["seed"],
                 "conditions": len(pb.conditions), "genes": len(pb.genes),
                 "test": len([c for c in split.test if c in pb])}
    for prior in ("informative", "random") if random_prior else ("informative",):
        start = time.perf_counter()
        bundle = train_bundle(adata, split, train_config=TrainConfig(ensemble=ensemble),
                              knowledge=knowledge, priors=[spec[prior]], pb=pb,
                              progress=progress, name=f"{spec['name']} {prior}")
        metrics = bundle.manifest.metrics
        groups = {g: {m: {k: v[g][k] for k in ("pearson_delta", "mse", "n_conditions")}
                      for m, v in metrics.subgroups.items() if g in v}
                  for g in GROUPS[1:]}
        row = {"seconds": round(time.perf_counter() - start, 1),
               "models": {m: {k: v[k] for k in ("pearson_delta", "mse", "n_conditions")}
                          for m, v in metrics.test.items()},
               "groups": {g: v for g, v in groups.items() if v},
               "steps": [m.to_dict() for m in bundle.manifest.training.members],
               "auprc": structure_auprc(bundle, spec[prior], spec["truth"]),
               "auprc_chance": float(pd.read_csv(spec[prior]).merge(
                   pd.read_csv(spec["truth"])[["source", "target"]], on=["source", "target"]).shape[0]
                   / max(len(pd.read_csv(spec[prior])), 1))}
        if prior == "informative":
            calibration = bundle.manifest.calibration
            row["intervals"] = {k: bundle.manifest.uncertainty.get(k) for k in COVERAGE_KEYS}
            if calibration is not None:
                row["intervals"] |= {"method": calibration.method,
                                     "conditions": calibration.conditions}
            row["own_sign"] = own_sign(bundle)
            row["screen"] = screen_enrichment(bundle, spec["truth"], mode=spec["mode"])
            if ablations:
                table = run_ablations(bundle, adata, variants=ABLATION_VARIANTS, knowledge=knowledge,
                                      progress=progress, pb=pb, priors=[spec[prior]])
                out["ablations"] = table.reset_index(names="variant").to_dict(orient="records")
        out[prior] = row
    return out


def report(bench) -> str:
    """The printed tables: the grid (``pearson_delta`` and ``mse``, overall and on pairs),
    every screen's other figures, and every check GRAPE failed."""
    lines = [f"Planted-truth benchmark ({DATA_LABEL}); held-out conditions, GEARS simulation "
             f"split seed 1; GRAPE: an ensemble of {bench.ensemble}; mean over seeds", ""]
    for metric, group in (("pearson_delta", "all"), ("mse", "all"),
                          ("pearson_delta", "combo_seen1"), ("pearson_delta", "combo_seen2"),
                          ("mse", "combo_seen2"), ("pearson_delta", "unseen_single")):
        lines += [f"## {metric}, {group}", bench.grid(metric, group).to_string(
            float_format=lambda v: f"{v:.4f}" if metric == "mse" else f"{v:.3f}"), ""]
    lines += ["## per screen", bench.summary().to_string(float_format=lambda v: f"{v:.3f}"), ""]
    failed = bench.failures()
    lines.append(f"## checks GRAPE failed: {len(failed)} of {len(bench.checks())}")
    if len(failed):
        lines.append(failed.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    ablations = bench.ablations()
    if not ablations.empty:
        lines += ["", "## ablations (one member each), pearson_delta",
                  ablations.to_string(float_format=lambda v: f"{v:.3f}")]
    return "\n".join(lines)


def main(argv=None) -> int:
    from grape_core.simulation.config import FAMILY

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="*", default=list(FAMILY), choices=list(FAMILY))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--ensemble", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="one member, no random prior, no ablations")
    parser.add_argument("--ablations", action="store_true",
                        help="ablations on the linear and bounded screens of the first seed")
    parser.add_argument("--no-reference", action="store_true", help="skip planted_seed0")
    parser.add_argument("--work", help="folder for the simulated screens (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "planted.json"))
    args = parser.parse_args(argv)
    import torch
    from tqdm.auto import tqdm

    from grape_core.evaluation.planted import PlantedBenchmark

    torch.set_num_threads(args.threads)
    ensemble = 1 if args.quick else args.ensemble
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        specs = screens(args.settings, args.seeds, work, reference=not args.no_reference)
        results = []
        for spec in tqdm(specs, desc="screens", unit="screen", file=sys.stderr):
            ablate = (args.ablations and not args.quick and spec["seed"] == args.seeds[0]
                      and spec["setting"] in ("linear", "bounded"))
            results.append(run_screen(spec, ensemble=ensemble, ablations=ablate,
                                      random_prior=not args.quick, progress=False))
    bench = PlantedBenchmark(screens=tuple(results), ensemble=ensemble, data=DATA_LABEL)
    print(report(bench))
    payload = {"data": DATA_LABEL, "machine": {"platform": platform.platform(),
                                               "cpus": os.cpu_count(), "threads": args.threads},
               "ensemble": ensemble, "seeds": args.seeds, "settings": args.settings,
               "seconds": round(time.perf_counter() - start, 1), "screens": results,
               "checks_failed": len(bench.failures()), "checks": len(bench.checks())}
    from grape_core.io import write_json

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, payload)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
