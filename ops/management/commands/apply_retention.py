"""Apply the retention policy now, or show what it would delete: ``manage.py apply_retention``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.table import Table
from rich.text import Text

from ops.models import RetentionRun
from ops.retention import KINDS, RetentionResult, UnknownKind, apply_retention, period_label
from ops.verification import console_for


def result_table(result: RetentionResult) -> Table:
    """Kind, setting, period, and what is due (dry run) or what went."""
    title = "retention: what would go (dry run)" if result.dry_run else "retention: what went"
    table = Table(title=title, title_justify="left")
    table.add_column("kind", no_wrap=True)
    table.add_column("setting", no_wrap=True)
    table.add_column("period", no_wrap=True)
    table.add_column("due" if result.dry_run else "deleted", justify="right", no_wrap=True)
    for outcome in result.outcomes:
        count = outcome.due if result.dry_run else outcome.deleted
        shown = Text(str(count))
        if not result.dry_run and not outcome.finished:
            shown = Text(f"{count} (unfinished)", style="yellow")
        table.add_row(outcome.kind, outcome.setting, period_label(outcome.period_days), shown)
    return table


class Command(BaseCommand):
    help = (
        "Delete what the retention policy says has been kept long enough (sessions through "
        "expiry, archives, tickets, PII review copies, security events, metrics), in batches; "
        "--dry-run shows what would go and deletes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="count what is due; delete and record nothing"
        )
        parser.add_argument(
            "--kind",
            action="extend",
            nargs="+",
            default=[],
            metavar="KIND",
            help=f"only these kinds of data ({', '.join(KINDS)}); repeatable",
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = apply_retention(
                RetentionRun.Trigger.COMMAND,
                dry_run=options["dry_run"],
                kinds=options["kind"] or None,
            )
        except UnknownKind as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(result.as_json(), indent=2))
        else:
            console = console_for(self.stdout)
            console.print(result_table(result))
            for entry in result.errors:
                said = entry.get("error") or entry.get("note") or ""
                key = f" ({entry['key']})" if entry.get("key") else ""
                style = "bold red" if "error" in entry else "yellow"
                console.print(Text(f"  {entry['kind']}{key}: {said}", style=style))
            if result.run_id is not None:
                console.print(f"Recorded as retention run #{result.run_id}.")
        if result.failed:
            failures = sum(1 for entry in result.errors if "error" in entry)
            raise CommandError(
                f"retention met {failures} error(s); what failed stays", returncode=1
            )
