"""The DuckDB store: schema, migrations, every SQL statement, transactions."""

from store.db import KINDS, Record, Store, StoreLockedError, UpsertResult

__all__ = ["KINDS", "Record", "Store", "StoreLockedError", "UpsertResult"]
