"""``manage.py loadkb [PATH]``: import Markdown articles (default: the bundled starter KB)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tools.embeddings import index_articles
from tools.kb.importer import import_articles

STARTER_KB = Path(__file__).resolve().parents[2] / "starter_kb"


class Command(BaseCommand):
    help = (
        "Import knowledge-base articles (Markdown with YAML front matter) from PATH, or the "
        "bundled starter knowledge base. Upserts by id: running it again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "path", nargs="?", type=Path, help="a folder of *.md files, or one file"
        )

    def handle(self, *args: Any, path: Path | None = None, **options: Any) -> None:
        source = path or STARTER_KB
        if not source.exists():
            raise CommandError(f"{source} does not exist")
        report = import_articles(path=source)
        for problem in report.errors:
            self.stderr.write(f"skipped {problem.file}: {problem.message}")
        if options.get("verbosity", 1) >= 1 or report.errors:
            self.stdout.write(
                f"{source}: {len(report.created)} created, {len(report.updated)} updated, "
                f"{len(report.unchanged)} unchanged"
                + (f", {len(report.errors)} with errors" if report.errors else "")
            )
        try:
            embedded = index_articles()  # EMBEDDINGS_MODEL: vectors for new or changed articles
        except Exception as exc:
            # The articles are in and full-text search works; the vectors come with a later run.
            self.stderr.write(f"embeddings not updated: {type(exc).__name__}: {exc}")
            embedded = 0
        if embedded and options.get("verbosity", 1) >= 1:
            self.stdout.write(f"embedded {embedded} article(s)")
        if report.errors:
            # The good files are in; the exit status still tells a script that some were not.
            raise CommandError(f"{len(report.errors)} file(s) could not be imported")
