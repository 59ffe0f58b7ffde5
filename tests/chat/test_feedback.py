"""POST /api/session/{id}/rating and /feedback: the customer's rating of a resolved hand-off and
the thumbs on an answer (a thumbs-down on an answer without a source asks for a person)."""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from chat.feedback import rate_conversation
from chat.models import AnswerFeedback, ChatSession, Handoff, Rating
from supportbot import ratelimit
from supportbot.errors import ApiError
from tests.chat.conftest import new_session, send
from tests.threads import at_once

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "jane.doe@example.org"


async def post(api, session_id: str, what: str, body):
    return await api.post(
        f"/api/session/{session_id}/{what}",
        data=body if isinstance(body, str) else json.dumps(body),
        content_type="application/json",
    )


def refused(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert error["details"]["field"] == field
    return error


async def resolved_handoff(session_id: str, *, agent: str = "alice") -> Handoff:
    """A hand-off a person resolved (test data: the inbox that resolves them is tested apart)."""
    person = await get_user_model().objects.acreate(
        username=agent, first_name=agent.capitalize(), last_name=""
    )
    now = timezone.now()
    return await Handoff.objects.acreate(
        session_id=session_id,
        status=Handoff.Status.RESOLVED,
        assignee=person,
        resolved_at=now,
        resolved_by=agent,
        updated_at=now,
    )


async def answer(api, session_id: str, question: str = "hello") -> str:
    """The id of the assistant's answer to ``question`` (the offline assistant answers)."""
    response = await send(api, session_id, question)
    assert response.status_code == 200, response.content
    return response.json()["messageId"]


# --- rating ---------------------------------------------------------------------------------------


async def test_rate_a_resolved_conversation(api):
    session_id = await new_session(api)
    handoff = await resolved_handoff(session_id)
    before = int(time.time() * 1000)
    response = await post(api, session_id, "rating", {"score": 4, "comment": f"Mail {EMAIL}"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"ratingId", "sessionId", "score", "comment", "createdAt"}
    stored = await Rating.objects.aget()
    assert body["ratingId"] == f"rat_{stored.pk}"
    assert body["sessionId"] == session_id and body["score"] == 4
    assert before <= body["createdAt"] <= int(time.time() * 1000)
    # The comment is stored (and shown back) redacted, like every stored text.
    assert body["comment"] == stored.comment == "Mail [EMAIL_REDACTED]"
    assert stored.handoff_id == handoff.pk and stored.agent == "Alice" and stored.score == 4


async def test_a_comment_is_optional_and_null_is_none(api):
    session_id = await new_session(api)
    await resolved_handoff(session_id)
    response = await post(api, session_id, "rating", {"score": 5, "comment": None})
    assert response.status_code == 201, response.content
    assert response.json()["comment"] == ""


async def test_rating_twice_is_a_conflict_and_keeps_one(api):
    session_id = await new_session(api)
    await resolved_handoff(session_id)
    assert (await post(api, session_id, "rating", {"score": 5})).status_code == 201
    refused(
        await post(api, session_id, "rating", {"score": 1}), 409, "INVALID_FIELD_VALUE", "score"
    )
    assert await Rating.objects.acount() == 1
    assert (await Rating.objects.aget()).score == 5


async def test_nothing_to_rate_without_a_resolved_handoff(api):
    session_id = await new_session(api)
    refused(
        await post(api, session_id, "rating", {"score": 5}), 409, "INVALID_FIELD_VALUE", "score"
    )
    # An open hand-off is not rated either: the conversation is not over.
    await Handoff.objects.acreate(session_id=session_id, status=Handoff.Status.WITH_AGENT)
    refused(
        await post(api, session_id, "rating", {"score": 5}), 409, "INVALID_FIELD_VALUE", "score"
    )
    assert not await Rating.objects.aexists()


async def test_only_the_latest_resolved_handoff_is_rated(api):
    session_id = await new_session(api)
    await resolved_handoff(session_id, agent="alice")
    latest = await resolved_handoff(session_id, agent="bob")
    assert (await post(api, session_id, "rating", {"score": 3})).status_code == 201
    stored = await Rating.objects.aget()
    assert stored.handoff_id == latest.pk and stored.agent == "Bob"
    # The older one was never asked about: no second rating lands on it.
    refused(
        await post(api, session_id, "rating", {"score": 3}), 409, "INVALID_FIELD_VALUE", "score"
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"score": 0}, "INVALID_FIELD_VALUE"),
        ({"score": 6}, "INVALID_FIELD_VALUE"),
        ({"score": "5"}, "INVALID_FIELD_VALUE"),
        ({"score": 4.5}, "INVALID_FIELD_VALUE"),
        ({"score": True}, "INVALID_FIELD_VALUE"),
        ({"score": None}, "INVALID_FIELD_VALUE"),
        ({}, "MISSING_REQUIRED_FIELD"),
        ({"comment": "great"}, "MISSING_REQUIRED_FIELD"),
    ],
)
async def test_bad_scores(api, body, code):
    session_id = await new_session(api)
    await resolved_handoff(session_id)
    refused(await post(api, session_id, "rating", body), 400, code, "score")
    assert not await Rating.objects.aexists()


