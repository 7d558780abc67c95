"""SQL for theme runs, themes, memberships, staff curation and trend aggregates (``store.themes``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from store.base import Repository, check_kind, now

if TYPE_CHECKING:
    from store.db import Store

KEEP_MEMBERSHIP_RUNS = 7
CURATION_ACTIONS = ("rename", "merge", "move", "pin")


@dataclass
class ThemeRow:
    """A theme as written by the job."""

    theme_id: str
    label: str
    keywords: list[str]
    representatives: list[dict[str, str]]
    size: int
    centroid: np.ndarray
    assign_threshold: float


@dataclass
class MemberRow:
    """One item's place in a run."""

    kind: str
    item_id: str
    theme_id: str
    how: str  # clustered | assigned | kept | moved | pinned | unassigned
    x: float | None = None
    y: float | None = None


class ThemeRepository(Repository):
    """Theme runs, their themes and memberships, the current run, and staff curation.

    The current run's id and its themes are remembered in memory (every suggestion reads them for
    its provisional theme): :meth:`write_run` sets the run, every change of the themes table moves
    a generation on (a run, a curation, an erasure), and the store forgets both when a restore
    replaces the file.
    """

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._current: tuple[int | None] | None = None
        self._generation = 0
        self._themes: tuple[tuple[int | None, int], list[ThemeRow]] | None = None
        self._centroids: tuple[Any, int, list[ThemeRow], np.ndarray] | None = None

    def changed(self) -> None:
        """The themes table was written: the remembered themes are read again next time."""
        self._generation += 1

    def current_run_id(self) -> int | None:
        """The run the service shows now."""
        known = self._current
        if known is not None:
            return known[0]
        row = self._store.read_one("SELECT run_id FROM current_theme_run WHERE singleton = 1")
        run = int(row[0]) if row else None
        self._current = (run,)
        return run

    def forget_current(self) -> None:
        """Read the current run from the database next time (the file was replaced)."""
        self._current = None
        self.changed()

    def current_themes(self) -> list[ThemeRow]:
        """Themes of the current run with their centroids (for alignment and provisional themes).

        Remembered until the themes change; a read that overlapped a write is not remembered
        under the new generation (the generation is taken before the read).
        """
        generation = self._generation
        run = self.current_run_id()
        if run is None:
            return []
        known = self._themes
        if known is not None and known[0] == (run, generation):
            return list(known[1])
        rows = self._store.read(
            "SELECT theme_id, label, keywords, representatives, size, centroid, "
            "assign_threshold FROM themes WHERE run_id = ? ORDER BY size DESC, theme_id",
            [run],
        )
        themes = [
            ThemeRow(
                r[0],
                r[1],
                json.loads(r[2] or "[]"),
                json.loads(r[3] or "[]"),
                r[4],
                np.asarray(r[5], dtype=np.float32),
                float(r[6] or 1.0),
            )
            for r in rows
        ]
        self._themes = ((run, generation), themes)
        return list(themes)

    def current_centroids(self, dim: int) -> tuple[list[ThemeRow], np.ndarray]:
        """The current themes whose centroid has ``dim`` values, and their centroids as one matrix (a
        row per theme, in the same order): remembered with the themes, so a suggestion's provisional
        theme stacks no centroids."""
        themes = self.current_themes()
        known = self._themes  # what current_themes() remembered, when it is the current generation
        fresh = known is not None and known[0] == (self.current_run_id(), self._generation)
        cached = self._centroids
        if fresh and cached is not None and cached[0] is known and cached[1] == dim:
            return list(cached[2]), cached[3]
        kept = [t for t in (known[1] if fresh and known is not None else themes) if len(t.centroid) == dim]
        matrix = np.stack([t.centroid for t in kept]) if kept else np.zeros((0, dim), np.float32)
        if fresh:
            self._centroids = (known, dim, kept, matrix)
        return list(kept), matrix

    def current_members(self) -> dict[str, set[str]]:
        """theme id -> member keys ("ideas:ID" / "needs:ID") of the current run."""
        run = self.current_run_id()
        out: dict[str, set[str]] = {}
        if run is None:
            return out
        rows = self._store.read(
            "SELECT theme_id, kind, item_id FROM memberships WHERE run_id = ? AND theme_id <> ''", [run]
        )
        for theme_id, kind, item_id in rows:
            out.setdefault(theme_id, set()).add(f"{kind}:{item_id}")
        return out

    def next_run_id(self) -> int:
        """An id for a new theme run."""
        row = self._store.read_one("SELECT coalesce(max(run_id), 0) + 1 FROM theme_runs")
        return int(row[0]) if row else 1

    def write_run(self, run_id: int, record: dict[str, Any], themes: list[ThemeRow], members: list[MemberRow]) -> None:
        """Write a finished run and switch it in, all in one transaction."""
        import pyarrow as pa

        mem = pa.table(
            {
                "run_id": pa.array([run_id] * len(members), pa.int64()),
                "kind": [m.kind for m in members],
                "item_id": [m.item_id for m in members],
                "theme_id": [m.theme_id for m in members],
                "how": [m.how for m in members],
                "x": pa.array([m.x for m in members], pa.float64()),
                "y": pa.array([m.y for m in members], pa.float64()),
            }
        )
        with self._store.transaction() as con:
            # the job read its items minutes ago: a record erased since (its erasure is a transaction of
            # its own, done before this one takes the lock) must not come back as a member or a
            # representative of the new run
            gone = _erased_since(con, members)
            if gone:
                mem = mem.filter(pa.array([(m.kind, m.item_id) not in gone for m in members]))
                themes = [
                    replace(
                        t, representatives=[r for r in t.representatives if (r.get("kind"), r.get("id")) not in gone]
                    )
                    for t in themes
                ]
            con.execute(
                "INSERT INTO theme_runs (run_id, created_at, params, timings, n_themes, share_unassigned, "
                "quality, events) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    now(),
                    json.dumps(record["params"]),
                    json.dumps(record["timings"]),
                    len(themes),
                    record["share_unassigned"],
                    record["quality"],
                    json.dumps(record["events"], ensure_ascii=False),
                ],
            )
            for t in themes:
                con.execute(
                    "INSERT INTO themes (run_id, theme_id, label, keywords, representatives, size, centroid, "
                    "assign_threshold) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        run_id,
                        t.theme_id,
                        t.label,
                        json.dumps(t.keywords, ensure_ascii=False),
                        json.dumps(t.representatives, ensure_ascii=False),
                        t.size,
                        t.centroid.astype(float).tolist(),
                        t.assign_threshold,
                    ],
                )
            con.register("_members", mem)
            try:
                con.execute("INSERT INTO memberships SELECT run_id, kind, item_id, theme_id, how, x, y FROM _members")
            finally:
                con.unregister("_members")
            con.execute("INSERT OR REPLACE INTO current_theme_run VALUES (1, ?)", [run_id])
            con.execute("DELETE FROM memberships WHERE run_id <= ?", [run_id - KEEP_MEMBERSHIP_RUNS])
        self._current = (run_id,)  # after the commit: readers see the new run once it is whole
        self.changed()

    def add_curation(
        self,
        action: str,
        actor: str,
        theme_id: str | None = None,
        other_theme_id: str | None = None,
        kind: str | None = None,
        item_id: str | None = None,
        name: str | None = None,
    ) -> str:
        """Record a staff correction; it applies now (where it can) and to every later run."""
        import uuid

        if action not in CURATION_ACTIONS:
            raise ValueError(f"unknown curation {action!r}; expected one of {CURATION_ACTIONS}")
        cid = uuid.uuid4().hex[:12]
        run = self.current_run_id()
        with self._store.transaction() as con:
            con.execute(
                "INSERT INTO theme_curation VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [cid, action, theme_id, other_theme_id, kind, item_id, name, actor, now()],
            )
            if run is None:
                return cid
            if action == "rename":
                con.execute("UPDATE themes SET label = ? WHERE run_id = ? AND theme_id = ?", [name, run, theme_id])
            elif action == "merge":
                con.execute(
                    "UPDATE memberships SET theme_id = ?, how = 'moved' WHERE run_id = ? AND theme_id = ?",
                    [other_theme_id, run, theme_id],
                )
                con.execute(
                    "UPDATE themes SET size = size + coalesce((SELECT size FROM themes WHERE run_id = ? AND "
                    "theme_id = ?), 0) WHERE run_id = ? AND theme_id = ?",
                    [run, theme_id, run, other_theme_id],
                )
                con.execute("DELETE FROM themes WHERE run_id = ? AND theme_id = ?", [run, theme_id])
            else:
                con.execute(
                    "INSERT OR REPLACE INTO memberships (run_id, kind, item_id, theme_id, how) VALUES (?, ?, ?, ?, ?)",
                    [run, kind, item_id, theme_id, "pinned" if action == "pin" else "moved"],
                )
        self.changed()
        return cid

    def curations(self) -> list[dict[str, Any]]:
        """All staff corrections, oldest first."""
        rows = self._store.read(
            "SELECT curation_id, action, theme_id, other_theme_id, kind, item_id, name, actor, "
            "created_at FROM theme_curation ORDER BY created_at, curation_id"
        )
        keys = ("curation_id", "action", "theme_id", "other_theme_id", "kind", "item_id", "name", "actor", "created_at")
        return [dict(zip(keys, r)) for r in rows]

    def count_theme_runs(self) -> int:
        """How many theme runs are stored (a count in SQL, not a fetch)."""
        row = self._store.read_one("SELECT count(*) FROM theme_runs")
        return int(row[0]) if row else 0

    def theme_runs(self, limit: int = 30, offset: int = 0) -> list[dict[str, Any]]:
        """Run records, newest first (``limit`` rows after skipping ``offset``)."""
        rows = self._store.read(
            "SELECT run_id, created_at, params, timings, n_themes, share_unassigned, quality, "
            "events FROM theme_runs ORDER BY run_id DESC LIMIT ? OFFSET ?",
            [limit, offset],
        )
        return [
            {
                "run_id": r[0],
                "created_at": r[1],
                "params": json.loads(r[2] or "{}"),
                "timings": json.loads(r[3] or "{}"),
                "n_themes": r[4],
                "share_unassigned": r[5],
                "quality": r[6],
                "events": json.loads(r[7] or "[]"),
            }
            for r in rows
        ]

    def memberships(self, theme_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Members of the current run (one theme, or all; one kind, or both), with map coordinates."""
        run = self.current_run_id()
        if run is None:
            return []
        sql = "SELECT kind, item_id, theme_id, how, x, y FROM memberships WHERE run_id = ?"
        params: list[Any] = [run]
        if theme_id is not None:
            sql += " AND theme_id = ?"
            params.append(theme_id)
        if kind is not None:
            sql += " AND kind = ?"
            params.append(check_kind(kind))
        rows = self._store.read(sql + " ORDER BY kind, item_id", params)
        return [{"kind": r[0], "item_id": r[1], "theme_id": r[2], "how": r[3], "x": r[4], "y": r[5]} for r in rows]

    def theme_of(self, kind: str, item_id: str) -> str | None:
        """The current theme of one item, if any."""
        run = self.current_run_id()
        if run is None:
            return None
        row = self._store.read_one(
            "SELECT theme_id FROM memberships WHERE run_id = ? AND kind = ? AND item_id = ? AND theme_id <> ''",
            [run, kind, item_id],
        )
        return row[0] if row else None

    def trend_rows(self) -> list[tuple[str, str, datetime | None, str | None]]:
        """(theme id, kind, created_at, department) for every member of the current run."""
        run = self.current_run_id()
        if run is None:
            return []
        rows = self._store.read(
            "SELECT m.theme_id, m.kind, coalesce(i.created_at, n.created_at), coalesce(i.department, n.department) "
            "FROM memberships m LEFT JOIN ideas i ON m.kind = 'ideas' AND i.id = m.item_id "
            "LEFT JOIN needs n ON m.kind = 'needs' AND n.id = m.item_id "
            "WHERE m.run_id = ? AND m.theme_id <> ''",
            [run],
        )
        return rows  # type: ignore[return-value]


def _erased_since(con: Any, members: list[MemberRow]) -> set[tuple[str, str]]:
    """The (kind, id) of ``members`` whose record is no longer stored (erased while the job ran)."""
    gone: set[tuple[str, str]] = set()
    for kind in ("ideas", "needs"):
        ids = sorted({m.item_id for m in members if m.kind == kind})
        if ids:
            missing = con.execute(
                f"SELECT r.id FROM (SELECT unnest(?) AS id) r ANTI JOIN {check_kind(kind)} t ON t.id = r.id", [ids]
            ).fetchall()
            gone.update((kind, row[0]) for row in missing)
    return gone
