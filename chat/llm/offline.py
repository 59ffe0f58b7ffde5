"""The offline assistant: answers from the knowledge base when no language model is available.

It is the last link of the model chain. It never pretends to be a model: every answer says
plainly that it comes straight from the help centre, quotes the best passages with links to
their articles, and recognises the requests that need tools or people (open a ticket, a ticket's
status, a human agent), saying what the user can do instead, since it cannot run tools itself.
When nothing in the knowledge base is relevant it says so rather than guess. Everything is
deterministic: the same question over the same articles gives the same answer.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async

from chat.llm.base import CompletionRequest, Finish, StreamEvent, TextDelta, Usage
from tools.kb import ArticleHit, search_articles

# Below this relevance a hit is noise: off-topic questions top out around 0.09 on the starter
# knowledge base, while the weakest right answer of its ranking tests scores about 0.13.
MIN_RELEVANCE = 0.12
# A second or third passage must be at least this fraction as relevant as the first.
RELATIVE_RELEVANCE = 0.5
MAX_PASSAGES = 3
MAX_QUESTION_CHARS = 1000  # only the start of a pasted log is worth searching

OFFLINE_NOTICE = (
    "I'm the offline assistant, answering without a language model right now: what follows "
    "comes straight from the help centre."
)

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


def relevant_hits(hits: Sequence[ArticleHit]) -> list[ArticleHit]:
    """The hits worth quoting: above the threshold, close to the best one, at most three."""
    if not hits or hits[0].relevance < MIN_RELEVANCE:
        return []
    floor = max(MIN_RELEVANCE, hits[0].relevance * RELATIVE_RELEVANCE)
    return [hit for hit in hits if hit.relevance >= floor][:MAX_PASSAGES]


def compose_reply(*, question: str, hits: Sequence[ArticleHit]) -> OfflineReply:
    """The offline answer to ``question`` given its search ``hits`` (best first)."""
    intents = detect_intents(question)
    needs_tools = intents.needs_tools
    blocks: list[str] = []
    if intents.small_talk_only:
        if intents.thanks:
            blocks.append(
                "You're welcome! If anything else comes up, just ask. I'm answering without a "
                "language model right now, straight from the help centre."
            )
        else:
            blocks.append(
                "Hello! I'm the offline assistant, answering without a language model right now. "
                "Ask me about your account, billing, sync, sharing or security and I'll point "
                "you to the right help-centre article."
            )
        return _reply(blocks, [])

    passages = relevant_hits(hits)
    blocks.append(OFFLINE_NOTICE)
    if intents.ticket_id:
        blocks.append(
            f"You asked about ticket **{intents.ticket_id}**. I can't look tickets up myself in "
            "this mode, but a human agent can check its status for you: say "
            '"talk to a human" and support staff can pick up this conversation.'
        )
    if intents.open_ticket:
        blocks.append(
            "I can't open a ticket myself while I'm offline. Describe the problem here: what "
            "happened, when it started, any error code (such as NB-1042) and the device or app "
            "you use. A human agent can pick it up and file the ticket for you."
        )
    if intents.human:
        blocks.append(
            "I can't transfer you myself, but support staff can see this conversation and take "
            "it over. Describe your issue in your next message, so the person who picks it up "
            "has the details."
        )
    if passages:
        lead = "This is what the help centre says" if needs_tools else "Here is what I found"
        blocks.append(f"{lead}:" if len(passages) == 1 else f"{lead}, most relevant first:")
        for hit in passages:
            quoted = "\n".join(f"> {line}" if line else ">" for line in hit.passage.splitlines())
            blocks.append(f"**[{hit.title}]({hit.url})**\n{quoted}")
    elif not needs_tools:
        blocks.append(
            "I couldn't find anything in the help centre about that, and I'd rather not guess. "
            'You can ask for a human agent ("talk to a human"), or describe the problem in '
            "detail so an agent can open a ticket for you."
        )
    return _reply(blocks, passages)


def _reply(blocks: list[str], passages: Sequence[ArticleHit]) -> OfflineReply:
    # One chunk per block, so the answer streams paragraph by paragraph like a model's would.
    chunks = tuple(
        block + ("\n\n" if i < len(blocks) - 1 else "") for i, block in enumerate(blocks)
    )
    citations = tuple({"id": hit.id, "title": hit.title, "url": hit.url} for hit in passages)
    return OfflineReply(chunks=chunks, citations=citations)


class OfflineAssistant:
    """The Provider that answers from the knowledge base, without a language model."""

    name = "offline"
    model = "offline-assistant"

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        """Answer the last user message of ``request`` in a few ``TextDelta``s, then ``Finish``."""
        question = last_user_text(request.messages).strip()[:MAX_QUESTION_CHARS]
        hits: list[ArticleHit] = []
        topic = search_text(question)
        if topic and not detect_intents(question).small_talk_only:
            result = await sync_to_async(search_articles)(query=topic, max_results=5)
            hits = result.hits
        reply = compose_reply(question=question, hits=hits)
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