@pytest.mark.parametrize("comment", ["x" * 1001, "a\u0000b", 5])
async def test_bad_comments(api, comment):
    session_id = await new_session(api)
    await resolved_handoff(session_id)
    body = {"score": 5, "comment": comment}
    refused(await post(api, session_id, "rating", body), 400, "INVALID_FIELD_VALUE", "comment")
    assert not await Rating.objects.aexists()


def test_the_service_refuses_what_the_schema_would():
    session = ChatSession.objects.create()
    for score in (0, 6, True):
        with pytest.raises(ApiError) as caught:
            rate_conversation(session_id=session.pk, score=score)
        assert caught.value.status == 400 and caught.value.details == {"field": "score"}
    with pytest.raises(ApiError) as caught:
        rate_conversation(session_id=session.pk, score=5, comment="\ud800")
    assert caught.value.details == {"field": "comment"}


@pytest.mark.parametrize("body", ["", "[]", "{"])
async def test_a_body_that_is_no_object(api, body):
    session_id = await new_session(api)
    refused(await post(api, session_id, "rating", body), 400, "INVALID_REQUEST_FORMAT")
    refused(await post(api, session_id, "feedback", body), 400, "INVALID_REQUEST_FORMAT")


async def test_an_ended_session_cannot_rate_or_vote(api):
    session_id = await new_session(api)
    message_id = await answer(api, session_id)
    await resolved_handoff(session_id)
    assert (await api.delete(f"/api/session/{session_id}")).status_code == 200
    refused(await post(api, session_id, "rating", {"score": 5}), 409, "INVALID_SESSION")
    vote = {"messageId": message_id, "vote": "up"}
    refused(await post(api, session_id, "feedback", vote), 409, "INVALID_SESSION")
    assert not await Rating.objects.aexists() and not await AnswerFeedback.objects.aexists()


@pytest.mark.parametrize("what", ["rating", "feedback"])
async def test_unknown_expired_and_malformed_sessions(api, what):
    body = {"score": 5} if what == "rating" else {"messageId": "msg_x", "vote": "up"}
    refused(await post(api, "sess_" + "x" * 32, what, body), 404, "SESSION_NOT_FOUND")
    refused(await post(api, "nope", what, body), 400, "INVALID_SESSION", "sessionId")
    session_id = await new_session(api)
    await ChatSession.objects.filter(pk=session_id).aupdate(expires_at=timezone.now())
    refused(await post(api, session_id, what, body), 404, "SESSION_NOT_FOUND")


def test_two_ratings_at_once_store_one():
    session = ChatSession.objects.create()
    Handoff.objects.create(
        session=session, status=Handoff.Status.RESOLVED, resolved_at=timezone.now()
    )

    def attempt() -> int:
        try:
            rate_conversation(session_id=session.pk, score=5)
        except ApiError as error:
            return error.status
        return 201

    assert sorted(at_once(attempt, count=4)) == [201, 409, 409, 409]
    assert Rating.objects.count() == 1


# --- thumbs ---------------------------------------------------------------------------------------


async def test_a_later_vote_replaces_the_earlier(api, kb):
    session_id = await new_session(api)
    message_id = await answer(api, session_id, "How do I reset my password?")
    response = await post(api, session_id, "feedback", {"messageId": message_id, "vote": "up"})
    assert response.status_code == 200, response.content
    assert response.json() == {"messageId": message_id, "vote": "up", "handoff": None}
    response = await post(api, session_id, "feedback", {"messageId": message_id, "vote": "down"})
    assert response.status_code == 200, response.content
    # The answer cited the help centre: a thumbs-down is recorded, nobody is called.
    assert response.json() == {"messageId": message_id, "vote": "down", "handoff": None}
    stored = await AnswerFeedback.objects.aget()
    assert stored.vote == "down" and stored.had_source and stored.session_id == session_id
    assert not await Handoff.objects.aexists()


