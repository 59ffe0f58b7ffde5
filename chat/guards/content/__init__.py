"""Content filter: a verdict on each customer message before the model sees it
(``classify_message``) and on each answer before the customer sees it (``check_reply``).

How a message is judged
    The text is looked at as the customer wrote it (case-folded, accents dropped) and, when they
    differ from it, as de-obfuscated views: Unicode NFKC with invisible characters removed and
    Cyrillic/Greek/small-capital look-alikes folded to Latin; letters spaced or dotted apart joined
    again ("i g n o r e", "i.g.n.o.r.e"); leetspeak read back (1→i, 0→o, 3→e, 4→a, 5→s, 7→t,
    @→a, $→s); and, as separate payloads, base64 and hex chunks, Unicode tag characters, the rot13
    and the reversed text. ``RULES`` (weighted regular expressions, each with a category and a
    sample it must match) run over every view; a rule that only matches a de-obfuscated view or a
    decoded payload adds an "obfuscation" signal, because hiding an attack is evidence of intent.
    Abusive language is scored by the model of ``alt-profanity-check`` (TF-IDF and calibrated
    linear SVMs, evaluated here in pure Python from the package's own fitted weights: the
    package's ``predict_prob`` takes 2.5-3.5 ms a call, this 30-40 µs; tests hold the two equal).
    Pathological padding (a character repeated hundreds of times, text that compresses to almost
    nothing, whitespace or symbol stuffing) gives a "length" signal.

    Signals combine by noisy-OR (two independent weak signals make a stronger one):
    ``score = 1 - Π(1 - weight)``, at least the strongest single signal. ``score >= BLOCK_AT`` →
    "block" (the message is refused), ``score >= FLAG_AT`` → "flag" (answered, and queued for staff
    review), else "allow". Rule weights are set so that one unambiguous attack phrase blocks
    alone and an ambiguous one ("disregard the above", "from now on you will…") only flags;
    words that are innocent in a support chat ("developer mode", "system prompt" of a terminal,
    "ignore my last message", "show me my previous chats") need the attack's context to fire.

Abuse policy
    Customers venting about the product ("this damn sync is broken again", "this app sucks") are
    allowed: the profanity is recorded in ``reasons`` but never flags on its own. Profanity aimed
    at a person (second person, "agent", "staff", "support"…) is flagged when the model is at
    least ``PROFANITY_DIRECTED`` sure, so staff see the conversation; it is not blocked, the
    customer still gets an answer. Threats of violence, "kill yourself" and doxxing threats are
    blocked. The profanity signal is not part of the noisy-OR: rudeness is about tone, and must
    not turn a weak injection hint into a block.

What it does not do
    It is a first line, not a proof. On attacks written without looking at the rules (two
    batches of ``bench/content_messages.jsonl``, scored before the rules were tuned on them)
    it caught 42% of the plain-language ones and every obfuscated or padded one, blocking no
    benign message: paraphrases no rule anticipates, languages other than English, French,
    German, Spanish, Italian, Portuguese and Russian, and attacks spread over several messages
    get through. The system prompt's own security rules, the tools' own permission checks
    (a customer sees only the tickets of their conversation) and ``check_reply`` are the next
    lines.

Where things live
    ``normalise`` (the views), ``rule_data`` (the rule table) and ``rules`` (its language and
    ``scan``), ``payloads`` (decoding), ``padding``, ``profanity`` (the model), ``verdict`` (the
    categories, thresholds and noisy-OR), ``classify`` (``classify_message``), ``leaks``
    (``check_reply``). This package re-exports what the rest of the project imports.
"""

from __future__ import annotations

from chat.guards.content.classify import classify_message, warm_up, warm_up_in_background
from chat.guards.content.leaks import check_reply
from chat.guards.content.verdict import BLOCK_AT, CATEGORIES, FLAG_AT, ContentVerdict

__all__ = [
    "BLOCK_AT",
    "CATEGORIES",
    "FLAG_AT",
    "ContentVerdict",
    "check_reply",
    "classify_message",
    "warm_up",
    "warm_up_in_background",
]
