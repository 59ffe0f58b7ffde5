"""The guard on the model's answer while it streams: PII redaction and system-prompt leakage.

``ReplyGuard.feed`` takes the model's deltas and returns what may be sent on: PII is redacted
by a ``StreamRedactor`` (which holds back only a trailing run that could still turn out to be
PII), and the text is checked for system-prompt leakage every ``LEAK_CHECK_CHARS`` characters
before it leaves. Once a leak is seen nothing more is emitted, and the stored answer becomes
``WITHHELD_REPLY`` (the page replaces the streamed text with the stored one).

Once the answer is complete, ``reply_findings`` says what the guard found (PII redacted from the
answer, a withheld answer) and logs it as security events; ``record_reply_findings`` keeps it
for staff once the answer is stored.
"""

from __future__ import annotations

import structlog

from chat.guards.content import ContentVerdict, check_reply
from chat.guards.pii import Allowlist, PiiMatch, Redaction, StreamRedactor, redact_pii
from chat.guards.review import Findings, record_block, record_findings
from supportbot.security import security_event

log = structlog.get_logger("chat.pipeline")

LEAK_CHECK_CHARS = 160
WITHHELD_REPLY = (
    "Sorry, I can't share that. Is there something about your Nimbus account I can help with?"
)


class ReplyGuard:
    def __init__(self, *, allowlist: Allowlist, system_prompt: str, redact: bool = True) -> None:
        self.allowlist = allowlist
        self._system_prompt = system_prompt
        self._redact = redact
        self._redactor = StreamRedactor(allowlist)
        self._raw: list[str] = []  # every round's raw text, for the encrypted review copy
        self._emitted: list[str] = []
        self._emitted_chars = 0
        self._checked_chars = 0
        self._offset = 0  # raw characters of earlier rounds (match offsets are answer-wide)
        self.matches: list[PiiMatch] = []
        self.leak: ContentVerdict | None = None

    @property
    def raw_text(self) -> str:
        return "".join(self._raw)

    def feed(self, delta: str) -> str:
        self._raw.append(delta)
        if self.leak is not None:
            return ""
        safe = self._redactor.feed(delta) if self._redact else delta
        return self._emit(safe, final=False)

    def end_round(self) -> str:
        """The held-back tail of this model call; the next call starts a fresh redactor."""
        tail = self._redactor.finish() if self._redact else ""
        self._collect()
        self._redactor = StreamRedactor(self.allowlist)
        self._offset = len(self.raw_text)
        if self.leak is not None:
            return ""
        return self._emit(tail, final=True)

    def _collect(self) -> None:
        for match in self._redactor.matches:
            self.matches.append(
                PiiMatch(
                    match.kind, match.start + self._offset, match.end + self._offset, match.value
                )
            )

    def _emit(self, text: str, *, final: bool) -> str:
        if not text and not final:
            return ""
        pending = self._emitted_chars + len(text)
        if final or pending - self._checked_chars >= LEAK_CHECK_CHARS:
            verdict = check_reply("".join(self._emitted) + text, self._system_prompt)
            self._checked_chars = pending
            if verdict.action == "block":
                self.leak = verdict
                return ""
        if text:
            self._emitted.append(text)
            self._emitted_chars = pending
        return text

    def redaction(self, final_text: str) -> Redaction:
        """The answer's PII findings, for the review queue (positions in the raw answer)."""
        return Redaction(text=final_text, matches=tuple(self.matches))


def reply_findings(
    guard: ReplyGuard, *, text: str, session_id: str, request_id: str, client_ip: str
) -> tuple[Findings | None, Findings | None]:
    """What the reply guard found in the answer ``text``: PII redacted from it, and a withheld
    (leaking) answer; each is also a security event."""
    context = {"session_id": session_id, "client_ip": client_ip, "request_id": request_id}
    findings = None
    if guard.matches:
        findings = Findings(
            direction="output",
            redaction=guard.redaction(text),
            original=guard.raw_text,
            request_id=request_id,
            client_ip=client_ip,
        )
        security_event(
            "pii_redacted",
            direction="output",
            kinds=sorted({m.kind for m in guard.matches}),
            count=len(guard.matches),
            **context,
        )
    blocked = None
    if guard.leak is not None:
        redacted = redact_pii(guard.raw_text, guard.allowlist).text
        blocked = Findings(
            direction="output",
            redaction=Redaction(text=redacted, matches=()),
            content=guard.leak,
            request_id=request_id,
            client_ip=client_ip,
        )
        security_event(
            "reply_blocked",
            direction="output",
            categories=list(guard.leak.categories),
            reasons=list(guard.leak.reasons),
            **context,
        )
    return findings, blocked


def record_reply_findings(
    session_id: str, message_id: str, findings: Findings | None, blocked: Findings | None
) -> None:
    """Keep ``reply_findings`` for staff once the answer is stored (a failure is logged only:
    the answer is already the customer's)."""
    try:
        if findings:
            record_findings(session_id=session_id, message_id=message_id, findings=findings)
        if blocked is not None and blocked.content is not None and blocked.redaction is not None:
            record_block(
                session_id=session_id,
                text=blocked.redaction.text,
                verdict=blocked.content,
                direction="output",
                message_id=message_id,
                request_id=blocked.request_id,
                client_ip=blocked.client_ip,
            )
    except Exception:
        log.exception("findings_not_recorded", session_id=session_id)
