"""The workflow engine: submitting, claiming, running, retrying, compensating and resuming
executions, every execution and step a database row, and the registry of workflow types.

The types themselves are elsewhere: ``complex_query`` and ``tool_chain`` need only tools
(``tools.workflows.definitions``, registered by ``tools.apps``); ``escalation`` needs the
conversation, which tools know only by a session id, so it lives in ``chat.escalation``
(registered by ``chat.apps``). A type is a ``Workflow``: a name, a pydantic model of its
parameters, the ``Step`` list for given parameters and an optional further check at submit.

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
``workflow_progress`` frames for the session's sockets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from asgiref.sync import async_to_sync
from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.dispatch import Signal
from django.utils import timezone
from pydantic import BaseModel, ValidationError

from supportbot import ratelimit
from supportbot.db import write_transaction
from supportbot.errors import ApiError
from supportbot.ids import new_tool_call_id
from tools.models import WorkflowExecution, WorkflowStep
from tools.registry import ToolContext, ToolOutcome, registry
from tools.tickets import ticket_cancel
from tools.workflows.wire import execution_wire

log = structlog.get_logger("tools.workflows")

# Sent after every step and at the end: execution_id, session_id, body (``execution_wire``).
workflow_progress = Signal()

# The Celery task that runs an execution (``tools.tasks``). The engine queues it by name:
# the tasks module imports the engine, not the other way round.
RUN_WORKFLOW_TASK = "tools.run_workflow"

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


# --- steps -------------------------------------------------------------------------------------


@dataclass
class StepContext:
    """What a step runs with: its execution, session, parameters and the earlier results."""

    execution_id: str
    session_id: str
    parameters: dict[str, Any]
    index: int
    results: list[dict[str, Any] | None] = field(default_factory=list)  # earlier steps'


@dataclass(frozen=True)
class Step:
    """A named step: ``run`` returns its result (JSON); ``compensate`` undoes it."""

    name: str
    run: Callable[[StepContext], dict[str, Any]]
    compensate: Callable[[StepContext, dict[str, Any]], None] | None = None


def call_tool(ctx: StepContext, name: str, arguments: dict[str, Any]) -> ToolOutcome:
    """Run a tool from a step. The request id is the step's, so a re-run step makes the same
    call (``create_ticket`` then returns the ticket it opened the first time). The call counts
    against the global tool-execution limit like the assistant's; a refusal is a transient
    failure of the step, retried after its backoff."""
    try:
        ratelimit.hit(("global_tool_executions", ratelimit.GLOBAL), session_id=ctx.session_id)
    except ApiError as refused:
        raise StepFailed(f"{name}: {refused.message}", permanent=False) from refused
    return async_to_sync(registry.execute)(
        call_id=new_tool_call_id(),
        name=name,
        arguments=arguments,
        ctx=ToolContext(session_id=ctx.session_id, request_id=f"{ctx.execution_id}.{ctx.index}"),
    )


def tool_result(outcome: ToolOutcome) -> dict[str, Any]:
    """A tool call's result, or ``StepFailed`` (transient only for an execution failure)."""
    if outcome.ok:
        assert outcome.result is not None
        return outcome.result
    error = outcome.error or {}
    permanent = outcome.status == "invalid" or error.get("code") != "TOOL_EXECUTION_FAILED"
    raise StepFailed(f"{outcome.tool}: {error.get('message', 'failed')}", permanent=permanent)


def cancel_ticket(ctx: StepContext, result: dict[str, Any]) -> None:
    """Compensation of a step whose result opened a ticket (``ticketId``): cancel it."""
    ticket_id = result.get("ticketId")
    if isinstance(ticket_id, str):
        ticket_cancel(
            ticket_id=ticket_id,
            reason=f"Cancelled: workflow {ctx.execution_id} could not finish.",
            author="workflow",
        )


# --- the workflow types ------------------------------------------------------------------------

