"""What an archived document holds beside its messages, as an archive's page shows it: the
hand-offs, internal notes, ratings and answer votes of the conversation.

The document was checked against its sha256 before it gets here, so it is what the service
wrote; its values are still read defensively (a field of the wrong type shows as empty), and the
template escapes every one of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ops.transcripts import staff_time

# The fields of each kind of record, as (document key, column heading); times are epoch ms.
HANDOFF_FIELDS = (
    ("status", "Status"),
    ("reason", "Reason"),
    ("topic", "Topic"),
    ("assignee", "Assignee"),
    ("ticketId", "Ticket"),
    ("contactEmail", "Reply address"),
    ("requestedAt", "Requested"),
    ("resolvedAt", "Resolved"),
    ("resolvedBy", "Resolved by"),
    ("summary", "Summary"),
    ("note", "Customer's note"),
)
NOTE_FIELDS = (("createdAt", "Time"), ("author", "Author"), ("text", "Note"))
RATING_FIELDS = (
    ("createdAt", "Time"),
    ("score", "Score"),
    ("agent", "Agent"),
    ("comment", "Comment"),
)
VOTE_FIELDS = (("createdAt", "Time"), ("messageId", "Message"), ("vote", "Vote"))
TIME_KEYS = frozenset({"requestedAt", "resolvedAt", "createdAt"})
KINDS = (
    ("handoffs", "Hand-offs to a person", HANDOFF_FIELDS),
    ("notes", "Internal notes", NOTE_FIELDS),
    ("ratings", "Ratings", RATING_FIELDS),
    ("answerVotes", "Answer feedback", VOTE_FIELDS),
)


def _cell(key: str, value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    if key in TIME_KEYS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return ""
        return staff_time(datetime.fromtimestamp(value / 1000, tz=UTC))
    return str(value)


def archived_records(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each kind of record the document holds (kinds with none are left out): its title, its
    column headings and its rows of text."""
    found = []
    for key, title, fields in KINDS:
        items = document.get(key)
        rows = [
            [_cell(field, item.get(field)) for field, _ in fields]
            for item in (items if isinstance(items, list) else [])
            if isinstance(item, dict)
        ]
        if rows:
            found.append(
                {"key": key, "title": title, "headings": [h for _, h in fields], "rows": rows}
            )
    return found
