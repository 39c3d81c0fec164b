"""What every command shares: reading the screen, loading the model, checking outputs
before the work, the split, the configs, JSON output and the command as typed."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ..errors import GrapeError


def _load(args):
    from ..devices import resolve_device
    from ..serving.model import load

    resolve_device(args.device)  # a device this machine lacks: one line, before any work
    model = load(args.model, unverified=args.unverified, device=args.device)
    if args.unverified:
        print(f"warning: model {model.name!r} loaded with --unverified: files without a checksum "
              "were not verified", file=sys.stderr)
    return model


def _inputs(args) -> list[tuple[str, str]]:
    """The files and folders the command reads, as ``(flag, path)``: no output may be one of
    them or lie inside one."""
    found = []
    for name in ("model", "data", "split_file", "perturbations", "signature", "conditions",
                 "config"):
        value = getattr(args, name, None)
        if value and name == "model":  # a model's name: its folder
            from ..serving.model import find_model

            value = str(find_model(value))
        if value:
            found.append((f"--{name.replace('_', '-')}", value))
    found += [("--prior", p) for p in (getattr(args, "prior", None) or [])]
    return found


def _outputs(args, *flags: str, folder: tuple[str, str] | None = None) -> None:
    """Check every output file of the command (the options ``flags``, e.g. ``"--json"``)
    before any work: not a link, a device, a FIFO or a folder, not an input of the command
    nor inside one, not another output of the run (nor inside the output ``folder``,
    ``(flag, path)``, which the command replaces), in a folder that can be written."""
    from ..io import check_output

    given = [(flag, getattr(args, flag[2:].replace("-", "_"), None)) for flag in flags]
    given = [(flag, path) for flag, path in given if path]
    inputs = _inputs(args)
    for i, (flag, path) in enumerate(given):
        others = given[:i] + ([folder] if folder else [])
        check_output(path, what=flag, hint=f"choose another {flag}", inputs=inputs,
                     others=others)


def _read(args, path: str | None = None):
    """The screen ``path`` (default ``--data``) read with the data options; a registry name
    (``adamson``) is downloaded first, once (the only network access)."""
    from ..data.datasets import cache_hint, resolve_dataset
    from ..data.read import read_perturbseq

    source = path or args.data
    found = resolve_dataset(source)
    with cache_hint(source, found):  # a bad cached download: which file to delete
        return read_perturbseq(found, condition_key=args.condition_key,
                               control_label=args.control_label,
                               gene_name_key=args.gene_name_key, subset=args.subset,
                               backed=args.backed or None, progress=_progress(args))


def _split_for(args, conditions):
    from ..config import SplitConfig
    from ..data.splits import Split, make_split

    if getattr(args, "split_file", None):
        split = Split.load(args.split_file).restrict(conditions)
        if split.seed < 0:  # a GEARS split file does not record its seed
            split = dataclasses.replace(split, seed=args.seed)
        return split
    return make_split(conditions, SplitConfig(name=args.split, seed=args.seed,
                                               train_gene_set_size=args.train_gene_set_size))


def _emit_json(data, out: str | None) -> None:
    from ..io import to_json, write_json

    if out:
        write_json(out, data, what="the JSON output")
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(to_json(data))


def _progress(args) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _configs(args):
    from ..config import ArchitectureConfig, TrainConfig

    model = ArchitectureConfig.paper() if args.paper else ArchitectureConfig()
    changes = {"gsl_top_k": args.top_k}
    model = model.replace(**{k: v for k, v in changes.items() if v is not None})
    train = TrainConfig(seed=args.seed, device=args.device)
    changes = {"ensemble": args.ensemble, "max_steps": args.max_steps, "lr": args.lr,
               "batch_size": args.batch_size, "threads": args.threads}
    return model, train.replace(**{k: v for k, v in changes.items() if v is not None})


def _argv_for_record(argv: list[str]) -> list[str]:
    """The command as typed, with file paths reduced to their names (no machine paths)."""
    out = []
    for item in argv:
        out.append(Path(item).name if ("/" in item or "\\" in item) and not item.startswith("-") else item)
    return out


def _report_maker(name: str):
    """``grape_core.viz.report_charts.<name>`` (plotly charts), or a one-line error."""
    try:
        from ..viz import report_charts
    except ImportError as exc:  # plotly missing
        raise GrapeError(f"--report needs plotly ({exc}); install it (pip install "
                         "'grape-explorer[viz]', or pip install -r requirements.txt)") from exc
    return getattr(report_charts, name)


def _command(args, model=None) -> str:
    """The command as typed, for a report's "Reproduce" line: file names without their
    folders (no machine paths in a file that is sent around), except ``--model``, which must
    find the model again (:func:`~grape_core.report.model_argument`)."""
    words = _argv_for_record(args._argv)
    if model is not None:
        from ..viz.report import model_argument

        for i, word in enumerate(words[:-1]):
            if word == "--model":
                words[i + 1] = model_argument(model)
        words = [f"--model={model_argument(model)}" if w.startswith("--model=") else w
                 for w in words]
    return "python -m grape_core " + " ".join(words)


def _numbers(text: str, flag: str, count: int, kind: type = float) -> tuple:
    """``"0.6,1.0"`` -> ``(0.6, 1.0)``; a one-line GrapeError when it is not ``count`` numbers."""
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise GrapeError(f"{flag} {text!r} must be {count} comma-separated "
                         f"{'whole numbers' if kind is int else 'numbers'}")
    return values
