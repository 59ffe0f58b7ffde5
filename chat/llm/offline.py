"""The offline assistant: answers from the knowledge base when no language model is available.

It is the last link of the model chain. It never pretends to be a model: every answer says
plainly that it comes straight from the help centre, quotes the best passages with links to
their articles, and recognises the requests that need tools or people (open a ticket, a ticket's
status, a human agent), saying what the user can do instead, since it cannot run tools itself.
When nothing in the knowledge base is relevant it says so rather than guess. Everything is
deterministic: the same question over the same articles gives the same answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async

from chat.llm import compose, compose_say
from chat.llm.base import (
    CompletionRequest,
    Finish,
    StreamEvent,
    TextDelta,
    ToolCallRequest,
    Usage,
)
from supportbot.ids import new_tool_call_id
from tools.kb.query import query_terms
from tools.kb.search import ArticleHit, search_articles

MAX_QUESTION_CHARS = 1000  # only the start of a pasted log is worth searching

# Said once per conversation, after the first answer (the page shows a badge after that).
OFFLINE_NOTICE = (
    "_I'm answering without a language model right now, straight from the help centre._"
)
SUMMARY_TAG = "<conversation_summary>"  # how chat.memory hands earlier turns to a model

_TICKET_ID_RE = re.compile(r"\bTKT-[A-Z0-9]{4,16}\b", re.IGNORECASE)
_OPEN_TICKET_RE = re.compile(
    r"\b(open|create|file|raise|submit|log|start|make)\s+(up\s+)?(a\s+|an\s+|another\s+|new\s+|"
    r"a\s+new\s+|my\s+)?(support\s+)?(ticket|case)\b"
    r"|\breport\s+(a|an|this|the)?\s*(bug|problem|issue|defect)\b"
    r"|\b(bug\s+report|new\s+ticket)\b",
    re.IGNORECASE,
)
_HUMAN_RE = re.compile(
    r"\b(talk|speak|chat)\s+(to|with)\s+(a\s+|an\s+|the\s+|your\s+|some\s*)?(real\s+|live\s+)?"
    r"(human|agent|person|one|body|representative|operator|staff|support)\b"
    r"|\b(real|live|actual)\s+(person|human|agent)\b"
    r"|\bhuman\s+(agent|being|support)\b"
    r"|\b(representative|escalate|escalation|operator)\b"
    r"|\b(customer\s+service|support\s+team)\b",
    re.IGNORECASE,
)
# Words that only describe the request once one is recognised ("the status of my ticket").
# What a request starts with but a ticket's title should not ("please : my sync is broken").
_POLITE_START_RE = re.compile(
    r"^(?:[\W_]*\b(?:please|pls|plz|kindly|hi|hello|hey|can\s+you|could\s+you|would\s+you|"
    r"i\s+want\s+to|i\s+need\s+to|i\s+would\s+like\s+to|i'?d\s+like\s+to|for(?:\s+(?:me|us))?)\b)+[\W_]*",
    re.IGNORECASE,
)
_REQUEST_WORDS_RE = re.compile(
    r"\b(status|ticket|tickets|case|update|updates|progress|news|human|agent|someone)\b",
    re.IGNORECASE,
)
_GREETING_RE = re.compile(
    r"^(hi|hello|hey|hiya|howdy|greetings|good\s+(morning|afternoon|evening|day))\b[\s!.,]*"
    r"(there|everyone|team|all)?[\s!.,]*$",
    re.IGNORECASE,
)
_THANKS_RE = re.compile(
    r"^((ok(ay)?|great|perfect|awesome|cool|nice)[\s,!.]*)?"
    r"(thanks|thank\s+you|thx|ty|cheers|many\s+thanks)\b[\w\s,!.]{0,30}$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Intents:
    """What a message asks for beyond information."""

    open_ticket: bool = False
    ticket_id: str | None = None  # upper-cased, e.g. TKT-1A2B3C
    human: bool = False
    greeting: bool = False
    thanks: bool = False

    @property
    def needs_tools(self) -> bool:
        return self.open_ticket or self.ticket_id is not None or self.human

    @property
    def small_talk_only(self) -> bool:
        # The greeting and thanks patterns match whole short messages, so there is no
        # question to look up ("thanks a lot" is not about "lot").
        return (self.greeting or self.thanks) and not self.needs_tools


@dataclass(frozen=True)
class OfflineReply:
    chunks: tuple[str, ...]
    citations: tuple[dict[str, str], ...]

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def detect_intents(text: str) -> Intents:
    """The tool-needing requests (ticket, ticket status, human) and small talk in ``text``."""
    stripped = text.strip()
    ticket = _TICKET_ID_RE.search(stripped)
    return Intents(
        open_ticket=bool(_OPEN_TICKET_RE.search(stripped)),
        ticket_id=ticket.group(0).upper() if ticket else None,
        human=bool(_HUMAN_RE.search(stripped)),
        greeting=bool(_GREETING_RE.match(stripped)),
        thanks=bool(_THANKS_RE.match(stripped)),
    )


def last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    """The text of the last ``{"role": "user"}`` message (text parts joined), or ""."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, dict) and part.get("type") == "text"
            )
        return ""
    return ""


