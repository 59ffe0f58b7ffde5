"""Workflows: multi-step jobs run by a Celery worker, every execution and step a database row.

- ``complex_query``: analyse the question (its parts, ticket ids) → search the knowledge base
  for each part → look up the tickets → compose one answer with citations.
- ``escalation``: summarise the conversation → open a ticket → tell the session → mark the
  session escalated.
- ``tool_chain``: the tools of ``parameters.tools`` in order; an argument written
  ``"$prev.a.b"`` takes that value from the previous step's result (``$steps.0.a`` from any
  earlier step's).

Guarantees:

- **Idempotent submits.** The idempotency key (given, or derived from session, type and
  parameters) is unique within its session: a re-submit, or two at once, get the one execution;
  the same key in another session is another execution.
- **Retries.** A step is tried up to ``WORKFLOW_STEP_ATTEMPTS`` times with exponential backoff,
  within ``WORKFLOW_MAX_ATTEMPTS`` attempts for the whole execution and its
  ``WORKFLOW_TIME_LIMIT_SECONDS``; tool calls inside steps have their own timeouts and retries.
- **Resumable.** Steps are idempotent (a ticket step reuses its ticket on a second run) and their
  results are stored, so a redelivered task (late acks: a worker killed mid-run) continues after
  the last completed step. The running worker holds a lease renewed at every step; a second
  delivery while it runs does nothing, and ``resume_stale_workflows`` (Celery beat) re-queues an
  execution whose worker vanished.
- **Compensation.** When a step fails for good, the completed steps are undone in reverse order
  (the ticket is cancelled, the escalation mark removed) and the execution ends ``compensated``,
  or ``failed`` if something could not be undone, with the reason. Never a success that hides a
  failed step.

Progress goes out as the ``workflow_progress`` signal after every step; ``chat`` turns it into
``workflow_progress`` frames for the session's sockets. ``chat`` also provides the conversation
for the escalation steps (``conversation``): tools know a session only by its id.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import structlog
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import IntegrityError, transaction
from django.dispatch import Signal
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supportbot.db import write_transaction
from supportbot.errors import ApiError, ms
from supportbot.ids import new_tool_call_id
from tools.models import WorkflowExecution, WorkflowStep
from tools.registry import ToolContext, ToolNotFound, ToolOutcome, registry
from tools.tickets import ticket_cancel

log = structlog.get_logger("tools.workflows")

# Sent after every step and at the end: execution_id, session_id, body (``execution_wire``).
workflow_progress = Signal()

Status = WorkflowExecution.Status
StepStatus = WorkflowStep.Status


class WorkflowInvalid(Exception):
    """The submit cannot run: unknown type or bad parameters (``message`` says which; ``missing``
    when a required field is absent rather than wrong)."""

    def __init__(self, message: str, *, field: str = "parameters", missing: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.missing = missing


class StepFailed(Exception):
    """A step did not succeed; ``permanent`` failures are not retried."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


# --- what chat provides ---------------------------------------------------------------------


@dataclass
class Conversation:
    """The chat app's side of the escalation steps (set in ``chat.apps``)."""

    transcript: Callable[[str], str] | None = None  # session id → the conversation as text
    notify: Callable[[str, str], None] | None = None  # session id, text → stored + delivered
    # session id, ticket id (None: undo) → the session is marked escalated (or not any more)
    mark_escalated: Callable[[str, str | None], None] | None = None
    # session id → one unit of the global tool-execution limit taken, or ApiError when refused
    admit_tool: Callable[[str], None] | None = None


conversation = Conversation()


# --- steps -------------------------------------------------------------------------------------


@dataclass
class StepContext:
    execution_id: str
    session_id: str
    parameters: dict[str, Any]
    index: int
    results: list[dict[str, Any] | None] = field(default_factory=list)  # earlier steps'


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[StepContext], dict[str, Any]]
    compensate: Callable[[StepContext, dict[str, Any]], None] | None = None


