"""Redis under a live daphne and a Celery worker: idle sockets on the Redis channel layer, and
Redis stopped for 20 s during chat traffic (REST JSON, REST SSE and WebSocket clients) and
escalation workflows, then restarted empty.

The Redis here is the suite's own (``redis_process``), on PostgreSQL (``fault_database``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets

from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.faults.celery_processes import CeleryWorker, base_env
from tests.faults.clients import (
    RestTurn,
    WsTurn,
    next_frame,
    rest_chat,
    stored_messages,
    ws_chat,
    ws_connect,
)
from tests.faults.conftest import RedisProcess, live_env, running_server

IDLE_SOCKETS = 20
IDLE_SECONDS = 30.0
OUTAGE_SECONDS = 20.0
TRAFFIC_BEFORE_SECONDS = 3.0
TRAFFIC_AFTER_SECONDS = 6.0
CLIENT_PAUSE_SECONDS = 0.5  # between one client's turns
WORKFLOW_PAUSE_SECONDS = 1.5  # between two escalations submitted
# A submitted execution no worker took is queued again this long after its last change (the
# default, 120 s, is what an execution waits for its queue message after a broker outage).
WORKFLOW_LEASE_SECONDS = 5.0
WORKFLOW_FINISH_SECONDS = 30.0  # after Redis is back, every escalation has finished by then
FINISHED = ("completed", "compensated", "failed")
ANSWER = "Here is how to reset your Nimbus password, step by step."


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        server.set_default(Reply(ANSWER, delay=0.02))
        yield server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    fault_database: str,
    redis_process: RedisProcess,
    model: FakeOpenAIServer,
) -> Iterator[LiveServer]:
    env = live_env(
        database_url=fault_database,
        redis_url=redis_process.url,
        model_url=model.base_url,
        # Workflows (and summaries) go through the broker to the module's worker.
        CELERY_TASK_ALWAYS_EAGER="false",
        WORKFLOW_LEASE_SECONDS=f"{WORKFLOW_LEASE_SECONDS:g}",
    )
    with running_server(tmp_path_factory, env) as live:
        yield live


@pytest.fixture(scope="module")
def worker(
    tmp_path_factory: pytest.TempPathFactory,
    fault_database: str,
    redis_process: RedisProcess,
    model: FakeOpenAIServer,
) -> Iterator[CeleryWorker]:
    """A Celery worker on the module's Redis; started here, waited for by the test that uses it
    (it gets ready while the idle test runs)."""
    var_dir = tmp_path_factory.mktemp("worker")
    env = base_env(
        var_dir,
        **live_env(
            database_url=fault_database,
            redis_url=redis_process.url,
            model_url=model.base_url,
            WORKFLOW_SWEEP_SECONDS="1",
            WORKFLOW_LEASE_SECONDS=f"{WORKFLOW_LEASE_SECONDS:g}",
            WORKFLOW_RETRY_BASE_SECONDS="0.2",
        ),
    )
    process = CeleryWorker(var_dir, env=env)
    process.start()
    try:
        yield process
    finally:
        process.close()


@pytest.fixture
def redis_up(redis_process: RedisProcess) -> Iterator[RedisProcess]:
    """Redis is running when the test starts and when it ends (a failed test restarts it)."""
    if not redis_process.running:
        redis_process.start()
    yield redis_process
    if not redis_process.running:
        redis_process.start()


def new_session(server: LiveServer) -> str:
    return server.create_session()


# --- idle sockets ---------------------------------------------------------------------------


async def test_idle_sockets_stay_open_for_30_seconds_on_redis(
    server: LiveServer, redis_up: RedisProcess, figure: Any
) -> None:
    sessions = [await asyncio.to_thread(new_session, server) for _ in range(IDLE_SOCKETS)]
    # No client keepalive pings: the sockets are idle on both sides of the channel layer.
    sockets = [await ws_connect(server, sid, ping_interval=None) for sid in sessions]
    opened = time.monotonic()
    dropped: dict[int, tuple[float, int | None]] = {}

    async def watch(index: int, ws: Any) -> None:
        await ws.wait_closed()
        dropped[index] = (round(time.monotonic() - opened, 1), ws.close_code)

    watchers = [asyncio.ensure_future(watch(i, ws)) for i, ws in enumerate(sockets)]
    await asyncio.sleep(IDLE_SECONDS)
    for watcher in watchers:
        watcher.cancel()

    pongs = 0
    answered = 0
    for index, (sid, ws) in enumerate(zip(sessions, sockets, strict=True)):
        if index in dropped:
            continue
        try:
            await ws.send(json.dumps({"type": "ping"}))
            await next_frame(ws, "pong", within=5)
            pongs += 1
            turn = await ws_chat(
                ws, sid, f"Idle socket {index} asks about passwords", f"idle-{index}"
            )
            if turn.response is not None and turn.response["content"] == ANSWER:
                answered += 1
        except (websockets.ConnectionClosed, TimeoutError):
            dropped.setdefault(index, (round(time.monotonic() - opened, 1), ws.close_code))
        finally:
            await ws.close()

    figure("sockets dropped", f"{len(dropped)} / {IDLE_SOCKETS} in {IDLE_SECONDS:g} s idle")
    figure("drops (second, close code)", sorted(dropped.values()) or "none")
    figure("pings answered / chats answered", f"{pongs} / {answered} of {IDLE_SOCKETS}")
    assert dropped == {}, f"idle sockets closed: {sorted(dropped.values())}"
    assert pongs == answered == IDLE_SOCKETS


# --- Redis stopped during chat traffic --------------------------------------------------------


@dataclass
class Sent:
    """One message a client sent, and what became of it."""

    client: str
    session_id: str
    content: str
    request_id: str
    phase: str
    acknowledged: bool = False
    answered: bool = False
    answer_id: str | None = None
    waits: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class Submitted:
    """One escalation workflow submitted, and what became of it."""

    session_id: str
    phase: str
    status: int | None = None
    execution_id: str | None = None
    waited: float = 0.0
    final: str = ""


@dataclass
class Traffic:
    """Everything the clients sent and saw, and when Redis was down."""

    started: float = field(default_factory=time.monotonic)
    stopped_at: float | None = None
    restarted_at: float | None = None
    sent: list[Sent] = field(default_factory=list)
    http_5xx: list[str] = field(default_factory=list)
    sockets_dropped: list[str] = field(default_factory=list)
    connects_refused: int = 0
    workflows: list[Submitted] = field(default_factory=list)
    done: bool = False  # clients start no new message (a WebSocket one finishes its last)

    def send(self, client: str, session_id: str, number: int) -> Sent:
        """Record the client's ``number``-th message, about to be sent."""
        sent = Sent(
            client=client,
            session_id=session_id,
            content=f"Customer {client} asks question {number} about a password reset",
            request_id=f"{client}-{number}",
            phase=self.phase(),
        )
        self.sent.append(sent)
        return sent

    def phase(self) -> str:
        if self.done:
            return "done"
        if self.stopped_at is None:
            return "before"
        return "outage" if self.restarted_at is None else "after"


