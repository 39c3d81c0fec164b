"""The version of grape_core (read by pyproject.toml and written into every saved folder)."""

__version__ = "0.1.0"
