"""PII detectors for IP addresses: IPv4 dotted quads (``ipaddress`` validates them) that do not
read as versions or section numbers ("version 4.1.0.3", "upgrade from 4.0.0.12 to 4.1.0.3"),
and IPv6 addresses."""

from __future__ import annotations

import ipaddress
import re

from chat.guards.pii.candidates import DIGIT, RANK

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\w)")  # not "2.4.1.0.zip"
_IPV4_VERSION_SUFFIX = re.compile(r"-[A-Za-z]")  # 10.2.3.4-beta is a version
# Right before a dotted quad: it is a version or a section number, not an address.
_VERSION_CUE = re.compile(
    r"(?i)(?:\b(?:versions?|ver\.?|release|build|firmware|patch|section|chapter|step|v|desktop"
    r"|app|client|nimbus|update|upgrade|updated|upgraded|downgraded|rolled back|driver|kernel"
    r"|bios|agent|plugin|extension|sdk|library|package|runtime|engine|windows|macos|ios|android"
    r"|chrome|firefox|edge|safari)(?:\s+(?:to|from))?|§)"
    r"\s*$"
)
# A dotted quad right after another and "to"/"and"/"or"/"-": the same kind as that one
# ("upgrade from 4.0.0.12 to 4.1.0.3").
_QUAD_THEN = re.compile(r"((?:\d{1,3}\.){3}\d{1,3})\s*(?:to|and|or|->|\u2192|-|,)\s*$")


def _version_before(text: str, start: int, depth: int = 0) -> bool:
    """Whether the dotted quad at ``start`` reads as a version, by what stands before it."""
    window_start = max(0, start - 24)
    window = text[window_start:start]
    if _VERSION_CUE.search(window):
        return True
    previous = _QUAD_THEN.search(window)
    return (
        previous is not None
        and depth < 3
        and _version_before(text, window_start + previous.start(1), depth + 1)
    )


_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f:]{2,39}(?:\.\d{1,3}){0,3}")


def detect_ipv4s(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    """IPv4 addresses from ``pos`` on that are not versions, appended to ``out``."""
    if text.count(".", pos) < 3:
        return
    for m in _IPV4.finditer(text, pos):
        start, end = m.span()
        if _IPV4_VERSION_SUFFIX.match(text, end):
            continue
        if _version_before(text, start):
            continue
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        out.append((RANK["ip"], start, end, "ip"))


def detect_ipv6s(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    """IPv6 addresses from ``pos`` on, appended to ``out``."""
    if text.find("::", pos) < 0 and text.count(":", pos) < 6:
        return  # an IPv6 address has "::" or at least six colons
    for m in _IPV6.finditer(text, pos):
        value = m.group()
        start, end = m.span()
        if end < len(text) and (text[end].isalnum() or text[end] == "_"):
            continue
        # "2001:db8::1:" at the end of a sentence: try once without the trailing colon.
        for candidate in (value, value[:-1]) if value.endswith(":") else (value,):
            if candidate.count(":") < 2 or not DIGIT.search(candidate):
                continue  # "AB::CD" or a time like 12:30 is not an address
            if candidate.count(":") < 3 and "::" not in candidate:
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            out.append((RANK["ip"], start, start + len(candidate), "ip"))
            break
