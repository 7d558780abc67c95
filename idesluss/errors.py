"""Errors the service raises for the CLI and the API to translate."""

from __future__ import annotations


class NotFound(LookupError):
    """An id that is not in the store."""
