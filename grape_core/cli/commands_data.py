"""The data commands: ``describe``, ``split``, ``benchmark``, ``genes``, ``simulate``."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import GrapeError
from ..simulation.config import FAMILY
from .common import _emit_json, _inputs, _numbers, _outputs, _progress, _read, _split_for


# ----------------------------------------------------------------------------------------
# handlers
# ----------------------------------------------------------------------------------------
def cmd_describe(args) -> int:
    from ..data.read import describe

    adata = _read(args, args.path)
    info = describe(adata)
    if args.json:
        _emit_json(info, None)
        return 0
    cpc = info["cells_per_condition"]
    lines = [
        f"file              {info['path']}",
        f"sha256            {info['sha256']}",
        f"cells             {info['cells']:,}",
        f"genes             {info['genes']:,}",
        f"control cells     {info['control_cells']:,}  (label {info['control_label']!r} in obs[{info['condition_key']!r}])",
        f"conditions        {info['conditions']}  ({info['singles']} singles, {info['pairs']} pairs)",
        f"perturbed genes   {info['perturbed_genes']}  ({len(info['perturbed_genes_not_measured'])} not measured)",
        f"cells/condition   min {cpc['min']}, median {cpc['median']:g}, max {cpc['max']}",
        f"cell types        {', '.join(info['cell_types'])}",
        f"gene names        var[{info['gene_name_key']!r}]",
        f"DE genes          {info['de_genes']}",
    ]
    if info["backed"]:
        lines.append("expression        read in chunks from the file (backed)")
    for w in info["warnings"]:
        lines.append(f"warning           {w}")
    print("\n".join(lines))
    if args.conditions:
        print("\ncondition\tcells")
        for cond, n in info["cells_by_condition"].items():
            print(f"{cond}\t{n}")
    return 0


def cmd_split(args) -> int:
    from ..config import SplitConfig
    from ..data.splits import make_split, read_conditions

    _outputs(args, "--out")
    conditions = read_conditions(args.conditions)
    split = make_split(conditions, SplitConfig(name=args.split, seed=args.seed,
                                               train_gene_set_size=args.train_gene_set_size))
    _emit_json(split.to_dict(), args.out)
    return 0


def cmd_benchmark(args) -> int:
    from ..data.pseudobulk import pseudobulk
    from ..evaluation.benchmark import benchmark

    import numpy as np

    from ..knowledge.build import data_priors
    from ..knowledge.graphs import resolve_priors
    from ..nn.inputs import named_edges

    _outputs(args, "--json")
    adata = _read(args)
    pb = pseudobulk(adata, progress=_progress(args))
    split = _split_for(args, pb.conditions)
    # the propagation baseline's prior: files or built-in priors that need no embeddings
    symbols, builtin = data_priors(adata)
    edges, sources = resolve_priors(args.prior or ["union"], builtin, symbols)
    is_coding = np.ones(len(symbols), dtype=bool)  # relations play no part in a baseline
    report = benchmark(pb, split, prior=named_edges(edges, symbols, is_coding), genes=symbols)
    print(f"{pb.dataset}: {len(report.test_conditions)} held-out conditions, split "
          f"{split.name} seed {split.seed}; propagation over "
          f"{' + '.join(str(p['name']) for p in sources)} ({len(edges):,} edges)")
    print(report.format())
    if args.json:
        _emit_json(report.to_dict(), args.json)
    return 0


def cmd_genes(args) -> int:
    from dataclasses import replace

    from ..config import FeatureConfig, GraphConfig, Paths
    from ..knowledge.build import knowledge_for_adata
    from ..knowledge.genes import format_coverage
    from ..knowledge.graphs import format_graph_stats

    from ..io import check_output_folder, is_empty_folder
    from ..knowledge.folder import KNOWLEDGE_FOLDER

    out = Path(args.out)
    if (out / "knowledge.json").exists() and not args.overwrite:
        raise GrapeError(f"{out} already holds gene knowledge; pass --overwrite or choose "
                         "another --out folder")
    # an empty folder made for it is used as it is
    check_output_folder(out, kind=KNOWLEDGE_FOLDER, inputs=_inputs(args),
                        overwrite=args.overwrite or is_empty_folder(out))
    _outputs(args, "--json", folder=("--out", args.out))
    paths = Paths.from_env()
    for field_name, value in (("gene_sources", args.gene_sources), ("text_model", args.text_model),
                              ("dna_model", args.dna_model)):
        if value is not None:
            paths = replace(paths, **{field_name: value})
    if args.kmer_max is not None and not 1 <= args.kmer_max <= 6:
        raise GrapeError(f"--kmer-max {args.kmer_max} is out of range; give 1 to 6")
    fc = FeatureConfig(seed=args.seed)
    changes = {"description": args.description, "n_go_terms": args.go_terms,
               "text_pooling": args.text_pooling, "sequence_source": args.sequences,
               "dna_pooling": args.dna_pooling, "pretrain_epochs": args.epochs,
               "kmer_sizes": tuple(range(1, args.kmer_max + 1)) if args.kmer_max else None}
    fc = fc.replace(**{k: v for k, v in changes.items() if v is not None})
    gc = GraphConfig()
    if args.priors:
        gc = gc.replace(priors=tuple(p.strip() for p in args.priors.split(",") if p.strip()))
    adata = _read(args)
    try:
        know = knowledge_for_adata(adata, feature_config=fc, graph_config=gc, paths=paths,
                                   progress=not args.quiet and sys.stderr.isatty(),
                                   cache=not args.no_cache, device=args.device)
    except ValueError as exc:
        raise GrapeError(str(exc)) from exc
    know.save(out, overwrite=args.overwrite)
    stats = know.stats
    print(f"{len(know.genes):,} genes ({len(know.measured):,} measured), text {know.text.shape[1]}-d, "
          f"DNA {know.dna.shape[1]}-d ({stats['models']['dna']}), fused {know.fused.shape[1]}-d")
    print(format_coverage(stats["coverage"]))
    print()
    print(format_graph_stats(stats["graphs"]))
    timings = stats.get("timings", {})
    if know.from_cache:
        print("\nread from the cache (run with --no-cache to rebuild)")
    elif timings:
        print("\ntimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"wrote {out}", file=sys.stderr)
    if args.json:
        _emit_json({"coverage": stats["coverage"], "graphs": stats["graphs"],
                    "timings": timings}, args.json)
    return 0


def cmd_simulate(args) -> int:
    import json

    from ..simulation import SimulationConfig, format_summary, simulate

    from ..io import check_output_folder, read_text_file
    from ..simulation import SCREEN_FOLDER

    out = Path(args.out)
    # checked before the work: only a previous screen (or an empty folder) is replaced
    check_output_folder(out, kind=SCREEN_FOLDER, overwrite=args.overwrite, what="--out",
                        inputs=_inputs(args))
    config = SimulationConfig()
    if args.kind:
        config = SimulationConfig(**FAMILY[args.kind])
    if args.config:
        fix = "give a JSON file of settings or a screen's simulation.json"
        text = read_text_file(args.config, what="--config", fix=fix)
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise GrapeError(f"cannot read --config {args.config} (not JSON: {reason}); "
                             f"{fix}") from exc
        data = data.get("config", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise GrapeError(f"--config {args.config} must hold a JSON object of settings")
        # the file's settings over the kind's (a --kind is not dropped by a --config)
        config = SimulationConfig.from_dict({**(FAMILY[args.kind] if args.kind else {}), **data})
    changes = {
        "seed": args.seed, "n_genes": args.genes, "noncoding_fraction": args.noncoding,
        "n_singles": args.singles, "n_pairs": args.pairs, "cells_per_condition": args.cells,
        "n_control_cells": args.control_cells, "propagation": args.propagation,
        "mode": args.mode, "prior_true_fraction": args.prior_true_fraction,
        "prior_false_edges": args.prior_false_edges, "regulator_fraction": args.regulators,
        "prior_signed": args.prior_signed, "prior_wrong_signs": args.prior_wrong_signs,
        "spectral_radius": args.spectral_radius, "go_bias": args.go_bias,
        "interaction_fraction": args.interaction_fraction, "cell_noise": args.noise,
        "network_noise": args.network_noise, "shared_std": args.shared_std,
        "saturation": args.saturation, "simulator": args.simulator,
        "hill_coefficient": args.hill_coefficient, "guides_per_gene": args.guides,
        "escape_fraction": args.escape, "cell_model": args.cell_model,
        "library_size": args.library_size, "dispersion": args.dispersion,
    }
    for flag, name, count, kind in (("--efficiency", "efficiency", 2, float),
                                    ("--targets", "targets", 2, int),
                                    ("--propensity", "relation_propensity", 4, float),
                                    ("--activating", "relation_activating", 4, float),
                                    ("--strength", "relation_strength", 4, float)):
        text = getattr(args, flag[2:])
        changes[name] = _numbers(text, flag, count, kind) if text is not None else None
    config = config.replace(**{k: v for k, v in changes.items() if v is not None})
    from ..io import ensure_space
    from ..simulation import check_memory

    check_memory(config)  # before any work: memory, then the disk for the folder
    ensure_space(out, config.disk_bytes(), what="the screen folder",
                 hint="free some space or choose another --out")
    screen = simulate(config, progress=_progress(args))
    screen.write(out, overwrite=args.overwrite)
    print(format_summary(screen))
    print(f"wrote {out}", file=sys.stderr)
    return 0
