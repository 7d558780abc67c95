"""SQL for the installation's tenants (``store.tenants``): one row per municipality, in the default schema.

A tenant's records, links, feedback, themes and audit rows live in its own schema (see
:meth:`store.db.Store.for_tenant`); this table only names the tenants and holds each one's default
for sharing its ideas with the other municipalities.
"""

from __future__ import annotations

from typing import Any

from store.base import DEFAULT_TENANT, Repository, check_tenant, now


class TenantRepository(Repository):
    """The tenant list (``main.tenants``), the same whichever tenant's store it is reached from."""

    def names(self) -> list[str]:
        """Every tenant, ``default`` first, then by name."""
        rows = self._store.read("SELECT name FROM main.tenants ORDER BY name <> ?, name", [DEFAULT_TENANT])
        return [r[0] for r in rows]

    def add(self, name: str, shared_default: bool = False) -> bool:
        """Add a tenant (its schema is made by the store); False when it exists already."""
        rows = self._store.write(
            "INSERT INTO main.tenants VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING name",
            [check_tenant(name), bool(shared_default), now()],
        )
        return bool(rows)

    def shared_default(self, name: str) -> bool:
        """Whether the tenant's ideas are shared unless an idea says otherwise."""
        row = self._store.read_one("SELECT shared_default FROM main.tenants WHERE name = ?", [name])
        return bool(row and row[0])

    def set_shared_default(self, name: str, shared: bool) -> bool:
        """Set the tenant's default for sharing; False for an unknown tenant."""
        rows = self._store.write(
            "UPDATE main.tenants SET shared_default = ? WHERE name = ? RETURNING name", [bool(shared), name]
        )
        return bool(rows)

    def describe(self) -> list[dict[str, Any]]:
        """Every tenant with its sharing default and creation time."""
        rows = self._store.read(
            "SELECT name, shared_default, created_at FROM main.tenants ORDER BY name <> ?, name", [DEFAULT_TENANT]
        )
        return [{"name": r[0], "shared_default": bool(r[1]), "created_at": r[2]} for r in rows]
