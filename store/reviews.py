"""SQL for the coach's inbox (``store.reviews``): precomputed suggestions per idea, review and
assignment state, and the history of one idea (audit log, feedback and links).

The precomputed suggestions hold ids, scores and the "why" of each suggestion, never another
record's text: titles and snippets are read from the records when shown, so an erased record
leaves nothing behind in another idea's row.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from store.base import Repository, now

# statuses that mean "nobody has decided anything yet": such an idea waits in the inbox until a coach
# marks it reviewed (an idea with a decided status came through the old process and is not waiting)
NEW_STATUSES = ("", "ny", "inkommen", "new")


def _awaiting_sql(alias: str = "i") -> str:
    placeholders = ", ".join("?" * len(NEW_STATUSES))
    return f"(r.reviewed_at IS NULL AND lower(coalesce(trim({alias}.status), '')) IN ({placeholders}))"


class ReviewRepository(Repository):
    """The inbox's tables: ``idea_suggestions`` and ``idea_reviews`` (migration 6)."""

    # -- precomputed suggestions ---------------------------------------------------------------
    def put_suggestions(self, rows: list[tuple[str, str, str | None, dict[str, Any]]]) -> None:
        """Store (idea id, basis, theme id, suggestions) rows in one transaction (replacing older ones)."""
        if not rows:
            return
        stamp = now()
        with self._store.transaction() as con:
            for idea_id, basis, theme_id, data in rows:
                con.execute(
                    "INSERT OR REPLACE INTO idea_suggestions (idea_id, basis, theme_id, suggestions, computed_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [idea_id, basis, theme_id, json.dumps(data, ensure_ascii=False), stamp],
                )

    def suggestions(self, idea_ids: list[str]) -> dict[str, tuple[str, dict[str, Any], datetime]]:
        """Idea id -> (basis, suggestions, computed at) for those of ``idea_ids`` that have a row."""
        if not idea_ids:
            return {}
        rows = self._store.read(
            "SELECT idea_id, basis, suggestions, computed_at FROM idea_suggestions WHERE list_contains(?, idea_id)",
            [idea_ids],
        )
        return {r[0]: (r[1], json.loads(r[2]), r[3]) for r in rows}

    def bases(self, idea_ids: list[str]) -> dict[str, str]:
        """What each idea's suggestions are computed from: the hash of its text and the number of
        needs (a changed text or a needs file ingested after the idea makes them stale; a new theme
        run does not: the idea's theme is read from the current run when shown)."""
        if not idea_ids:
            return {}
        needs = self._store.count("needs")
        rows = self._store.read("SELECT id, embed_hash FROM ideas WHERE list_contains(?, id)", [idea_ids])
        return {r[0]: f"{r[1]}:{needs}" for r in rows}

    def forget(self, idea_id: str) -> None:
        """Remove an idea's precomputed suggestions and review state (before its erasure)."""
        with self._store.transaction() as con:
            con.execute("DELETE FROM idea_suggestions WHERE idea_id = ?", [idea_id])
            con.execute("DELETE FROM idea_reviews WHERE idea_id = ?", [idea_id])

    # -- the inbox --------------------------------------------------------------------------------
    def awaiting(self, idea_ids: list[str]) -> list[str]:
        """Those of ``idea_ids`` that wait for a coach's review (order kept)."""
        if not idea_ids:
            return []
        rows = self._store.read(
            "SELECT i.id FROM ideas i LEFT JOIN idea_reviews r ON r.idea_id = i.id "
            f"WHERE list_contains(?, i.id) AND {_awaiting_sql()}",
            [idea_ids, *NEW_STATUSES],
        )
        found = {r[0] for r in rows}
        return [i for i in idea_ids if i in found]

    def inbox_page(self, filters: dict[str, Any], limit: int, offset: int) -> tuple[list[str], int]:
        """Ids of ideas awaiting review, newest first, one page of them, and how many there are.

        Args:
            filters: optional ``department``, ``source`` (exact), ``date_from`` / ``date_to``
                (datetimes, inclusive) and ``theme`` (a theme id: the idea's theme in the current run,
                else its precomputed provisional theme).
            limit: page size.
            offset: rows skipped.
        """
        where, params = [_awaiting_sql()], list(NEW_STATUSES)
        for column in ("department", "source"):
            if filters.get(column):
                where.append(f"i.{column} = ?")
                params.append(filters[column])
        if filters.get("date_from"):
            where.append("i.created_at >= ?")
            params.append(filters["date_from"])
        if filters.get("date_to"):
            where.append("i.created_at <= ?")
            params.append(filters["date_to"])
        if filters.get("theme"):
            where.append(
                "coalesce((SELECT m.theme_id FROM memberships m JOIN current_theme_run c ON c.run_id = m.run_id "
                "WHERE m.kind = 'ideas' AND m.item_id = i.id AND m.theme_id <> ''), s.theme_id) = ?"
            )
            params.append(filters["theme"])
        base = (
            "FROM ideas i LEFT JOIN idea_reviews r ON r.idea_id = i.id "
            "LEFT JOIN idea_suggestions s ON s.idea_id = i.id WHERE " + " AND ".join(where)
        )
        total = self._store.read_one("SELECT count(*) " + base, params)
        rows = self._store.read(
            "SELECT i.id " + base + " ORDER BY coalesce(i.created_at, i.ingested_at) DESC, i.ingested_at DESC, i.id "
            "LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [r[0] for r in rows], int(total[0]) if total else 0

    def inbox_facets(self) -> dict[str, list[str]]:
        """Departments and sources among the ideas awaiting review (the inbox's filter choices)."""
        out = {}
        for column in ("department", "source"):
            rows = self._store.read(
                f"SELECT DISTINCT i.{column} FROM ideas i LEFT JOIN idea_reviews r ON r.idea_id = i.id "
                f"WHERE {_awaiting_sql()} AND i.{column} IS NOT NULL ORDER BY 1",
                list(NEW_STATUSES),
            )
            out[column] = [r[0] for r in rows]
        return out

    # -- review and assignment --------------------------------------------------------------------
    def review_state(self, idea_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Idea id -> reviewed / assigned state (only ideas that have one)."""
        if not idea_ids:
            return {}
        rows = self._store.read(
            "SELECT idea_id, reviewed_at, reviewed_by, assigned_to, assigned_by, assigned_at FROM idea_reviews "
            "WHERE list_contains(?, idea_id)",
            [idea_ids],
        )
        keys = ("reviewed_at", "reviewed_by", "assigned_to", "assigned_by", "assigned_at")
        return {r[0]: dict(zip(keys, r[1:])) for r in rows}

    def mark_reviewed(self, idea_id: str, actor: str, reviewed: bool = True) -> None:
        """Mark an idea reviewed (it leaves the inbox), or back to waiting with ``reviewed=False``."""
        stamp, by = (now(), actor) if reviewed else (None, None)
        with self._store.transaction() as con:
            con.execute(
                "INSERT INTO idea_reviews (idea_id, reviewed_at, reviewed_by) VALUES (?, ?, ?) "
                "ON CONFLICT (idea_id) DO UPDATE SET reviewed_at = excluded.reviewed_at, "
                "reviewed_by = excluded.reviewed_by",
                [idea_id, stamp, by],
            )

    def assign(self, idea_id: str, coach: str, actor: str) -> None:
        """Hand an idea to a coach (by name; the latest assignment wins)."""
        with self._store.transaction() as con:
            con.execute(
                "INSERT INTO idea_reviews (idea_id, assigned_to, assigned_by, assigned_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (idea_id) DO UPDATE SET assigned_to = excluded.assigned_to, "
                "assigned_by = excluded.assigned_by, assigned_at = excluded.assigned_at",
                [idea_id, coach, actor, now()],
            )

    # -- history ---------------------------------------------------------------------------------
    def history(self, idea_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """What happened to one idea, newest first: audit entries (who, what, when), feedback given
        with this idea as the query (link changes are audit entries)."""
        audit = self._store.read(
            "SELECT happened_at, actor, action, kind, item_id FROM audit WHERE kind = 'ideas' AND item_id = ?",
            [idea_id],
        )
        feedback = self._store.read(
            "SELECT created_at, actor, verdict, target_kind, target_id FROM feedback "
            "WHERE query_kind = 'ideas' AND query_id = ?",
            [idea_id],
        )
        events = [{"at": r[0], "actor": r[1], "what": r[2], "kind": "audit", "target": None} for r in audit]
        events += [
            {"at": r[0], "actor": r[1], "what": f"feedback {r[2]}", "kind": "feedback", "target": r[4]}
            for r in feedback
        ]
        events.sort(key=lambda e: e["at"], reverse=True)
        return events[:limit]

    # -- needs view --------------------------------------------------------------------------------
    def confirmed_links(self) -> dict[str, list[str]]:
        """Need id -> ids of ideas confirmed to answer it (erased ideas are not there: erasure drops links)."""
        rows = self._store.read(
            "SELECT need_id, idea_id FROM need_links WHERE state = 'confirmed' ORDER BY need_id, updated_at"
        )
        out: dict[str, list[str]] = {}
        for need_id, idea_id in rows:
            out.setdefault(need_id, []).append(idea_id)
        return out