async def test_down_on_an_answer_without_a_source_asks_for_a_person(api):
    session_id = await new_session(api)
    message_id = await answer(api, session_id)
    body = {"messageId": message_id, "vote": "down"}
    response = await post(api, session_id, "feedback", body)
    assert response.status_code == 200, response.content
    status = response.json()["handoff"]
    assert status["sessionId"] == session_id and status["reason"] == "not_helpful"
    assert status["status"] in ("waiting", "assigned", "with_agent")
    handoff = await Handoff.objects.aget()
    assert handoff.reason == "not_helpful" and handoff.priority == "low" and handoff.is_open
    assert status["handoffId"] == f"hof_{handoff.pk}"
    assert not (await AnswerFeedback.objects.aget()).had_source
    # Saying it again asks for nobody else, and still shows where the request stands.
    again = await post(api, session_id, "feedback", body)
    assert again.status_code == 200, again.content
    assert again.json()["handoff"]["handoffId"] == status["handoffId"]
    assert await Handoff.objects.acount() == 1 and await AnswerFeedback.objects.acount() == 1


async def test_up_on_an_answer_without_a_source_asks_nothing(api):
    session_id = await new_session(api)
    message_id = await answer(api, session_id)
    response = await post(api, session_id, "feedback", {"messageId": message_id, "vote": "up"})
    assert response.json()["handoff"] is None
    assert not await Handoff.objects.aexists()


async def test_only_the_sessions_own_answers(api):
    session_id = await new_session(api)
    await answer(api, session_id)
    other_id = await new_session(api)
    other_answer = await answer(api, other_id)
    session = await ChatSession.objects.aget(pk=session_id)
    question = await session.messages.filter(role="user").afirst()
    assert question is not None
    for message_id in (question.pk, other_answer, "msg_000000000000000000000000"):
        body = {"messageId": message_id, "vote": "up"}
        refused(await post(api, session_id, "feedback", body), 404, "NOT_FOUND", "messageId")
    assert not await AnswerFeedback.objects.aexists()


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"vote": "up"}, "MISSING_REQUIRED_FIELD", "messageId"),
        ({"messageId": "MSG", "vote": "sideways"}, "INVALID_FIELD_VALUE", "vote"),
        ({"messageId": "MSG", "vote": None}, "INVALID_FIELD_VALUE", "vote"),
        ({"messageId": "MSG"}, "MISSING_REQUIRED_FIELD", "vote"),
        ({"messageId": "a\u0000b", "vote": "up"}, "INVALID_FIELD_VALUE", "messageId"),
        ({"messageId": "x" * 41, "vote": "up"}, "INVALID_FIELD_VALUE", "messageId"),
        ({"messageId": 5, "vote": "up"}, "INVALID_FIELD_VALUE", "messageId"),
    ],
)
async def test_bad_votes(api, body, code, field):
    session_id = await new_session(api)
    message_id = await answer(api, session_id)
    body = {key: message_id if value == "MSG" else value for key, value in body.items()}
    refused(await post(api, session_id, "feedback", body), 400, code, field)
    assert not await AnswerFeedback.objects.aexists()


# --- limits ---------------------------------------------------------------------------------------


@pytest.fixture
def memory_limits(settings):
    settings.REDIS_URL = ""
    ratelimit.reset_backend()
    yield
    ratelimit.reset_backend()


async def test_a_flood_is_refused_before_anything_is_stored(api, settings, memory_limits):
    # Set first: a limit's counters are kept per amount.
    setattr(settings, ratelimit.configured_limits()["session_requests"].setting, 2)
    session_id = await new_session(api)
    message_id = await answer(api, session_id)  # the first request of the session
    await resolved_handoff(session_id)
    vote = {"messageId": message_id, "vote": "up"}
    assert (await post(api, session_id, "feedback", vote)).status_code == 200  # the second
    for what, body in (("rating", {"score": 5}), ("feedback", {**vote, "vote": "down"})):
        response = await post(api, session_id, what, body)
        error = refused(response, 429, "RATE_LIMIT_EXCEEDED")
        assert error["details"]["name"] == "session_requests"
        assert int(response["Retry-After"]) >= 1
    assert not await Rating.objects.aexists()
    assert not await Handoff.objects.exclude(status="resolved").aexists()
    assert (await AnswerFeedback.objects.aget()).vote == "up"
