"""Errors the user can act on. Each message says what is wrong, where, and what to do."""

from __future__ import annotations


class GrapeError(Exception):
    """Base class: a problem the user can fix. The CLI and the app show only the message."""


class DataFormatError(GrapeError):
    """The input file or its content does not match what the data layer expects."""


class UnknownGeneError(GrapeError, KeyError):
    """A gene symbol is not known (to the data, the annotation or the model)."""

    def __init__(self, message: str, *, gene: str = "", suggestions: tuple[str, ...] = ()):
        super().__init__(message)
        self.gene = gene
        self.suggestions = tuple(suggestions)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class ConditionError(GrapeError, ValueError):
    """A perturbation string cannot be parsed (separator, triple, empty...)."""


class BundleError(GrapeError):
    """A saved model folder is missing, incomplete, corrupted or for other genes."""


class DownloadError(GrapeError):
    """A dataset could not be downloaded or failed its checksum.

    ``reason`` says which, for callers that react differently (the app's messages): ``network``
    (no connection), ``http`` (the server refused: ``status`` holds the HTTP code),
    ``interrupted`` (resumable), ``disk`` (no space left), ``checksum`` (wrong size or
    SHA-256), ``archive`` or empty (other). A download the user stops raises
    :class:`Cancelled` instead.
    """

    def __init__(self, message: str, *, reason: str = "", status: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.status = status


class Cancelled(GrapeError):
    """Long work stopped because the user asked (a cancel button, a stop event)."""


class SplitError(GrapeError, ValueError):
    """A split cannot be built or does not match the data."""


def echo(value: object, *, limit: int = 60) -> str:
    """User input quoted for a message (``repr`` of a string), cut to about ``limit``
    characters so that a huge input does not make a huge message."""
    text = repr(value) if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value):,} characters)" if isinstance(value, str) else ""
    return text[: limit - 1] + "…" + size