def call_tool(ctx: StepContext, name: str, arguments: dict[str, Any]) -> ToolOutcome:
    """Run a tool from a step. The request id is the step's, so a re-run step makes the same
    call (``create_ticket`` then returns the ticket it opened the first time). The call counts
    against the global tool-execution limit like the assistant's; a refusal is a transient
    failure of the step, retried after its backoff."""
    if conversation.admit_tool is not None:
        try:
            conversation.admit_tool(ctx.session_id)
        except ApiError as refused:
            raise StepFailed(f"{name}: {refused.message}", permanent=False) from refused
    return async_to_sync(registry.execute)(
        call_id=new_tool_call_id(),
        name=name,
        arguments=arguments,
        ctx=ToolContext(session_id=ctx.session_id, request_id=f"{ctx.execution_id}.{ctx.index}"),
    )


def _tool_result(outcome: ToolOutcome) -> dict[str, Any]:
    if outcome.ok:
        assert outcome.result is not None
        return outcome.result
    error = outcome.error or {}
    permanent = outcome.status == "invalid" or error.get("code") != "TOOL_EXECUTION_FAILED"
    raise StepFailed(f"{outcome.tool}: {error.get('message', 'failed')}", permanent=permanent)


def _cancel_ticket(ctx: StepContext, result: dict[str, Any]) -> None:
    ticket_id = result.get("ticketId")
    if isinstance(ticket_id, str):
        ticket_cancel(
            ticket_id=ticket_id,
            reason=f"Cancelled: workflow {ctx.execution_id} could not finish.",
            author="workflow",
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
        result = _tool_result(call_tool(ctx, "kb_search", {"query": part[:500], "maxResults": 3}))
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
            _tool_result(outcome)  # raises: a lookup that failed is retried
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


# --- escalation --------------------------------------------------------------------------------


class EscalationParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    query: str = Field("", max_length=4000)
    priority: Literal["low", "medium", "high", "urgent"] = "high"
    category: str = Field("general", max_length=64)


def _need(hook: Callable[..., Any] | None, what: str) -> Callable[..., Any]:
    if hook is None:
        raise StepFailed(f"no {what} is available in this process", permanent=True)
    return hook


def _summarise(ctx: StepContext) -> dict[str, Any]:
    transcript = _need(conversation.transcript, "conversation")(ctx.session_id)
    reason = str(ctx.parameters.get("query") or "").strip()
    lines = [line for line in transcript.splitlines() if line.strip()]
    summary = "\n".join(lines[-12:])[-3000:]
    return {"reason": reason, "summary": summary, "messages": len(lines)}


def _open_ticket(ctx: StepContext) -> dict[str, Any]:
    summary = ctx.results[0] or {}
    reason = summary.get("reason") or "The customer asked for a human."
    description = f"{reason}\n\nConversation so far:\n{summary.get('summary') or '(empty)'}"
    arguments = {
        "title": ("Escalation: " + reason)[:200] if len(reason) >= 3 else "Escalation",
        "description": description[:4000],
        "priority": ctx.parameters.get("priority", "high"),
        "category": ctx.parameters.get("category", "general"),
    }
    return _tool_result(call_tool(ctx, "create_ticket", arguments))


def _notify(ctx: StepContext) -> dict[str, Any]:
    ticket = ctx.results[1] or {}
    text = (
        f"A support agent will take over this conversation. Your ticket is "
        f"{ticket.get('ticketId')}; you can ask about it here at any time."
    )
    _need(conversation.notify, "conversation")(ctx.session_id, text)
    return {"notified": True, "message": text}


def _mark(ctx: StepContext) -> dict[str, Any]:
    ticket = ctx.results[1] or {}
    _need(conversation.mark_escalated, "conversation")(ctx.session_id, ticket.get("ticketId"))
    return {"escalated": True, "ticketId": ticket.get("ticketId")}


def _unmark(ctx: StepContext, result: dict[str, Any]) -> None:
    _need(conversation.mark_escalated, "conversation")(ctx.session_id, None)


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
        return _tool_result(call_tool(ctx, link.tool, _resolve(link.arguments, ctx)))

    tool = registry.get(link.tool)
    compensate = _cancel_ticket if tool.name == "create_ticket" else None
    return Step(name=tool.name, run=run, compensate=compensate)


# --- the workflows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Workflow:
    name: str
    parameters: type[BaseModel]
    steps: Callable[[dict[str, Any]], list[Step]]


WORKFLOWS: dict[str, Workflow] = {
    "complex_query": Workflow(
        "complex_query",
        QueryParameters,
        lambda p: [
            Step("analyse", _analyse),
            Step("search", _search),
            Step("ticket_status", _statuses),
            Step("compose", _compose),
        ],
    ),
    "escalation": Workflow(
        "escalation",
        EscalationParameters,
        lambda p: [
            Step("summarise", _summarise),
            Step("create_ticket", _open_ticket, _cancel_ticket),
            Step("notify", _notify),
            Step("mark_escalated", _mark, _unmark),
        ],
    ),
    "tool_chain": Workflow(
        "tool_chain",
        ChainParameters,
        lambda p: [_chain_step(ChainLink.model_validate(link)) for link in p["tools"]],
    ),
}


def _validated(workflow_type: Any, parameters: Any) -> tuple[Workflow, dict[str, Any]]:
    workflow = WORKFLOWS.get(workflow_type) if isinstance(workflow_type, str) else None
    if workflow is None:
        names = ", ".join(WORKFLOWS)
        raise WorkflowInvalid(f"workflowType must be one of {names}.", field="workflowType")
    if not isinstance(parameters, dict):
        raise WorkflowInvalid("parameters must be an object.")
    try:
        checked = workflow.parameters.model_validate(parameters).model_dump(mode="json")
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'parameters'}: {e['msg']}" for e in errors[:5]
        )
        first = ".".join(str(p) for p in errors[0]["loc"])
        raise WorkflowInvalid(
            f"Invalid parameters: {problems}",
            field=f"parameters.{first}" if first else "parameters",
            missing=errors[0]["type"] == "missing",
        ) from None
    if workflow.name == "tool_chain":
        for index, link in enumerate(checked["tools"]):
            _check_link(index, link)
    return workflow, checked


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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)[:5]
        )
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