WORKFLOW_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # WorkflowExecution.workflow_type


@dataclass(frozen=True)
class Workflow:
    """A workflow type. ``steps`` gives the steps for validated parameters; ``check``, when set,
    refuses parameters the model accepts but the type cannot run (``WorkflowInvalid``)."""

    name: str
    parameters: type[BaseModel]
    steps: Callable[[dict[str, Any]], list[Step]]
    check: Callable[[dict[str, Any]], None] | None = None


class WorkflowNotFound(KeyError):
    """No workflow type is registered under that name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no workflow type named {self.name!r}"


class WorkflowRegistry:
    """Workflow types by name; validates on ``register``."""

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}

    def register(self, workflow: Workflow) -> Workflow:
        if not WORKFLOW_NAME_RE.match(workflow.name):
            raise ValueError(f"workflow name {workflow.name!r} is not 1-32 lower-case letters")
        parameters = workflow.parameters
        if not (isinstance(parameters, type) and issubclass(parameters, BaseModel)):
            raise ValueError(f"{workflow.name}: parameters must be a pydantic model")
        if not callable(workflow.steps) or not (workflow.check is None or callable(workflow.check)):
            raise ValueError(f"{workflow.name}: steps and check must be callables")
        if workflow.name in self._workflows:
            raise ValueError(f"a workflow type named {workflow.name!r} exists")
        self._workflows[workflow.name] = workflow
        return workflow

    def unregister(self, name: str) -> None:
        del self._workflows[self.get(name).name]

    @contextlib.contextmanager
    def register_temporarily(self, workflow: Workflow) -> Iterator[Workflow]:
        """For tests: the workflow type is registered inside the block only."""
        self.register(workflow)
        try:
            yield workflow
        finally:
            self.unregister(workflow.name)

    def get(self, name: str) -> Workflow:
        """The workflow type by name; ``WorkflowNotFound`` otherwise."""
        workflow = self._workflows.get(name)
        if workflow is None:
            raise WorkflowNotFound(name)
        return workflow

    def names(self) -> list[str]:
        return sorted(self._workflows)


workflow_types = WorkflowRegistry()


def register_workflow(workflow: Workflow) -> Workflow:
    """Add a workflow type (``ValueError`` when it is malformed or its name is taken)."""
    return workflow_types.register(workflow)


def validation_problems(exc: ValidationError, *, where: str) -> str:
    """Pydantic's first five errors as one line, ``where`` naming a top-level error."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or where}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)[:5]
    )


def _validated(workflow_type: Any, parameters: Any) -> tuple[Workflow, dict[str, Any]]:
    workflow = None
    if isinstance(workflow_type, str):
        with contextlib.suppress(WorkflowNotFound):
            workflow = workflow_types.get(workflow_type)
    if workflow is None:
        names = ", ".join(workflow_types.names())
        raise WorkflowInvalid(f"workflowType must be one of {names}.", field="workflowType")
    if not isinstance(parameters, dict):
        raise WorkflowInvalid("parameters must be an object.")
    try:
        checked = workflow.parameters.model_validate(parameters).model_dump(mode="json")
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        first = ".".join(str(p) for p in errors[0]["loc"])
        raise WorkflowInvalid(
            f"Invalid parameters: {validation_problems(exc, where='parameters')}",
            field=f"parameters.{first}" if first else "parameters",
            missing=errors[0]["type"] == "missing",
        ) from None
    if workflow.check is not None:
        workflow.check(checked)
    return workflow, checked


def derived_key(*, session_id: str, workflow_type: str, parameters: dict[str, Any]) -> str:
    """The idempotency key of a submit that gave none: its session, type and parameters."""
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
    try:
        # The registered task's own delay() (eager in tests, its routing and options); a process
        # that has not imported tools.tasks sends the same message by name.
        current_app.signature(RUN_WORKFLOW_TASK).delay(execution_id)
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
    workflow = workflow_types.get(execution.workflow_type)
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
