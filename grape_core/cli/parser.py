"""The command line's parser: one subcommand per task, each a small handler
(:mod:`.commands_data`, :mod:`.commands_model`), shared options, usage errors in one line."""

from __future__ import annotations

import argparse

from ..simulation.config import FAMILY
from .commands_data import cmd_benchmark, cmd_describe, cmd_genes, cmd_simulate, cmd_split
from .commands_model import cmd_evaluate, cmd_network, cmd_predict, cmd_screen, cmd_train, cmd_why


# ----------------------------------------------------------------------------------------
# shared options
# ----------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``error: ...; see --help``), exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        from ..errors import echo

        if len(message) > 200:  # e.g. an argument that holds a huge paste
            message = echo(message, limit=200)
        self.exit(2, f"error: {message}; see '{self.prog} --help'\n")


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    from ..errors import echo

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number, 1 or more, not {echo(text)}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _add_device_option(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument("--device", default=default,
                   help="where tensors live: auto (a GPU when there is one), cpu, cuda, cuda:N "
                        f"or mps (default: {default})")


def _add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="model folder, or a model's name: adamson and norman ship with the "
                   "package (your models folder, GRAPE_MODELS_DIR, is looked in first)")
    p.add_argument("--unverified", action="store_true",
                   help="also load a model folder whose manifest has no checksums (every tensor "
                        "is still checked)")
    _add_device_option(p)


def _add_data_options(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--data", required=required, help="a .h5ad file or a known dataset (adamson, norman)")
    p.add_argument("--condition-key", help="obs column with the perturbation (default: auto)")
    p.add_argument("--control-label", help="label of control cells (default: auto)")
    p.add_argument("--gene-name-key", help="var column with gene symbols, or 'index' (default: auto)")
    p.add_argument("--subset", action="append", default=[], metavar="COLUMN=VALUE",
                   help="keep only matching cells, e.g. dataset=norman19 (repeatable)")
    _add_backed_option(p)


def _add_backed_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backed", action="store_true",
                   help="leave the expression matrix in the file and read it in chunks (a file "
                   "larger than memory); automatic when it would take more than "
                   "GRAPE_STREAM_ABOVE_GB GB in memory (default: a quarter of free memory)")


def _add_split_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="simulation", choices=["simulation", "grape"],
                   help="held-out design (default: simulation = GEARS)")
    p.add_argument("--split-file", help="use a saved split (our JSON or GEARS' train/val/test JSON)")
    p.add_argument("--train-gene-set-size", type=float, default=0.75)


