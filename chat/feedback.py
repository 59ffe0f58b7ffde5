"""What the customer says about the help they got: a rating from 1 to 5 of a conversation a person
resolved, and a thumbs up or down on one answer.

Both are stored for staff (the ops app reads them); a thumbs-down on an answer that cited no
source is the customer telling us the bot guessed, so it also asks for a person
(``chat.handoff.request_handoff``, reason "not_helpful"). Their wire shapes are built by the
transport (``chat.feedback_api``).
"""

from __future__ import annotations

from typing import Any

import structlog
from django.db import IntegrityError
from django.utils import timezone

from chat.guards.validation import unstorable
from chat.handoff import clean_customer_text, handoff_status, publish_handoff, request_handoff
from chat.models import AnswerFeedback, Handoff, Message, Rating
from chat.sessions import session_get
from chat.wire import display_name
from supportbot import metrics
from supportbot.db import write_transaction
from supportbot.errors import ApiError

log = structlog.get_logger("chat.feedback")

MIN_SCORE = 1
MAX_SCORE = 5
COMMENT_MAX = 1000
NOT_HELPFUL_NOTE = "The customer said this answer did not help."


def _nothing_to_rate(message: str) -> ApiError:
    return ApiError("INVALID_FIELD_VALUE", message, status=409, details={"field": "score"})


def rate_conversation(*, session_id: str, score: int, comment: str = "") -> Rating:
    """Rate the session's latest resolved hand-off (once: a second rating is a 409).

    Only the latest resolved hand-off can be rated: the customer is asked about the conversation
    a person just closed, so a rating never lands on an older one they were not asked about.
    """
    # bool is an int in Python; true is not a score.
    if isinstance(score, bool) or not isinstance(score, int) or not MIN_SCORE <= score <= MAX_SCORE:
        raise ApiError(
            "INVALID_FIELD_VALUE",
            f"score must be a whole number from {MIN_SCORE} to {MAX_SCORE}.",
            details={"field": "score"},
        )
    comment = clean_customer_text(
        comment, field="comment", limit=COMMENT_MAX, session_id=session_id
    )
    try:
        with write_transaction():
            session = session_get(session_id=session_id, allow_ended=False)
            handoff = (
                Handoff.objects.select_related("assignee")
                .filter(session=session, status=Handoff.Status.RESOLVED)
                .order_by("-resolved_at", "-pk")
                .first()
            )
            if handoff is None:
                raise _nothing_to_rate("No conversation with a person has been resolved yet.")
            if Rating.objects.filter(handoff=handoff).exists():
                raise _nothing_to_rate("This conversation has been rated already.")
            rating = Rating.objects.create(
                session=session,
                handoff=handoff,
                score=score,
                comment=comment,
                agent=display_name(handoff.assignee),
            )
            publish_handoff(session, handoff)  # every tab stops asking for a rating
    except IntegrityError:
        # A concurrent rating of the same hand-off won the one-to-one constraint.
        raise _nothing_to_rate("This conversation has been rated already.") from None
    log.info("conversation_rated", session_id=session_id, handoff_id=handoff.pk, score=score)
    metrics.incr("ratings", score=str(score))
    return rating


def _answer(session_id: str, message_id: Any) -> Message:
    """The session's own assistant message ``message_id`` (404 for anything else)."""
    if not isinstance(message_id, str) or unstorable(message_id):
        raise ApiError(
            "INVALID_FIELD_VALUE", "messageId must be a message id.", details={"field": "messageId"}
        )
    message = Message.objects.filter(
        pk=message_id, session_id=session_id, role=Message.Role.ASSISTANT
    ).first()
    if message is None:
        raise ApiError(
            "NOT_FOUND", "No such answer in this session.", details={"field": "messageId"}
        )
    return message


def vote_answer(
    *, session_id: str, message_id: str, vote: str
) -> tuple[AnswerFeedback, dict[str, Any] | None]:
    """Record a thumbs up or down on one of the session's answers (the latest vote counts).

    A "down" on an answer that cited no source asks for a person; the second value is then the
    hand-off status, else None. Voting "down" again on the same answer asks nothing more: the
    vote is state, and repeating it must not reopen a conversation a person already resolved.
    """
    if vote not in AnswerFeedback.Vote.values:
        raise ApiError(
            "INVALID_FIELD_VALUE", 'vote must be "up" or "down".', details={"field": "vote"}
        )
    with write_transaction():
        session = session_get(session_id=session_id, allow_ended=False)
        message = _answer(session.pk, message_id)
        had_source = bool((message.metadata or {}).get("citations"))
        previous = (
            AnswerFeedback.objects.select_for_update()
            .filter(message=message)
            .values_list("vote", flat=True)
            .first()
        )
        item, _ = AnswerFeedback.objects.update_or_create(
            message=message,
            defaults={
                "session": session,
                "vote": vote,
                "had_source": had_source,
                "created_at": timezone.now(),
            },
        )
        status: dict[str, Any] | None = None
        if vote == AnswerFeedback.Vote.DOWN and not had_source:
            if previous == AnswerFeedback.Vote.DOWN:
                status = handoff_status(session_id=session.pk)
            else:
                status = request_handoff(
                    session_id=session.pk,
                    reason=Handoff.Reason.NOT_HELPFUL,
                    priority=Handoff.Priority.LOW,
                    note=NOT_HELPFUL_NOTE,
                ).status
    log.info("answer_voted", session_id=session_id, message_id=message.pk, vote=vote)
    metrics.incr("answer_votes", vote=vote, sourced="yes" if had_source else "no")
    return item, status
