"""Export everything held about a person as one JSON document: ``manage.py export_subject``."""

from __future__ import annotations

import json
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ops.management.commands._subject import (
    add_subject_arguments,
    count_lines,
    requested_by,
    subject_and_reference,
)
from ops.subject_export import export_counts, export_subject


class Command(BaseCommand):
    help = (
        "Export everything held about a person, found by --user-id or --email, as one JSON "
        "document (to stdout, or --output FILE), and record a receipt without personal data."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_subject_arguments(parser)
        parser.add_argument(
            "--output",
            metavar="FILE",
            help="write the document to FILE (created, readable by you only; never overwritten)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        subject, reference = subject_and_reference(options)
        by = requested_by(options)
        output = options.get("output")
        if output and os.path.lexists(output):
            raise CommandError(f"--output: {output} exists; choose a new file.")
        document = export_subject(subject=subject, requested_by=by, reference=reference)
        body = json.dumps(document, ensure_ascii=False, indent=2)
        if output:
            try:
                fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(body + "\n")
            except OSError as exc:
                raise CommandError(
                    f"--output: cannot write {output} ({exc.strerror}); receipt "
                    f"#{document['receipt']} was recorded, export again to a writable file."
                ) from None
        else:
            self.stdout.write(body)
        # The summary goes to stderr: stdout is the document itself.
        held = "" if document["held"] else " Nothing held."
        self.stderr.write(f"Exported; receipt #{document['receipt']}.{held}")
        for line in count_lines(export_counts(document)):
            self.stderr.write(line)
