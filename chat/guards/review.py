"""What the guards record for staff, and the PII allowlist that redaction applies.

Recording: ``record_findings`` (PII redactions and content-filter flags of a stored message),
``record_block`` (a blocked message, which is stored only here), ``report_message`` (a user's
"report this answer"). Staff review these items in the admin (the ops app). The allowlist that
redaction applies is ``current_allowlist``, read from the database at most every
``ALLOWLIST_TTL`` seconds per process and at once after ``invalidate_allowlist`` in this one.

The clear text of a PII detection is kept only encrypted (Fernet, ``PII_REVIEW_ENCRYPTION_KEY``,
``clear_text_cipher``) and only until ``purge_after``; ``purge_expired_clear_text`` (a periodic
task) deletes it.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from cryptography.fernet import Fernet
from django.conf import settings
from django.utils import timezone

from chat.guards.content import ContentVerdict
from chat.guards.pii import Allowlist, Redaction, redact_pii
from chat.models import ChatSession, Message, PiiAllowlistEntry, ReviewItem
from supportbot.clients import client_label
from supportbot.errors import ApiError
from supportbot.security import security_event
from tools.kb.published import published_addresses

log = structlog.get_logger("chat.guards.review")

ALLOWLIST_TTL = 10.0
REPORT_REASON_MAX = 1000


# --- the allowlist -------------------------------------------------------------------------------


class _AllowlistCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Allowlist | None = None
        self._loaded_at = 0.0

    def get(self) -> Allowlist:
        value = self._value
        if value is not None and time.monotonic() - self._loaded_at < ALLOWLIST_TTL:
            return value
        with self._lock:
            if self._value is None or time.monotonic() - self._loaded_at >= ALLOWLIST_TTL:
                self._value = _load_allowlist()
                self._loaded_at = time.monotonic()
            return self._value

    def fresh(self) -> Allowlist | None:
        """The cached allowlist when it is fresh enough, without touching the database."""
        value = self._value
        if value is not None and time.monotonic() - self._loaded_at < ALLOWLIST_TTL:
            return value
        return None

    def invalidate(self) -> None:
        with self._lock:
            self._value = None


def _load_allowlist() -> Allowlist:
    fingerprints: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    kind_patterns: list[tuple[str, re.Pattern[str]]] = []
    rows = PiiAllowlistEntry.objects.values_list("kind", "fingerprint", "pattern")
    for kind, fingerprint, pattern in rows:
        if fingerprint:
            fingerprints.add(fingerprint)  # a fingerprint covers its kind already
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error:
                log.warning("allowlist_pattern_invalid", pattern=pattern)
                continue
            if kind:
                kind_patterns.append((kind, compiled))
            else:
                patterns.append(compiled)
    # The addresses the knowledge base publishes are the company's, not a customer's.
    for address in sorted(published_addresses()):
        kind_patterns.append(("email", re.compile(re.escape(address), re.IGNORECASE)))
    return Allowlist(
        fingerprints=frozenset(fingerprints),
        patterns=tuple(patterns),
        kind_patterns=tuple(kind_patterns),
    )


_allowlist = _AllowlistCache()


def current_allowlist() -> Allowlist:
    """The allowlist as of at most ``ALLOWLIST_TTL`` seconds ago (loading it may query)."""
    return _allowlist.get()


async def allowlist_for_async() -> Allowlist:
    """``current_allowlist`` for async code: the database is read on a thread when needed."""
    value = _allowlist.fresh()
    if value is None:
        value = await sync_to_async(current_allowlist)()
    return value


def invalidate_allowlist() -> None:
    """Drop this process's cached allowlist: the next redaction reads the database."""
    _allowlist.invalidate()


# --- encrypted clear copies ----------------------------------------------------------------------


def clear_text_cipher() -> Fernet | None:
    """The cipher of the clear copies kept for review; None without PII_REVIEW_ENCRYPTION_KEY."""
    key = settings.PII_REVIEW_ENCRYPTION_KEY
    if not key:
        return None
    return Fernet(key.encode() if isinstance(key, str) else key)


def purge_expired_clear_text() -> int:
    """Delete the encrypted clear copies whose retention has passed; return how many."""
    return ReviewItem.objects.filter(
        purge_after__lte=timezone.now(), encrypted_clear__isnull=False
    ).update(encrypted_clear=None)


