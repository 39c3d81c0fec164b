"""Typed settings, one frozen dataclass per concern. Defaults are the paper's values.

Every config has ``to_dict()`` / ``from_dict()``; ``from_dict`` rejects unknown keys so a
manifest written by another version fails loudly instead of silently ignoring a setting.
Paths on disk come from :class:`Paths`, filled from the ``GRAPE_*`` variables by
:data:`grape_core.settings.settings`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from .errors import GrapeError
from .typed import check_fields, decode, shown, type_name

C = TypeVar("C", bound="Config")


class Config:
    """Mixin: typed fields (:mod:`grape_core.typed`) and a dict round trip with strict keys.

    Every field is checked against its type hint when a config is built, from keywords or
    from a dict: a list becomes the tuple the field holds, an integer the float it holds,
    and a value of another type is one :class:`GrapeError` line naming the setting.
    """

    def __post_init__(self) -> None:
        check_fields(self, type(self)._type_error)

    @classmethod
    def _type_error(cls, key: str, value: Any, tp: Any) -> GrapeError:
        """The message for a setting of the wrong type (or a missing one)."""
        if value is dataclasses.MISSING:
            return GrapeError(f"{cls.__name__} setting {key!r} is missing")
        return GrapeError(f"{cls.__name__} setting {key!r} must be "
                          f"{type_name(tp, SETTING_WORDS)}, not {shown(value)}")

    def to_dict(self) -> dict[str, Any]:
        """Every field, tuples as lists (JSON-able).

        Returns
        -------
        dict
            ``{field: value}`` in field order.
        """
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """A config from :meth:`to_dict`'s output (a manifest, a settings file).

        Parameters
        ----------
        values
            ``{field: value}``; a field left out keeps its default.

        Returns
        -------
        The config.

        Raises
        ------
        GrapeError
            A key this config does not know (a manifest of another version must fail
            loudly, not lose a setting), or a value of the wrong type.
        """
        names = sorted(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

        def unknown(keys: list[str]) -> GrapeError:
            return GrapeError(f"unknown {cls.__name__} setting(s): {', '.join(keys)}; "
                              f"known: {', '.join(names)}")

        return decode(cls, values, fail=cls._type_error,
                      missing=lambda key: cls._type_error(key, dataclasses.MISSING, None),
                      unknown=unknown)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` (checked like a new config).

        Parameters
        ----------
        **changes
            Settings and their new values.

        Returns
        -------
        Config
            A new config of the same class.
        """
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


SETTING_WORDS = {str: "a string", int: "a whole number", float: "a number",
                 bool: "true or false"}
"""How a setting's type is named in messages."""


@dataclass(frozen=True)
class DataConfig(Config):
    """How a Perturb-seq ``.h5ad`` is read. ``None`` means auto-detect."""

    condition_key: str | None = None
    control_label: str | None = None
    gene_name_key: str | None = None
    subset: tuple[str, ...] = ()
    """``("column=value", ...)``: keep only cells matching every entry."""
    n_de: int = 20


@dataclass(frozen=True)
class SplitConfig(Config):
    """Held-out design. ``simulation`` reproduces GEARS; ``grape`` is the paper's 75/25."""

    name: Literal["simulation", "grape"] = "simulation"
    seed: int = 1
    train_gene_set_size: float = 0.75
    combo_seen2_train_frac: float = 0.75
    test_fraction: float = 0.25
    val_fraction: float = 0.1


