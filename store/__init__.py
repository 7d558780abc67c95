"""The DuckDB store: schema, migrations, every SQL statement, transactions.

Open a :class:`Store`; reach each area's SQL through its repositories (``store.themes``,
``store.feedback``, ``store.keys``, ``store.audit``, ``store.trends``, ``store.erasure``, ``store.tenants``). Each tenant (municipality) has its
own store on the same file, ``store.for_tenant(name)``: its tables in its own schema. SQL runs
only through ``Store.read`` / ``read_one`` / ``write`` / ``transaction`` (see ``store/db.py``).
"""

from store.db import DEFAULT_TENANT, KINDS, Record, Store, StoreLockedError, UnknownTenant, UpsertResult

__all__ = ["DEFAULT_TENANT", "KINDS", "Record", "Store", "StoreLockedError", "UnknownTenant", "UpsertResult"]
