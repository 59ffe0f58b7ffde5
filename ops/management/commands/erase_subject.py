"""Erase everything held about a person: ``manage.py erase_subject``."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ops.management.commands._subject import (
    add_subject_arguments,
    count_lines,
    requested_by,
    subject_and_reference,
)
from ops.subjects import ErasureIncomplete, erase_subject, find_holdings

CONFIRM_WORD = "erase"


class Command(BaseCommand):
    help = (
        "Erase everything held about a person, found by --user-id or --email: archive objects "
        "in storage, then every row in one transaction; records a receipt without personal "
        "data. Shows the counts and asks to confirm unless --yes; --dry-run changes nothing."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        add_subject_arguments(parser)
        parser.add_argument("--yes", action="store_true", help="erase without asking")
        parser.add_argument(
            "--dry-run", action="store_true", help="show what would be erased; change nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        subject, reference = subject_and_reference(options)
        by = requested_by(options)
        held = find_holdings(subject)
        counts = held.counts()
        if not held.session_ids and not any(counts.values()):
            self.stdout.write(f"Nothing held about this {subject.label}.")
        else:
            self.stdout.write(f"Held about this {subject.label}:")
            for line in count_lines(counts):
                self.stdout.write(line)
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing erased, no receipt recorded.")
            return
        if not options["yes"]:
            self._confirm(options.get("stdin") or sys.stdin)
        try:
            receipt = erase_subject(subject=subject, requested_by=by, reference=reference)
        except ErasureIncomplete as exc:
            raise CommandError(
                f"{exc.message} (receipt #{exc.receipt.pk}, not completed)", returncode=1
            ) from None
        self.stdout.write(
            f"Erased; receipt #{receipt.pk}.{' ' + receipt.note if receipt.note else ''}"
        )
        for line in count_lines(receipt.counts):
            self.stdout.write(line)

    def _confirm(self, stdin: Any) -> None:
        if not stdin.isatty():
            raise CommandError(
                "Not erasing: there is no terminal to confirm on. Run it interactively, or "
                "add --yes once you have checked the counts (--dry-run shows them)."
            )
        self.stdout.write(f"Type {CONFIRM_WORD!r} to erase everything counted above for good: ")
        self.stdout.flush()
        answer = stdin.readline().strip()
        if answer != CONFIRM_WORD:
            raise CommandError("Not confirmed: nothing erased, no receipt recorded.")
