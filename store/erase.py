"""Erasure of one idea or need: text, vectors, links, feedback, memberships and curation, in one transaction."""

from __future__ import annotations

import json

from store.base import Repository, check_kind, drop_unused_vectors, now


class ErasureRepository(Repository):
    """Erasure (``store.erasure``): every row about one record goes in one transaction."""

    def erase_record(self, kind: str, item_id: str, actor: str) -> bool:
        """Delete everything the store holds about one record; audit the deletion (id only).

        Returns:
            False when there is no such record.
        """
        table = check_kind(kind)
        with self._store.transaction() as con:
            row = con.execute(f"SELECT embed_hash FROM {table} WHERE id = ?", [item_id]).fetchone()
            if row is None:
                return False
            con.execute(f"DELETE FROM {table} WHERE id = ?", [item_id])
            drop_unused_vectors(con, [row[0]])
            con.execute(
                "DELETE FROM feedback WHERE (query_kind = ? AND query_id = ?) OR (target_kind = ? AND target_id = ?)",
                [kind, item_id, kind, item_id],
            )
            column = "idea_id" if kind == "ideas" else "need_id"
            con.execute(f"DELETE FROM need_links WHERE {column} = ?", [item_id])
            con.execute("DELETE FROM memberships WHERE kind = ? AND item_id = ?", [kind, item_id])
            con.execute("DELETE FROM theme_curation WHERE kind = ? AND item_id = ?", [kind, item_id])
            for run_id, theme_id, reps in con.execute(
                "SELECT run_id, theme_id, representatives FROM themes"
            ).fetchall():
                items = json.loads(reps or "[]")
                kept = [r for r in items if not (r.get("kind") == kind and r.get("id") == item_id)]
                if len(kept) != len(items):
                    con.execute(
                        "UPDATE themes SET representatives = ? WHERE run_id = ? AND theme_id = ?",
                        [json.dumps(kept, ensure_ascii=False), run_id, theme_id],
                    )
            con.execute("INSERT INTO audit VALUES (?, ?, 'delete', ?, ?)", [now(), actor, kind, item_id])
        self._store.themes.changed()  # representatives may have lost this record
        return True