async def rest_client(
    traffic: Traffic, client: httpx.AsyncClient, name: str, session_id: str, *, stream: bool
) -> None:
    number = 0
    while traffic.phase() != "done":
        number += 1
        sent = traffic.send(name, session_id, number)
        turn = await rest_chat(
            client, session_id, sent.content, sent.request_id, stream=stream, within=20
        )
        sent.waits.append(turn.waited)
        judge_rest_turn(traffic, sent, turn, stream=stream)
        await asyncio.sleep(CLIENT_PAUSE_SECONDS)


def judge_rest_turn(traffic: Traffic, sent: Sent, turn: RestTurn, *, stream: bool) -> None:
    if turn.status is not None and turn.status >= 500:
        traffic.http_5xx.append(f"{sent.request_id} ({sent.phase}): {turn.status} {turn.body}")
    if turn.status != 200:
        sent.problems.append(f"HTTP {turn.status} {turn.failure or turn.body}")
        return
    if not stream:
        assert turn.body is not None
        sent.acknowledged = sent.answered = True
        sent.answer_id = turn.body["messageId"]
        return
    sent.acknowledged = turn.event("message_received") is not None
    names = [event for event, _ in turn.events]
    if names and names[-1] == "ai_response":
        sent.answered = True
        sent.answer_id = turn.events[-1][1]["messageId"]
    else:
        sent.problems.append(f"SSE ended with {names[-3:]} {turn.failure}")


