"""Re-read archives against their recorded sha256: ``manage.py verify_archives``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.archives import IntegrityReport, backend_name, verify_archives
from chat.models import SessionArchive

STATES = ("ok", "missing", "altered", "unreadable")


def sample_size(value: str) -> int:
    """``--sample N``: a whole number of archives, at least 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


class Command(BaseCommand):
    help = (
        "Re-read archives from storage and check each against its recorded sha256 (those checked "
        "longest ago first): a sample of ARCHIVE_VERIFY_SAMPLE by default. Records each verdict, "
        "prints the counts per state and the keys of bad archives; exits 1 when any archive is "
        "missing, altered or unreadable."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--all", action="store_true", help="check every archive")
        which.add_argument(
            "--sample",
            type=sample_size,
            metavar="N",
            help="check N archives (default: ARCHIVE_VERIFY_SAMPLE)",
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        sample = options["sample"] or settings.ARCHIVE_VERIFY_SAMPLE
        limit = None if options["all"] else sample
        try:
            report = verify_archives(limit=limit)
        except KeyboardInterrupt:  # what was checked until then is recorded
            raise CommandError("interrupted", returncode=130) from None
        bad = self._bad(report)
        if options["json"]:
            self.stdout.write(json.dumps(self._json(report, bad, limit), indent=2))
        else:
            self._print(report, bad, limit)
        if bad:
            archives = "archive is" if len(bad) == 1 else "archives are"
            raise CommandError(
                f"{len(bad)} {archives} missing, altered or unreadable", returncode=1
            )

    @staticmethod
    def _bad(report: IntegrityReport) -> list[tuple[str, str]]:
        """(key, state) of every bad archive, in the order checked."""
        keys = report.bad or []
        states: dict[str, str] = {}
        for start in range(0, len(keys), 500):  # a bounded IN list (SQLite caps its parameters)
            found = SessionArchive.objects.filter(key__in=keys[start : start + 500])
            states.update(found.values_list("key", "integrity"))
        return [(key, states.get(key, "")) for key in keys]

    @staticmethod
    def _json(
        report: IntegrityReport, bad: list[tuple[str, str]], limit: int | None
    ) -> dict[str, Any]:
        return {
            "ok": not bad,
            "backend": backend_name(),
            "sample": limit,
            "checked": report.checked,
            "states": {state: getattr(report, state) for state in STATES},
            "bad": [{"key": key, "state": state} for key, state in bad],
        }

    def _print(
        self, report: IntegrityReport, bad: list[tuple[str, str]], limit: int | None
    ) -> None:
        if limit == 0:
            self.stdout.write("Nothing checked: ARCHIVE_VERIFY_SAMPLE is 0 (--all or --sample N).")
            return
        which = "every archive" if limit is None else f"a sample of at most {limit}"
        if not report.checked:
            self.stdout.write(f"No archives to check ({which}, {backend_name()} storage).")
            return
        counts = ", ".join(f"{getattr(report, state)} {state}" for state in STATES)
        archives = "archive" if report.checked == 1 else "archives"
        self.stdout.write(
            f"Checked {report.checked} {archives} ({which}, {backend_name()} storage): {counts}."
        )
        for key, state in bad:
            self.stdout.write(f"  {state:<10}  {key}")
