"""Full-text index of articles, per database vendor; the database keeps it in sync on every write.

SQLite: an external-content FTS5 table over ``tools_article`` (porter stemming on unicode61 with
diacritics removed) fed by triggers, so admin edits, ``loadkb``, ORM saves, ``QuerySet.update``
and deletes all reach it. It is keyed by the table's implicit rowid: a later migration that makes
Django *remake* ``tools_article`` on SQLite (most ``AlterField``s) drops these triggers and may
renumber rowids, so such a migration must run ``install_sqlite`` below again (it rebuilds).

PostgreSQL: a stored generated ``tsvector`` (title weight A, body weight B, tags weight C; the
weight each label counts for is chosen at query time in ``tools/kb/postgres.py``) with a GIN index.
"""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

SQLITE_INSTALL = [
    """
    CREATE VIRTUAL TABLE IF NOT EXISTS tools_article_fts USING fts5(
        title, tags, content,
        content='tools_article', content_rowid='rowid',
        tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER IF NOT EXISTS tools_article_fts_insert AFTER INSERT ON tools_article BEGIN
        INSERT INTO tools_article_fts(rowid, title, tags, content)
        VALUES (new.rowid, new.title, new.tags, new.content);
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS tools_article_fts_delete AFTER DELETE ON tools_article BEGIN
        INSERT INTO tools_article_fts(tools_article_fts, rowid, title, tags, content)
        VALUES ('delete', old.rowid, old.title, old.tags, old.content);
    END
    """,
    # Only text changes touch the index: re-saving an unchanged article costs nothing.
    """
    CREATE TRIGGER IF NOT EXISTS tools_article_fts_update AFTER UPDATE ON tools_article
    WHEN old.title IS NOT new.title OR old.tags IS NOT new.tags
        OR old.content IS NOT new.content OR old.rowid IS NOT new.rowid
    BEGIN
        INSERT INTO tools_article_fts(tools_article_fts, rowid, title, tags, content)
        VALUES ('delete', old.rowid, old.title, old.tags, old.content);
        INSERT INTO tools_article_fts(rowid, title, tags, content)
        VALUES (new.rowid, new.title, new.tags, new.content);
    END
    """,
    "INSERT INTO tools_article_fts(tools_article_fts) VALUES ('rebuild')",
]

SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS tools_article_fts_insert",
    "DROP TRIGGER IF EXISTS tools_article_fts_delete",
    "DROP TRIGGER IF EXISTS tools_article_fts_update",
    "DROP TABLE IF EXISTS tools_article_fts",
]

POSTGRES_INSTALL = [
    # Explicit 'english' regconfig: to_tsvector is IMMUTABLE only with it, as a generated
    # column requires. jsonb::text of the tags list tokenizes into its words.
    """
    ALTER TABLE tools_article ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A')
        || setweight(to_tsvector('english'::regconfig, coalesce(content, '')), 'B')
        || setweight(to_tsvector('english'::regconfig, coalesce(tags::text, '')), 'C')
    ) STORED
    """,
    "CREATE INDEX tools_article_search_idx ON tools_article USING gin (search_vector)",
]

POSTGRES_REMOVE = [
    "DROP INDEX IF EXISTS tools_article_search_idx",
    "ALTER TABLE tools_article DROP COLUMN IF EXISTS search_vector",
]


def _run(schema_editor: BaseDatabaseSchemaEditor, statements: dict[str, list[str]]) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in statements:
        raise RuntimeError(f"no full-text index for database vendor {vendor!r}")
    for sql in statements[vendor]:
        schema_editor.execute(sql)


def install(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _run(schema_editor, {"sqlite": SQLITE_INSTALL, "postgresql": POSTGRES_INSTALL})


def remove(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _run(schema_editor, {"sqlite": SQLITE_REMOVE, "postgresql": POSTGRES_REMOVE})


def install_sqlite(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Re-create the SQLite triggers and rebuild (for a migration that remakes the table)."""
    if schema_editor.connection.vendor == "sqlite":
        for sql in SQLITE_INSTALL:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("tools", "0001_initial")]

    operations = [migrations.RunPython(install, remove, elidable=False)]