# --- recording ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Findings:
    """What the guard stage found in one text, to record once its message is stored."""

    direction: str  # ReviewItem.Direction
    redaction: Redaction | None = None
    original: str = ""  # only for the encrypted copy; never stored in clear
    content: ContentVerdict | None = None
    request_id: str = ""
    client_ip: str = ""

    def __bool__(self) -> bool:
        has_pii = self.redaction is not None and bool(self.redaction.matches)
        flagged = self.content is not None and self.content.action != "allow"
        return has_pii or flagged


def _pii_findings(redaction: Redaction) -> list[dict[str, Any]]:
    return [
        {"kind": m.kind, "start": m.start, "end": m.end, "fingerprint": m.fingerprint()}
        for m in redaction.matches
    ]


def _content_findings(verdict: ContentVerdict) -> dict[str, Any]:
    return {"score": round(verdict.score, 3), "reasons": list(verdict.reasons)}


def record_findings(*, session_id: str, message_id: str, findings: Findings) -> list[ReviewItem]:
    """Record a stored message's redactions and flags (call inside its write transaction)."""
    items: list[ReviewItem] = []
    base = {
        "session_id": session_id,
        "message_id": message_id,
        "request_id": findings.request_id,
        "client": client_label(findings.client_ip) if findings.client_ip else "",
        "direction": findings.direction,
    }
    redaction = findings.redaction
    if redaction is not None and redaction.matches:
        cipher = clear_text_cipher()
        encrypted = None
        purge_after = None
        if cipher is not None and findings.original:
            encrypted = cipher.encrypt(findings.original.encode())
            purge_after = timezone.now() + timedelta(days=settings.PII_REVIEW_RETENTION_DAYS)
        items.append(
            ReviewItem(
                kind=ReviewItem.Kind.PII,
                action=ReviewItem.Action.REDACTED,
                categories=list(redaction.kinds),
                findings={"matches": _pii_findings(redaction)},
                excerpt=redaction.text,
                encrypted_clear=encrypted,
                purge_after=purge_after,
                **base,
            )
        )
    verdict = findings.content
    if verdict is not None and verdict.action == "flag":
        items.append(
            ReviewItem(
                kind=ReviewItem.Kind.CONTENT,
                action=ReviewItem.Action.FLAGGED,
                categories=list(verdict.categories),
                findings=_content_findings(verdict),
                excerpt=redaction.text if redaction is not None else "",
                **base,
            )
        )
    if items:
        ReviewItem.objects.bulk_create(items)
    return items


def record_block(
    *,
    session_id: str,
    text: str,
    verdict: ContentVerdict,
    direction: str = ReviewItem.Direction.INPUT,
    message_id: str = "",
    request_id: str = "",
    client_ip: str = "",
) -> ReviewItem:
    """Store a blocked text for staff (``text`` already redacted); it is stored nowhere else."""
    return ReviewItem.objects.create(
        kind=ReviewItem.Kind.CONTENT,
        action=ReviewItem.Action.BLOCKED,
        direction=direction,
        session_id=session_id,
        message_id=message_id,
        request_id=request_id,
        client=client_label(client_ip) if client_ip else "",
        categories=list(verdict.categories),
        findings=_content_findings(verdict),
        excerpt=text,
    )


def report_message(
    *, session: ChatSession, message_id: str | None, reason: str, client_ip: str = ""
) -> ReviewItem:
    """A user's "report this answer": the session's assistant message (its latest by default).

    ``session`` is the live session the caller looked up (``chat.sessions.session_get``).
    """
    messages = Message.objects.filter(session=session, role=Message.Role.ASSISTANT)
    if message_id:
        message = messages.filter(pk=message_id).first()
        if message is None:
            raise ApiError(
                "INVALID_FIELD_VALUE",
                "messageId names no answer of this session.",
                details={"field": "messageId"},
            )
    else:
        message = messages.order_by("-seq").first()
        if message is None:
            raise ApiError(
                "INVALID_FIELD_VALUE",
                "This session has no answer to report yet.",
                details={"field": "messageId"},
            )
    reason = redact_pii(reason[:REPORT_REASON_MAX], current_allowlist()).text
    item = ReviewItem.objects.create(
        kind=ReviewItem.Kind.REPORT,
        action=ReviewItem.Action.REPORTED,
        direction=ReviewItem.Direction.OUTPUT,
        session_id=session.pk,
        message_id=message.pk,
        client=client_label(client_ip) if client_ip else "",
        excerpt=message.content,
        reason=reason,
    )
    security_event(
        "answer_reported",
        session_id=session.pk,
        client_ip=client_ip,
        message_id=message.pk,
        report_id=item.pk,
    )
    return item
