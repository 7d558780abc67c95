"""Versioned schema migrations. Each entry upgrades the database by one version, in one transaction.

Never edit a released migration: append a new one. ``schema_version`` records what was applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Step = str | Callable[[Any], None]

_RECORD_COLUMNS = """
    id VARCHAR PRIMARY KEY,
    title VARCHAR,
    text VARCHAR NOT NULL,
    original_text VARCHAR,
    created_at TIMESTAMP,
    department VARCHAR,
    status VARCHAR,
    outcome VARCHAR,
    source VARCHAR,
    attributes JSON,
    embed_hash VARCHAR NOT NULL,
    ingested_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
"""

MIGRATIONS: list[tuple[int, str, list[Step]]] = [
    (
        1,
        "records, embeddings and runs",
        [
            f"CREATE TABLE ideas ({_RECORD_COLUMNS})",
            f"CREATE TABLE needs ({_RECORD_COLUMNS})",
            """CREATE TABLE embeddings (
            model_id VARCHAR NOT NULL,
            text_hash VARCHAR NOT NULL,
            dim INTEGER NOT NULL,
            vector FLOAT[] NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (model_id, text_hash))""",
            "CREATE SEQUENCE run_seq START 1",
            """CREATE TABLE runs (
            run_id BIGINT PRIMARY KEY DEFAULT nextval('run_seq'),
            kind VARCHAR NOT NULL,
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            status VARCHAR NOT NULL,
            details JSON)""",
        ],
    ),
    (
        2,
        "feedback and idea-need links",
        [
            "CREATE SEQUENCE feedback_seq START 1",
            """CREATE TABLE feedback (
            feedback_id BIGINT PRIMARY KEY DEFAULT nextval('feedback_seq'),
            query_kind VARCHAR NOT NULL,
            query_id VARCHAR NOT NULL,
            target_kind VARCHAR NOT NULL,
            target_id VARCHAR NOT NULL,
            verdict VARCHAR NOT NULL,
            actor VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL)""",
            """CREATE TABLE need_links (
            idea_id VARCHAR NOT NULL,
            need_id VARCHAR NOT NULL,
            state VARCHAR NOT NULL,
            actor VARCHAR NOT NULL,
            updated_at TIMESTAMP NOT NULL,
            PRIMARY KEY (idea_id, need_id))""",
        ],
    ),
    (
        3,
        "themes",
        [
            """CREATE TABLE theme_runs (
            run_id BIGINT PRIMARY KEY,
            created_at TIMESTAMP NOT NULL,
            params JSON,
            timings JSON,
            n_themes INTEGER,
            share_unassigned DOUBLE,
            quality DOUBLE,
            events JSON)""",
            """CREATE TABLE themes (
            run_id BIGINT NOT NULL,
            theme_id VARCHAR NOT NULL,
            label VARCHAR NOT NULL,
            keywords JSON,
            representatives JSON,
            size INTEGER NOT NULL,
            centroid FLOAT[],
            assign_threshold DOUBLE,
            PRIMARY KEY (run_id, theme_id))""",
            """CREATE TABLE memberships (
            run_id BIGINT NOT NULL,
            kind VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            theme_id VARCHAR NOT NULL,
            how VARCHAR NOT NULL,
            x DOUBLE, y DOUBLE,
            PRIMARY KEY (run_id, kind, item_id))""",
            "CREATE TABLE current_theme_run (singleton INTEGER PRIMARY KEY, run_id BIGINT NOT NULL)",
            """CREATE TABLE theme_curation (
            curation_id VARCHAR PRIMARY KEY,
            action VARCHAR NOT NULL,
            theme_id VARCHAR,
            other_theme_id VARCHAR,
            kind VARCHAR,
            item_id VARCHAR,
            name VARCHAR,
            actor VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL)""",
        ],
    ),
    (
        4,
        "api keys and audit",
        [
            """CREATE TABLE api_keys (
            key_id VARCHAR PRIMARY KEY,
            name VARCHAR NOT NULL,
            role VARCHAR NOT NULL,
            key_hash VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            revoked_at TIMESTAMP)""",
            """CREATE TABLE audit (
            happened_at TIMESTAMP NOT NULL,
            actor VARCHAR NOT NULL,
            action VARCHAR NOT NULL,
            kind VARCHAR,
            item_id VARCHAR)""",
        ],
    ),
]


def _remask_records(con: Any) -> None:
    """Mask every text-bearing field of rows stored before all fields were masked (version 5)."""
    from pipelines.masking import mask

    fields = ("text", "title", "department", "status", "outcome", "source")
    for kind in ("ideas", "needs"):
        rows = con.execute(f"SELECT id, {', '.join(fields)} FROM {kind}").fetchall()
        for rid, *values in rows:
            masked = [mask(v).text if v else v for v in values]
            if masked != values:
                sets = ", ".join(f"{f} = ?" for f in fields)
                con.execute(f"UPDATE {kind} SET {sets} WHERE id = ?", [*masked, rid])


MIGRATIONS.append(
    (
        5,
        "no unmasked data: drop original_text and unvetted attributes, mask every field, contact_ref",
        [
            *(
                sql
                for kind in ("ideas", "needs")
                for sql in (
                    f"ALTER TABLE {kind} DROP COLUMN original_text",
                    f"UPDATE {kind} SET attributes = NULL",
                    f"ALTER TABLE {kind} ADD COLUMN contact_ref VARCHAR",
                )
            ),
            _remask_records,
        ],
    )
)
MIGRATIONS.append(
    (
        6,
        "coach inbox: precomputed suggestions per idea, review and assignment state",
        [
            """CREATE TABLE idea_suggestions (
            idea_id VARCHAR PRIMARY KEY,
            basis VARCHAR NOT NULL,
            theme_id VARCHAR,
            suggestions JSON NOT NULL,
            computed_at TIMESTAMP NOT NULL)""",
            """CREATE TABLE idea_reviews (
            idea_id VARCHAR PRIMARY KEY,
            reviewed_at TIMESTAMP,
            reviewed_by VARCHAR,
            assigned_to VARCHAR,
            assigned_by VARCHAR,
            assigned_at TIMESTAMP)""",
        ],
    )
)


class OnlyIn:
    """A migration step for the default schema only (``main``: the tenant list, the API keys) or for the
    other tenants' schemas only. Every tenant's schema runs the same list of migrations; tables that
    exist once per installation live in ``main``, and their steps are wrapped in ``OnlyIn("main", ...)``.
    """

    def __init__(self, where: str, step: str) -> None:
        self.where = where
        self.step = step

    def __call__(self, con: Any) -> None:
        row = con.execute("SELECT current_schema()").fetchone()
        in_main = bool(row) and row[0] == "main"
        if in_main == (self.where == "main"):
            con.execute(self.step)


TENANTS_VERSION = 7
MIGRATIONS.append(
    (
        TENANTS_VERSION,
        "tenants: one schema per municipality, the tenant list, keys per tenant, shared ideas",
        [
            # a record's own choice to share it with other municipalities (NULL: its tenant's default)
            "ALTER TABLE ideas ADD COLUMN shared BOOLEAN",
            "ALTER TABLE needs ADD COLUMN shared BOOLEAN",
            OnlyIn(
                "main",
                """CREATE TABLE tenants (
                name VARCHAR PRIMARY KEY,
                shared_default BOOLEAN NOT NULL DEFAULT false,
                created_at TIMESTAMP NOT NULL)""",
            ),
            OnlyIn("main", "INSERT INTO tenants VALUES ('default', false, current_timestamp)"),
            # keys are looked up before the tenant is known: one table for the installation, in main
            OnlyIn("main", "ALTER TABLE api_keys ADD COLUMN tenant VARCHAR DEFAULT 'default'"),
            OnlyIn("main", "ALTER TABLE api_keys ADD COLUMN region JSON"),
            OnlyIn("tenant", "DROP TABLE api_keys"),
        ],
    )
)
MIGRATIONS.append(
    (
        8,
        "an index on the embeddings' text hash: a vector is found by its hash without a scan",
        [
            # DuckDB looks rows up in an index only through a single-column one that covers the whole
            # filter (the composite primary key is not used for lookups): a vector by its hash was a
            # scan of every stored vector, 14 ms at 100,000 ideas and growing with them
            "CREATE INDEX IF NOT EXISTS embeddings_text_hash ON embeddings (text_hash)",
        ],
    )
)
# Migrations that remove personal data from existing rows: the store compacts after applying them,
# so the removed bytes do not linger in the file's free blocks.
SCRUBBING = {5}
LATEST = MIGRATIONS[-1][0]
