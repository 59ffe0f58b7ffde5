"""Tickets: the create_ticket and fetch_status tools, idempotent opening, cancelling, staff changes
in the admin reaching the customer, and a session never seeing another's ticket."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.threads import at_once
from tools.models import Ticket, TicketUpdate
from tools.registry import ToolContext, registry
from tools.tickets import TicketData, ticket_cancel, ticket_create

pytestmark = pytest.mark.django_db(transaction=True)

ALICE = ToolContext(session_id="sess_alice", request_id="r-alice")
BOB = ToolContext(session_id="sess_bob", request_id="r-bob")
TICKET = {
    "title": "Desktop app crashes on start",
    "description": "Since yesterday the Windows app closes right after the splash screen.",
    "priority": "high",
    "category": "sync",
    "userEmail": "alice@example.com",
}


async def create(ctx: ToolContext = ALICE, **changes: object):
    return await registry.execute(
        call_id="c1", name="create_ticket", arguments={**TICKET, **changes}, ctx=ctx
    )


async def status(ticket_id: str, ctx: ToolContext = ALICE):
    return await registry.execute(
        call_id="c2", name="fetch_status", arguments={"ticketId": ticket_id}, ctx=ctx
    )


@pytest.mark.parametrize(
    ("priority", "hours"), [("urgent", 4), ("high", 24), ("medium", 72), ("low", 168)]
)
async def test_create_ticket_opens_one_with_resolution_by_priority(priority, hours) -> None:
    outcome = await create(priority=priority)
    assert outcome.status == "success", outcome.error
    result = outcome.result
    assert re.fullmatch(r"TKT-[A-Z2-9]{8}", result["ticketId"])
    assert (result["status"], result["priority"], result["category"]) == ("open", priority, "sync")
    assert result["estimatedResolution"] - result["createdAt"] == hours * 3600 * 1000
    ticket = await Ticket.objects.aget(pk=result["ticketId"])
    assert ticket.session_id == "sess_alice" and ticket.user_email == "alice@example.com"
    assert ticket.estimated_resolution - ticket.created_at == timedelta(hours=hours)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"priority": "critical"}, "priority"),
        ({"title": "x"}, "title"),
        ({"userEmail": "not-an-email"}, "userEmail"),
        ({"description": ""}, "description"),
        ({"extra": 1}, "extra"),
    ],
)
async def test_invalid_ticket_arguments_open_nothing(changes, problem) -> None:
    outcome = await create(**changes)
    assert outcome.status == "invalid"
    assert problem in outcome.error["message"]
    assert await Ticket.objects.acount() == 0


async def test_fetch_status_shows_the_own_ticket_with_its_history() -> None:
    ticket_id = (await create()).result["ticketId"]
    outcome = await status(ticket_id.lower())
    assert outcome.status == "success"
    assert outcome.result["ticketId"] == ticket_id
    assert [u["kind"] for u in outcome.result["updates"]] == ["created"]


async def test_another_sessions_ticket_is_not_found_and_nothing_leaks() -> None:
    ticket_id = (await create()).result["ticketId"]
    outcome = await status(ticket_id, ctx=BOB)
    assert outcome.status == "failed" and outcome.attempts == 1
    assert outcome.error["code"] == "NOT_FOUND"
    text = outcome.for_model()
    assert "crashes" not in text and "alice" not in text
    # Exactly what an id that never existed gets.
    missing = await status("TKT-ZZZZZZZZ", ctx=BOB)
    assert missing.error["message"].replace("TKT-ZZZZZZZZ", ticket_id) == outcome.error["message"]


def test_the_same_idempotency_key_opens_one_ticket_even_at_once() -> None:
    data = TicketData(title="Sync stuck", description="Sync has been stuck since Monday.")
    first, new = ticket_create(session_id="sess_alice", data=data, idempotency_key="k1")
    again, new_again = ticket_create(session_id="sess_alice", data=data, idempotency_key="k1")
    assert (new, new_again, again.pk) == (True, False, first.pk)

    results = at_once(
        lambda: ticket_create(session_id="sess_alice", data=data, idempotency_key="k2")[0].pk
    )
    assert len(results) == 4 and len(set(results)) == 1
    assert Ticket.objects.filter(idempotency_key="k2").count() == 1


def test_cancelling_records_why_and_leaves_final_tickets_alone() -> None:
    data = TicketData(title="Sync stuck", description="Sync has been stuck since Monday.")
    ticket, _ = ticket_create(session_id="sess_alice", data=data)
    ticket_cancel(ticket_id=ticket.pk, reason="The escalation workflow failed.")
    ticket.refresh_from_db()
    assert ticket.status == "cancelled"
    last = ticket.updates.order_by("-id").first()
    assert last is not None and last.message == "The escalation workflow failed."
    ticket_cancel(ticket_id=ticket.pk, reason="again")
    assert ticket.updates.count() == 2


async def test_staff_changes_in_the_admin_reach_the_customer() -> None:
    from asgiref.sync import sync_to_async

    ticket_id = (await create()).result["ticketId"]

    def staff_moves_it() -> int:
        agent = User.objects.create_superuser("agent", "agent@example.com", "a long passphrase 1")
        client = Client()
        client.force_login(agent)
        page = client.get(f"/admin/tools/ticket/{ticket_id}/change/")
        assert page.status_code == 200
        assert "Desktop app crashes on start" in page.content.decode()
        response = client.post(
            f"/admin/tools/ticket/{ticket_id}/change/",
            {
                "status": "in_progress",
                "priority": "high",
                "category": "sync",
                "assignee": str(agent.pk),
                "note": "We reproduced the crash and are working on a fix.",
                "note_public": "on",
                "updates-TOTAL_FORMS": "1",
                "updates-INITIAL_FORMS": "1",
                "updates-MIN_NUM_FORMS": "0",
                "updates-MAX_NUM_FORMS": "1000",
                "updates-0-id": str(TicketUpdate.objects.get(ticket_id=ticket_id).pk),
                "updates-0-ticket": ticket_id,
            },
        )
        assert response.status_code == 302, response.content.decode()[:2000]
        internal = client.post(
            f"/admin/tools/ticket/{ticket_id}/change/",
            {
                "status": "in_progress",
                "priority": "high",
                "category": "sync",
                "assignee": str(agent.pk),
                "note": "Customer is on the legacy plan.",
                "updates-TOTAL_FORMS": "0",
                "updates-INITIAL_FORMS": "0",
                "updates-MIN_NUM_FORMS": "0",
                "updates-MAX_NUM_FORMS": "1000",
            },
        )
        assert internal.status_code == 302
        return TicketUpdate.objects.filter(ticket_id=ticket_id).count()

    assert await sync_to_async(staff_moves_it)() == 5
    outcome = await status(ticket_id)
    result = outcome.result
    assert result["status"] == "in_progress" and result["assigned"] is True
    messages = [u["message"] for u in result["updates"]]
    assert messages == [
        "Ticket opened.",
        "Status changed to in progress.",
        "An agent is now handling this ticket.",
        "We reproduced the crash and are working on a fix.",
    ]
    assert "legacy plan" not in outcome.for_model()


async def test_the_longest_title_and_request_id_still_open_one_ticket_once() -> None:
    """The idempotency key is derived from both: it must fit its column on every database."""
    ctx = ToolContext(session_id="sess_" + "a" * 32, request_id="r" * 128)
    arguments = {**TICKET, "title": "T" * 200}
    first = await registry.execute(call_id="a", name="create_ticket", arguments=arguments, ctx=ctx)
    again = await registry.execute(call_id="b", name="create_ticket", arguments=arguments, ctx=ctx)
    assert first.status == again.status == "success", first.error
    assert first.result is not None and again.result is not None
    assert first.result["ticketId"] == again.result["ticketId"]
    assert await Ticket.objects.acount() == 1


# --- kb_search, the third built-in tool ---------------------------------------------------


async def test_kb_search_returns_cited_passages_and_refuses_bad_arguments(kb) -> None:
    ctx = ToolContext(session_id="sess_alice")
    found = await registry.execute(
        call_id="k1", name="kb_search", arguments={"query": "reset my password"}, ctx=ctx
    )
    assert found.status == "success" and found.attempts == 1
    assert found.result is not None and found.result["results"][0]["id"] == "kb_002"
    assert found.citations[0]["id"] == "kb_002" and found.citations[0]["url"].startswith("https")
    nothing = await registry.execute(
        call_id="k2", name="kb_search", arguments={"query": "quokka xylophone"}, ctx=ctx
    )
    assert nothing.result == {"results": [], "totalResults": 0}
    bad = await registry.execute(
        call_id="k3", name="kb_search", arguments={"query": "", "maxResults": 50}, ctx=ctx
    )
    assert bad.status == "invalid" and bad.error is not None
    assert "query" in bad.error["message"] and "maxResults" in bad.error["message"]
