"""What every repository of the store shares: the record kinds, the clock, and the repository base.

A repository holds the SQL of one area (themes, feedback, keys, ...) and runs it only through its
store's :meth:`~store.db.Store.read`, :meth:`~store.db.Store.read_one`, :meth:`~store.db.Store.write`
and :meth:`~store.db.Store.transaction`: the connection and the store's locks stay inside
``store/db.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from store.db import Store

KINDS = ("ideas", "needs")


def now() -> datetime:
    """Current UTC time without tzinfo (DuckDB TIMESTAMP)."""
    return datetime.now(UTC).replace(tzinfo=None)


def check_kind(kind: str) -> str:
    """``kind`` when it names a record table, else ValueError (table names are never parameters)."""
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {KINDS}")
    return kind


class Repository:
    """The SQL of one area of the store, reached as an attribute of the store (``store.themes``, ...).

    Args:
        store: the open store whose read / write / transaction methods run the SQL.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
