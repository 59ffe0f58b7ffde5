"""Golden conversations and their deterministic scores, for ``manage.py evaluate``.

A case is a conversation (one or more user turns) with what each answer must and must not hold:
facts, the articles to cite, a ticket or person offered, the tools called. ``eval/README.md``
describes the file format. Everything here is pure: loading and validating cases, and scoring
one answer against one turn's expectations. Running the conversations is
``chat.evaluation_run``.

Why substring checks and not a judge model: the scores must be the same on every run and on
every machine, without a model, so that two runs can be compared and a held-out part can be
trusted. The cost is that expectations are written as short phrases a right answer cannot avoid.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KINDS = (
    "policy",
    "error_code",
    "howto",
    "account_action",
    "human",
    "unanswerable",
    "other_language",
)
OFFERS = ("ticket", "person", "either")
METRICS = ("fact", "citation_precision", "citation_recall", "offer", "tools")
# What the issue asks of the offline assistant on the held-out part.
TARGETS = {"fact": 0.85, "citation_precision": 0.8, "offer": 0.95}
# File stem prefix → part name: held_out.yaml, held_out_2.yaml … and tune.yaml, tune_more.yaml …
PARTS = {"held_out": "held-out", "tune": "tune"}
MAX_TURNS = 10
MAX_USER_CHARS = 4000

# Tools that are a ticket or a person (called, they are more than an offer).
TICKET_TOOLS = frozenset({"create_ticket"})
PERSON_TOOLS = frozenset({"request_human"})
_TICKET_OFFER = re.compile(
    r"\b(ticket|support request)\b|\b(open|file|raise|log)\s+(a\s+)?(support\s+)?case\b",
    re.IGNORECASE,
)
_PERSON_OFFER = re.compile(
    r"\b(person|human|agent|colleague|someone (from|on) (our|the)|support team|team member|"
    r"talk to|speak (to|with))\b",
    re.IGNORECASE,
)


class CaseError(ValueError):
    """A case file that does not follow eval/README.md; the message names the case and field."""


@dataclass(frozen=True)
class ToolExpectation:
    name: str
    args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Expect:
    facts: tuple[tuple[str, ...], ...] = ()
    forbidden: tuple[str, ...] = ()
    cite: tuple[str, ...] | None = None  # None: citations are not judged
    may_cite: tuple[str, ...] = ()
    offer: str | None = None
    tools: tuple[ToolExpectation, ...] = ()
    forbid_tools: tuple[str, ...] = ()


@dataclass(frozen=True)
class Turn:
    user: str
    expect: Expect | None


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    part: str
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class Answer:
    """What one turn answered, as both transports report it."""

    content: str
    citations: tuple[str, ...] = ()  # article ids, in the order given
    tools: tuple[dict[str, Any], ...] = ()  # toolCalls[] entries: tool, arguments, status
    model: str = ""
    error: str = ""  # the error code when the turn failed


@dataclass
class Scored:
    """One turn's scores (None: not judged) and why it fell short."""

    scores: dict[str, float | None]
    failures: list[str]


# --- loading -----------------------------------------------------------------------------------


def part_of(path: Path) -> str:
    """The part a case file belongs to, by the start of its name (else the name itself)."""
    return next((part for prefix, part in PARTS.items() if path.stem.startswith(prefix)), path.stem)


