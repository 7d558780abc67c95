"""What every repository of the store shares: the record kinds, the clock, and the repository base.

A repository holds the SQL of one area (themes, feedback, keys, ...) and runs it only through its
store's :meth:`~store.db.Store.read`, :meth:`~store.db.Store.read_one`, :meth:`~store.db.Store.write`
and :meth:`~store.db.Store.transaction`: the connection and the store's locks stay inside
``store/db.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

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


def drop_unused_vectors(con: Any, text_hashes: Iterable[str]) -> None:
    """Inside a transaction: delete every stored vector of those texts (each model's, as document
    and as query) that no idea or need has any longer.

    An erasure calls it for the record's text, and an update for the text it replaced: an edited
    idea's earlier versions must not outlive its erasure as vectors.
    """
    wanted = list(dict.fromkeys(text_hashes))
    if not wanted:
        return
    used = stored_hashes(con, wanted)
    for text_hash in wanted:
        if text_hash not in used:  # by the text-hash index, one text at a time
            con.execute("DELETE FROM embeddings WHERE text_hash = ?", [text_hash])


def stored_hashes(con: Any, text_hashes: list[str]) -> set[str]:
    """Those of ``text_hashes`` that some idea or need has now (one scan of each table's hash column)."""
    rows = con.execute(
        "SELECT embed_hash FROM ideas WHERE list_contains(?, embed_hash) "
        "UNION SELECT embed_hash FROM needs WHERE list_contains(?, embed_hash)",
        [text_hashes, text_hashes],
    ).fetchall()
    return {row[0] for row in rows}


class Repository:
    """The SQL of one area of the store, reached as an attribute of the store (``store.themes``, ...).

    Args:
        store: the open store whose read / write / transaction methods run the SQL.
    """

    def __init__(self, store: Store) -> None:
        self._store = store


DEFAULT_TENANT = "default"
_TENANT_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class UnknownTenant(ValueError):
    """A tenant name that is not one of the installation's tenants."""


def check_tenant(name: str) -> str:
    """``name`` when it is a valid tenant name (lower-case letters, digits, ``_``; 1 to 40), else ValueError."""
    if not isinstance(name, str) or not _TENANT_NAME.fullmatch(name):
        raise ValueError(
            f"invalid tenant name {name!r}: use 1 to 40 lower-case letters a-z, digits and '_', starting with a letter"
        )
    return name


def tenant_schema(name: str) -> str:
    """The database schema that holds a tenant's tables (``main`` for the default tenant)."""
    return "main" if check_tenant(name) == DEFAULT_TENANT else f"tenant_{name}"
