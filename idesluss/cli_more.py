"""Further commands, registered into the main parser (kept apart so cli.py stays small)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add the further commands to the subparsers object."""
