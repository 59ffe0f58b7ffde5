"""The content filter's verdicts: the categories, the thresholds, ``ContentVerdict``, and how
signals combine into one (``combine_signals``).

Signals combine by noisy-OR (two independent weak signals make a stronger one):
``score = 1 - Π(1 - weight)``, at least the strongest single signal. ``score >= BLOCK_AT`` →
"block" (the message is refused), ``score >= FLAG_AT`` → "flag" (answered, and queued for staff
review), else "allow".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

CATEGORIES = (
    "prompt_injection",
    "jailbreak",
    "system_prompt_extraction",
    "tool_abuse",
    "data_exfiltration",
    "abuse",
    "obfuscation",
    "length",
)

FLAG_AT: Final = 0.5
BLOCK_AT: Final = 0.85


@dataclass(frozen=True)
class ContentVerdict:
    """What the filter decided, why, and how sure it is."""

    action: str  # "allow" | "flag" | "block"
    categories: tuple[str, ...]  # categories that fired (even below the flag threshold), sorted
    score: float  # 0..1: the signals combined (never below the strongest one)
    reasons: tuple[str, ...]  # strongest first: "rule:ignore_previous", "profanity:0.93", ...
    ALLOW: ClassVar[ContentVerdict]

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def flagged(self) -> bool:
        return self.action == "flag"


ContentVerdict.ALLOW = ContentVerdict(action="allow", categories=(), score=0.0, reasons=())


@dataclass(frozen=True)
class Signal:
    """One piece of evidence: its category, its weight (0..1) and the reason it gives."""

    category: str
    weight: float
    reason: str


def combine_signals(signals: list[Signal], profanity: Signal | None) -> ContentVerdict:
    """The verdict on a message's signals: noisy-OR of all but the profanity signal, which
    counts alone (rudeness is about tone, it must not turn a weak injection hint into a block)."""
    if not signals and profanity is None:
        return ContentVerdict.ALLOW
    # Noisy-OR of the rule, obfuscation and length signals; a reason counts once.
    strongest: dict[str, Signal] = {}
    for signal in signals:
        if signal.reason not in strongest or signal.weight > strongest[signal.reason].weight:
            strongest[signal.reason] = signal
    remaining = 1.0
    for signal in strongest.values():
        remaining *= 1.0 - signal.weight
    score = 1.0 - remaining
    if profanity is not None:
        strongest[profanity.reason] = profanity
        score = max(score, profanity.weight)
    score = round(min(score, 1.0), 4)
    action = "block" if score >= BLOCK_AT else "flag" if score >= FLAG_AT else "allow"
    ordered = sorted(strongest.values(), key=lambda s: (-s.weight, s.reason))
    return ContentVerdict(
        action=action,
        categories=tuple(sorted({s.category for s in ordered})),
        score=score,
        reasons=tuple(s.reason for s in ordered),
    )
