"""The workflow types that need only tools (the engine runs them; ``tools.apps`` registers them).

- ``complex_query``: analyse the question (its parts, ticket ids) → search the knowledge base
  for each part → look up the tickets → compose one answer with citations.
- ``tool_chain``: the tools of ``parameters.tools`` in order; an argument written
  ``"$prev.a.b"`` takes that value from the previous step's result (``$steps.0.a`` from any
  earlier step's).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.registry import ToolNotFound, registry
from tools.workflows.engine import (
    Step,
    StepContext,
    StepFailed,
    Workflow,
    WorkflowInvalid,
    call_tool,
    cancel_ticket,
    tool_result,
    validation_problems,
)

# --- complex_query -----------------------------------------------------------------------------

_TICKET_RE = re.compile(r"\bTKT-[A-Z0-9]{4,16}\b", re.IGNORECASE)
_SPLIT_RE = re.compile(r"(?<=[.?!])\s+|\s+(?:and also|also|and then|plus)\s+", re.IGNORECASE)
MAX_PARTS = 4


class QueryParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    query: str = Field(min_length=1, max_length=4000)


def _analyse(ctx: StepContext) -> dict[str, Any]:
    query = str(ctx.parameters["query"])
    tickets = sorted({match.upper() for match in _TICKET_RE.findall(query)})
    text = _TICKET_RE.sub(" ", query)
    parts = [" ".join(p.split()) for p in _SPLIT_RE.split(text)]
    parts = [p for p in parts if len(p.split()) >= 2][:MAX_PARTS] or [" ".join(text.split())]
    if tickets:
        # "What is the status of TKT-…?" is answered by the ticket lookup; only parts that ask
        # something besides a ticket's state are searched.
        parts = [p for p in parts if not _only_about_tickets(p)]
    return {"parts": [p for p in parts if p], "tickets": tickets}


# What a part may say and still ask nothing but a ticket's state ("what is the status of …").
_TICKET_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "any",
        "are",
        "at",
        "been",
        "did",
        "do",
        "does",
        "for",
        "has",
        "have",
        "how",
        "i",
        "is",
        "it",
        "its",
        "me",
        "my",
        "news",
        "of",
        "on",
        "or",
        "please",
        "progress",
        "s",
        "state",
        "status",
        "the",
        "there",
        "this",
        "ticket",
        "tickets",
        "update",
        "updates",
        "was",
        "what",
        "whats",
        "where",
        "with",
        "you",
        "your",
        "check",
        "tell",
        "happening",
        "going",
    ]
)


def _only_about_tickets(part: str) -> bool:
    """Whether a part, its ticket ids taken out, asks nothing but a ticket's state."""
    words = re.findall(r"[a-z]+", part.lower())
    return all(word in _TICKET_WORDS for word in words)


def _search(ctx: StepContext) -> dict[str, Any]:
    analysis = ctx.results[0] or {}
    found = []
    for part in analysis.get("parts", []):
        result = tool_result(call_tool(ctx, "kb_search", {"query": part[:500], "maxResults": 3}))
        found.append({"part": part, "results": result.get("results", [])})
    return {"searches": found}


def _statuses(ctx: StepContext) -> dict[str, Any]:
    analysis = ctx.results[0] or {}
    statuses = []
    for ticket_id in analysis.get("tickets", []):
        outcome = call_tool(ctx, "fetch_status", {"ticketId": ticket_id})
        if outcome.ok:
            statuses.append(outcome.result)
        elif (outcome.error or {}).get("code") == "NOT_FOUND":
            statuses.append({"ticketId": ticket_id, "found": False})
        else:
            tool_result(outcome)  # raises: a lookup that failed is retried
    return {"tickets": statuses}


def _compose(ctx: StepContext) -> dict[str, Any]:
    searches = (ctx.results[1] or {}).get("searches", [])
    tickets = (ctx.results[2] or {}).get("tickets", [])
    blocks: list[str] = []
    citations: list[dict[str, str]] = []
    for search in searches:
        hits = search.get("results") or []
        if not hits:
            blocks.append(f"**{search['part']}**: nothing in the help centre covers this.")
            continue
        best = hits[0]
        blocks.append(
            f"**{search['part']}**: [{best['title']}]({best['url']})\n> {best['passage']}"
        )
        if all(c["id"] != best["id"] for c in citations):
            citations.append({"id": best["id"], "title": best["title"], "url": best["url"]})
    for ticket in tickets:
        if ticket.get("found") is False:
            blocks.append(f"Ticket {ticket['ticketId']} was not found for this conversation.")
        else:
            state = str(ticket.get("status", "")).replace("_", " ")
            blocks.append(f"Ticket {ticket['ticketId']} ({ticket.get('title', '')}) is {state}.")
    return {"answer": "\n\n".join(blocks), "citations": citations}