@dataclass(frozen=True)
class Paths(Config):
    """Folders and model locations, read from the environment when not given.

    ``GRAPE_DATA_DIR``      downloaded datasets (default: user cache folder)
    ``GRAPE_CACHE_DIR``     derived caches: embeddings, priors (default: user cache folder)
    ``GRAPE_MODELS_DIR``    user-trained model bundles shown by the app
    ``GRAPE_GENE_SOURCES``  folder with the GENCODE biotype table and EPD promoters
    ``GRAPE_TEXT_MODEL``    local folder of a BERT-type text model (default: packaged MiniLM)
    ``GRAPE_DNA_MODEL``     local folder of a DNA language model (default: none, k-mers)
    """

    data_dir: str = ""
    cache_dir: str = ""
    models_dir: str = ""
    gene_sources: str = ""
    text_model: str = ""
    dna_model: str = ""

    @classmethod
    def from_env(cls) -> "Paths":
        """The folders the ``GRAPE_*`` variables set (:data:`~grape_core.settings.settings`).

        Returns
        -------
        Paths
            Every field filled: the defaults lie in the user cache folder.
        """
        from .settings import settings

        return cls(data_dir=str(settings.data_dir), cache_dir=str(settings.cache_dir),
                   models_dir=str(settings.models_dir), gene_sources=settings.gene_sources,
                   text_model=settings.text_model, dna_model=settings.dna_model)


@dataclass(frozen=True)
class ArchitectureConfig(Config):
    """GRAPE architecture (see :mod:`grape_core.nn.grape`). Flags marked *paper*
    reproduce the published code's choices; :meth:`paper` sets them all."""

    propagation_steps: int = 4
    """Rounds of message passing: how many hops a perturbation travels (the steady state
    :math:`(I - W)^{-1} x_0` truncated after this many terms)."""
    heterogeneous: bool = True
    """Biotype-typed relations (coding/non-coding pairs): each has its own prior scale,
    metric weight and message function. False: one relation (ablation)."""
    nonlinear_messages: bool = True
    """A saturating message function per relation on top of the linear one."""
    message_hidden: int = 1
    structure_learning: bool = True
    """Learn signed weights for the prior's edges and learned-only edges. False: the prior,
    scaled per relation."""
    interventional_consistency: bool = True
    """Train the structure also on one-step consistency with each training condition's
    measured changes (:meth:`GRAPE.consistency_loss`)."""
    metric_dim: int = 8
    gsl_heads: int = 2
    gsl_top_k: int = 5
    """Learned-only candidate sources per gene (under the learned metric)."""
    gsl_refresh: int = 100
    """Optimisation steps between re-choosing the learned-only candidates."""
    detach_structure: bool = False
    """*paper*: the learned graph gets no gradient from the prediction loss."""
    perturbation_encoding: Literal["shared_head", "paper"] = "shared_head"
    """``shared_head``: the perturbed gene's own change comes from one head, in training and
    inference alike. *paper* ``paper``: the head reads the gene's features zeroed in
    training but negated at inference."""
    shared_head: bool = True
    """The self-effect comes from a head shared by all genes. False: one free value per
    gene (ablation; a gene never perturbed in training keeps 0)."""
    signed_self_effect: bool = True
    """The self-effect is ``b exp(h(z))``: ``b`` the sign and size the training data give
    (the warm start), ``h`` a per-gene adjustment, so a perturbed gene never moves against
    the screen's own direction (a knock-down never raises its target). False: the head's
    output itself, of either sign (versions before 3)."""
    head_hidden: int = 32
    global_path: bool = False
    """Every gene hears about the perturbation: the perturbed genes' pooled embedding sets how
    strongly the sample triggers the shared response. Off by default: with the few dozen
    training conditions of the bundled screens it memorises them (see the ablations)."""
    gene_correction: bool = False
    """Per-gene gains on the propagated change (a correction, L2-penalised). Off by default:
    on planted screens and on the Adamson slice the gains fit noise (see the ablations)."""
    use_text: bool = True
    use_dna: bool = True
    finetune_encoder: bool = False
    """Train the pre-trained gene encoder end to end (off: a few dozen conditions are too few
    to fine-tune a 256-d encoder without memorising them)."""
    shared_shift: bool = True
    """Predict the shift on top of the shared response (mean training shift per perturbed
    gene)."""
    additive_pairs: bool = True
    """A pair is composed from its singles (measured when known, else predicted) and the
    interaction the propagation predicts (:meth:`~grape_core.nn.grape.GRAPE._compose`)."""
    nonnegative: bool = True
    """No predicted expression below zero: a shift never takes away more than the control
    cells have (log-normalised expression is never negative). False: versions before 3."""
    pair_mixing: bool = True
    """How a pair combines its singles' own parts, its dose of the shared response and the
    predicted interaction are fitted on the training pairs. False: a pair is the sum of its
    singles plus the predicted interaction, whatever the data say (versions before 3)."""
    free_outflow: bool = True
    """A perturbed gene's own change and the change it passes on to its targets are sized
    apart (:attr:`~grape_core.nn.grape.GRAPE.outflow`): a knock-down's own transcript can
    fall far more, or less, than its product's effect on others, and only the data can say.
    False: its targets feel exactly its own change (versions before 4)."""
    floored_own_change: bool = True
    """With ``nonnegative``: a measured perturbed gene's own change takes away no more than its
    control cells have, in what it sends to its targets too. Without it, the floor on the
    output left a knock-down's own change free below it: training then grew it without limit
    (nothing in the loss held it) until the targets' predictions blew up. False: versions
    before 5."""
    prior: tuple[str, ...] = ("union",)
    """Prior graph(s): built-in names (union, go, coexpression, similarity) and/or edge-list
    files (``source,target[,weight]``); several are merged."""
    prior_max_in_degree: int = 15
    """Keep the strongest in-edges per gene: bounds each gene's regression in structure
    learning."""

    @classmethod
    def paper(cls) -> "ArchitectureConfig":
        """The published code's flags (for ablations): detached structure learning, the
        zero-then-negate encoding, no global path, no shared response, no composition of
        pairs, no interventional consistency."""
        return cls(detach_structure=True, perturbation_encoding="paper", global_path=False,
                   shared_shift=False, additive_pairs=False, interventional_consistency=False,
                   free_outflow=False, floored_own_change=False)


