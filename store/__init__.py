"""The DuckDB store: schema, migrations, every SQL statement, transactions.

Open a :class:`Store`; reach each area's SQL through its repositories (``store.themes``,
``store.feedback``, ``store.keys``, ``store.audit``, ``store.trends``, ``store.erasure``). SQL runs
only through ``Store.read`` / ``read_one`` / ``write`` / ``transaction`` (see ``store/db.py``).
"""

from store.db import KINDS, Record, Store, StoreLockedError, UpsertResult

__all__ = ["KINDS", "Record", "Store", "StoreLockedError", "UpsertResult"]
