"""The hand-off to a person across two daphne processes sharing one Redis (and one database).

The customer's socket is on process A, the agent's staff sockets and staff API calls go to
process B (and a colleague's to A). What must cross between the processes: who is online
(``chat.presence``), inbox items, hand-off status and notices, forwarded customer messages, drafts
and staff replies (the channel layer), and the atomic claim on an inbox item (the database).

The agents are real staff accounts in the "Support agents" group, made through the servers' own
``manage.py``; they sign in through the admin login form and act with its session and CSRF
cookies, as the inbox page does. The model is the fake OpenAI server of ``tests/fakes``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer, RecordedRequest, Reply

PASSWORD = "correct horse battery staple"
AGENTS = {"alice": "Alice", "bob": "Bob"}  # username → the name customers see
DRAFT_TEXT = "Drafted by the fake model for the agent."
WAIT_SECONDS = 10.0
# Closing a staff socket unmarks it at once; expiry alone would take presence.TTL_SECONDS (60),
# and a refresh comes every presence.REFRESH_SECONDS (20). Well under both.
OFFLINE_WITHIN_SECONDS = 3.0
# Limits counted per client address or globally live in Redis and outlast a run: every run of
# this file (all from 127.0.0.1) would add to them. Per-session limits keep their defaults.
ROOMY_LIMITS = {
    "RATE_LIMIT_IP_SESSION_CREATIONS_PER_HOUR": "100000",
    "RATE_LIMIT_IP_CONCURRENT_SESSIONS": "100000",
    "RATE_LIMIT_IP_API_REQUESTS_PER_MINUTE": "100000",
    "RATE_LIMIT_IP_TOKENS_PER_HOUR": "100000000",
}


# --- the two servers -----------------------------------------------------------------------------


@dataclass
class Servers:
    a: LiveServer  # the customer's process
    b: LiveServer  # the agent's process
    model: FakeOpenAIServer


def add_agents(server: LiveServer) -> None:
    """Alice and Bob: active staff in the "Support agents" group (made after migrate), created
    by ``manage.py shell`` against the server's database (LiveServer.manage's way)."""
    code = "\n".join(
        [
            "from django.contrib.auth import get_user_model",
            "from django.contrib.auth.models import Group",
            "group = Group.objects.get(name='Support agents')",
            f"for username, first_name in {AGENTS!r}.items():",
            "    user = get_user_model().objects.create_user(",
            f"        username, password={PASSWORD!r}, first_name=first_name, is_staff=True)",
            "    user.groups.add(group)",
        ]
    )
    try:
        server.manage("shell", "-c", code)
    except subprocess.CalledProcessError as failed:
        raise AssertionError(f"creating the agents failed: {failed.stderr!r}") from None


def forget_presence() -> None:
    """Each test's database numbers its users from 1 again: a mark left in Redis by an earlier
    run's killed process (it lapses only after presence.TTL_SECONDS) would count as this test's
    Alice or Bob."""
    from chat import presence

    presence.clear()  # through the settings' REDIS_URL, set to the servers' by the fixture


class Prepared:
    """A data directory migrated, with the knowledge base and the agents, made once per module
    on first use (after ``redis_url`` has decided the test runs) and copied for each test: each
    test gets its own database without paying for migrate again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ready = False

    def copy_to(self, var_dir: Path, env: dict[str, str]) -> None:
        if not self.ready:
            add_agents(LiveServer(self.folder, env=env).prepare())
            self.ready = True
        shutil.copytree(self.folder, var_dir, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Prepared:
    return Prepared(tmp_path_factory.mktemp("prepared"))


@pytest.fixture
def two_servers(tmp_path, redis_url: str, settings, prepared: Prepared) -> Iterator[Servers]:
    settings.REDIS_URL = redis_url  # chat.presence in this process reads the servers' Redis
    forget_presence()
    with FakeOpenAIServer() as model:
        model.set_default(Reply(DRAFT_TEXT))
        env = {
            "REDIS_URL": redis_url,
            "LLM_BASE_URL": model.base_url,
            "LLM_MODEL": "fake-model",
            "LLM_API_KEY": "test-key",
            **ROOMY_LIMITS,
        }
        # One data directory: both processes share the SQLite database, as they would share
        # PostgreSQL in production; presence and fan-out cross between them through Redis.
        var_dir = tmp_path / "var"
        prepared.copy_to(var_dir, env)
        a, b = LiveServer(var_dir, env=env), LiveServer(var_dir, env=env)
        try:
            both(a.start, b.start)
            yield Servers(a, b, model)
        finally:
            both(a.close, b.close)
            forget_presence()


def both(first: Callable[[], object], second: Callable[[], object]) -> None:
    """Run two blocking steps at once (starting or stopping the two servers), raising the
    first failure."""
    with ThreadPoolExecutor(2) as pool:
        for step in [pool.submit(first), pool.submit(second)]:
            step.result()


# --- sockets and people --------------------------------------------------------------------------


class Socket:
    """A WebSocket whose frames are kept until asked for: waiting for one frame never loses
    another that arrived first."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.kept: list[dict[str, Any]] = []

    async def send(self, type_: str, data: dict[str, Any], request_id: str | None = None) -> None:
        frame: dict[str, Any] = {"type": type_, "data": data}
        if request_id is not None:
            frame["requestId"] = request_id
        await self.ws.send(json.dumps(frame))

    async def expect(
        self,
        type_: str,
        match: Callable[[dict[str, Any]], bool] = lambda frame: True,
    ) -> dict[str, Any]:
        """The first frame of ``type_`` that ``match`` accepts (the whole frame is passed),
        within ``WAIT_SECONDS``."""
        for index, frame in enumerate(self.kept):
            if frame["type"] == type_ and match(frame):
                return self.kept.pop(index)
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while True:
                    frame = json.loads(await self.ws.recv())
                    if frame["type"] == type_ and match(frame):
                        return frame
                    self.kept.append(frame)
        except TimeoutError:
            seen = [(f["type"], f.get("data")) for f in self.kept]
            raise AssertionError(
                f"no matching {type_} frame within {WAIT_SECONDS} s; got {seen}"
            ) from None

    async def close(self) -> None:
        await self.ws.close()


async def open_socket(server: LiveServer, path: str, cookies: str = "") -> Socket:
    ws = await websockets.connect(
        f"ws://127.0.0.1:{server.port}{path}",
        origin=websockets.Origin(server.base_url),
        additional_headers={"Cookie": cookies} if cookies else None,
    )
    return Socket(ws)


@dataclass
class Agent:
    """A support agent signed in to the admin of one process, acting through its staff API."""

    server: LiveServer
    username: str
    http: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(base_url=self.server.base_url, timeout=WAIT_SECONDS)

    @property
    def name(self) -> str:
        return AGENTS[self.username]

    async def sign_in(self) -> None:
        await self.http.get("/admin/login/")  # sets the csrftoken cookie
        response = await self.http.post(
            "/admin/login/",
            data={
                "username": self.username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": self.http.cookies["csrftoken"],
                "next": "/admin/",
            },
        )
        assert (response.status_code, response.headers.get("location")) == (302, "/admin/")

    def cookies(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.http.post(
            f"/api/staff/{path}",
            json=body or {},
            headers={"X-CSRFToken": self.http.cookies["csrftoken"]},
        )

    async def go_online(self) -> Socket:
        """Open the staff socket; the server has marked the agent online once it answers."""
        socket = await open_socket(self.server, "/ws/staff", self.cookies())
        presence = await socket.expect("presence")
        assert self.name in [agent["name"] for agent in presence["data"]["agents"]], presence
        return socket


class Scene:
    """What a test opens (sockets, staff clients), all closed before the servers stop, so no
    socket outlives its test as a presence mark."""

    def __init__(self, servers: Servers) -> None:
        self.a, self.b, self.model = servers.a, servers.b, servers.model
        self.http = httpx.AsyncClient(timeout=WAIT_SECONDS)  # the customer's REST calls
        self.sockets: list[Socket] = []
        self.agents: list[Agent] = []

    async def agent(self, username: str, server: LiveServer) -> Agent:
        agent = Agent(server, username)
        self.agents.append(agent)
        await agent.sign_in()
        return agent

    async def online(self, agent: Agent) -> Socket:
        return self.keep(await agent.go_online())

    async def watcher(self, agent: Agent, session_id: str) -> Socket:
        """The agent's conversation page watching the session live (/ws?…&watch=1)."""
        path = f"/ws?sessionId={session_id}&watch=1"
        socket = self.keep(await open_socket(agent.server, path, agent.cookies()))
        await socket.expect("connection_established")
        return socket

    async def customer(self, server: LiveServer) -> tuple[str, Socket]:
        """A new conversation and the customer's socket to it on ``server``."""
        session_id = server.create_session()
        socket = self.keep(await open_socket(server, f"/ws?sessionId={session_id}"))
        await socket.expect("connection_established")
        return session_id, socket

    def keep(self, socket: Socket) -> Socket:
        self.sockets.append(socket)
        return socket

    async def handoff(self, server: LiveServer, session_id: str) -> dict[str, Any]:
        """GET /api/session/{id}/handoff on ``server``."""
        response = await self.http.get(f"{server.base_url}/api/session/{session_id}/handoff")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def aclose(self) -> None:
        for socket in self.sockets:
            await socket.close()
        for agent in self.agents:
            await agent.http.aclose()
        await self.http.aclose()


@pytest.fixture
async def scene(two_servers: Servers) -> AsyncIterator[Scene]:
    scene = Scene(two_servers)
    try:
        yield scene
    finally:
        await scene.aclose()


async def ask_for_person(customer: Socket, request_id: str) -> dict[str, Any]:
    """The customer presses "Talk to a person": the handoffStatus answered to that request."""
    await customer.send("handoff_request", {"reason": "I want a person"}, request_id)
    answer = await customer.expect("handoff_status", lambda f: f.get("requestId") == request_id)
    return dict(answer["data"])


def completions(model: FakeOpenAIServer) -> list[RecordedRequest]:
    return [r for r in list(model.requests) if r.path.endswith("/chat/completions")]


def offered_tools(request: RecordedRequest) -> list[str]:
    return [tool["function"]["name"] for tool in request.body.get("tools") or []]


# --- the tests -----------------------------------------------------------------------------------


async def test_agent_online_on_b_is_seen_on_a_and_gets_a_request_from_a_live(scene) -> None:
    alice = await scene.agent("alice", scene.b)
    inbox = await scene.online(alice)
    session_id, customer = await scene.customer(scene.a)

    before = await scene.handoff(scene.a, session_id)
    assert before["status"] == "none"
    assert before["availability"]["agentsOnline"] == 1
    assert before["availability"]["humansAvailable"] is True

    status = await ask_for_person(customer, "ask-1")
    assert (status["sessionId"], status["status"], status["reason"]) == (
        session_id,
        "waiting",
        "customer",
    )
    assert status["availability"]["agentsOnline"] == 1
    item = await inbox.expect("inbox_item", lambda f: f["data"]["sessionId"] == session_id)
    assert item["data"]["handoffId"] == status["handoffId"]
    assert (item["data"]["status"], item["data"]["reason"]) == ("waiting", "customer")
    assert item["data"]["assignee"] is None


async def test_take_over_held_turn_draft_and_reply_cross_processes(scene) -> None:
    alice = await scene.agent("alice", scene.b)
    await scene.online(alice)
    session_id, customer = await scene.customer(scene.a)
    handoff_id = (await ask_for_person(customer, "ask-1"))["handoffId"]
    watcher = await scene.watcher(alice, session_id)

    taken = await alice.post(f"handoffs/{handoff_id}/take")
    assert taken.status_code == 200, taken.text
    assert taken.json()["status"] == "with_agent"
    joined = await customer.expect(
        "system_notification", lambda f: "joined" in f["data"]["message"]
    )
    assert joined["data"]["message"] == "Alice joined the conversation."
    held = await customer.expect("handoff_status", lambda f: f["data"]["status"] == "with_agent")
    assert held["data"]["agent"] == {"name": "Alice"}

    # The customer writes on A while Alice holds the conversation: stored, forwarded, no answer.
    asked_before = len(completions(scene.model))
    question = "Is a person reading this?"
    await customer.send("chat_message", {"content": question, "sessionId": session_id}, "held-1")
    received = await customer.expect("message_received")
    answer = await customer.expect("ai_response", lambda f: f.get("requestId") == "held-1")
    assert answer["data"]["content"] == ""
    metadata = dict(answer["data"]["metadata"])
    assert isinstance(metadata.pop("processingTime"), int | float)
    assert metadata == {
        "heldByHuman": True,
        "agentName": "Alice",
        "aiModel": "",
        "tokensUsed": 0,
        "fallbackUsed": False,
        "citations": [],
    }

    # Alice's conversation page on B sees the message and, after it, a draft made on A.
    forwarded = await watcher.expect("message", lambda f: f["data"]["role"] == "user")
    assert forwarded["data"]["content"] == question
    assert forwarded["data"]["messageId"] == received["data"]["messageId"]
    draft = await watcher.expect("reply_draft")
    assert draft["data"]["forMessageId"] == received["data"]["messageId"]
    assert (draft["data"]["content"], draft["data"]["outcome"]) == (DRAFT_TEXT, "pending")
    # The only model call since the message is the draft's: it offers the help-centre search
    # alone (a bot turn offers every tool) and it is about the customer's question.
    asked = completions(scene.model)[asked_before:]
    assert [offered_tools(r) for r in asked] == [["kb_search"]]
    assert question in json.dumps(asked[0].body["messages"])

    sent = await alice.post(f"handoffs/{handoff_id}/reply", {"text": "Yes: Alice here."})
    assert sent.status_code == 201, sent.text
    staff = await customer.expect("message", lambda f: f["data"]["role"] == "staff")
    assert staff["data"]["content"] == "Yes: Alice here."
    assert staff["data"]["metadata"] == {"agentName": "Alice"}
    assert "reply_draft" not in [frame["type"] for frame in customer.kept]  # staff only

    # What was stored: the forwarded question and Alice's reply; no assistant answer.
    stored = await scene.http.get(f"{scene.a.base_url}/api/session/{session_id}")
    assert stored.status_code == 200, stored.text
    messages = [(m["role"], m["status"]) for m in stored.json()["recentMessages"]]
    assert messages == [("user", "forwarded"), ("staff", "complete")]


async def test_closing_the_staff_socket_on_b_takes_the_agent_offline_on_a(scene) -> None:
    alice = await scene.agent("alice", scene.b)
    inbox = await scene.online(alice)
    session_id = scene.a.create_session()
    assert (await scene.handoff(scene.a, session_id))["availability"]["agentsOnline"] == 1

    await inbox.close()
    closed = time.monotonic()
    while True:  # bounded polling: the unmark runs as the server handles the close
        availability = (await scene.handoff(scene.a, session_id))["availability"]
        if availability["agentsOnline"] == 0:
            break
        waited = time.monotonic() - closed
        assert waited < OFFLINE_WITHIN_SECONDS, f"still online {waited:.1f} s after closing"
        await asyncio.sleep(0.25)
    assert availability["humansAvailable"] is False


async def waiting_item(scene: Scene) -> tuple[str, str]:
    """A new conversation on A that asked for a person: its session and hand-off ids."""
    session_id = scene.a.create_session()
    response = await scene.http.post(
        f"{scene.a.base_url}/api/session/{session_id}/handoff", json={}
    )
    assert response.status_code == 201, response.text
    return session_id, str(response.json()["handoffId"])


async def test_an_agent_on_a_cannot_take_what_an_agent_on_b_holds(scene) -> None:
    alice = await scene.agent("alice", scene.b)
    bob = await scene.agent("bob", scene.a)
    _, handoff_id = await waiting_item(scene)
    assert (await alice.post(f"handoffs/{handoff_id}/take")).status_code == 200

    refused = await bob.post(f"handoffs/{handoff_id}/take")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["details"]["heldBy"] == "Alice"
    reply = await bob.post(f"handoffs/{handoff_id}/reply", {"text": "Bob here."})
    assert reply.status_code == 409, reply.text
    assert reply.json()["error"]["details"]["heldBy"] == "Alice"


RACES = 3  # fresh items raced for, one after the other


async def test_two_takes_racing_from_both_processes_have_one_winner(scene) -> None:
    alice = await scene.agent("alice", scene.b)
    bob = await scene.agent("bob", scene.a)
    for _ in range(RACES):
        session_id, handoff_id = await waiting_item(scene)
        results = await asyncio.gather(
            alice.post(f"handoffs/{handoff_id}/take"), bob.post(f"handoffs/{handoff_id}/take")
        )
        outcome = {agent.name: r for agent, r in zip((alice, bob), results, strict=True)}
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 409], [(name, r.status_code, r.text) for name, r in outcome.items()]
        winner = next(name for name, r in outcome.items() if r.status_code == 200)
        loser = next(r for r in results if r.status_code == 409)
        assert loser.json()["error"]["details"]["heldBy"] == winner
        assert outcome[winner].json()["assignee"]["name"] == winner
        status = await scene.handoff(scene.a, session_id)
        assert (status["status"], status["agent"]) == ("with_agent", {"name": winner})
