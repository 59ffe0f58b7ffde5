"""Tickets in an external ticketing system (TICKETING_API_URL), against a fake one over HTTP:
opened there first and mirrored here, retried safely, refreshed on reads, cancelled by
compensation, and the session scoping unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chat.sessions import session_create
from tests.fakes.ticketing_server import FakeTicketing
from tools.models import Ticket, WorkflowExecution
from tools.registry import ToolContext, registry
from tools.workflows import workflow_submit

pytestmark = pytest.mark.django_db(transaction=True)

ALICE = ToolContext(session_id="sess_alice", request_id="r1")
TICKET = {"title": "Sync broken", "description": "Nothing syncs since Monday.", "priority": "low"}


@pytest.fixture
def external(settings) -> Iterator[FakeTicketing]:
    with FakeTicketing() as fake:
        settings.TICKETING_API_URL = fake.url
        settings.TICKETING_API_KEY = fake.api_key
        settings.TICKETING_TIMEOUT_SECONDS = 2
        settings.TOOL_RETRY_BASE_SECONDS = 0.01
        settings.TOOL_RETRY_MAX_SECONDS = 0.02
        yield fake


async def create(ctx: ToolContext = ALICE):
    return await registry.execute(call_id="c", name="create_ticket", arguments=TICKET, ctx=ctx)


async def status(ticket_id: str, ctx: ToolContext = ALICE):
    return await registry.execute(
        call_id="s", name="fetch_status", arguments={"ticketId": ticket_id}, ctx=ctx
    )


async def test_a_ticket_is_opened_externally_and_mirrored(external) -> None:
    outcome = await create()
    assert outcome.status == "success", outcome.error
    (request,) = external.requests
    assert (request.method, request.path) == ("POST", "/api/tickets")
    assert request.headers["authorization"] == "Bearer ticketing-key"
    assert request.headers["idempotency-key"]
    assert request.body["reference"] == "sess_alice" and request.body["priority"] == "low"
    ticket = await Ticket.objects.aget(pk=outcome.result["ticketId"])
    assert ticket.external_id == "EXT-1001" and ticket.session_id == "sess_alice"


async def test_transient_failures_are_retried_without_a_second_external_ticket(external) -> None:
    external.fail_next(503, 502)
    outcome = await create()
    assert (outcome.status, outcome.attempts) == ("success", 3)
    keys = {r.headers["idempotency-key"] for r in external.requests}
    assert len(external.requests) == 3 and len(keys) == 1
    assert len(external.tickets) == 1


async def test_a_refusal_is_permanent_and_shows_nothing_of_the_system(external, settings) -> None:
    settings.TICKETING_API_KEY = "wrong-key"
    outcome = await create()
    assert (outcome.status, outcome.attempts) == ("failed", 1)
    assert "wrong-key" not in outcome.for_model() and "unauthorized" not in outcome.for_model()
    assert await Ticket.objects.acount() == 0


async def test_reads_bring_the_external_history_in_once(external) -> None:
    ticket_id = (await create()).result["ticketId"]
    external.add_update("EXT-1001", "An engineer is looking at your account.", "in_progress")
    first = await status(ticket_id)
    assert first.result["status"] == "in_progress"
    messages = [u["message"] for u in first.result["updates"]]
    assert "An engineer is looking at your account." in messages
    assert "Status changed to in progress." in messages
    second = await status(ticket_id)
    assert second.result["updates"] == first.result["updates"]

    other = await status(ticket_id, ctx=ToolContext(session_id="sess_bob"))
    assert other.error is not None and other.error["code"] == "NOT_FOUND"


async def test_an_unreachable_system_still_shows_what_was_known(external) -> None:
    ticket_id = (await create()).result["ticketId"]
    external.fail_next(503)
    outcome = await status(ticket_id)
    assert outcome.status == "success" and outcome.result["status"] == "open"


def ticket_then_failing_step() -> WorkflowExecution:
    """A tool_chain whose second step fails for good after the first opened a ticket."""
    execution, _ = workflow_submit(
        workflow_type="tool_chain",
        session_id=session_create().id,
        parameters={
            "tools": [
                {"tool": "create_ticket", "arguments": TICKET},
                {"tool": "fetch_status", "arguments": {"ticketId": "$prev.missing"}},
            ]
        },
    )
    execution.refresh_from_db()
    return execution


def test_compensation_cancels_the_external_ticket(external, kb) -> None:
    execution = ticket_then_failing_step()
    assert execution.status == "compensated"
    assert external.tickets["EXT-1001"]["status"] == "cancelled"
    assert [r.path for r in external.requests][-1] == "/api/tickets/EXT-1001/cancel"
    assert Ticket.objects.get().status == "cancelled"


def test_a_cancel_that_fails_leaves_the_execution_failed_not_compensated(external, kb) -> None:
    external.refuse_cancels = True
    execution = ticket_then_failing_step()
    first, second = execution.steps.order_by("index")
    assert execution.status == "failed" and "missing" in execution.error
    assert (first.status, second.status) == ("compensation_failed", "failed")
    assert "could not be undone" in first.error
    assert Ticket.objects.get().status == "open"  # still open there, so still open here
