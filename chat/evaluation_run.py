"""Run golden conversations (``chat.evaluation``) through the real turn pipeline and score them.

Each case gets a session of its own; its turns go through ``chat.pipeline.run_turn``, the code
every transport runs (guards, memory, the configured model chain with its tools, storage), so
what is scored is what a customer would have been sent. Cases run one after another: the
scores must not depend on timing, and a real model's rate limits are not hammered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async

from chat.evaluation import Answer, Case, aggregate, score_turn
from chat.models import ChatSession
from chat.pipeline import run_turn
from chat.sessions import session_create
from chat.turn_events import TurnDone, TurnFailed
from supportbot.errors import ApiError
from tools.models import Ticket

EVAL_CLIENT_IP = "127.0.0.1"


@dataclass
class CaseResult:
    case: Case
    session_id: str
    turns: list[dict[str, Any]]
    seconds: float


def answer_from(events: Sequence[Any]) -> Answer:
    """The scored view of one turn's events: its final answer, or the failure's code."""
    for event in reversed(events):
        if isinstance(event, TurnDone):
            return Answer(
                content=event.content,
                citations=tuple(str(c.get("id", "")) for c in event.citations),
                tools=tuple(event.tool_calls),
                model=event.model,
            )
        if isinstance(event, TurnFailed):
            return Answer(content="", error=event.error.code)
    return Answer(content="", error="NO_ANSWER")


async def run_case(case: Case) -> CaseResult:
    """Every turn of ``case`` in a new session, each answer scored against its turn's expect."""
    started = time.perf_counter()
    session = await sync_to_async(session_create)(metadata={"evaluation": case.id})
    turns: list[dict[str, Any]] = []
    for number, turn in enumerate(case.turns, 1):
        try:
            events = [
                event
                async for event in run_turn(
                    session_id=session.id,
                    content=turn.user,
                    request_id=f"eval-{number}",
                    client_ip=EVAL_CLIENT_IP,
                    transport="rest",
                )
            ]
            answer = answer_from(events)
        except ApiError as exc:  # refused before anything was stored (a guard, a limit)
            answer = Answer(content="", error=exc.code)
        row: dict[str, Any] = {
            "turn": number,
            "user": turn.user,
            "answer": answer.content,
            "citations": list(answer.citations),
            "tools": [
                {key: call.get(key) for key in ("tool", "arguments", "status")}
                for call in answer.tools
            ],
            "model": answer.model,
            "error": answer.error,
        }
        if turn.expect is not None:
            scored = score_turn(turn.expect, answer)
            row |= {"scores": scored.scores, "failures": scored.failures}
        turns.append(row)
    return CaseResult(case, session.id, turns, time.perf_counter() - started)


async def run_cases(
    cases: Sequence[Case], *, progress: Callable[[CaseResult], None] | None = None
) -> list[CaseResult]:
    results = []
    for case in cases:
        result = await run_case(case)
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def forget(results: Sequence[CaseResult]) -> int:
    """Delete the sessions (with their messages) and tickets the run made; how many sessions."""
    ids = [result.session_id for result in results]
    Ticket.objects.filter(session_id__in=ids).delete()
    deleted, _ = ChatSession.objects.filter(pk__in=ids).delete()
    return len(ids) if deleted else 0


def report(results: Sequence[CaseResult], *, chain: list[str]) -> dict[str, Any]:
    """The run as one JSON-able document: scores per part and kind, and every case's turns."""
    rows_by_part: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        for turn in result.turns:
            if "scores" in turn:
                row = {"kind": result.case.kind, "scores": turn["scores"]}
                rows_by_part.setdefault(result.case.part, []).append(row)
    return {
        "chain": chain,
        "scores": {part: aggregate(rows) for part, rows in sorted(rows_by_part.items())},
        "cases": [
            {
                "id": result.case.id,
                "kind": result.case.kind,
                "part": result.case.part,
                "seconds": round(result.seconds, 3),
                "turns": result.turns,
            }
            for result in results
        ],
    }