def derived_key(*, session_id: str, workflow_type: str, parameters: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"s": session_id, "t": workflow_type, "p": parameters}, sort_keys=True, default=str
    )
    return "auto:" + hashlib.sha256(canonical.encode()).hexdigest()


# --- submitting ----------------------------------------------------------------------------------


def workflow_submit(
    *,
    workflow_type: Any,
    session_id: str,
    parameters: Any,
    idempotency_key: str | None = None,
) -> tuple[WorkflowExecution, bool]:
    """Store an execution and queue it (after commit); the one of a known key comes back as is.

    Returns the execution and whether it is new.
    """
    workflow, checked = _validated(workflow_type, parameters)
    key = idempotency_key or derived_key(
        session_id=session_id, workflow_type=workflow.name, parameters=checked
    )
    mine = WorkflowExecution.objects.filter(session_id=session_id)
    existing = mine.filter(idempotency_key=key).first()
    if existing is not None:
        return _same_request(existing, workflow.name, checked), False
    steps = workflow.steps(checked)
    try:
        with write_transaction():
            execution = WorkflowExecution.objects.create(
                workflow_type=workflow.name,
                session_id=session_id,
                parameters=checked,
                idempotency_key=key,
            )
            WorkflowStep.objects.bulk_create(
                WorkflowStep(execution=execution, index=i, name=step.name)
                for i, step in enumerate(steps)
            )
            transaction.on_commit(lambda: _enqueue(execution.id))
    except IntegrityError:
        # The same key submitted at the same moment: the other submit stored it.
        execution = mine.get(idempotency_key=key)
        return _same_request(execution, workflow.name, checked), False
    log.info("workflow.submitted", execution_id=execution.id, workflow=workflow.name)
    return execution, True


def _same_request(
    execution: WorkflowExecution, workflow_type: str, parameters: dict[str, Any]
) -> WorkflowExecution:
    """The execution a key of this session names, if the submit is the one it was made for: a
    key reused for another request is refused, never answered with the first request's."""
    if execution.workflow_type != workflow_type or execution.parameters != parameters:
        raise WorkflowInvalid(
            "This idempotencyKey was used for a different workflow request; use a new key.",
            field="idempotencyKey",
        )
    return execution


def _enqueue(execution_id: str) -> None:
    from tools.tasks import run_workflow_task

    try:
        run_workflow_task.delay(execution_id)
    except Exception:
        # Stored anyway: resume_stale_workflows queues it again once the broker answers.
        log.warning("workflow.not_queued", execution_id=execution_id, exc_info=True)


# --- running -----------------------------------------------------------------------------------


