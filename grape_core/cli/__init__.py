"""Command line: ``python -m grape_core <command>``.

Each handler parses arguments, calls the library and prints; heavy imports happen inside
handlers. Errors print one line ``error: ...`` on stderr and exit 1 (usage errors exit 2);
``--debug`` shows the traceback instead.

``--report`` draws its charts with :mod:`grape_core.viz` (plotly), imported only by that
option. Modules: ``parser`` (the subcommands and their options), ``commands_data`` and
``commands_model`` (the handlers), ``common`` (what the handlers share).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from ..errors import GrapeError
from .parser import build_parser

__all__ = ["main", "console_main", "build_parser"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    args._argv = argv
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    try:
        return int(args.func(args) or 0)
    except GrapeError as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, details with --debug
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {_one_line(exc, 300)} (run with --debug "
              "for details)", file=sys.stderr)
        return 1


def _one_line(exc: BaseException, limit: int = 1000) -> str:
    """An error message on one line, cut to about ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def console_main() -> None:
    """The ``grape-core`` command an install provides: :func:`main` as the exit status."""
    sys.exit(main())
