"""What staff do with a review item, and what they read to decide.

The guards record the items (``chat.guards.review``); staff review them in the ops admin, which
calls these: ``confirm``, ``dismiss`` (a dismissed PII detection puts its values on the PII
allowlist, by fingerprint), ``add_note``. To decide they read ``transcript_context`` (the
conversation around the item) and, while an encrypted copy is kept, ``clear_text``. A pattern
entry staff add to the allowlist must pass ``validate_pattern``.
"""

from __future__ import annotations

import re

from cryptography.fernet import InvalidToken
from django.db import transaction
from django.utils import timezone

from chat.guards.review import clear_text_cipher, invalidate_allowlist
from chat.models import Message, PiiAllowlistEntry, ReviewItem


def _review(item: ReviewItem, status: str, by: str) -> None:
    item.status = status
    item.reviewed_by = by
    item.reviewed_at = timezone.now()
    item.save(update_fields=["status", "reviewed_by", "reviewed_at"])


def confirm(item: ReviewItem, *, by: str) -> None:
    """Mark the item a true finding, reviewed by ``by``."""
    _review(item, ReviewItem.Status.CONFIRMED, by)


def dismiss(item: ReviewItem, *, by: str) -> int:
    """Mark a false positive; a PII item's values join the allowlist. Returns entries added."""
    added = 0
    with transaction.atomic():
        _review(item, ReviewItem.Status.DISMISSED, by)
        if item.kind == ReviewItem.Kind.PII:
            matches = (item.findings or {}).get("matches", [])
            known = set(
                PiiAllowlistEntry.objects.filter(
                    fingerprint__in=[m.get("fingerprint", "") for m in matches]
                ).values_list("fingerprint", flat=True)
            )
            for match in matches:
                fingerprint = match.get("fingerprint", "")
                if not fingerprint or fingerprint in known:
                    continue
                known.add(fingerprint)
                PiiAllowlistEntry.objects.create(
                    kind=match.get("kind", ""),
                    fingerprint=fingerprint,
                    source=item,
                    created_by=by,
                    note=f"dismissed from review item #{item.pk}",
                )
                added += 1
    if added:
        invalidate_allowlist()
    return added


def add_note(item: ReviewItem, *, by: str, note: str) -> None:
    """Append ``note`` to the item's notes, stamped with the time and ``by``."""
    stamp = timezone.now().strftime("%Y-%m-%d %H:%M")
    line = f"[{stamp} {by}] {note.strip()}"
    item.note = f"{item.note}\n{line}".strip()
    item.save(update_fields=["note"])


def transcript_context(item: ReviewItem, around: int = 3) -> list[Message]:
    """The messages around the item's message (the session's last few when it has none)."""
    messages = Message.objects.filter(session_id=item.session_id)
    anchor = messages.filter(pk=item.message_id).values_list("seq", flat=True).first()
    if anchor is None:
        return list(reversed(messages.order_by("-seq")[: 2 * around]))
    return list(messages.filter(seq__gte=anchor - around, seq__lte=anchor + around).order_by("seq"))


def clear_text(item: ReviewItem) -> str | None:
    """The clear text of an item, when an encrypted copy is kept and not yet purged."""
    cipher = clear_text_cipher()
    if cipher is None or not item.encrypted_clear:
        return None
    try:
        return str(cipher.decrypt(bytes(item.encrypted_clear)).decode())
    except InvalidToken:
        return None


def validate_pattern(pattern: str) -> None:
    """Refuse a pattern that does not compile (the allowlist admin form calls this)."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from exc