async def workflow_client(traffic: Traffic, client: httpx.AsyncClient) -> None:
    """Escalates a new session every WORKFLOW_PAUSE_SECONDS: each opens exactly one ticket."""
    number = 0
    while traffic.phase() != "done":
        number += 1
        created = await client.post("/api/session", json={})
        if created.status_code != 201:
            traffic.http_5xx.append(f"session for workflow {number}: {created.status_code}")
            await asyncio.sleep(WORKFLOW_PAUSE_SECONDS)
            continue
        submitted = Submitted(session_id=created.json()["sessionId"], phase=traffic.phase())
        traffic.workflows.append(submitted)
        body = {
            "workflowType": "escalation",
            "parameters": {
                "query": f"Customer {number} wants a human",
                "context": {"sessionId": submitted.session_id},
            },
            "idempotencyKey": f"escalate-{number}",
        }
        started = time.monotonic()
        try:
            response = await client.post("/api/workflow/execute", json=body)
            submitted.status = response.status_code
            if response.status_code == 200:
                submitted.execution_id = response.json()["executionId"]
            elif response.status_code >= 500:
                traffic.http_5xx.append(f"workflow {number}: {response.status_code}")
        except httpx.HTTPError as exc:
            submitted.final = f"{type(exc).__name__}"
        submitted.waited = time.monotonic() - started
        await asyncio.sleep(WORKFLOW_PAUSE_SECONDS)


async def workflows_finish(traffic: Traffic, client: httpx.AsyncClient, within: float) -> None:
    """Poll every acknowledged execution until it has finished (or ``within`` has passed)."""
    deadline = time.monotonic() + within
    pending = [w for w in traffic.workflows if w.execution_id is not None]
    while pending and time.monotonic() < deadline:
        for submitted in pending:
            response = await client.get(f"/api/workflow/{submitted.execution_id}")
            if response.status_code == 200:
                submitted.final = response.json()["status"]
        pending = [w for w in pending if w.final not in FINISHED]
        if pending:
            await asyncio.sleep(0.5)


def tickets_per_session(database_url: str, session_ids: list[str]) -> dict[str, int]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT session_id, count(*) FROM tools_ticket WHERE session_id = ANY(%s)"
            " GROUP BY session_id",
            (session_ids,),
        ).fetchall()
    counts = dict.fromkeys(session_ids, 0)
    counts.update({str(sid): int(count) for sid, count in rows})
    return counts


async def ws_client(traffic: Traffic, server: LiveServer, name: str, session_id: str) -> None:
    """Chats until the traffic stops; a socket that goes away is replaced and the unanswered
    message sent again with the same requestId (which is never answered twice)."""
    ws: Any = None
    number = 0
    sent: Sent | None = None
    give_up = time.monotonic() + TRAFFIC_BEFORE_SECONDS + OUTAGE_SECONDS + 60
    try:
        while (traffic.phase() != "done" or sent is not None) and time.monotonic() < give_up:
            if ws is None:
                try:
                    ws = await ws_connect(server, session_id)
                except (OSError, websockets.WebSocketException, TimeoutError, AssertionError):
                    traffic.connects_refused += 1
                    await asyncio.sleep(CLIENT_PAUSE_SECONDS)
                    continue
            if sent is None:
                number += 1
                sent = traffic.send(name, session_id, number)
            turn: WsTurn = await ws_chat(ws, session_id, sent.content, sent.request_id, within=20)
            sent.waits.append(turn.waited)
            if turn.received is not None:
                sent.acknowledged = True
            if turn.response is not None:
                sent.answered = True
                sent.answer_id = turn.response["messageId"]
                sent = None
            elif turn.error is not None:
                sent.problems.append(f"error frame {turn.error}")
                sent = None
            else:
                why = f"closed {turn.closed}" if turn.closed is not None else "no answer in 20 s"
                traffic.sockets_dropped.append(f"{name} ({traffic.phase()}): {why}")
                sent.problems.append(why)
                await ws.close()
                ws = None
            await asyncio.sleep(CLIENT_PAUSE_SECONDS)
    finally:
        if ws is not None:
            await ws.close()


