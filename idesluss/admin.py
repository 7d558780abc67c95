"""Administration: erasure (and the compaction it needs), backup, restore, API keys and the audit log."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from idesluss.errors import NotFound
from idesluss.index import Index
from store import Store

log = logging.getLogger(__name__)


class Admin:
    """What an administrator does to the database as a whole, and to keys.

    Args:
        store: the open store.
        index: the in-memory index (pruned by erasure, rebuilt by a restore).
        lock: the service's lock (shared with the index): erasure marks the compaction due under
            the same hold that takes the record out of the index.
        changed: called after every write (cached answers are stale).
    """

    def __init__(self, store: Store, index: Index, lock: threading.RLock, changed: Callable[[], None]) -> None:
        self.store = store
        self._index = index
        self._lock = lock
        self._changed = changed
        self._compaction_due = False

    # -- erasure --------------------------------------------------------------------------
    def erase(self, kind: str, item_id: str, actor: str) -> None:
        """Erase one record everywhere: store, vectors, links, index, and the bytes of every file.

        The rows go in one transaction (audited by id only); then the database is compacted so no
        free block or WAL keeps the text. A compaction that fails does not fail the erasure: it
        is retried by the next write or erasure (:meth:`compact_if_due`) and logged.

        Raises:
            NotFound: no such record (a repeated erasure of the same id lands here).
        """
        if not self.store.erasure.erase_record(kind, item_id, actor):
            raise NotFound(f"no {kind[:-1]} with id {item_id!r} (already erased, or never stored)")
        with self._lock:
            self._index.remove(kind, item_id)
            self._compaction_due = True
        self._changed()
        self.compact_if_due()

    def compact_if_due(self) -> bool:
        """Compact the database when an erasure asked for it; True when nothing is left to do."""
        with self._lock:
            if not self._compaction_due:
                return True
            try:
                self.store.compact()
            except Exception:  # noqa: BLE001 - retried on the next write; the erasure itself is committed
                log.exception("compaction after erasure failed; it will be retried")
                return False
            self._compaction_due = False
            return True

    def checkpoint(self) -> None:
        """Fold the database's WAL into its file."""
        self.store.checkpoint()

    # -- backup and restore ---------------------------------------------------------------
    def backup(self, target: str | Path, actor: str = "cli") -> Path:
        """A consistent copy of the database, taken while the service keeps serving (audited)."""
        dest = self.store.backup(target)
        self.store.audit.record(actor, "backup")
        return dest

    def restore(self, source: str | Path, actor: str = "cli") -> None:
        """Bring back a backup: the database is replaced and the index rebuilt from it (audited)."""
        self.store.restore_from(source)
        self._index.rebuild_if_built()
        self._changed()
        self.store.audit.record(actor, "restore")

    # -- keys and audit -------------------------------------------------------------------
    def create_key(
        self, role: str, name: str, actor: str | None = None, region: list[str] | None = None
    ) -> tuple[str, str]:
        """Create an API key of this tenant; returns (key id, the full key, shown only now). Audited when
        ``actor`` is given. A region key names the tenants its overview spans."""
        key_id, key = self.store.keys.create_key(role, name, region=region)
        if actor is not None:
            self.store.audit.record(actor, "create key", None, key_id)
        return key_id, key

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key (live and revoked), oldest first, without secrets or hashes."""
        return self.store.keys.list_keys()

    def revoke_key(self, key_id: str, actor: str | None = None) -> bool:
        """Revoke a key; False when there is no live key with that id. Audited when ``actor`` is given."""
        revoked = self.store.keys.revoke_key(key_id)
        if revoked and actor is not None:
            self.store.audit.record(actor, "revoke key", None, key_id)
        return revoked

    def verify_key(self, presented: str, read: bool = True) -> Any:
        """The key's id, name and role when ``presented`` is a live key, else None (``read``: see
        :meth:`store.keys.KeyRepository.verify_key`)."""
        return self.store.keys.verify_key(presented, read)

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest audit entries (who did what to which id, never content)."""
        return self.store.audit.log(limit)
