"""What ``export_subject`` and ``erase_subject`` share: who the person is, the staff's reference,
and who asks (``manage.py``, or ``manage.py (NAME)`` with ``--by``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from ops.subjects import KIND_LABELS, Subject, SubjectError, clean_reference, subject_from
from supportbot.storable import unstorable

FLAGS = {"user_id": "--user-id", "email": "--email", "reference": "--reference"}
BY_MAX = 100


def add_subject_arguments(parser: CommandParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user-id", metavar="USER_ID", help="the userId the person's client sent")
    who.add_argument("--email", metavar="ADDRESS", help="the contact address they gave")
    parser.add_argument(
        "--reference",
        default="",
        help="your own reference for the request, e.g. a ticket number; kept on the receipt, "
        "so never personal data",
    )
    parser.add_argument("--by", default="", metavar="NAME", help="who asks, for the receipt")


def subject_and_reference(options: dict[str, Any]) -> tuple[Subject, str]:
    """The person and the reference from the options, or ``CommandError`` saying what is wrong."""
    try:
        subject = subject_from(user_id=options.get("user_id"), email=options.get("email"))
        reference = clean_reference(options.get("reference"), subject=subject)
    except SubjectError as exc:
        flag = FLAGS.get(exc.field, "")
        raise CommandError(f"{flag}: {exc.message}" if flag else exc.message) from None
    return subject, reference


def requested_by(options: dict[str, Any]) -> str:
    """``manage.py``, or ``manage.py (NAME)`` for ``--by NAME``."""
    name = str(options.get("by") or "").strip()
    if not name:
        return "manage.py"
    if unstorable(name) or len(name) > BY_MAX:
        raise CommandError(f"--by: a name of at most {BY_MAX} characters, please.")
    return f"manage.py ({name})"


def count_lines(counts: dict[str, int]) -> list[str]:
    """One line per kind: the label and the count, aligned."""
    width = max((len(KIND_LABELS.get(k, k)) for k in counts), default=0)
    return [f"  {KIND_LABELS.get(k, k):<{width}}  {v:>6}" for k, v in counts.items()]
