"""Errors the service raises for the CLI and the API to translate."""

from __future__ import annotations


class NotFound(LookupError):
    """An id that is not in the store."""


class Conflict(ValueError):
    """A write that would silently overwrite something (an id that already exists)."""


EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_LOCKED = 0, 1, 2, 3, 4


class CliError(Exception):
    """A user-facing command-line error: printed without a traceback, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code
