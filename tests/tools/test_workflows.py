"""Workflows: the three types end to end, idempotent submits (one after the other and at once),
retries with the real attempt counts, compensation in reverse order, resuming after a worker
died, progress on the session's sockets, and the REST endpoints with bad input.

Celery runs tasks eagerly in these tests (``tests/conftest.py``); ``test_workflow_worker.py``
runs them in a real worker on Redis."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from pydantic import BaseModel

from chat.models import ChatSession, Handoff, Message
from chat.sessions import session_create, session_end
from supportbot.asgi import application
from supportbot.celery import app as celery_app
from tests.chat.conftest import new_session, send
from tests.threads import at_once
from tools.models import Ticket, WorkflowExecution, WorkflowStep
from tools.registry import Tool, ToolContext, ToolFailure, ToolResult, registry
from tools.workflows import run_execution, workflow_submit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast(settings):
    settings.WORKFLOW_RETRY_BASE_SECONDS = 0.01
    settings.WORKFLOW_RETRY_MAX_SECONDS = 0.02
    settings.TOOL_RETRY_BASE_SECONDS = 0.01
    settings.TOOL_RETRY_MAX_SECONDS = 0.02


async def execute(api, payload: Any):
    return await api.post(
        "/api/workflow/execute", data=json.dumps(payload), content_type="application/json"
    )


def params(session_id: str, **extra: Any) -> dict[str, Any]:
    return {"context": {"sessionId": session_id}, **extra}


# --- the three workflows -------------------------------------------------------------------


async def test_complex_query_answers_every_part_and_each_ticket(api, kb) -> None:
    session_id = await new_session(api)
    opened = await registry.execute(
        call_id="c",
        name="create_ticket",
        arguments={"title": "Sync stuck", "description": "Sync stuck since Monday."},
        ctx=ToolContext(session_id=session_id),
    )
    assert opened.result is not None
    ticket_id = opened.result["ticketId"]
    query = f"How do I reset my password? Also, how do I get a refund? And what about {ticket_id}?"
    response = await execute(
        api, {"workflowType": "complex_query", "parameters": params(session_id, query=query)}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["executionId"].startswith("wf_exec_")
    assert (body["workflowType"], body["status"], body["progress"]) == (
        "complex_query",
        "completed",
        1.0,
    )
    assert [s["name"] for s in body["steps"]] == ["analyse", "search", "ticket_status", "compose"]
    assert all(s["status"] == "completed" and s["attempts"] == 1 for s in body["steps"])
    analysis = body["steps"][0]["result"]
    assert analysis["tickets"] == [ticket_id] and len(analysis["parts"]) >= 2
    answer = body["result"]["answer"]
    assert "kb_002" in {c["id"] for c in body["result"]["citations"]}
    assert f"Ticket {ticket_id} (Sync stuck) is open." in answer
    again = await api.get(f"/api/workflow/{body['executionId']}")
    assert again.status_code == 200 and again.json() == body


async def test_escalation_opens_a_ticket_tells_the_session_and_marks_it(api, kb) -> None:
    session_id = await new_session(api)
    await send(api, session_id, "My files stopped syncing after the update")
    ws = WebsocketCommunicator(
        application,
        f"/ws?sessionId={session_id}",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")],
    )
    assert (await ws.connect())[0]
    await ws.receive_json_from()

    response = await execute(
        api,
        {
            "workflowType": "escalation",
            "parameters": params(session_id, query="Customer wants a human", priority="urgent"),
        },
    )
    body = response.json()
    assert body["status"] == "completed", body
    assert [s["name"] for s in body["steps"]] == [
        "summarise",
        "create_ticket",
        "notify",
        "mark_escalated",
    ]
    ticket_id = body["steps"][1]["result"]["ticketId"]
    ticket = await Ticket.objects.aget(pk=ticket_id)
    assert ticket.priority == "urgent" and ticket.session_id == session_id
    assert "My files stopped syncing after the update" in ticket.description
    session = await ChatSession.objects.aget(pk=session_id)
    assert session.escalation_ticket == ticket_id and session.escalated_at is not None
    notice = await Message.objects.filter(session_id=session_id, role="system").alast()
    assert notice is not None and ticket_id in notice.content
    # Nobody is online: no promise of an agent, the truth and a way to be answered instead.
    assert "will take over" not in notice.content
    assert "No one from the team is available right now" in notice.content
    # The ticket carries the customer's words, not a transcript tail with the bot's disclaimer.
    assert "offline assistant" not in ticket.description
    item = await Handoff.objects.aget(session_id=session_id)
    assert (item.reason, item.ticket_id, item.priority) == ("escalation", ticket_id, "urgent")

    frames: list[dict[str, Any]] = []
    while not any(
        f["type"] == "workflow_progress" and f["data"]["status"] == "completed" for f in frames
    ):
        frames.append(await ws.receive_json_from(timeout=5))
    progress = [f["data"]["progress"] for f in frames if f["type"] == "workflow_progress"]
    assert progress == sorted(progress) and progress[-1] == 1.0
    delivered = [f["data"] for f in frames if f["type"] == "message"]
    assert [m["role"] for m in delivered] == ["system"] and ticket_id in delivered[0]["content"]
    await ws.disconnect()


async def test_tool_chain_passes_results_on(api, kb) -> None:
    session_id = await new_session(api)
    chain = [
        {"tool": "create_ticket", "arguments": {"title": "Chain", "description": "Chained."}},
        {"tool": "fetch_status", "arguments": {"ticketId": "$prev.ticketId"}},
    ]
    body = (
        await execute(
            api, {"workflowType": "tool_chain", "parameters": params(session_id, tools=chain)}
        )
    ).json()
    assert body["status"] == "completed", body
    created, status = (s["result"] for s in body["steps"])
    assert status["ticketId"] == created["ticketId"]
    assert body["result"]["updates"][0]["message"] == "Ticket opened."


# --- idempotency ---------------------------------------------------------------------------


async def test_a_resubmit_returns_the_same_execution(api, kb) -> None:
    session_id = await new_session(api)
    payload = {"workflowType": "complex_query", "parameters": params(session_id, query="refund")}
    first = (await execute(api, payload)).json()
    second = (await execute(api, payload)).json()
    assert second["executionId"] == first["executionId"]
    keyed = {**payload, "idempotencyKey": "order-42"}
    third = (await execute(api, keyed)).json()
    again = (await execute(api, keyed)).json()
    assert third["executionId"] == again["executionId"] != first["executionId"]
    assert await WorkflowExecution.objects.acount() == 2

    # A key names one request: reused for another one it is refused, never answered with the
    # first request's execution (an escalation must not silently become a complex_query).
    for changed in (
        {**keyed, "parameters": params(session_id, query="something else")},
        {**keyed, "workflowType": "escalation"},
    ):
        refused = await execute(api, changed)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "INVALID_FIELD_VALUE"
        assert refused.json()["error"]["details"] == {"field": "idempotencyKey"}


async def test_an_idempotency_key_belongs_to_its_session(api, kb) -> None:
    """The same key from another session is that session's own execution: it is never told
    that the key exists (nor given the first), whatever it sends with it."""
    mine, other, third = [await new_session(api) for _ in range(3)]
    keyed = {
        "workflowType": "complex_query",
        "parameters": params(mine, query="refund"),
        "idempotencyKey": "order-42",
    }
    first = (await execute(api, keyed)).json()
    for parameters in (params(other, query="refund"), params(third, query="something else")):
        reused = await execute(api, {**keyed, "parameters": parameters})
        assert reused.status_code == 200, reused.content
        body = reused.json()
        assert body["executionId"] != first["executionId"]
        assert "error" not in body
    for session_id in (mine, other, third):
        assert await WorkflowExecution.objects.filter(session_id=session_id).acount() == 1
    again = (await execute(api, keyed)).json()  # the first session still gets its own
    assert again["executionId"] == first["executionId"]


def test_concurrent_submits_with_one_key_make_one_execution(kb) -> None:
    session = session_create()
    ids = at_once(
        lambda: (
            workflow_submit(
                workflow_type="complex_query",
                session_id=session.id,
                parameters={"query": "How do I share a folder?"},
                idempotency_key="same-key",
            )[0].id
        )
    )
    assert len(ids) == 4 and len(set(ids)) == 1
    assert WorkflowExecution.objects.count() == 1
    assert WorkflowExecution.objects.get().status == "completed"


# --- failures: retries, compensation, resuming ----------------------------------------------


class _Args(BaseModel):
    text: str = "x"


class Hiccup(Tool):
    """Fails transiently ``failures`` times in all, then answers."""

    name = "test.hiccup"
    function_name = "test_hiccup"
    description = "Flaky."
    Args = _Args

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0

    async def run(self, args: _Args, ctx: ToolContext) -> ToolResult:
        self.runs += 1
        if self.runs <= self.failures:
            raise ToolFailure("backend busy", permanent=False)
        return ToolResult(data={"ok": True, "runs": self.runs})


def test_a_flaky_step_is_retried_and_reports_its_attempts(kb) -> None:
    session = session_create()
    tool = Hiccup(failures=4)  # the registry tries 3 times per step attempt
    with registry.register_temporarily(tool):
        execution, _ = workflow_submit(
            workflow_type="tool_chain",
            session_id=session.id,
            parameters={"tools": [{"tool": "test_hiccup"}]},
        )
    execution.refresh_from_db()
    step = execution.steps.get()
    assert (execution.status, step.status, step.attempts, tool.runs) == (
        "completed",
        "completed",
        2,
        5,
    )


def test_a_step_failing_for_good_cancels_the_ticket_and_says_why(kb) -> None:
    session = session_create()
    execution, _ = workflow_submit(
        workflow_type="tool_chain",
        session_id=session.id,
        parameters={
            "tools": [
                {"tool": "create_ticket", "arguments": {"title": "Doomed", "description": "x y"}},
                {"tool": "fetch_status", "arguments": {"ticketId": "$prev.noSuchField"}},
            ]
        },
    )
    execution.refresh_from_db()
    steps = list(execution.steps.order_by("index"))
    assert execution.status == "compensated"
    assert "noSuchField" in execution.error
    assert [(s.status, s.attempts) for s in steps] == [("compensated", 1), ("failed", 1)]
    assert steps[0].result is not None
    ticket = Ticket.objects.get(pk=steps[0].result["ticketId"])
    assert ticket.status == "cancelled"
    last = ticket.updates.order_by("-id").first()
    assert last is not None and execution.id in last.message


def test_escalating_an_ended_session_is_undone_in_reverse_order(kb) -> None:
    session = session_create()
    session_end(session_id=session.id)
    execution, _ = workflow_submit(
        workflow_type="escalation", session_id=session.id, parameters={"query": "Help"}
    )
    execution.refresh_from_db()
    steps = {s.name: s for s in execution.steps.all()}
    assert execution.status == "compensated"
    assert "ended" in execution.error
    assert steps["summarise"].status == "completed"  # nothing to undo
    assert steps["create_ticket"].status == "compensated"
    assert steps["notify"].status == "failed" and steps["notify"].attempts == 1
    assert steps["mark_escalated"].status == "pending"
    assert Ticket.objects.get().status == "cancelled"
    assert execution.result is None


def test_a_worker_killed_mid_step_is_resumed_without_doing_a_step_twice(kb) -> None:
    """As a dead worker leaves it: the first tool ran (the ticket exists) but its step was not
    recorded as done; the lease has lapsed. The next delivery finishes the job."""
    session = session_create()
    broker = celery_app.conf.broker_url
    celery_app.conf.task_always_eager = False  # store only; this test plays the worker
    celery_app.conf.broker_url = "memory://"
    try:
        execution, _ = workflow_submit(
            workflow_type="tool_chain",
            session_id=session.id,
            parameters={
                "tools": [
                    {
                        "tool": "create_ticket",
                        "arguments": {"title": "Once", "description": "Only once."},
                    },
                    {"tool": "fetch_status", "arguments": {"ticketId": "$prev.ticketId"}},
                ]
            },
        )
    finally:
        celery_app.conf.task_always_eager = True
        celery_app.conf.broker_url = broker
    async_to_sync(registry.execute)(
        call_id="c",
        name="create_ticket",
        arguments={"title": "Once", "description": "Only once."},
        ctx=ToolContext(session_id=session.id, request_id=f"{execution.id}.0"),
    )
    WorkflowStep.objects.filter(execution=execution, index=0).update(status="running", attempts=1)
    past = timezone.now() - timedelta(seconds=5)
    WorkflowExecution.objects.filter(pk=execution.pk).update(
        status="running", lease_token="dead", lease_until=past, deliveries=1
    )

    # Another worker holding a live lease: nothing happens.
    WorkflowExecution.objects.filter(pk=execution.pk).update(
        lease_until=timezone.now() + timedelta(seconds=60)
    )
    assert run_execution(execution.id) is None
    WorkflowExecution.objects.filter(pk=execution.pk).update(lease_until=past)

    assert run_execution(execution.id) == "completed"
    execution.refresh_from_db()
    assert execution.deliveries == 2
    assert Ticket.objects.count() == 1
    assert [s.attempts for s in execution.steps.order_by("index")] == [2, 1]
    assert run_execution(execution.id) is None  # finished: a late redelivery does nothing


# --- REST input ----------------------------------------------------------------------------


CHAINS: dict[str, list[dict[str, Any]]] = {
    "PT": [{"tool": "format_disk", "arguments": {}}],  # no such tool
    "PA": [{"tool": "create_ticket", "arguments": {"title": 1}}],  # arguments the tool refuses
    "PR": [{"tool": "fetch_status", "arguments": {"ticketId": "$prev.ticketId"}}],  # no step 0
    "P$": [
        {"tool": "create_ticket", "arguments": {"title": "Title", "description": "Words"}},
        {"tool": "fetch_status", "arguments": {"ticketId": "$previous"}},  # not a reference
    ],
}


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"workflowType": "nope", "parameters": "P"}, 400, "INVALID_FIELD_VALUE"),
        ({"parameters": "P"}, 400, "MISSING_REQUIRED_FIELD"),
        ({"workflowType": "complex_query"}, 400, "MISSING_REQUIRED_FIELD"),
        ({"workflowType": "complex_query", "parameters": {"query": "x"}}, 400, None),
        ({"workflowType": "complex_query", "parameters": "P+"}, 400, "INVALID_FIELD_VALUE"),
        (
            {
                "workflowType": "complex_query",
                "parameters": {"query": "x", "context": {"sessionId": "sess_" + "y" * 32}},
            },
            404,
            "SESSION_NOT_FOUND",
        ),
        (
            {"workflowType": "tool_chain", "parameters": "P", "idempotencyKey": "no spaces"},
            400,
            "INVALID_FIELD_VALUE",
        ),
        ({"workflowType": "tool_chain", "parameters": "P"}, 400, "MISSING_REQUIRED_FIELD"),
        ({"workflowType": "tool_chain", "parameters": "PT"}, 400, "INVALID_FIELD_VALUE"),
        ({"workflowType": "tool_chain", "parameters": "PA"}, 400, "INVALID_FIELD_VALUE"),
        ({"workflowType": "tool_chain", "parameters": "PR"}, 400, "INVALID_FIELD_VALUE"),
        ({"workflowType": "tool_chain", "parameters": "P$"}, 400, "INVALID_FIELD_VALUE"),
        ("[]", 400, "INVALID_REQUEST_FORMAT"),
    ],
)
async def test_bad_workflow_submits_are_refused_and_store_nothing(api, kb, payload, status, code):
    session_id = await new_session(api)
    if isinstance(payload, dict):
        marker = payload.get("parameters")
        if marker == "P":
            payload = {**payload, "parameters": params(session_id, query="hello there")}
        elif marker == "P+":
            payload = {**payload, "parameters": params(session_id, query="x" * 5000)}
        elif isinstance(marker, str) and marker in CHAINS:
            payload = {**payload, "parameters": params(session_id, tools=CHAINS[marker])}
        response = await execute(api, payload)
    else:
        response = await api.post(
            "/api/workflow/execute", data=payload, content_type="application/json"
        )
    assert response.status_code == status, response.content
    if code:
        assert response.json()["error"]["code"] == code
    assert await WorkflowExecution.objects.acount() == 0


async def test_an_execution_does_not_give_away_its_session(api, kb) -> None:
    """An execution id (128 random bits) reads the execution, not the session behind it."""
    session_id = await new_session(api)
    payload = {"workflowType": "complex_query", "parameters": params(session_id, query="refund")}
    body = (await execute(api, payload)).json()
    assert len(body["executionId"]) == len("wf_exec_") + 32
    read = await api.get(f"/api/workflow/{body['executionId']}")
    assert read.status_code == 200
    assert session_id not in read.content.decode()


async def test_a_missing_query_is_named(api, kb) -> None:
    session_id = await new_session(api)
    for parameters, code in (
        (params(session_id), "MISSING_REQUIRED_FIELD"),
        (params(session_id, query="   "), "INVALID_FIELD_VALUE"),
    ):
        response = await execute(api, {"workflowType": "complex_query", "parameters": parameters})
        assert response.status_code == 400
        error = response.json()["error"]
        assert (error["code"], error["details"]["field"]) == (code, "parameters.query")


def test_a_ticket_status_question_is_not_searched(kb) -> None:
    session = session_create()
    opened = async_to_sync(registry.execute)(
        call_id="c",
        name="create_ticket",
        arguments={"title": "Sync stuck", "description": "Sync stuck since Monday."},
        ctx=ToolContext(session_id=session.id),
    )
    assert opened.result is not None
    ticket_id = opened.result["ticketId"]
    execution, _ = workflow_submit(
        workflow_type="complex_query",
        session_id=session.id,
        parameters={"query": f"What is the status of {ticket_id}?"},
    )
    execution.refresh_from_db()
    assert execution.status == "completed"
    analyse, search = execution.steps.order_by("index")[:2]
    assert analyse.result == {"parts": [], "tickets": [ticket_id]}
    assert search.result == {"searches": []}
    assert execution.result is not None
    assert execution.result["answer"] == f"Ticket {ticket_id} (Sync stuck) is open."


@pytest.mark.parametrize("execution_id", ["wf_exec_000000000000000000000000", "x", "../../etc"])
async def test_an_unknown_execution_is_not_found(api, execution_id: str) -> None:
    response = await api.get(f"/api/workflow/{execution_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_sessions_see_workflows_with_their_conversation(api, kb) -> None:
    """The transcript the escalation reads comes from chat, in order, with roles."""
    session_id = await new_session(api)
    await send(api, session_id, "first question here")
    await send(api, session_id, "second question here")
    from chat.sessions import conversation_text

    text = await sync_to_async(conversation_text)(session_id)
    lines = text.splitlines()
    assert lines[0] == "Customer: first question here"
    assert lines[1].startswith("Assistant: ")
    assert lines[2] == "Customer: second question here"


def test_staff_see_executions_with_their_steps_read_only(kb) -> None:
    from django.contrib.admin.utils import quote
    from django.contrib.auth.models import User
    from django.test import Client

    session = session_create()
    execution, _ = workflow_submit(
        workflow_type="complex_query", session_id=session.id, parameters={"query": "refunds"}
    )
    staff = User.objects.create_superuser("ops", "ops@example.com", "a long passphrase 1")
    client = Client()
    client.force_login(staff)
    listing = client.get("/admin/tools/workflowexecution/", {"status": "completed"})
    assert listing.status_code == 200 and execution.id in listing.content.decode()
    # quote(): the admin reads "_XX" in an object id as an escape ("wf_exec_25…" is "%…").
    change_url = f"/admin/tools/workflowexecution/{quote(execution.id)}/change/"
    page = client.get(change_url)
    text = page.content.decode()
    assert page.status_code == 200
    for name in ("analyse", "search", "ticket_status", "compose"):
        assert name in text
    changed = client.post(change_url, {})
    assert changed.status_code == 403
    execution.refresh_from_db()
    assert execution.status == "completed"