# ----------------------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m grape_core",
        description="GRAPE: perturbation response prediction on Perturb-seq screens.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or info logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    p = sub.add_parser("describe", help="summarise a Perturb-seq .h5ad")
    p.add_argument("path", help="a .h5ad file or a known dataset name")
    p.add_argument("--condition-key")
    p.add_argument("--control-label")
    p.add_argument("--gene-name-key")
    p.add_argument("--subset", action="append", default=[], metavar="COLUMN=VALUE")
    p.add_argument("--conditions", action="store_true", help="also list cells per condition")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_backed_option(p)
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("split", help="print a seeded split of a list of conditions as JSON")
    p.add_argument("--conditions", required=True, help="file: one condition per line, or a JSON list")
    p.add_argument("--split", default="simulation", choices=["simulation", "grape"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--train-gene-set-size", type=float, default=0.75)
    p.add_argument("--out", help="write JSON here instead of stdout")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("benchmark", help="all baselines on a split, GEARS metrics")
    _add_data_options(p)
    _add_split_options(p)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--prior", action="append", metavar="NAME|FILE",
                   help="prior graph of the propagation baseline: go, coexpression, union "
                   "(default) or an edge-list file source,target[,weight] (repeatable: merged)")
    p.add_argument("--json", help="write the report as JSON here")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("genes", help="gene table, text/DNA features, fused embeddings, prior graphs")
    _add_data_options(p)
    p.add_argument("--out", required=True, help="output folder (genes.csv, features, priors/...)")
    p.add_argument("--gene-sources", help="folder with the GENCODE and EPD files "
                   "(default: $GRAPE_GENE_SOURCES)")
    p.add_argument("--text-model", help="local BERT-type model folder (default: packaged MiniLM)")
    p.add_argument("--dna-model", help="local DNA language-model folder (default: k-mers)")
    p.add_argument("--sequences", help="'epd' (default), 'none' or a FASTA file of gene sequences")
    p.add_argument("--description", choices=["name", "name_biotype", "name_biotype_go"])
    p.add_argument("--go-terms", type=int, help="GO terms per description (most specific first)")
    p.add_argument("--text-pooling", choices=["mean", "cls"])
    p.add_argument("--dna-pooling", choices=["mean", "first"])
    p.add_argument("--kmer-max", type=int, help="k-mer spectra for k = 1..K (K at most 6)")
    p.add_argument("--epochs", type=int, help="encoder pre-training epochs")
    p.add_argument("--priors", help="comma list among similarity,go,coexpression (default: all)")
    p.add_argument("--seed", type=int, default=0)
    _add_device_option(p, default="cpu")
    p.add_argument("--no-cache", action="store_true", help="rebuild instead of reading the cache")
    p.add_argument("--overwrite", action="store_true", help="replace gene knowledge in --out")
    p.add_argument("--json", help="also write coverage and graph statistics as JSON here")
    p.set_defaults(func=cmd_genes)

    p = sub.add_parser("train", help="train a GRAPE ensemble and save it as a model folder")
    _add_data_options(p)
    _add_split_options(p)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--name", help="model name shown in the app (default: folder name)")
    p.add_argument("--ensemble", type=int, help="ensemble members (default 3)")
    p.add_argument("--max-steps", type=int,
                   help="maximum optimisation steps per member (default 2000, early stopping)")
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int, help="conditions per step (default 8)")
    p.add_argument("--top-k", type=int, help="learned-only candidate edges per gene (default 5)")
    p.add_argument("--prior", action="append", metavar="NAME|FILE",
                   help="prior graph: union (default), go, coexpression, similarity, or an "
                   "edge-list file (CSV, TSV or Parquet; columns source,target[,weight], gene "
                   "symbols, source regulates target); repeat to merge several")
    p.add_argument("--paper", action="store_true", help="the published architecture and flags")
    p.add_argument("--ablations", action="store_true",
                   help="also retrain each ablation (one member) and store its metrics in the model")
    p.add_argument("--threads", type=int, help="torch threads")
    _add_device_option(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="GRAPE and every baseline on a model's held-out conditions")
    _add_model_option(p)
    _add_data_options(p, required=False)
    p.add_argument("--json", help="write the report as JSON here")
    p.add_argument("--h5ad", metavar="DIR", help="also write the measured cells and every model's "
                   "predictions as AnnData for cell-eval (obs['perturbation'], control label "
                   "'control', log1p data), with cell_eval.json naming each pair and its "
                   "cell-eval command (needs --data)")
    p.add_argument("--ablations", action="store_true", help="also retrain the ablations (needs --data)")
    p.add_argument("--max-steps", type=int, help="maximum optimisation steps for the ablation runs")
    p.add_argument("--prior", action="append", metavar="NAME|FILE",
                   help="the model's prior file(s), for the ablations of a model trained on one")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predicted expression shifts for one gene or a pair, or "
                       "for a list of them")
    _add_model_option(p)
    p.add_argument("--perturbation", action="append", metavar="GENE[+GENE]",
                   help="GENE or GENE_A+GENE_B; repeat it for several")
    p.add_argument("--perturbations", metavar="FILE", help="a text file of perturbations, one "
                   "GENE or GENE_A+GENE_B per line (# comments); a CSV or TSV table whose "
                   "header's first column is perturbation or condition also works")
    p.add_argument("--top", type=_at_least_one, default=20,
                   help="genes to show (largest |shift|; 1 or more)")
    p.add_argument("--no-interactions", action="store_true",
                   help="skip the genetic-interaction analysis of pairs (about a second per "
                   "pair: for long lists)")
    p.add_argument("--json", help="write the full prediction as JSON here")
    p.add_argument("--h5ad", metavar="FILE", help="also write the prediction(s) as AnnData "
                   "(.h5ad) for scanpy, one row per perturbation: X predicted expression, "
                   "var['biotype'], layers shift, ensemble_std, interval (the calibrated "
                   "interval's half width), measured")
    p.add_argument("--report", metavar="FILE.html", help="also write a self-contained offline "
                   "HTML report for collaborators (charts, network, interaction, model card, "
                   "how far to trust it)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("screen", help="rank perturbations that move target genes up or down")
    _add_model_option(p)
    p.add_argument("--target", help="target gene(s), comma separated")
    p.add_argument("--signature", help="file of gene and weight per line (instead of --target)")
    p.add_argument("--direction", choices=["up", "down"], default="up")
    p.add_argument("--pairs", action="store_true", help="also score pairs of the best singles")
    p.add_argument("--top", type=_at_least_one, default=20, help="candidates to show (1 or more)")
    p.add_argument("--json", help="write the ranking as JSON here")
    p.add_argument("--report", metavar="FILE.html",
                   help="also write the ranking as a self-contained offline HTML report")
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser("network", help="write the learned gene network (GraphML, CSV or "
                       "Cytoscape CX2) with each edge's weight, sign, prior or learned status and "
                       "agreement across ensemble members")
    _add_model_option(p)
    p.add_argument("--out", required=True, metavar="FILE",
                   help="network.graphml, network.csv or network.cx2 (the format follows the "
                   "suffix)")
    p.add_argument("--format", choices=["graphml", "csv", "cx2"],
                   help="the format, whatever the suffix")
    p.set_defaults(func=cmd_network)

    p = sub.add_parser("why", help="why a perturbation moves a gene: its predicted shift split "
                       "into the shared response, the perturbed gene's own change and the "
                       "strongest paths through the learned network")
    _add_model_option(p)
    p.add_argument("--perturbation", required=True, metavar="GENE[+GENE]")
    p.add_argument("--gene", required=True, help="the responding (measured) gene")
    p.add_argument("--top", type=_at_least_one, default=10, help="paths to list (default 10)")
    p.add_argument("--json", help="write the explanation as JSON here")
    p.set_defaults(func=cmd_why)

    p = sub.add_parser("simulate", help="a planted-truth screen: known gene network, "
                       "Perturb-seq cells, true edges and priors")
    p.add_argument("--out", required=True, help="folder to write (must not exist)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--config", help="JSON of settings, or a screen's simulation.json; flags override")
    p.add_argument("--kind", choices=sorted(FAMILY),
                   help="a setting of the simulator family the benchmark uses (its dynamics, "
                        "cells and prior); the other flags override it")
    p.add_argument("--simulator", choices=["steady_state", "harissa"],
                   help="the project's steady states (default) or harissa's bursting model")
    p.add_argument("--genes", type=int, help="genes (default 300)")
    p.add_argument("--noncoding", type=float, help="share of lncRNA genes (default 0.25)")
    p.add_argument("--regulators", type=float, help="share of genes that regulate (default 0.45)")
    p.add_argument("--targets", help="min,max targets per regulator (default 2,7)")
    p.add_argument("--spectral-radius", type=float, help="of W (default 0.8, below 1)")
    p.add_argument("--propensity", help="edge odds per relation cc,cn,nc,nn (default 1,0.8,1,0.6)")
    p.add_argument("--activating", help="activating share per relation (default 0.9,0.85,0.3,0.7)")
    p.add_argument("--strength", help="weight multiplier per relation (default 1,0.8,1.3,0.6)")
    p.add_argument("--go-bias", type=float, help="extra odds of a target sharing GO (default 5; 0 off)")
    p.add_argument("--singles", type=int, help="perturbed genes (default 100)")
    p.add_argument("--pairs", type=int, help="pairs among them (default 50)")
    p.add_argument("--interaction-fraction", type=float,
                   help="share of pairs with a planted interaction (default 0.3)")
    p.add_argument("--mode", choices=["knockdown", "activation"], help="CRISPRi or CRISPRa")
    p.add_argument("--efficiency", help="low,high of the uniform efficiency (default 0.6,1.0)")
    p.add_argument("--propagation", choices=["linear", "saturating", "bounded", "hill"],
                   help="steady-state dynamics (default linear)")
    p.add_argument("--saturation", type=float, help="c of c*tanh(x/c) (default 1)")
    p.add_argument("--hill-coefficient", type=float, help="n of the hill dynamics (default 2)")
    p.add_argument("--guides", type=int, help="guides per perturbed gene (default 1)")
    p.add_argument("--escape", type=float,
                   help="share of a condition's cells the perturbation fails in (default 0)")
    p.add_argument("--cell-model", choices=["gaussian", "counts"],
                   help="cells on the log scale with Gaussian noise (default), or UMI counts "
                        "normalised and log1p'd")
    p.add_argument("--library-size", type=float, help="counts: median UMIs per cell (default 2000)")
    p.add_argument("--dispersion", type=float,
                   help="counts: negative binomial theta (default 0: Poisson)")
    p.add_argument("--shared-std", type=float, help="std of the shared response (default 0.11)")
    p.add_argument("--cells", type=int, help="cells per condition (default 50)")
    p.add_argument("--control-cells", type=int, help="control cells (default 500)")
    p.add_argument("--noise", type=float, help="per-cell noise std (default 0.25)")
    p.add_argument("--network-noise", type=float,
                   help="std of cell noise passed through the network (default 0)")
    p.add_argument("--prior-true-fraction", type=float,
                   help="share of true edges in prior_informative.csv (default 0.5)")
    p.add_argument("--prior-false-edges", type=int,
                   help="false edges in prior_informative.csv (default: as many as true)")
    p.add_argument("--prior-signed", action="store_true", default=None,
                   help="the priors carry each edge's sign (weight +1 or -1)")
    p.add_argument("--prior-wrong-signs", type=float,
                   help="with --prior-signed: share of the informative prior's true edges "
                        "given the wrong sign (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing screen folder")
    p.set_defaults(func=cmd_simulate)

    return parser