def load_cases(folder: Path, parts: Iterable[str] | None = None) -> list[Case]:
    """Every case of the ``*.yaml`` files in ``folder`` (the part is the file's stem), checked."""
    wanted = set(parts) if parts is not None else None
    cases: list[Case] = []
    for path in sorted(folder.glob("*.yaml")):
        part = part_of(path)
        if wanted is not None and part not in wanted:
            continue
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise CaseError(f"{path.name}: not YAML: {exc}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
            raise CaseError(f"{path.name}: expected a mapping with a list under 'cases'")
        cases += [_case(raw, part, path.name) for raw in document["cases"]]
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise CaseError(f"case {case.id!r} appears twice")
        seen.add(case.id)
    return cases


def _case(raw: Any, part: str, source: str) -> Case:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"].strip():
        raise CaseError(f"{source}: every case needs an id (text)")
    where = f"{source}: case {raw['id']!r}"
    kind = raw.get("kind")
    if kind not in KINDS:
        raise CaseError(f"{where}: kind must be one of {', '.join(KINDS)}")
    turns = raw.get("turns")
    if not isinstance(turns, list) or not 1 <= len(turns) <= MAX_TURNS:
        raise CaseError(f"{where}: turns must be a list of 1 to {MAX_TURNS} turns")
    parsed = tuple(_turn(turn, f"{where} turn {n}") for n, turn in enumerate(turns, 1))
    if all(turn.expect is None for turn in parsed):
        raise CaseError(f"{where}: no turn has an expect")
    return Case(id=raw["id"].strip(), kind=kind, part=part, turns=parsed)


def _turn(raw: Any, where: str) -> Turn:
    if not isinstance(raw, dict) or not isinstance(raw.get("user"), str) or not raw["user"].strip():
        raise CaseError(f"{where}: every turn needs 'user' (text)")
    if len(raw["user"]) > MAX_USER_CHARS:
        raise CaseError(f"{where}: 'user' is longer than {MAX_USER_CHARS} characters")
    unknown = set(raw) - {"user", "expect"}
    if unknown:
        raise CaseError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    expect = raw.get("expect")
    return Turn(user=raw["user"], expect=None if expect is None else _expect(expect, where))


def _expect(raw: Any, where: str) -> Expect:
    if not isinstance(raw, dict):
        raise CaseError(f"{where}: expect must be a mapping")
    known = {"facts", "not", "cite", "may_cite", "offer", "tools", "forbid_tools"}
    unknown = set(raw) - known
    if unknown:
        raise CaseError(f"{where}: unknown expect field(s) {', '.join(sorted(unknown))}")
    facts = tuple(_alternatives(fact, f"{where} facts") for fact in _list(raw, "facts", where))
    offer = raw.get("offer")
    if offer is not None and offer not in OFFERS:
        raise CaseError(f"{where}: offer must be one of {', '.join(OFFERS)}")
    return Expect(
        facts=facts,
        forbidden=_texts(_list(raw, "not", where), f"{where} not"),
        cite=_texts(raw["cite"] or [], f"{where} cite") if "cite" in raw else None,
        may_cite=_texts(_list(raw, "may_cite", where), f"{where} may_cite"),
        offer=offer,
        tools=tuple(_tool(item, where) for item in _list(raw, "tools", where)),
        forbid_tools=_texts(_list(raw, "forbid_tools", where), f"{where} forbid_tools"),
    )


def _list(raw: dict[str, Any], name: str, where: str) -> list[Any]:
    value = raw.get(name) or []
    if not isinstance(value, list):
        raise CaseError(f"{where}: {name} must be a list")
    return value


def _texts(values: Any, where: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str | int) for v in values):
        raise CaseError(f"{where}: expected a list of texts")
    texts = tuple(str(v).strip() for v in values)
    if not all(texts):
        raise CaseError(f"{where}: empty text")
    return texts


def _alternatives(fact: Any, where: str) -> tuple[str, ...]:
    return _texts(fact if isinstance(fact, list) else [fact], where)


def _tool(raw: Any, where: str) -> ToolExpectation:
    if isinstance(raw, str):
        return ToolExpectation(name=raw)
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise CaseError(f"{where}: a tool is a name or a mapping with 'name' and 'args'")
    args = raw.get("args") or {}
    if not isinstance(args, dict):
        raise CaseError(f"{where}: tool args must be a mapping")
    return ToolExpectation(name=raw["name"], args={str(k): str(v) for k, v in args.items()})


# --- scoring -----------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Lower case, Markdown emphasis and code marks gone, typographic forms plain, one space."""
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(_PLAIN)
    text = re.sub(r"[*`]+|(?<!\w)_+|_+(?!\w)", "", text)
    return " ".join(text.lower().split())


_PLAIN = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"}
)


def contains(answer: str, phrase: str) -> bool:
    """Whether ``phrase`` appears in ``answer`` (both normalised), on word boundaries where the
    phrase starts or ends with a word character ("30 days" is not found in "130 days")."""
    needle = normalise(phrase)
    if not needle:
        return False
    start = r"(?<!\w)" if needle[0].isalnum() else ""
    end = r"(?!\w)" if needle[-1].isalnum() else ""
    return re.search(start + re.escape(needle) + end, normalise(answer)) is not None


def score_turn(expect: Expect, answer: Answer) -> Scored:
    """The scores of ``answer`` against ``expect``; a failed turn (``answer.error``) scores 0 on
    whatever was expected of it."""
    failures: list[str] = []
    if answer.error:
        failures.append(f"the turn failed: {answer.error}")
    scores: dict[str, float | None] = {
        "fact": _fact_score(expect, answer, failures),
        **_citation_scores(expect, answer, failures),
        "offer": _offer_score(expect, answer, failures),
        "tools": _tool_score(expect, answer, failures),
    }
    return Scored(scores=scores, failures=failures)