def search_text(question: str) -> str:
    """What to look up for ``question``: the request phrasing ("open a ticket", a ticket id,
    "talk to a human") removed, so "what's the status of TKT-1A2B3C" does not search for
    "status" and land on the service-status page."""
    text = question
    for pattern in (_TICKET_ID_RE, _OPEN_TICKET_RE, _HUMAN_RE):
        text = pattern.sub(" ", text)
    if text != question:
        text = _REQUEST_WORDS_RE.sub(" ", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class Passage:
    """A knowledge-base passage to quote: a search hit, or an entry of a ``kb_search`` result."""

    id: str
    title: str
    url: str
    passage: str
    relevance: float


@dataclass(frozen=True)
class ToolFindings:
    """What the tools of this turn returned (tool mode); ``None`` fields were not asked for."""

    created: dict[str, Any] | None = None  # create_ticket's result
    create_error: str | None = None
    status: dict[str, Any] | None = None  # fetch_status's result
    status_error: str | None = None
    searched: bool = False
    handoff: dict[str, Any] | None = None  # request_human's result
    handoff_error: str | None = None


def compose_reply(
    *,
    question: str,
    hits: Sequence[Passage | ArticleHit],
    findings: ToolFindings | None = None,
    earlier: Sequence[str] = (),
    first_answer: bool = True,
) -> OfflineReply:
    """The offline answer to ``question`` given its search ``hits`` (best first) and, when the
    tools ran, what they found (``findings``; without it the answer says what to do instead).
    ``earlier`` are the conversation's earlier user messages (a plan or platform named there
    still counts); the notice that no model is answering ends only the ``first_answer``."""
    intents = detect_intents(question)
    if intents.small_talk_only:
        return _reply([_small_talk_block(intents)], [])
    blocks = _request_blocks(intents, findings)
    answer, cited = compose_say.answer_blocks(
        question,
        topic=search_text(question),
        hit_ids=[hit.id for hit in hits],
        earlier=earlier,
        needs_tools=intents.needs_tools,
    )
    blocks += answer
    if first_answer:
        blocks.append(OFFLINE_NOTICE)
    return _reply(blocks, cited)


def _small_talk_block(intents: Intents) -> str:
    """The whole answer to a greeting or a thank-you."""
    if intents.thanks:
        return (
            "You're welcome! If anything else comes up, just ask. I'm answering without a "
            "language model right now, straight from the help centre."
        )
    return (
        "Hello! I'm the offline assistant, answering without a language model right now. "
        "Ask me about your account, billing, sync, sharing or security and I'll point "
        "you to the right help-centre article."
    )


def _request_blocks(intents: Intents, findings: ToolFindings | None) -> list[str]:
    """What the answer says about a ticket's status, a new ticket and a human agent: what the
    tools found, or (offered none) what the customer can do instead."""
    blocks: list[str] = []
    if findings is not None and (findings.status or findings.status_error):
        blocks.append(_status_block(intents.ticket_id or "", findings))
    elif intents.ticket_id:
        blocks.append(
            f"You asked about ticket **{intents.ticket_id}**. I can't look tickets up myself in "
            "this mode, but a human agent can check its status for you: say "
            '"talk to a human" and support staff can pick up this conversation.'
        )
    if findings is not None and findings.created:
        blocks.append(_created_block(findings.created))
    elif findings is not None and findings.create_error:
        blocks.append(
            f"I couldn't open a ticket just now ({findings.create_error.rstrip('.')}). Please "
            "try again in a moment, or ask for a human agent."
        )
    elif intents.open_ticket and findings is not None:
        blocks.append(
            "I can open a ticket for you, but I need to know what's wrong first. Describe the "
            "problem: what happened, when it started, any error code (such as NB-1042) and the "
            "device or app you use, and ask again."
        )
    elif intents.open_ticket:
        blocks.append(
            "I can't open a ticket myself while I'm offline. Describe the problem here: what "
            "happened, when it started, any error code (such as NB-1042) and the device or app "
            "you use. A human agent can pick it up and file the ticket for you."
        )
    if findings is not None and findings.handoff is not None:
        blocks.append(handoff_block(findings.handoff))
    elif findings is not None and findings.handoff_error:
        blocks.append(
            'I couldn\'t reach the support team just now. Please try the "Talk to a person" '
            "button in a moment, or describe your problem and ask me to open a ticket."
        )
    elif intents.human:
        blocks.append(
            'I can\'t transfer you myself in this mode. Use the "Talk to a person" button, or '
            "describe your problem and ask me to open a ticket, so the team can reply."
        )
    return blocks


def handoff_block(status: dict[str, Any], *, opened_ticket: str = "") -> str:
    """What the customer is told after asking for a person: the truth about who can answer.
    ``status`` is the flattened hand-off status (``chat.handoff_tool.for_the_model``);
    ``opened_ticket`` names a ticket this same step opened (the escalation workflow)."""
    ticket = opened_ticket or status.get("ticketId") or ""
    lead = (
        f"I've opened ticket **{opened_ticket}** with a summary of this conversation. "
        if opened_ticket
        else ""
    )
    if status.get("status") == "with_agent":
        agent = (status.get("agent") or {}).get("name") or "A support agent"
        return f"{lead}{agent} is already looking after this conversation."
    if status.get("humansAvailable"):
        text = lead + "I've asked for a person from the support team."
        position = status.get("position")
        if isinstance(position, int):
            text += (
                " You're next in the queue."
                if position == 1
                else f" You're number {position} in the queue."
            )
        wait = status.get("typicalWaitSeconds")
        if isinstance(wait, int):
            minutes = max(1, round(wait / 60))
            text += f" People usually wait about {minutes} minute{'s' if minutes != 1 else ''}."
        return text + " I'll keep answering meanwhile if you want to ask me anything."
    back = status.get("nextOpenText")
    nobody = "No one from the team is available right now." + (
        f" The team is back {back}." if back else ""
    )
    if ticket and status.get("contactGiven"):
        return (
            f"{lead}{nobody} Ticket **{ticket}** has your request; they'll reply to the address "
            "you gave."
        )
    if ticket:
        return (
            f"{lead}{nobody} Leave your email address in the form below so they can reply to "
            f"ticket **{ticket}** by email, or ask me about it here any time."
        )
    return (
        f"{nobody} Leave your email address in the form below and I'll open a ticket, so they "
        "can reply to you by email."
    )


def _when(epoch_ms: Any) -> str:
    if not isinstance(epoch_ms, int):
        return "soon"
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%d %b %Y, %H:%M UTC")


def _status_block(asked: str, findings: ToolFindings) -> str:
    status = findings.status
    if status is None:
        return (
            f"I couldn't find ticket **{asked}** for this conversation. Tickets can only be "
            "looked up from the conversation that opened them; check the id, or ask for a human "
            "agent."
        )
    state = str(status.get("status", "open")).replace("_", " ")
    text = (
        f"Ticket **{status.get('ticketId', asked)}** ({status.get('title', '')}) is **{state}**, "
        f"priority {status.get('priority', 'medium')}."
    )
    if state not in ("resolved", "closed", "cancelled"):
        text += f" Expected resolution: by {_when(status.get('estimatedResolution'))}."
    updates = [u for u in status.get("updates") or [] if isinstance(u, dict)]
    if updates:
        latest = updates[-1]
        text += f" Latest update ({_when(latest.get('timestamp'))}): {latest.get('message', '')}"
    return text


def _created_block(created: dict[str, Any]) -> str:
    return (
        f"I've opened ticket **{created.get('ticketId')}** for you (priority "
        f"{created.get('priority', 'medium')}). Expected resolution: by "
        f"{_when(created.get('estimatedResolution'))}. Ask me about "
        f"{created.get('ticketId')} any time to see its status."
    )


def _reply(blocks: list[str], sources: Sequence[compose.Article]) -> OfflineReply:
    # One chunk per block, so the answer streams paragraph by paragraph like a model's would.
    chunks = tuple(
        block + ("\n\n" if i < len(blocks) - 1 else "") for i, block in enumerate(blocks)
    )
    citations = tuple({"id": a.id, "title": a.title, "url": a.url} for a in sources)
    return OfflineReply(chunks=chunks, citations=citations)


# Tool mode: the functions the offline assistant calls when the pipeline offers them.
KB_SEARCH, CREATE_TICKET, FETCH_STATUS = "kb_search", "create_ticket", "fetch_status"
REQUEST_HUMAN = "request_human"
_URGENT_RE = re.compile(
    r"\b(urgent|asap|emergency|outage|down for (everyone|all)|nobody can|can't work)\b",
    re.IGNORECASE,
)
MIN_DETAIL_WORDS = 4  # a ticket request needs at least this much description


def _offered(request: CompletionRequest) -> set[str]:
    names = set()
    for tool in request.tools or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names


def _this_turn(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages after the last user message (this turn's tool calls and results)."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return list(messages[index + 1 :])
    return []


def _user_texts(messages: Sequence[dict[str, Any]]) -> list[str]:
    return [
        m["content"] for m in messages if m.get("role") == "user" and isinstance(m["content"], str)
    ]


def _answered_before(messages: Sequence[dict[str, Any]]) -> bool:
    """Whether this conversation already had an answer (so the offline notice was given): an
    assistant message before this turn, or a summary of earlier turns."""
    before = messages[: len(messages) - len(_this_turn(messages))]
    return any(
        (m.get("role") == "assistant" and m.get("content"))
        or (m.get("role") == "system" and str(m.get("content")).startswith(SUMMARY_TAG))
        for m in before
    )


def _ticket_request(question: str, messages: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """create_ticket's arguments from what the customer wrote, or None when too little."""
    detail = search_text(question).strip(" :-\u2013\u2014,.")
    earlier = [t for t in _user_texts(messages)[:-1] if not detect_intents(t).small_talk_only]
    if len(detail.split()) < MIN_DETAIL_WORDS:
        if not earlier:
            return None
        detail = earlier[-1]
    description = "\n\n".join([*earlier[-2:], question]) if earlier else question
    first = re.split(r"(?<=[.!?])\s", detail, maxsplit=1)[0]
    first = _POLITE_START_RE.sub("", first).strip(" :-\u2013\u2014,.") or first
    title = first if len(first) <= 80 else first[:77].rsplit(" ", 1)[0] + "…"
    urgent = _URGENT_RE.search(description)
    return {
        "title": title[0].upper() + title[1:] if len(title) >= 3 else "Support request",
        "description": description[:4000],
        "priority": "high" if urgent else "medium",
    }


def _plan(question: str, request: CompletionRequest, offered: set[str]) -> list[ToolCallRequest]:
    intents = detect_intents(question)
    if intents.small_talk_only:
        return []
    calls: list[tuple[str, dict[str, Any]]] = []
    topic = search_text(question)
    if KB_SEARCH in offered and query_terms(topic):
        calls.append((KB_SEARCH, {"query": topic[:500], "maxResults": 5}))
    if FETCH_STATUS in offered and intents.ticket_id:
        calls.append((FETCH_STATUS, {"ticketId": intents.ticket_id}))
    if REQUEST_HUMAN in offered and intents.human:
        calls.append((REQUEST_HUMAN, {"reason": question[:1000]}))
    if CREATE_TICKET in offered and intents.open_ticket:
        arguments = _ticket_request(question, request.messages)
        if arguments is not None:
            calls.append((CREATE_TICKET, arguments))
    return [
        ToolCallRequest(id=new_tool_call_id(), name=name, arguments=json.dumps(args))
        for name, args in calls
    ]


def _findings(turn: Sequence[dict[str, Any]]) -> tuple[ToolFindings, list[Passage]]:
    """Read this turn's tool results (the ``tool`` messages after our calls)."""
    names: dict[str, str] = {}
    for message in turn:
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict):
                names[str(call.get("id"))] = str((call.get("function") or {}).get("name", ""))
    found: dict[str, Any] = {}
    hits: list[Passage] = []
    for message in turn:
        if message.get("role") != "tool":
            continue
        name = names.get(str(message.get("tool_call_id")), "")
        try:
            body = json.loads(message.get("content") or "null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            continue
        error = body.get("error")
        error_text = str(error.get("message", "failed")) if isinstance(error, dict) else None
        if name == KB_SEARCH:
            found["searched"] = True
            for item in body.get("results") or []:
                if isinstance(item, dict):
                    hits.append(
                        Passage(
                            id=str(item.get("id", "")),
                            title=str(item.get("title", "")),
                            url=str(item.get("url", "")),
                            passage=str(item.get("passage", "")),
                            relevance=float(item.get("relevance") or 0.0),
                        )
                    )
        elif name == CREATE_TICKET:
            found["create_error" if error_text else "created"] = error_text or body
        elif name == FETCH_STATUS:
            found["status_error" if error_text else "status"] = error_text or body
        elif name == REQUEST_HUMAN:
            found["handoff_error" if error_text else "handoff"] = error_text or body
    return ToolFindings(**found), hits


class OfflineAssistant:
    """The Provider that answers from the knowledge base, without a language model.

    When the pipeline offers tools it uses them as a model would: a first round asks for
    ``kb_search`` (and ``fetch_status`` / ``create_ticket`` when the customer asks for them),
    the second composes the answer from their results. Offered no tools, it searches directly.
    """

    name = "offline"
    model = "offline-assistant"

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        """Answer the last user message of ``request`` in a few ``TextDelta``s, then ``Finish``."""
        question = last_user_text(request.messages).strip()[:MAX_QUESTION_CHARS]
        offered = _offered(request)
        turn = _this_turn(request.messages)
        findings: ToolFindings | None = None
        hits: Sequence[Passage | ArticleHit] = []
        if offered and not any(m.get("role") == "tool" for m in turn):
            findings = ToolFindings()  # tool mode, even when nothing needs a tool
            calls = _plan(question, request, offered)
            if calls:
                for call in calls:
                    yield call
                yield Finish(
                    provider=self.name,
                    model=self.model,
                    usage=Usage(0, 0),
                    finish_reason="tool_calls",
                )
                return
        if any(m.get("role") == "tool" for m in turn):
            findings, hits = _findings(turn)
        # kb_search leaves out hits below its relevance floor, which is tuned for models; the
        # composer judges a hit by what its article holds (compose_say.confidence), so it
        # looks at the ranking below the floor too.
        if not hits and (findings is None or findings.searched):
            topic = search_text(question)
            if topic and not detect_intents(question).small_talk_only:
                result = await sync_to_async(search_articles)(query=topic, max_results=5)
                hits = result.hits
        reply = await sync_to_async(compose_reply)(
            question=question,
            hits=hits,
            findings=findings,
            earlier=_user_texts(request.messages)[:-1],
            first_answer=not _answered_before(request.messages),
        )
        for chunk in reply.chunks:
            yield TextDelta(chunk)
        yield Finish(
            provider=self.name,
            model=self.model,
            usage=Usage(0, 0),
            citations=reply.citations,
        )

    async def check(self) -> bool:
        """Always reachable: it needs nothing but the database."""
        return True

    async def aclose(self) -> None:
        """Nothing to close: it holds no connection."""