def _claim(execution_id: str) -> tuple[WorkflowExecution, str] | None:
    """Take the execution's lease (None: finished, unknown, or another worker runs it)."""
    now = timezone.now()
    token = secrets.token_hex(8)
    with write_transaction():
        execution = WorkflowExecution.objects.select_for_update().filter(pk=execution_id).first()
        if execution is None or execution.finished:
            return None
        if execution.lease_until is not None and execution.lease_until > now:
            return None
        execution.lease_token = token
        execution.lease_until = now + timedelta(seconds=settings.WORKFLOW_LEASE_SECONDS)
        execution.deliveries += 1
        execution.status = Status.RUNNING
        execution.started_at = execution.started_at or now
        execution.updated_at = now
        execution.save()
    return execution, token


def _renew(execution: WorkflowExecution, token: str) -> None:
    now = timezone.now()
    WorkflowExecution.objects.filter(pk=execution.pk, lease_token=token).update(
        lease_until=now + timedelta(seconds=settings.WORKFLOW_LEASE_SECONDS), updated_at=now
    )


def retry_delay(attempt: int) -> float:
    base = settings.WORKFLOW_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
    return min(base * random.uniform(0.8, 1.2), settings.WORKFLOW_RETRY_MAX_SECONDS)


def run_execution(execution_id: str) -> str | None:
    """Run (or continue) an execution to its end; returns its final status, or None when there
    was nothing to do (already finished, or running in another worker)."""
    claimed = _claim(execution_id)
    if claimed is None:
        return None
    execution, token = claimed
    workflow = WORKFLOWS[execution.workflow_type]
    steps = workflow.steps(execution.parameters)
    rows = list(execution.steps.order_by("index"))
    started_at = execution.started_at or timezone.now()
    deadline = started_at + timedelta(seconds=settings.WORKFLOW_TIME_LIMIT_SECONDS)
    ctx = StepContext(execution.id, execution.session_id, execution.parameters, 0)
    _publish(execution)
    for index, (spec, row) in enumerate(zip(steps, rows, strict=True)):
        ctx.index = index
        if row.status == StepStatus.COMPLETED:
            ctx.results.append(row.result)  # done by an earlier delivery: not run again
            continue
        failure = _run_step(execution, token, row, spec, ctx, deadline)
        _publish(execution)
        if failure is not None:
            return _compensate_and_fail(execution, steps, rows[:index], ctx, failure)
        ctx.results.append(row.result)
    final = ctx.results[-1] or {}
    _finish(execution, Status.COMPLETED, result=final)
    return Status.COMPLETED


def _run_step(
    execution: WorkflowExecution,
    token: str,
    row: WorkflowStep,
    spec: Step,
    ctx: StepContext,
    deadline: Any,
) -> str | None:
    """Attempts of one step; the failure text when it failed for good."""
    while True:
        used = sum(execution.steps.values_list("attempts", flat=True))
        if used >= settings.WORKFLOW_MAX_ATTEMPTS:
            failure = f"{spec.name}: the workflow used all {used} of its attempts"
            break
        if timezone.now() >= deadline:
            failure = f"{spec.name}: the workflow ran out of time"
            break
        _renew(execution, token)
        row.attempts += 1
        row.status = StepStatus.RUNNING
        row.started_at = row.started_at or timezone.now()
        row.save(update_fields=["attempts", "status", "started_at"])
        started = time.perf_counter()
        try:
            result = spec.run(ctx)
        except StepFailed as exc:
            error, permanent = exc.message, exc.permanent
        except ApiError as exc:  # a refusal of the chat side, e.g. the session has ended
            error, permanent = f"{spec.name}: {exc.message}", True
        except Exception as exc:
            log.exception("workflow.step_crashed", execution_id=execution.id, step=spec.name)
            error, permanent = f"{spec.name} failed unexpectedly ({type(exc).__name__})", False
        else:
            row.status = StepStatus.COMPLETED
            row.result = result
            row.error = ""
            row.execution_ms += round((time.perf_counter() - started) * 1000)
            row.finished_at = timezone.now()
            row.save()
            return None
        row.execution_ms += round((time.perf_counter() - started) * 1000)
        row.error = error
        row.save(update_fields=["execution_ms", "error"])
        log.warning(
            "workflow.step_failed",
            execution_id=execution.id,
            step=spec.name,
            attempt=row.attempts,
            permanent=permanent,
        )
        if permanent or row.attempts >= settings.WORKFLOW_STEP_ATTEMPTS:
            failure = error
            break
        time.sleep(retry_delay(row.attempts))
    row.status = StepStatus.FAILED
    row.error = failure
    row.finished_at = timezone.now()
    row.save(update_fields=["status", "error", "finished_at"])
    return failure