def _fact_score(expect: Expect, answer: Answer, failures: list[str]) -> float | None:
    if not expect.facts and not expect.forbidden:
        return None
    missing = [fact for fact in expect.facts if not any(contains(answer.content, f) for f in fact)]
    wrong = [phrase for phrase in expect.forbidden if contains(answer.content, phrase)]
    for fact in missing:
        failures.append("missing fact: " + " | ".join(fact))
    for phrase in wrong:
        failures.append(f"must not say: {phrase}")
    if wrong or answer.error:
        return 0.0
    if not expect.facts:
        return 1.0
    return (len(expect.facts) - len(missing)) / len(expect.facts)


def _citation_scores(
    expect: Expect, answer: Answer, failures: list[str]
) -> dict[str, float | None]:
    if expect.cite is None:
        return {"citation_precision": None, "citation_recall": None}
    cited = list(dict.fromkeys(answer.citations))
    allowed = set(expect.cite) | set(expect.may_cite)
    extra = [article for article in cited if article not in allowed]
    missing = [article for article in expect.cite if article not in cited]
    if extra:
        failures.append("cited beside the point: " + ", ".join(extra))
    if missing:
        failures.append("did not cite: " + ", ".join(missing))
    if cited:
        precision: float | None = (len(cited) - len(extra)) / len(cited)
    else:
        precision = 1.0 if not expect.cite else None  # citing nothing is right, or unjudged
    recall = (len(expect.cite) - len(missing)) / len(expect.cite) if expect.cite else None
    return {"citation_precision": precision, "citation_recall": recall}


def offered(answer: Answer, offer: str) -> bool:
    """Whether ``answer`` offers (or does) what ``offer`` names: a ticket, a person, either."""
    called = {str(call.get("tool")) for call in answer.tools}
    ticket = bool(called & TICKET_TOOLS) or bool(_TICKET_OFFER.search(answer.content))
    person = bool(called & PERSON_TOOLS) or bool(_PERSON_OFFER.search(answer.content))
    return {"ticket": ticket, "person": person, "either": ticket or person}[offer]


def _offer_score(expect: Expect, answer: Answer, failures: list[str]) -> float | None:
    if expect.offer is None:
        return None
    if offered(answer, expect.offer) and not answer.error:
        return 1.0
    failures.append(f"no {expect.offer} offered" if expect.offer != "either" else "no offer")
    return 0.0


def _tool_score(expect: Expect, answer: Answer, failures: list[str]) -> float | None:
    if not expect.tools and not expect.forbid_tools:
        return None
    ok = not answer.error
    for wanted in expect.tools:
        if not any(_matches(call, wanted) for call in answer.tools):
            failures.append(f"tool not called: {wanted.name} {wanted.args or ''}".rstrip())
            ok = False
    for name in expect.forbid_tools:
        if any(call.get("tool") == name for call in answer.tools):
            failures.append(f"tool called that must not be: {name}")
            ok = False
    return 1.0 if ok else 0.0


def _matches(call: dict[str, Any], wanted: ToolExpectation) -> bool:
    if call.get("tool") != wanted.name:
        return False
    arguments = call.get("arguments")
    if not isinstance(arguments, dict):
        arguments = {}
    return all(
        normalise(fragment) in normalise(str(arguments.get(key, "")))
        for key, fragment in wanted.args.items()
    )


# --- aggregation -------------------------------------------------------------------------------


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean of every metric per kind and over ``"all"``, with how many turns each mean covers.
    ``rows`` are ``{"kind": ..., "scores": {...}}`` for every judged turn."""
    groups: dict[str, list[dict[str, Any]]] = {"all": list(rows)}
    for row in rows:
        groups.setdefault(row["kind"], []).append(row)
    table: dict[str, dict[str, Any]] = {}
    for group, members in groups.items():
        entry: dict[str, Any] = {"turns": len(members)}
        for metric in METRICS:
            values = [m["scores"][metric] for m in members if m["scores"].get(metric) is not None]
            entry[metric] = round(sum(values) / len(values), 4) if values else None
            entry[f"{metric}_n"] = len(values)
        table[group] = entry
    return table


def target_misses(table: dict[str, dict[str, Any]]) -> list[str]:
    """The targets (``TARGETS``) that the ``"all"`` row of ``table`` misses."""
    overall = table.get("all", {})
    return [
        f"{metric} {overall.get(metric)} < {target}"
        for metric, target in TARGETS.items()
        if overall.get(metric) is not None and overall[metric] < target
    ]