async def fan_out_works(server: LiveServer, session_id: str, attempt: int, observer: Any) -> bool:
    """A turn asked on a new socket reaches another new socket of the session and ``observer``,
    a socket of the session connected before Redis stopped."""
    try:
        first = await ws_connect(server, session_id)
        second = await ws_connect(server, session_id)
    except (OSError, websockets.WebSocketException, TimeoutError, AssertionError):
        return False
    question = f"Fan-out check {attempt}"
    try:
        turn = await ws_chat(first, session_id, question, f"fan-{attempt}")
        if turn.response is None:
            return False
        answer_id = turn.response["messageId"]
        return all([await _gets_message(ws, answer_id) for ws in (second, observer)])
    except (websockets.ConnectionClosed, TimeoutError):
        return False
    finally:
        await first.close()
        await second.close()


async def _gets_message(ws: Any, message_id: str) -> bool:
    try:
        async with asyncio.timeout(3):
            while (await next_frame(ws, "message"))["data"]["messageId"] != message_id:
                pass
        return True
    except TimeoutError:
        return False


async def test_redis_stopped_for_20_seconds_during_chat_and_workflow_traffic(
    server: LiveServer,
    redis_up: RedisProcess,
    worker: CeleryWorker,
    fault_database: str,
    figure: Any,
) -> None:
    await asyncio.to_thread(worker.wait_ready)
    traffic = Traffic()
    clients: dict[str, str] = {}
    for name in ("json1", "json2", "sse1", "sse2", "ws1", "ws2"):
        clients[name] = await asyncio.to_thread(new_session, server)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30, trust_env=False) as http:
        tasks = [
            rest_client(traffic, http, name, sid, stream=name.startswith("sse"))
            if not name.startswith("ws")
            else ws_client(traffic, server, name, sid)
            for name, sid in clients.items()
        ]
        tasks.append(workflow_client(traffic, http))
        running = asyncio.gather(*tasks)
        fan_session = await asyncio.to_thread(new_session, server)
        observer = await ws_connect(server, fan_session)

        await asyncio.sleep(TRAFFIC_BEFORE_SECONDS)
        redis_up.stop()
        traffic.stopped_at = time.monotonic()
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(redis_up.start)
        traffic.restarted_at = time.monotonic()

        # After the restart: new sockets connect and fan-out works again.
        fan_out_back: float | None = None
        attempt = 0
        while time.monotonic() < traffic.restarted_at + TRAFFIC_AFTER_SECONDS + 10:
            attempt += 1
            if await fan_out_works(server, fan_session, attempt, observer):
                fan_out_back = time.monotonic() - traffic.restarted_at
                break
            await asyncio.sleep(0.5)
        remaining = traffic.restarted_at + TRAFFIC_AFTER_SECONDS - time.monotonic()
        await asyncio.sleep(max(0.0, remaining))
        traffic.done = True
        observer_dropped = observer.close_code
        await observer.close()
        async with asyncio.timeout(60):
            await running
        since_restart = time.monotonic() - traffic.restarted_at
        await workflows_finish(traffic, http, WORKFLOW_FINISH_SECONDS - since_restart)
        workflows_done = time.monotonic() - traffic.restarted_at

    stored = {
        sid: await asyncio.to_thread(stored_messages, server, sid) for sid in clients.values()
    }
    report = judge_traffic(traffic, stored)
    for name, value in report.figures.items():
        figure(name, value)
    figure(
        "fan-out back after the restart (new sockets and one from before)", _seconds(fan_out_back)
    )
    figure(
        "WebSocket sockets dropped", f"{len(traffic.sockets_dropped)}: {traffic.sockets_dropped}"
    )
    figure("WebSocket connects refused during the outage", traffic.connects_refused)
    flows = traffic.workflows
    tickets = await asyncio.to_thread(
        tickets_per_session, fault_database, [w.session_id for w in flows]
    )
    acknowledged = [w for w in flows if w.execution_id is not None]
    for phase in ("before", "outage", "after"):
        mine = [w for w in flows if w.phase == phase]
        if not mine:
            continue
        acked = [w for w in mine if w.execution_id is not None]
        figure(
            f"workflows {phase}: acknowledged / completed / one ticket / submitted",
            f"{len(acked)} / {sum(w.final == 'completed' for w in acked)}"
            f" / {sum(tickets[w.session_id] == 1 for w in acked)} / {len(mine)}",
        )
        figure(f"workflows {phase}: submit wait (max)", f"{max(w.waited for w in mine):.2f} s")
    figure("workflows finished, since the restart", f"{workflows_done:.1f} s")

    assert traffic.http_5xx == [], traffic.http_5xx
    assert report.not_once == [], report.not_once
    assert report.unanswered == [], report.unanswered
    assert fan_out_back is not None, "fan-out did not work again after Redis came back"
    assert traffic.sockets_dropped == [], "sockets were closed during the outage"
    assert observer_dropped is None, f"the observing socket was closed: {observer_dropped}"
    assert report.outage_sent > 0, "no message was sent while Redis was down"
    assert any(w.phase == "outage" for w in acknowledged), "no workflow acknowledged in the outage"
    not_done = [(w.phase, w.status, w.final) for w in flows if w.final != "completed"]
    assert not_done == [], not_done
    not_once = {w.session_id: tickets[w.session_id] for w in flows if tickets[w.session_id] != 1}
    assert not_once == {}, f"tickets per escalated session: {not_once}"


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


