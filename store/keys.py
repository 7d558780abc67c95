"""SQL for API keys (stored hashed, ``store.keys``) and the audit log (who did what to which id, never
content, ``store.audit``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from store.base import Repository, now

ROLES = ("coach", "leadership", "admin", "region")
PREFIX = "idk"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class _NotRemembered:
    """The answer of a key check told not to read the database, for a key it does not remember."""

    def __repr__(self) -> str:
        return "NOT_REMEMBERED"


NOT_REMEMBERED: Any = _NotRemembered()


class LiveKeys:
    """Live keys this process has verified, so a request's key check reads no row (shared by every tenant).

    Every change of a key (a revocation, a restore of the file) moves a generation on; an entry is
    used only under the generation it was read in. A check that read the row just before a
    revocation committed therefore stores an entry that is never used, and a revoked key is refused
    from the moment its revocation returns. Only live keys are remembered, and only with the hash
    of their secret: the compare with the presented secret still runs on every request.
    """

    def __init__(self) -> None:
        self._generation = 0
        self._rows: dict[str, tuple[int, tuple[Any, ...]]] = {}

    def changed(self) -> None:
        """A key was revoked or the file replaced: forget every remembered key."""
        self._generation += 1
        self._rows = {}

    def get(self, key_id: str, read: Any) -> Any:
        """The live key's row: remembered, or ``read(key_id)`` (None when there is no live key).

        ``read`` None: :data:`NOT_REMEMBERED` instead of a read.
        """
        generation = self._generation
        known = self._rows.get(key_id)
        if known is not None and known[0] == generation:
            return known[1]
        if read is None:
            return NOT_REMEMBERED
        row = read(key_id)
        if row is not None and len(self._rows) < 10_000:  # bounded: ids that do not exist are not kept
            self._rows[key_id] = (generation, tuple(row))
        return row


class KeyRepository(Repository):
    """API keys: created with a secret shown once, verified in constant time, revoked.

    A key belongs to the tenant whose store created it and sees that tenant only; a ``region`` key
    also names the tenants whose shared ideas its overview spans. The keys of every tenant are in one
    table (``main.api_keys``), because a key is looked up before its tenant is known.
    """

    def create_key(self, role: str, name: str, region: list[str] | None = None) -> tuple[str, str]:
        """Create a key; returns (key id, the full key). Only a hash of the secret is stored.

        Args:
            role: coach, leadership, admin or region.
            name: who or what uses it (masked: it is shown in the audit log).
            region: for a region key, the tenants its overview spans (each must exist).
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
        if not name.strip():
            raise ValueError("a key needs a name (who or what uses it)")
        if role == "region":
            known = set(self._store.tenants.names())
            region = list(dict.fromkeys(region or []))
            if not region:
                raise ValueError("a region key needs its tenants (--tenants A,B)")
            unknown = [t for t in region if t not in known]
            if unknown:
                raise ValueError(f"unknown tenants {unknown} for the region key; there are: {sorted(known)}")
        elif region:
            raise ValueError("only a region key names tenants (--tenants)")
        from pipelines.masking import mask  # a key's name is shown in the audit log: no e-mail address there

        key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(24)
        self._store.write(
            "INSERT INTO main.api_keys (key_id, name, role, key_hash, created_at, tenant, region) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                key_id,
                mask(name.strip()).text,
                role,
                _hash(secret),
                now(),
                self._store.tenant_name,
                json.dumps(region) if region else None,
            ],
        )
        return key_id, f"{PREFIX}_{key_id}_{secret}"

    def verify_key(self, presented: str, read: bool = True) -> Any:
        """The key's id, name and role when ``presented`` is a live key, else None (constant-time compare).

        ``read`` False: never read the database (the event loop's check): :data:`NOT_REMEMBERED` for a
        key this process does not remember, to be checked again with ``read`` on a worker thread.
        """
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        _, key_id, secret = parts
        row = self._store.live_keys.get(key_id, self._live_row if read else None)
        if row is NOT_REMEMBERED:
            return NOT_REMEMBERED
        expected = row[3] if row else _hash("no such key")
        ok = hmac.compare_digest(expected, _hash(secret))
        if not row or not ok:
            return None
        region = json.loads(row[5]) if row[5] else []
        return {"key_id": row[0], "name": row[1], "role": row[2], "tenant": row[4], "region": region}

    def _live_row(self, key_id: str) -> tuple[Any, ...] | None:
        return self._store.read_one(
            "SELECT key_id, name, role, key_hash, coalesce(tenant, 'default'), region "
            "FROM main.api_keys WHERE key_id = ? AND revoked_at IS NULL",
            [key_id],
        )

    def list_keys(self) -> list[dict[str, Any]]:
        """The tenant's keys without secrets or hashes."""
        rows = self._store.read(
            "SELECT key_id, name, role, created_at, revoked_at, region FROM main.api_keys "
            "WHERE coalesce(tenant, 'default') = ? ORDER BY created_at",
            [self._store.tenant_name],
        )
        return [
            {
                "key_id": r[0],
                "name": r[1],
                "role": r[2],
                "created_at": r[3],
                "revoked_at": r[4],
                "tenant": self._store.tenant_name,
                **({"region": json.loads(r[5])} if r[5] else {}),
            }
            for r in rows
        ]

    def revoke_key(self, key_id: str) -> bool:
        """Revoke one of the tenant's keys; False when the tenant has no live key with that id."""
        rows = self._store.write(
            "UPDATE main.api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL "
            "AND coalesce(tenant, 'default') = ? RETURNING key_id",
            [now(), key_id, self._store.tenant_name],
        )
        self._store.live_keys.changed()  # after the commit: a check from now on reads the row again
        return bool(rows)


class AuditRepository(Repository):
    """The audit log: actor, action, kind and id, never any content."""

    def record(self, actor: str, action: str, kind: str | None = None, item_id: str | None = None) -> None:
        """Record an action without any content."""
        self._store.write("INSERT INTO audit VALUES (?, ?, ?, ?, ?)", [now(), actor, action, kind, item_id])

    def log(self, limit: int = 100) -> list[dict[str, Any]]:
        """Latest audit entries."""
        rows = self._store.read(
            "SELECT happened_at, actor, action, kind, item_id FROM audit ORDER BY happened_at DESC LIMIT ?", [limit]
        )
        return [{"at": r[0], "actor": r[1], "action": r[2], "kind": r[3], "item_id": r[4]} for r in rows]
