"""Check every part of this deployment and say what works: ``manage.py verify_deployment``."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ops.deployment import deployment_checks, verify_deployment
from ops.verification import (
    CheckReport,
    console_for,
    failures,
    positive_seconds,
    status_counts,
)

_STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


def report_table(reports: list[CheckReport]) -> Table:
    """The checks as a table: check, status, time, detail."""
    table = Table(title="supportbot deployment", title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("time ms", justify="right", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for report in reports:
        style = _STYLES[report.status]
        table.add_row(report.name, Text(report.status, style), f"{report.ms:.0f}", report.detail)
    return table


class Command(BaseCommand):
    # The system checks are one of its checks, reported in the table; run before it, an error
    # (or a database the checks cannot open) would stop the command before anything is said.
    requires_system_checks: list[str] = []
    help = (
        "Check the settings, Django's deploy checks, the database, Redis, the cache, the channel "
        "layer, the Celery broker, a worker and beat, each model, archive storage, the knowledge "
        "base and one real turn; exit 1 when a check failed (with --strict, or warned)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            help="run the turn over HTTP against this server (http://host:port) instead of "
            "through the engine in this process",
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--strict", action="store_true", help="warnings fail too")
        parser.add_argument(
            "--timeout",
            type=positive_seconds,
            help="the time limit of every check, in seconds (default: each check's own)",
        )
        parser.add_argument(
            "--skip",
            action="append",
            default=[],
            metavar="CHECK",
            help="leave out a check, or a group of them (model); repeatable",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        url, skip, strict = options["url"], options["skip"], options["strict"]
        if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
            raise CommandError(f"--url must be http(s)://host[:port], not {url!r}")
        names = [check.name for check in deployment_checks(url=url)]
        unknown = sorted(set(skip) - set(names) - {name.split(":", 1)[0] for name in names})
        if unknown:
            raise CommandError(f"--skip: no check {', '.join(unknown)} ({', '.join(names)})")
        console = console_for(self.stdout)
        try:
            reports = self._verify(console, options)
        except KeyboardInterrupt:
            raise CommandError("interrupted", returncode=130) from None
        if options["json"]:
            self.stdout.write(json.dumps(self._json(reports, strict=strict), indent=2))
        else:
            self._print(console, reports)
        failing = failures(reports, strict=strict)
        if failing:
            checks = "check" if len(failing) == 1 else "checks"
            said = f"{len(failing)} {checks} failed: {', '.join(failing)}"
            raise CommandError(said, returncode=1)

    @staticmethod
    def _verify(console: Console, options: dict[str, Any]) -> list[CheckReport]:
        run = {"url": options["url"], "timeout": options["timeout"], "skip": options["skip"]}
        if not console.is_terminal or options["json"]:
            return verify_deployment(**run)
        # On a terminal a spinner names the check running (the turn may take a while).
        with console.status("checking…") as spinner:
            return verify_deployment(
                **run, progress=lambda name: spinner.update(f"checking {name}…")
            )

    @staticmethod
    def _json(reports: list[CheckReport], *, strict: bool) -> dict[str, Any]:
        return {
            "ok": not failures(reports, strict=strict),
            "strict": strict,
            "summary": status_counts(reports),
            "checks": [report.as_json() for report in reports],
        }

    @staticmethod
    def _print(console: Console, reports: list[CheckReport]) -> None:
        console.print(report_table(reports))
        for report in reports:
            for note in report.notes:
                console.print(Text(f"  {report.name}: {note}", style="dim"))
        console.print(", ".join(f"{n} {status}" for status, n in status_counts(reports).items()))