@dataclass(frozen=True)
class TrainConfig(Config):
    """Optimisation, counted in steps (paper: Adam 1e-3, weight decay 1e-4, batch 32; loss
    MSE + Huber 0.7)."""

    lr: float = 3e-3
    structure_lr: float = 1e-2
    """Learning rate of the edge weights (a per-edge parameter sees few samples per step)."""
    weight_decay: float = 1e-4
    batch_size: int = 8
    max_steps: int = 2000
    eval_every: int = 25
    """Steps between validation checks (early stopping keeps the best checkpoint)."""
    patience: int = 8
    """Validation checks without a better validation MSE before stopping."""
    hide_singles: float = 0.25
    """Share of a training pair's measured singles composed as if they had not been measured
    (:meth:`~grape_core.nn.grape.GRAPE.forward`), so that pairs with an unseen gene, which
    the model meets only when predicting, shape what it learns too."""
    huber_delta: float = 0.7
    consistency_weight: float = 1.0
    structure_l1: float = 30.0
    """L1 penalty on the learned change of the graph, divided by (training conditions x
    measured genes): a fixed prior belief that the evidence overrides as it grows."""
    clip_grad_norm: float = 1.0
    gain_l2: float = 0.01
    """L2 penalty on the per-gene gains (mean over genes)."""
    ensemble: int = 3
    """Members trained with seeds seed, seed+1, ...; their spread, widened and calibrated on
    validation perturbations (:mod:`~grape_core.evaluation.calibration`), is the uncertainty."""
    calibration_folds: int = 5
    """Cross-conformal prediction intervals when the split holds fewer than 20 validation
    perturbations: the training perturbations' genes in this many folds, each refitted by
    one member without them for the ensemble's number of steps, so that every training
    perturbation is predicted as a held-out one (:func:`~grape_core.training.plan.calibration_set`);
    the interval is then calibrated on all of them and the validation ones, not on a few
    validation ones alone. 0: the validation perturbations alone (split conformal), at no
    extra training."""
    seed: int = 1
    val_fraction: float = 0.15
    """Share of training conditions held for early stopping when the split has no val set."""
    refit: bool = True
    """When validation conditions were carved from training, train each member again on
    every training condition for the number of steps early stopping chose: the model then
    sees exactly the conditions the baselines are fitted on."""
    device: str = "auto"
    """``auto`` (a GPU when there is one), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    threads: int = 0
    """torch threads (0: torch's default)."""
    cuda_graphs: bool = True
    """On CUDA, capture a training step once and replay it (:mod:`~grape_core.training.step`):
    the same arithmetic, without a kernel launch per operation."""
    side_by_side: bool = True
    """Where steps are replayed (``cuda_graphs``), train the ensemble's members side by
    side, each on its own CUDA stream: one member's step is too small to fill a GPU, so the
    members' steps overlap. Each member draws its batches from its own seed, so the members
    are those trained one after the other (up to the order of floating-point sums; with
    ``finetune_encoder``, dropout draws from one generator the members share)."""


@dataclass(frozen=True)
class FeatureConfig(Config):
    """Gene knowledge: descriptions, text and DNA views, and the fused gene encoder.

    Model folders are :class:`Paths` settings (``text_model``, ``dna_model``); this config
    says how they are used. Defaults: the paper's 256-d fused embedding, mean pooling.
    """

    description: Literal["name", "name_biotype", "name_biotype_go"] = "name_biotype_go"
    """Text per gene: the HGNC full name (paper), plus the biotype, plus GO terms."""
    n_go_terms: int = 2
    """GO terms in a description: the most specific ones (fewest annotated genes). Each term
    adds about 8 tokens per gene; text embedding is most of a cold build's time on a CPU."""
    text_pooling: Literal["mean", "cls"] = "mean"
    text_max_length: int = 96
    text_batch_size: int = 128
    sequence_source: str = "epd"
    """``"epd"`` (promoters in ``Paths.gene_sources``), ``"none"``, or a FASTA file path."""
    dna_view: Literal["auto", "kmer", "lm"] = "auto"
    """``auto``: the DNA language model in ``Paths.dna_model`` if set, else k-mers."""
    kmer_sizes: tuple[int, ...] = (1, 2, 3, 4)
    """k-mer spectra concatenated (each normalised to frequencies; k at most 6)."""
    dna_pooling: Literal["mean", "first"] = "mean"
    """``mean`` over all tokens; ``first`` reproduces the published code (a bug, see GRAPE.md)."""
    dna_window: int = 2048
    """Nucleotides per language-model window; long sequences are split into windows."""
    dna_max_windows: int = 16
    dna_batch_size: int = 8
    trust_remote_code: bool = False
    """Allow a local DNA model folder to run its own code (HyenaDNA needs it)."""
    use_text: bool = True
    use_dna: bool = True
    hidden: int = 128
    out_dim: int = 256
    dropout: float = 0.1
    temperature: float = 0.1
    pretrain_epochs: int = 20
    pretrain_batch_size: int = 512
    pretrain_lr: float = 1e-3
    pretrain_weight_decay: float = 1e-4
    fusion_weight: float = 0.5
    """Weight of the fused-vs-view InfoNCE terms that train the fusion MLP."""
    pretrain_threads: int = 1
    """torch threads during pre-training (0: torch's default). Its matrices are small: one
    thread is nearly as fast, and several threads slow down many-fold on a busy CPU."""
    seed: int = 0


@dataclass(frozen=True)
class GraphConfig(Config):
    """Prior gene graphs. Defaults: the paper's similarity prior (threshold 0.6, weights
    below 0.015 dropped) and GEARS' GO (top 20) and co-expression (|r| > 0.4, top 20)."""

    priors: tuple[str, ...] = ("similarity", "go", "coexpression")
    """Priors built and merged into ``union``."""
    similarity_threshold: float = 0.6
    similarity_min_weight: float = 0.015
    similarity_center: bool = False
    """Centre each embedding before the cosine (the paper's raw cosine when False). Turn on
    for anisotropic embeddings (e.g. BERT CLS vectors, whose raw cosines are all > 0.6)."""
    go_top_k: int = 20
    go_min_jaccard: float = 0.1
    go_propagate: bool = True
    """Jaccard over GO sets closed under the ontology (GEARS' gene2go_all) or direct terms."""
    coexpression_threshold: float = 0.4
    coexpression_top_k: int = 20
    max_control_cells: int = 20000
    """Control cells used for co-expression (a seeded subsample beyond this)."""
