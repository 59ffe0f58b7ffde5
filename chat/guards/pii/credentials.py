"""PII detector for secrets: API keys of well-known providers, webhook URLs, bearer tokens,
JWTs, credentials in URLs, ``password: …`` pairs and generic high-entropy tokens; our own
identifiers and providers' object ids pass."""

from __future__ import annotations

import math
import re
from collections import Counter

from chat.guards.pii.candidates import DIGIT, GENERIC_SECRET_RANK, RANK, words

# Our own identifiers (supportbot.ids, tools.models) and the object ids of payment providers look
# random but are not secrets.
_OWN_ID = re.compile(
    r"(?:^|[/=+:.-])(?:sess|msg|req|call|kb|rpt|wf_exec|wf|run|evt|tkt|ord"
    r"|cus|ch|pi|pm|in|sub|price|prod|acct|seti|txn|po|inv)_"
    r"|^(?:TKT|ORD|NB|INV|RMA)-",
    re.IGNORECASE,
)
_STRONG_SECRET = re.compile(
    r"(?<![\w-])(?:"
    r"sk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d{2}-)?[A-Za-z0-9_-]{20,}"
    r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|whsec_[A-Za-z0-9]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{30,}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|xox[abposre]-[A-Za-z0-9-]{10,}"
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"
    r"|AIza[A-Za-z0-9_-]{35}"
    r"|hf_[A-Za-z0-9]{30,}"
    r"|npm_[A-Za-z0-9]{36}"
    r"|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    # Webhook URLs are their own credential: anyone holding one can post.
    r"|hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{20,}"
    r"|discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]{30,}"
    r")(?![\w-])"
)
_BEARER = re.compile(
    r"(?i)\b(?:bearer|authorization:\s*basic)[ \t]+(?=([A-Za-z0-9\-._~+/]{16,}=*))"
)
_URL_CREDENTIALS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]+:([^\s/@]+)@")
# A key ("password", "api_key", "AWS_SECRET_ACCESS_KEY", "recovery key") and its value.
_KEY_VALUE = re.compile(
    r"(?i)(?<![a-z0-9])(?:password|passwd|passphrase|passcode|pwd|pass|pw|secret|token"
    r"|(?:client|app|api|access|secret|private|recovery|backup|encryption|master|auth|refresh"
    r"|bearer|session)[_ -]?(?:secret|key|token|code|password))"
    r"[\"']?[ \t]{0,3}(:|=|\bis\b|\bwas\b)[ \t]{0,3}(?=[\"'`]?([^\s\"'`,;]{4,128}))"
)  # the value is read in a look-ahead: each key is judged on its own, wherever a scan starts
_KEY_HINTS = ("pass", "pw", "secret", "key", "token", "code")  # substrings of every key above
_MASKED = re.compile(r"[*x•.#-]+|[\[<{$(].*", re.IGNORECASE)  # ****, <your password>, ${VAR}
_NOT_A_VALUE = words(
    "reset changed change forgotten forgot expired expiring required incorrect wrong invalid "
    "none null empty unknown same correct blank missing hidden protected optional true false "
    "yes not never still always working broken enabled disabled set updated saved stored "
    "accepted rejected valid revoked needed please where what which there here below above "
    "attached sent generated"
)
_TOKEN = re.compile(r"(?<![A-Za-z0-9_+/-])[A-Za-z0-9_+/-]{20,}={0,2}(?![A-Za-z0-9_+/-])")
_LONG_RUN = re.compile(r"[A-Za-z0-9_+/.~=-]{15,}")  # every secret pattern lies inside such a run
_ID_CUE = re.compile(r"(?i)\b(?:id|identifier|uuid|hash|checksum)\s*(?:[:=#]|\bis\b)?\s*$")
_SEGMENT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+|[^A-Za-z\d]+")
_WORDLIKE = re.compile(r"[A-Z]?[a-z]{2,}|[A-Z]{2,}|\d{1,8}|[vV]\d+")
_PART_SEPARATOR = re.compile(r"[-_/+]")
MIN_SECRET_ENTROPY = 3.0  # bits per character; a random 20-character token has about 4
MIN_SEGMENT_DENSITY = 0.3  # case/digit changes per character; CamelCase words have about 0.2