# --- tool_chain --------------------------------------------------------------------------------


class ChainLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool: str = Field(min_length=1, max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)


class ChainParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    query: str = Field("", max_length=4000)
    tools: list[ChainLink] = Field(min_length=1, max_length=8)


_REF_RE = re.compile(r"^\$(prev|steps\.(\d+))((?:\.[A-Za-z0-9_]+)*)$")


def _resolve(value: Any, ctx: StepContext) -> Any:
    """Replace ``$prev.x.y`` / ``$steps.N.x.y`` strings by values of earlier results."""
    if isinstance(value, dict):
        return {k: _resolve(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, ctx) for v in value]
    if not isinstance(value, str) or not value.startswith("$"):
        return value
    match = _REF_RE.match(value)
    if match is None:
        raise StepFailed(f"{value!r} is not a reference ($prev.… or $steps.N.…)", permanent=True)
    index = ctx.index - 1 if match.group(1) == "prev" else int(match.group(2))
    if not 0 <= index < ctx.index:
        raise StepFailed(f"{value!r} refers to a step that has not run", permanent=True)
    current: Any = ctx.results[index]
    for part in filter(None, match.group(3).split(".")):
        if isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        elif isinstance(current, dict) and part in current:
            current = current[part]
        else:
            raise StepFailed(f"{value!r}: the earlier result has no {part!r}", permanent=True)
    return current


def _chain_step(link: ChainLink) -> Step:
    def run(ctx: StepContext) -> dict[str, Any]:
        return tool_result(call_tool(ctx, link.tool, _resolve(link.arguments, ctx)))

    tool = registry.get(link.tool)
    compensate = cancel_ticket if tool.name == "create_ticket" else None
    return Step(name=tool.name, run=run, compensate=compensate)


def check_chain(parameters: dict[str, Any]) -> None:
    """Refuse at submit every chain link that can be refused then (``_check_link``)."""
    for index, link in enumerate(parameters["tools"]):
        _check_link(index, link)


def _check_link(index: int, link: dict[str, Any]) -> None:
    """A chain link is refused at submit when it can be: an unknown tool, a malformed reference
    or one to a step that will not have run, and arguments without references that the tool's
    ``Args`` refuse (arguments with references are checked when the step runs)."""
    field = f"parameters.tools.{index}"
    try:
        tool = registry.get(link["tool"])
    except ToolNotFound:
        raise WorkflowInvalid(
            f"Unknown tool {link['tool']!r} in parameters.tools.", field=f"{field}.tool"
        ) from None
    references = list(_references(link["arguments"]))
    for value in references:
        match = _REF_RE.match(value)
        if match is None:
            raise WorkflowInvalid(
                f"{value!r} is not a reference ($prev.… or $steps.N.…).", field=f"{field}.arguments"
            )
        earlier = index - 1 if match.group(1) == "prev" else int(match.group(2))
        if not 0 <= earlier < index:
            raise WorkflowInvalid(
                f"{value!r} refers to a step that runs later or not at all.",
                field=f"{field}.arguments",
            )
    if references:
        return
    try:
        tool.Args.model_validate(link["arguments"])
    except ValidationError as exc:
        problems = validation_problems(exc, where="arguments")
        raise WorkflowInvalid(
            f"Invalid arguments for {tool.name}: {problems}", field=f"{field}.arguments"
        ) from None


def _references(value: Any) -> Any:
    """Every ``$…`` string inside a link's arguments."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, str) and value.startswith("$"):
        yield value


COMPLEX_QUERY = Workflow(
    "complex_query",
    QueryParameters,
    lambda p: [
        Step("analyse", _analyse),
        Step("search", _search),
        Step("ticket_status", _statuses),
        Step("compose", _compose),
    ],
)

TOOL_CHAIN = Workflow(
    "tool_chain",
    ChainParameters,
    lambda p: [_chain_step(ChainLink.model_validate(link)) for link in p["tools"]],
    check=check_chain,
)