def _compensate_and_fail(
    execution: WorkflowExecution,
    steps: list[Step],
    done: list[WorkflowStep],
    ctx: StepContext,
    failure: str,
) -> str:
    """Undo the completed steps, last first; ``compensated`` if all could be undone."""
    undone_all = True
    for row in reversed(done):
        spec = steps[row.index]
        if spec.compensate is None or row.status != StepStatus.COMPLETED:
            continue
        ctx.index = row.index
        try:
            spec.compensate(ctx, row.result or {})
        except Exception as exc:
            undone_all = False
            row.status = StepStatus.COMPENSATION_FAILED
            row.error = f"could not be undone: {exc}"[:1000]
            log.exception("workflow.compensation_failed", execution_id=execution.id, step=row.name)
        else:
            row.status = StepStatus.COMPENSATED
        row.save(update_fields=["status", "error"])
        _publish(execution)
    status = Status.COMPENSATED if undone_all else Status.FAILED
    _finish(execution, status, error=failure)
    return status


def _finish(
    execution: WorkflowExecution,
    status: str,
    *,
    result: dict[str, Any] | None = None,
    error: str = "",
) -> None:
    now = timezone.now()
    execution.status = status
    execution.result = result
    execution.error = error
    execution.finished_at = now
    execution.updated_at = now
    execution.lease_token = ""
    execution.lease_until = None
    execution.save()
    log.info("workflow.finished", execution_id=execution.id, status=status, error=error or None)
    _publish(execution)


def _publish(execution: WorkflowExecution) -> None:
    try:
        workflow_progress.send(
            sender=WorkflowExecution,
            execution_id=execution.id,
            session_id=execution.session_id,
            body=execution_wire(execution),
        )
    except Exception:
        log.warning("workflow.progress_not_sent", execution_id=execution.id, exc_info=True)


def resume_stale_workflows() -> int:
    """Queue again the executions no worker holds: never picked up (broker down at submit) or
    whose worker died (its lease lapsed). Run by Celery beat."""
    now = timezone.now()
    pending_since = now - timedelta(seconds=settings.WORKFLOW_LEASE_SECONDS)
    stale = list(
        WorkflowExecution.objects.filter(
            status__in=[Status.PENDING, Status.RUNNING], updated_at__lt=pending_since
        )
        .exclude(lease_until__gt=now)
        .values_list("id", flat=True)[:100]
    )
    for execution_id in stale:
        _enqueue(execution_id)
    return len(stale)


# --- the wire ----------------------------------------------------------------------------------


def execution_wire(execution: WorkflowExecution) -> dict[str, Any]:
    """An execution as ``/api/workflow/*`` and ``workflow_progress`` show it (API.md)."""
    rows = list(execution.steps.order_by("index"))
    done = sum(1 for r in rows if r.status == StepStatus.COMPLETED)
    progress = 1.0 if execution.status == Status.COMPLETED else (done / len(rows) if rows else 0)
    body: dict[str, Any] = {
        "executionId": execution.id,
        "workflowType": execution.workflow_type,
        "status": execution.status,
        "progress": round(progress, 4),
        "steps": [
            {
                "id": f"{execution.id}.{row.index}",
                "name": row.name,
                "status": row.status,
                "attempts": row.attempts,
                "executionTime": row.execution_ms,
                **({"result": row.result} if row.result is not None else {}),
                **({"error": row.error} if row.error else {}),
            }
            for row in rows
        ],
        "result": execution.result,
        "metadata": {
            "idempotencyKey": execution.idempotency_key,
            "createdAt": ms(execution.created_at),
            "startedAt": ms(execution.started_at),
            "finishedAt": ms(execution.finished_at),
            "deliveries": execution.deliveries,
        },
    }
    if execution.error:
        body["error"] = execution.error
    return body
