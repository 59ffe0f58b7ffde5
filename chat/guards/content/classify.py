"""The verdict on a customer's message (``classify_message``): the rules run over the text as
written and over each de-obfuscated view and hidden payload of it, padding and profanity add their
signals, and ``verdict.combine_signals`` makes one verdict of them. Also the warm-up that loads the
profanity model before the first message.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

from chat.guards.content.normalise import deleet, fold, join_spaced, plain, unsplit_words
from chat.guards.content.padding import length_reasons
from chat.guards.content.payloads import hidden_payloads
from chat.guards.content.profanity import profanity_signal
from chat.guards.content.rules import Rule, scan
from chat.guards.content.verdict import ContentVerdict, Signal, combine_signals

_log = logging.getLogger("chat.guards.content")  # one logger for the whole filter


def _hidden_weight(weight: float) -> float:
    """An attack found only after de-obfuscation: hiding it makes it surer."""
    return 0.95 if weight >= 0.45 else min(0.95, weight + 0.3)


class _Findings:
    """The signals found so far. A rule counts once, in the first view that matches it; found in
    a de-obfuscated view, it adds an "obfuscation" signal per trick (``via``) that hid it."""

    def __init__(self) -> None:
        self.signals: list[Signal] = []
        self.seen: set[str] = set()

    def add(self, rules: Iterable[Rule], via: tuple[str, ...] = ()) -> None:
        for rule in rules:
            if rule.name in self.seen:
                continue
            self.seen.add(rule.name)
            self.signals.append(Signal(rule.category, rule.weight, f"rule:{rule.name}"))
            for kind in via:
                self.signals.append(Signal("obfuscation", _hidden_weight(rule.weight), kind))


def classify_message(text: str) -> ContentVerdict:
    """Verdict on a customer's message before it reaches the model."""
    if not text or not text.strip():
        return ContentVerdict.ALLOW
    findings = _Findings()
    plain_text = plain(text)
    findings.add(scan(plain_text))
    leet = _scan_views(text, plain_text, findings)
    _scan_payloads(text, plain_text, findings)
    # Padding is one finding however many ways it shows: it flags, and only an attack hidden in
    # it (found above) makes a block.
    for index, reason in enumerate(length_reasons(text)):
        findings.signals.append(Signal("length", 0.6 if index == 0 else 0.0, reason))
    profanity = profanity_signal(text, leet if leet != plain_text else None)
    return combine_signals(findings.signals, profanity)


def _scan_views(text: str, plain_text: str, findings: _Findings) -> str:
    """Scan the de-obfuscated views of ``text``, each only when it differs from what was already
    scanned; return the leetspeak view (the profanity model reads it too)."""
    view, unicode_kinds = (plain_text, []) if text.isascii() else fold(text)
    via = tuple(f"obfuscation:{kind}" for kind in unicode_kinds)
    if view != plain_text:
        findings.add(scan(view), via)
    joined = join_spaced(view)
    leet = deleet(joined)
    if leet != view:
        extra: tuple[str, ...] = ("obfuscation:spacing",) if joined != view else ()
        extra += ("obfuscation:leetspeak",) if leet != joined else ()
        findings.add(scan(leet), via + extra)
    if joined != view:
        squashed = re.sub(r"[\W_]+", "", leet)
        findings.add(scan(squashed, squashed=True), (*via, "obfuscation:spacing"))
    # Words cut by hyphens, dots or stars ("ig-nore all pre-vious in-structions").
    unbroken = unsplit_words(leet)
    if unbroken != leet:
        findings.add(scan(unbroken), (*via, "obfuscation:split_words"))
    return leet


def _scan_payloads(text: str, plain_text: str, findings: _Findings) -> None:
    """Scan the payloads hidden in ``text``: decoded chunks, tag characters, rot13, reversed."""
    for kind, payload in hidden_payloads(text, plain_text):
        hidden = scan(plain(payload))
        if not hidden and not payload.isascii():
            hidden = scan(fold(payload)[0])
        if kind in ("base64", "hex", "unicode_tags") and not hidden:
            hidden = scan(deleet(plain(payload)))
        fresh = [rule for rule in hidden if rule.name not in findings.seen]
        if fresh:
            findings.add(fresh)
            strongest = max(rule.weight for rule in fresh)
            findings.signals.append(
                Signal("obfuscation", _hidden_weight(strongest), f"{kind}:decoded_injection")
            )


def warm_up() -> None:
    """Load the profanity model and compile everything now rather than on the first message."""
    classify_message("warm up: is this thing on?")


def warm_up_in_background() -> None:
    """``warm_up`` on a daemon thread (the web server's start: the model takes a second)."""

    def run() -> None:
        try:
            warm_up()
        except Exception:  # the first message loads it instead
            _log.warning("content filter warm-up failed", exc_info=True)

    threading.Thread(target=run, name="warm-content-filter", daemon=True).start()