def _entropy(value: str) -> float:
    size = len(value)
    return -sum(n / size * math.log2(n / size) for n in Counter(value).values())


def _random_looking(token: str) -> bool:
    """Upper, lower and digits, high entropy, changing class often, not made of words."""
    if not (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() for c in token)
    ):
        return False
    parts = [p for p in _PART_SEPARATOR.split(token) if p]
    if len(parts) >= 2 and sum(1 for p in parts if _WORDLIKE.fullmatch(p)) >= 2:
        return False  # Q3_Report_FINAL_v2, Screenshot_2024-11-28_at_10
    core = token.rstrip("=")
    if len(_SEGMENT.findall(core)) / len(core) < MIN_SEGMENT_DENSITY:
        return False  # MyVacationPhotos2024Backup
    return _entropy(core) >= MIN_SECRET_ENTROPY


def _in_url(text: str, start: int) -> bool:
    """Whether the whitespace-delimited word holding ``start`` is a URL (links pass)."""
    i = start
    floor = max(0, start - 300)
    while i > floor and not text[i - 1].isspace():
        i -= 1
    head = text[i:start]
    return "://" in head or head.lower().startswith("www.")


def _secret_value_ok(value: str, separator: str) -> bool:
    core = value.rstrip(".,!?)]")  # "The password is wrong!" ends a sentence
    if len(core) < 4 or _OWN_ID.search(core) or _MASKED.fullmatch(core):
        return False
    if core.lower() in _NOT_A_VALUE:
        return False
    if separator != "=":
        # "my password is hunter2", "password: Tr0ub4dor" but not "the password is incorrect"
        # or "Reset your password: open Settings": a plain word after ':' or 'is' is prose.
        return not (core.isalpha() and (core.islower() or core.istitle()))
    return True


def detect_secrets(
    text: str, pos: int, key_pos: int, lower: str, out: list[tuple[int, int, int, str]]
) -> None:
    """Secrets starting at ``pos``; patterns with a key before the value ("password: …",
    "Bearer …", "://user:…@") start looking at ``key_pos``. ``lower`` is ``text[key_pos:]``
    lower-cased, for the cheap checks that skip a pattern."""
    strong = RANK["strong_secret"]
    for run in _LONG_RUN.finditer(text, pos):
        # One cheap scan for long runs, then the expensive patterns inside them only (the
        # character after the run is in view for their look-aheads).
        bound = min(len(text), run.end() + 1)
        for m in _STRONG_SECRET.finditer(text, run.start(), bound):
            if DIGIT.search(m.group()):
                out.append((strong, m.start(), m.end(), "secret"))
        for m in _TOKEN.finditer(text, run.start(), bound):
            token = m.group()
            if _OWN_ID.search(token) or not _random_looking(token) or _in_url(text, m.start()):
                continue
            if _ID_CUE.search(text, max(0, m.start() - 20), m.start()):
                continue  # "folder ID: 1BxiMVs0XRA5nF…" names something, it opens nothing
            out.append((GENERIC_SECRET_RANK, m.start(), m.end(), "secret"))
    if "bearer" in lower or "basic" in lower:
        for m in _BEARER.finditer(text, key_pos):
            value = m.group(1)
            if DIGIT.search(value) and not _OWN_ID.search(value):
                out.append((strong, m.start(1), m.end(1), "secret"))
    if "://" in lower:
        for m in _URL_CREDENTIALS.finditer(text, key_pos):
            out.append((strong, m.start(1), m.end(1), "secret"))
    if any(hint in lower for hint in _KEY_HINTS):
        for m in _KEY_VALUE.finditer(text, key_pos):
            value = m.group(2)
            if _secret_value_ok(value, m.group(1)):
                # A sentence's full stop is not part of the password; a final "!" may be.
                end = m.start(2) + len(value.rstrip(".,?)]"))
                out.append((strong, m.start(2), end, "secret"))
