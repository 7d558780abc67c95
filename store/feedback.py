"""SQL for coach feedback and confirmed / rejected idea-need links (``store.feedback``)."""

from __future__ import annotations

from typing import Any

from store.base import Repository, now

VERDICTS = ("useful", "not_useful", "duplicate", "confirmed_need_link", "rejected_need_link")
LINK_STATES = ("confirmed", "rejected")


def _set_link(con: Any, idea_id: str, need_id: str, state: str, actor: str) -> None:
    con.execute(
        "INSERT OR REPLACE INTO need_links (idea_id, need_id, state, actor, updated_at) VALUES (?, ?, ?, ?, ?)",
        [idea_id, need_id, state, actor, now()],
    )


class FeedbackRepository(Repository):
    """Coaches' verdicts on suggestions and the idea-need links they confirmed or rejected."""

    def add_feedback(
        self, query_kind: str, query_id: str, target_kind: str, target_id: str, verdict: str, actor: str
    ) -> int:
        """Record one verdict on a suggestion; returns its id."""
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}; expected one of {VERDICTS}")
        with self._store.transaction() as con:
            row = con.execute(
                "INSERT INTO feedback (query_kind, query_id, target_kind, target_id, verdict, actor, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING feedback_id",
                [query_kind, query_id, target_kind, target_id, verdict, actor, now()],
            ).fetchone()
            if verdict in ("confirmed_need_link", "rejected_need_link") and query_kind == "ideas":
                state = "confirmed" if verdict.startswith("confirmed") else "rejected"
                _set_link(con, query_id, target_id, state, actor)
        assert row is not None
        return int(row[0])

    def set_need_link(self, idea_id: str, need_id: str, state: str, actor: str) -> None:
        """Confirm or reject an idea-need link (the latest word wins)."""
        if state not in LINK_STATES:
            raise ValueError(f"unknown link state {state!r}; expected one of {LINK_STATES}")
        with self._store.transaction() as con:
            _set_link(con, idea_id, need_id, state, actor)

    def rejected_targets(self, query_kind: str, query_id: str, target_kind: str) -> set[str]:
        """Targets a coach marked not useful for this query (never shown again for it)."""
        rows = self._store.read(
            "SELECT target_id FROM feedback WHERE query_kind = ? AND query_id = ? AND target_kind = ? "
            "AND verdict = 'not_useful'",
            [query_kind, query_id, target_kind],
        )
        return {r[0] for r in rows}

    def confirmed_needs(self, need_ids: list[str]) -> set[str]:
        """Which of ``need_ids`` some idea is confirmed to answer (the database picks them)."""
        if not need_ids:
            return set()
        rows = self._store.read(
            "SELECT DISTINCT need_id FROM need_links WHERE state = 'confirmed' AND need_id IN (SELECT unnest(?))",
            [sorted(set(need_ids))],
        )
        return {r[0] for r in rows}

    def links(self, idea_id: str | None = None, need_id: str | None = None) -> dict[tuple[str, str], str]:
        """(idea id, need id) -> state for the links of one idea or one need."""
        sql, params = "SELECT idea_id, need_id, state FROM need_links WHERE ", []
        if idea_id is not None:
            sql += "idea_id = ?"
            params.append(idea_id)
        elif need_id is not None:
            sql += "need_id = ?"
            params.append(need_id)
        else:
            sql += "true"
        rows = self._store.read(sql, params)
        return {(r[0], r[1]): r[2] for r in rows}

    def export_feedback(self) -> list[dict[str, Any]]:
        """All feedback rows, oldest first (for evaluation)."""
        rows = self._store.read(
            "SELECT feedback_id, query_kind, query_id, target_kind, target_id, verdict, actor, "
            "created_at FROM feedback ORDER BY feedback_id"
        )
        keys = ("feedback_id", "query_kind", "query_id", "target_kind", "target_id", "verdict", "actor", "created_at")
        return [dict(zip(keys, r)) for r in rows]

    def count_feedback(self) -> int:
        """Number of feedback rows."""
        row = self._store.read_one("SELECT count(*) FROM feedback")
        return int(row[0]) if row else 0
