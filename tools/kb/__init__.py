"""Knowledge-base services: ranked full-text search over articles, and importing Markdown files.

Search runs in the database: SQLite FTS5 (``bm25``) on the embedded default (``sqlite``),
PostgreSQL full-text search in production (``postgres``, with its cached word statistics in
``postgres_statistics``; the index itself is built by ``tools/migrations/0002_search_index.py``).
Both score the same BM25-style model (``ranking``) over the terms ``query`` makes of the
question; ``search`` is the entry that also fuses the embedding ranking (``tools.embeddings``)
and picks each hit's passage (``passages``). ``importer`` loads Markdown articles;
``published`` lists the e-mail addresses the articles publish.

Importers name the submodule: this package imports nothing, so loading any one of them never
loads the others (``tools.embeddings`` reads passages while ``search`` reads embeddings).
"""
