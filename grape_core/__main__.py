"""``python -m grape_core <command>`` (:mod:`grape_core.cli`)."""

from .cli import console_main

console_main()