@dataclass
class Report:
    figures: dict[str, Any]
    not_once: list[str]
    unanswered: list[str]
    outage_sent: int


def judge_traffic(traffic: Traffic, stored: dict[str, list[dict[str, Any]]]) -> Report:
    """Acknowledged messages stored exactly once (and answered); none stored twice."""
    figures: dict[str, Any] = {}
    not_once: list[str] = []
    unanswered: list[str] = []
    user_counts = {
        sid: Counter(m["content"] for m in messages if m["role"] == "user")
        for sid, messages in stored.items()
    }
    by_id = {m["messageId"]: m for messages in stored.values() for m in messages}
    status_of = {
        (sid, m["content"]): m["status"]
        for sid, messages in stored.items()
        for m in messages
        if m["role"] == "user"
    }
    for sent in traffic.sent:
        count = user_counts[sent.session_id][sent.content]
        if count > 1 or (sent.acknowledged and count != 1):
            not_once.append(f"{sent.request_id} ({sent.phase}): stored {count} times")
        if sent.acknowledged and status_of.get((sent.session_id, sent.content)) != "answered":
            unanswered.append(
                f"{sent.request_id} ({sent.phase}): "
                f"{status_of.get((sent.session_id, sent.content))} {sent.problems}"
            )
        if sent.answer_id is not None:
            answer = by_id.get(sent.answer_id)
            if answer is None or answer["status"] != "complete":
                not_once.append(f"{sent.request_id}: answer {sent.answer_id} stored as {answer}")
    for kind in ("json", "sse", "ws"):
        mine = [s for s in traffic.sent if s.client.startswith(kind)]
        acked = [s for s in mine if s.acknowledged]
        once = [s for s in acked if user_counts[s.session_id][s.content] == 1]
        figures[f"{kind}: acknowledged / stored once / sent"] = (
            f"{len(acked)} / {len(once)} / {len(mine)}"
        )
        for phase in ("before", "outage", "after"):
            waits = [w for s in mine if s.phase == phase for w in s.waits]
            if waits:
                figures[f"{kind}: client wait {phase} (max, turns)"] = (
                    f"{max(waits):.2f} s, {len(waits)}"
                )
    figures["HTTP 5xx"] = len(traffic.http_5xx)
    outage_sent = sum(1 for s in traffic.sent if s.phase == "outage")
    return Report(figures, not_once, unanswered, outage_sent)
