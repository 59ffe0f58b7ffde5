"""The checks of ``verify_deployment`` that use the product itself: the knowledge base answers a
search, and one real turn of conversation runs end to end, in this process through the engine
(``chat.pipeline.run_turn``) or over HTTP against a running server.

The turn's session is marked (``userId`` ``verify-deployment``, metadata ``verifyDeployment``)
and deleted afterwards with everything that hangs off it, its archives included, so it leaves
no conversation behind. It takes no client's limits: in this process it has no client address
(only its own session's counters and one unit of the global model budget are spent); over HTTP
it spends the verifying machine's own per-address allowance.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from asgiref.sync import sync_to_async
from django.db import connections

from chat.archives import delete_archive
from chat.llm.chain import close_loop_clients, get_chain
from chat.models import ChatSession, SessionArchive
from chat.pipeline import run_turn
from chat.sessions import session_create
from chat.turn_events import TurnDone, TurnFailed
from ops.verification import Outcome, Status
from supportbot.db import write_transaction
from tools.kb.search import search_articles
from tools.models import Article

VERIFY_USER_ID = "verify-deployment"
VERIFY_METADATA = {"verifyDeployment": True}
VERIFY_QUESTION = "How do I reset my password?"
_TITLE_CHARS = 60


def check_knowledge_base(timeout: float) -> Outcome:
    """Articles exist, and searching for one article's title finds it."""
    count = Article.objects.count()
    if not count:
        return Outcome("fail", "no articles (load them with manage.py loadkb)")
    article = Article.objects.order_by("id").only("id", "title").first()
    assert article is not None  # counted above
    title = article.title[:_TITLE_CHARS]
    hits = search_articles(query=article.title, max_results=5).hits
    if not hits:
        return Outcome("fail", f'{count} articles, but a search for "{title}" found nothing')
    best = f"best {hits[0].id} ({hits[0].relevance:.2f})"
    if all(hit.id != article.id for hit in hits):
        return Outcome(
            "warn", f'{count} articles; a search for "{title}" missed that article ({best})'
        )
    return Outcome("ok", f'{count} articles; a search for "{title}" found it ({best})')


def remove_verify_session(*, session_id: str) -> bool:
    """Delete a verification session (never another: its user id must be ours) with its
    messages and everything else that cascades, and its archives. True if it was found."""
    with write_transaction():
        deleted, _ = ChatSession.objects.filter(pk=session_id, user_id=VERIFY_USER_ID).delete()
    # A worker may have archived it (an HTTP DELETE queues that); the session row goes first,
    # so an archive task that runs later finds nothing to write.
    for archive in SessionArchive.objects.filter(session_id=session_id):
        delete_archive(archive)
    return bool(deleted)


def _answerOutcome(done: TurnDone | None, failed: TurnFailed | None, how: str) -> Outcome:
    if failed is not None:
        error = failed.error
        return Outcome("fail", f"{how}: no answer: {error.code}: {error.message}")
    if done is None:
        return Outcome("fail", f"{how}: the turn ended without an answer")
    if not done.content.strip():
        return Outcome("fail", f"{how}: the answer came back empty")
    said = (
        f"{how}: answered by {done.model or '?'} in {done.processing_ms} ms "
        f"({len(done.content)} chars)"
    )
    remote = [link for link in get_chain().links if link.provider.name != "offline"]
    if remote and done.model == "offline-assistant":
        return Outcome("warn", f"{said}, but no configured model answered")
    if done.fallback_used:
        return Outcome("warn", f"{said}, by a fallback link")
    return Outcome("ok", said)


async def _local_turn() -> Outcome:
    session = await sync_to_async(session_create)(
        user_id=VERIFY_USER_ID, metadata=dict(VERIFY_METADATA)
    )
    done: TurnDone | None = None
    failed: TurnFailed | None = None
    try:
        async for event in run_turn(
            session_id=session.id,
            content=VERIFY_QUESTION,
            request_id=f"verify-{uuid.uuid4().hex}",
            transport="rest",
        ):
            if isinstance(event, TurnDone):
                done = event
            elif isinstance(event, TurnFailed):
                failed = event
    finally:
        await sync_to_async(remove_verify_session)(session_id=session.id)
        await sync_to_async(connections.close_all)()
        await close_loop_clients()  # the model clients opened on this short-lived loop
    outcome = _answerOutcome(done, failed, "in this process")
    return Outcome(outcome.status, f"{outcome.detail}; session deleted")


def check_turn_local(timeout: float) -> Outcome:
    """Create a session, run one turn through the engine, check the answer, delete the session."""
    return asyncio.run(_local_turn())


def _http_error(method: str, path: str, response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        said = f"{error.get('code', '?')}: {error.get('message', '')}"
    except (ValueError, AttributeError):
        said = response.text[:120]
    return f"{method} {path} answered {response.status_code} {said}"


def _http_chat(client: httpx.Client, session_id: str) -> tuple[str, dict[str, Any] | None]:
    """Send the question; (what went wrong, or "" and the answer's body)."""
    response = client.post(
        "/api/chat",
        json={
            "message": VERIFY_QUESTION,
            "sessionId": session_id,
            "requestId": f"verify-{uuid.uuid4().hex}",
            "metadata": dict(VERIFY_METADATA),
        },
    )
    if response.status_code != 200:
        return _http_error("POST", "/api/chat", response), None
    return "", response.json()


def _http_end(client: httpx.Client, session_id: str) -> str:
    """End the session over HTTP, then delete it here when this database is the server's."""
    response = client.delete(f"/api/session/{session_id}")
    ended = "ended" if response.status_code == 200 else f"not ended ({response.status_code})"
    try:
        removed = remove_verify_session(session_id=session_id)
    except Exception as exc:  # this machine may not reach the server's database at all
        return f"session {ended}; not deleted here ({type(exc).__name__})"
    return f"session {ended} and deleted" if removed else f"session {ended} (another database)"


def check_turn_http(url: str, timeout: float) -> Outcome:
    """The same turn over the REST API of the server at ``url``."""
    headers = {"User-Agent": "supportbot-verify-deployment"}
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout * 0.9, headers=headers) as client:
        response = client.post(
            "/api/session", json={"userId": VERIFY_USER_ID, "metadata": dict(VERIFY_METADATA)}
        )
        if response.status_code != 201:
            return Outcome("fail", _http_error("POST", "/api/session", response))
        session_id = str(response.json()["sessionId"])
        try:
            problem, body = _http_chat(client, session_id)
        finally:
            ended = _http_end(client, session_id)
    if body is None:
        return Outcome("fail", f"{problem}; {ended}")
    text = str(body.get("response") or "")
    meta = body.get("metadata") or {}
    how = f"over HTTP: answered by {meta.get('aiModel', '?')} in {body.get('processingTime')} ms"
    if not text.strip():
        return Outcome("fail", f"over HTTP: the answer came back empty; {ended}")
    status: Status = "warn" if meta.get("fallbackUsed") else "ok"
    fallback = ", by a fallback link" if status == "warn" else ""
    return Outcome(status, f"{how} ({len(text)} chars){fallback}; {ended}")
