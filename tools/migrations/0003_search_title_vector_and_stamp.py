"""PostgreSQL search at scale: vectors kept in the row, a title-and-tags vector, a change stamp.

``search_vector`` is stored MAIN (in the row, uncompressed while the row fits a page; the article
body is moved out of the row instead). Ranking reads the vectors of a few hundred candidates per
question, and a TOASTed vector costs a TOAST index lookup and a copy on every read, several
times the reading itself. Existing rows are rewritten once so they take the new layout.

``title_vector`` holds only the title (weight A) and tags (weight C), the same lexemes and labels
as those parts of ``search_vector``, in a few hundred bytes. With its own GIN index it finds the
articles naming a question word in their title or tags without touching the rest, and its
ts_rank_cd gives the title-and-tags bonus (``tools/kb/postgres.py``).

``tools_article_search_stamp`` holds one random value, replaced by every statement that writes
``tools_article`` (a statement trigger, so ``QuerySet.update``, raw SQL and TRUNCATE count too;
ENABLE ALWAYS, so it also fires when logical replication applies changes).
``tools/kb/postgres_statistics.py`` caches per-word match sets under it. Being a row, it is read
in the same snapshot as the matches it labels; being random, a value from a rolled-back write
never comes back. Writers of
articles queue on that row until they commit, which suits a knowledge base edited now and then;
the trigger runs before its statement locks any article row, so writers that lock articles
only by writing them cannot deadlock on it.

SQLite needs none of this (FTS5 keeps statistics in its own index): a no-op there.
"""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

POSTGRES_INSTALL = [
    """
    ALTER TABLE tools_article ADD COLUMN title_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A')
        || setweight(to_tsvector('english'::regconfig, coalesce(tags::text, '')), 'C')
    ) STORED
    """,
    "ALTER TABLE tools_article ALTER COLUMN title_vector SET STORAGE MAIN",
    "ALTER TABLE tools_article ALTER COLUMN search_vector SET STORAGE MAIN",
    # Storage applies to rows as they are written: rewrite the existing ones (the generated
    # columns are recomputed, to the same values).
    "UPDATE tools_article SET title = title",
    "CREATE INDEX tools_article_title_search_idx ON tools_article USING gin (title_vector)",
    """
    CREATE TABLE tools_article_search_stamp (
        id boolean PRIMARY KEY DEFAULT true CHECK (id),
        stamp uuid NOT NULL
    )
    """,
    "INSERT INTO tools_article_search_stamp (id, stamp) VALUES (true, gen_random_uuid())",
    """
    CREATE FUNCTION tools_article_search_stamp_bump() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE tools_article_search_stamp SET stamp = gen_random_uuid();
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER tools_article_search_stamp_bump
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON tools_article
    FOR EACH STATEMENT EXECUTE FUNCTION tools_article_search_stamp_bump()
    """,
    "ALTER TABLE tools_article ENABLE ALWAYS TRIGGER tools_article_search_stamp_bump",
]

POSTGRES_REMOVE = [
    "DROP TRIGGER IF EXISTS tools_article_search_stamp_bump ON tools_article",
    "DROP FUNCTION IF EXISTS tools_article_search_stamp_bump()",
    "DROP TABLE IF EXISTS tools_article_search_stamp",
    "DROP INDEX IF EXISTS tools_article_title_search_idx",
    "ALTER TABLE tools_article DROP COLUMN IF EXISTS title_vector",
    "ALTER TABLE tools_article ALTER COLUMN search_vector SET STORAGE EXTENDED",
]


def install(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in POSTGRES_INSTALL:
            schema_editor.execute(sql)


def remove(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in POSTGRES_REMOVE:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("tools", "0002_search_index")]

    operations = [migrations.RunPython(install, remove, elidable=False)]
