"""Hand-off latency benchmark (issue 14): the time a customer's message takes to reach the staff
inbox, and an agent's reply the customer, over the plain fan-out of a stored message.

Real daphne processes on 127.0.0.1, started the way ``bench/ws_bench.py`` starts them (its
scratch SQLite database, rate limits and socket caps lifted, its fake model); this process is
every client. 20 conversations: each is a session that asks for a person
(``POST /api/session/{id}/handoff``) and is taken over by one of 5 agents, round-robin (staff
users in "Support agents", signed in through the admin login form, each with a ``/ws/staff``
socket open). An agent holds every conversation, so no model turn runs; as in production a draft
reply is still prepared in the background for each customer message (by the fake model).

Each conversation then runs rounds of: the customer sends a ``chat_message`` on one socket
(tab 1), the agent answers through ``POST /api/staff/handoffs/hof_N/reply``, with a short random
pause after each and a random start, all conversations at once. Measured per message:

- inbox: chat_message sent -> the ``inbox_item`` frame whose lastCustomerMessage is that text,
  on the holding agent's ``/ws/staff`` socket;
- reply: the reply POST sent -> the ``message`` frame of it (role staff) on tab 1;
- baseline: the same chat_message sent -> its ``message`` frame on a second socket of the same
  session (tab 2), the plain fan-out of a stored message, in the same run on the same servers.

Target: inbox and reply each add <= 100 ms at p99 over the baseline (p99 minus the baseline's
p99). Two set-ups, each warmed up with one unmeasured round:

(a) embedded: one daphne process, in-memory channel layer, SQLite;
(b) redis: two daphne processes on channels_redis (``REDIS_URL``, else
    redis://127.0.0.1:6379/14), customers on one, agents (REST and ``/ws/staff``) on the other,
    both on the same SQLite file. Skipped, saying so, when no Redis answers there.

    .venv/bin/python -m bench.handoff_bench [--runs 3] [--rounds 15] [--quick]
                                            [--only embedded,redis]

Prints each run, the median and range of the runs, then the results as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.rest_bench import percentile
from bench.ws_bench import (
    ROOT,
    Server,
    Stack,
    close_all,
    open_many,
    proc_cpu_s,
    raise_nofile,
    seed_sessions,
    stack,
    start_daphne,
    stop,
)

PY = sys.executable
CONVERSATIONS, AGENTS = 20, 5
ROUNDS, QUICK_ROUNDS = 15, 3
ADDED_P99_TARGET_MS = 100.0
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
APP = "supportbot.asgi:application"
RECV_TIMEOUT = 30.0
MEASURES = ("inbox", "reply", "baseline")
ADDED = ("inbox_added", "reply_added")

# Run inside the server's environment (``manage.py shell -c``): the agents, in the group
# migrate made, with a password only this run knows.
CREATE_AGENTS = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
group = Group.objects.get(name="Support agents")
for name in {names!r}:
    user = get_user_model().objects.create_user(
        name, password={password!r}, is_staff=True, first_name=name.title()
    )
    user.groups.add(group)
"""


# --- agents ------------------------------------------------------------------------------------


def create_agents(env: dict[str, str], count: int) -> tuple[list[str], str]:
    names = [f"agent{i + 1}" for i in range(count)]
    password = secrets.token_urlsafe(16)
    script = CREATE_AGENTS.format(names=names, password=password)
    done = subprocess.run(
        [PY, "manage.py", "shell", "-v", "0", "-c", script], cwd=ROOT, env=env, capture_output=True
    )
    if done.returncode:
        raise RuntimeError(f"creating the agents failed: {done.stderr.decode()[-500:]}")
    return names, password


Key = tuple[str, ...]


def frame_key(frame: dict[str, Any]) -> Key | None:
    """What a waiter may be waiting for in this frame (None: nobody ever is)."""
    data = frame.get("data")
    if not isinstance(data, dict):
        return None
    if frame.get("type") == "message":
        return ("message", str(data.get("role")), str(data.get("content")))
    if frame.get("type") == "inbox_item":
        return ("inbox_item", str(data.get("lastCustomerMessage")))
    return None


class Listener:
    """Reads one socket until closed, stamping each awaited frame with its arrival time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.waiting: dict[Key, asyncio.Future[float]] = {}
        self.errors: list[str] = []
        self.task = asyncio.ensure_future(self._read())

    def expect(self, key: Key) -> asyncio.Future[float]:
        """Register before sending what causes the frame: it may come back at once."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        return future

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                if frame.get("type") == "error":
                    data = frame.get("data") or {}
                    self.errors.append(f"{data.get('code')}: {data.get('message')}")
                key = frame_key(frame)
                future = self.waiting.pop(key, None) if key is not None else None
                if future is not None and not future.done():
                    future.set_result(now)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await close_all([self.ws])


@dataclass
class Agent:
    name: str
    http: httpx.AsyncClient  # signed in; sends X-CSRFToken
    inbox: Listener  # the agent's /ws/staff socket


async def sign_in(server: Server, username: str, password: str) -> httpx.AsyncClient:
    """A client holding an admin session cookie, as a browser would after the login form."""
    client = httpx.AsyncClient(base_url=server.origin, timeout=RECV_TIMEOUT, trust_env=False)
    await client.get("/admin/login/")
    response = await client.post(
        "/admin/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": client.cookies.get("csrftoken", ""),
            "next": "/admin/",
        },
    )
    if response.status_code != 302 or "sessionid" not in client.cookies:
        await client.aclose()
        raise RuntimeError(f"{username}: admin login failed ({response.status_code})")
    # Django rotates the CSRF token at login: the new one from here on.
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    return client


async def open_staff_socket(server: Server, client: httpx.AsyncClient) -> ClientConnection:
    """The agent's ``/ws/staff`` socket (their session cookie), once its ``presence`` came."""
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    ws = await connect(
        f"ws://127.0.0.1:{server.port}/ws/staff",
        origin=server.origin,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        compression=None,
        proxy=None,
        ping_interval=None,
        open_timeout=60,
        close_timeout=5,
    )
    frame = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
    if frame.get("type") != "presence":
        await ws.close()
        raise RuntimeError(f"/ws/staff: expected presence, got {frame}")
    return ws


async def connect_agents(server: Server, names: list[str], password: str) -> list[Agent]:
    agents = []
    for name in names:
        client = await sign_in(server, name, password)
        agents.append(Agent(name, client, Listener(await open_staff_socket(server, client))))
    return agents


async def disconnect_agents(agents: list[Agent]) -> None:
    for agent in agents:
        await agent.inbox.close()
        await agent.http.aclose()


# --- set-ups -----------------------------------------------------------------------------------


@dataclass
class Setup:
    name: str
    title: str
    env: dict[str, str]
    split: bool  # customers and agents on two daphne processes
    take: Callable[[int], list[str]]  # fresh session ids in this set-up's database
    accounts: tuple[list[str], str]  # the agents' user names, their password


class SessionPool:
    """Fresh sessions of one database, made in bulk (``bench.ws_seed``) as they run out."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.sessions: list[str] = []

    def take(self, count: int) -> list[str]:
        if len(self.sessions) < count:
            self.sessions += seed_sessions(self.env, max(count, 200))
        taken, self.sessions = self.sessions[:count], self.sessions[count:]
        return taken


def prepare_database(env: dict[str, str]) -> None:
    """A new database as ``bench.ws_bench``'s stack makes its SQLite one: tables, help centre."""
    for command in (["migrate", "--noinput"], ["loadkb"]):
        subprocess.run([PY, "manage.py", *command, "-v", "0"], cwd=ROOT, env=env, check=True)


@contextlib.contextmanager
def postgres_database(url: str) -> Iterator[str]:
    """A throwaway database beside ``url``'s (same server and user), dropped afterwards."""
    import psycopg

    admin = psycopg.connect(url, autocommit=True)
    name = "supportbot_handoff_bench"
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


# --- one run -----------------------------------------------------------------------------------


@dataclass
class Conversation:
    index: int
    session_id: str
    handoff_id: str
    agent: Agent
    tab1: Listener  # the customer writes here and gets the agent's replies
    tab2: Listener  # a second tab of the same session: the baseline's fan-out


@dataclass
class Samples:
    inbox: list[float] = field(default_factory=list)
    reply: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def hand_off(customers: Server, agents: list[Agent], sessions: list[str]) -> list[str]:
    """Each session asks for a person and an agent (round-robin) takes it over."""
    handoff_ids = []
    async with httpx.AsyncClient(
        base_url=customers.origin, timeout=RECV_TIMEOUT, trust_env=False
    ) as client:
        for i, session_id in enumerate(sessions):
            asked = await client.post(
                f"/api/session/{session_id}/handoff", json={"reason": "bench"}
            )
            if asked.status_code != 201:
                raise RuntimeError(f"handoff request: {asked.status_code} {asked.text[:200]}")
            handoff_id = asked.json()["handoffId"]
            taken = await agents[i % len(agents)].http.post(
                f"/api/staff/handoffs/{handoff_id}/take"
            )
            if taken.status_code != 200:
                raise RuntimeError(f"take over: {taken.status_code} {taken.text[:200]}")
            handoff_ids.append(handoff_id)
    return handoff_ids


async def open_conversations(
    setup: Setup, customers: Server, agents: list[Agent]
) -> list[Conversation]:
    sessions = setup.take(CONVERSATIONS)
    handoff_ids = await hand_off(customers, agents, sessions)
    sockets = await open_many(customers, [*sessions, *sessions])
    return [
        Conversation(
            i,
            session_id,
            handoff_ids[i],
            agents[i % len(agents)],
            Listener(sockets[i]),
            Listener(sockets[CONVERSATIONS + i]),
        )
        for i, session_id in enumerate(sessions)
    ]


async def arrival(future: asyncio.Future[float], what: str) -> float:
    try:
        return await asyncio.wait_for(future, RECV_TIMEOUT)
    except TimeoutError:
        raise RuntimeError(f"no {what} frame within {RECV_TIMEOUT:.0f} s") from None


async def customer_writes(conv: Conversation, text: str, samples: Samples) -> None:
    inbox = conv.agent.inbox.expect(("inbox_item", text))
    baseline = conv.tab2.expect(("message", "user", text))
    frame = {
        "type": "chat_message",
        "data": {"content": text, "sessionId": conv.session_id},
        "requestId": secrets.token_hex(8),
    }
    sent = time.perf_counter()
    await conv.tab1.ws.send(json.dumps(frame))
    inbox_at, baseline_at = await asyncio.gather(
        arrival(inbox, "inbox_item"), arrival(baseline, "second-tab message")
    )
    samples.inbox.append((inbox_at - sent) * 1000)
    samples.baseline.append((baseline_at - sent) * 1000)


async def agent_replies(conv: Conversation, text: str, samples: Samples) -> None:
    delivered = conv.tab1.expect(("message", "staff", text))
    sent = time.perf_counter()
    response = await conv.agent.http.post(
        f"/api/staff/handoffs/{conv.handoff_id}/reply", json={"text": text}
    )
    if response.status_code != 201:
        raise RuntimeError(f"reply: {response.status_code} {response.text[:200]}")
    samples.reply.append((await arrival(delivered, "staff message") - sent) * 1000)


async def converse(
    conv: Conversation, tag: str, rounds: int, rng: random.Random, samples: Samples
) -> None:
    await asyncio.sleep(rng.uniform(0, 1.0))
    try:
        for number in range(rounds):
            question = f"{tag} conversation {conv.index} round {number}: my files stopped syncing"
            await customer_writes(conv, question, samples)
            await asyncio.sleep(rng.uniform(0.05, 0.3))
            answer = f"{tag} reply {conv.index}.{number}: please restart the desktop app"
            await agent_replies(conv, answer, samples)
            await asyncio.sleep(rng.uniform(0.05, 0.3))
    except Exception as exc:
        samples.errors.append(repr(exc)[:200])


class CpuMeter:
    """CPU of the servers, the fake model and this client over a run, % of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def __enter__(self) -> CpuMeter:
        self.wall, self.client = time.perf_counter(), time.process_time()
        self.start = {name: proc_cpu_s(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.wall
        self.percent = {
            name: round(100 * (proc_cpu_s(pid) - self.start[name]) / wall)
            for name, pid in self.pids.items()
        }
        self.percent["client"] = round(100 * (time.process_time() - self.client) / wall)


async def one_run(
    stk: Stack, setup: Setup, customers: Server, agents: list[Agent], tag: str, rounds: int
) -> dict[str, Any]:
    """Fresh conversations, ``rounds`` rounds each; the run's percentiles (ms)."""
    conversations = await open_conversations(setup, customers, agents)
    samples = Samples()
    rng = random.Random(tag)
    pids = {server.name: server.proc.pid for server in stk.servers}
    try:
        with CpuMeter({**pids, "model": stk.model.pid}) as cpu:
            await asyncio.gather(*(converse(c, tag, rounds, rng, samples) for c in conversations))
    finally:
        for conv in conversations:
            await conv.tab1.close()
            await conv.tab2.close()
    for listener in [a.inbox for a in agents] + [c.tab1 for c in conversations]:
        samples.errors += listener.errors
        listener.errors.clear()
    return summarize(samples, cpu.percent)


def summarize(samples: Samples, cpu: dict[str, int]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in MEASURES:
        values = getattr(samples, name)
        if not values:
            raise RuntimeError(f"no {name} sample: {samples.errors[:1] or 'no error seen'}")
        row[f"{name}_p50"] = round(percentile(values, 50), 1)
        row[f"{name}_p99"] = round(percentile(values, 99), 1)
    for name in ("inbox", "reply"):
        for q in ("p50", "p99"):
            row[f"{name}_added_{q}"] = round(row[f"{name}_{q}"] - row[f"baseline_{q}"], 1)
    row["samples"] = min(len(getattr(samples, name)) for name in MEASURES)
    row["errors"] = len(samples.errors)
    row["first_error"] = samples.errors[0] if samples.errors else ""
    row["cpu"] = cpu
    return row


# --- set-ups -----------------------------------------------------------------------------------


async def bench_setup(stk: Stack, setup: Setup, runs: int, rounds: int) -> dict[str, Any]:
    names = ("customers", "agents") if setup.split else ("supportbot",)
    servers = [start_daphne(name, APP, setup.env, 8192) for name in names]
    stk.servers += servers
    customers, staff_side = servers[0], servers[-1]
    rows = []
    try:
        agents = await connect_agents(staff_side, *setup.accounts)
        try:
            warm = await one_run(stk, setup, customers, agents, f"{setup.name}-warm", 1)
            if warm["errors"]:
                print(f"  {setup.name} warm-up: {warm['first_error']}", flush=True)
            for run in range(runs):
                tag = f"{setup.name}-run{run + 1}"
                row = await one_run(stk, setup, customers, agents, tag, rounds)
                rows.append(row)
                print(f"  {setup.name} run {run + 1}: {short(row)}", flush=True)
        finally:
            await disconnect_agents(agents)
    finally:
        for server in servers:
            stop(server.proc)
            stk.servers.remove(server)
    return {"title": setup.title, "rounds": rounds, "runs": rows, **combine(rows)}


def combine(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and range (min, max) over the runs of every measured figure."""
    keys = [k for k, v in rows[0].items() if isinstance(v, int | float)]
    return {
        "median": {k: round(statistics.median(r[k] for r in rows), 1) for k in keys},
        "range": {k: [min(r[k] for r in rows), max(r[k] for r in rows)] for k in keys},
    }


def redis_problem(url: str) -> str:
    """Why nothing usable answers at ``url`` ("" when Redis does)."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        client.ping()
        client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def shown_url(url: str) -> str:
    """The Redis URL without its password, for the report."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    return parts._replace(netloc=f"***@{host}:{parts.port or 6379}").geturl()


def setups(
    stk: Stack, only: set[str], redis_url: str, postgres_url: str, resources: contextlib.ExitStack
) -> tuple[list[Setup], dict[str, str]]:
    """The set-ups asked for that can run here; the others, with the reason."""
    chosen, skipped = [], {}
    made: dict[str, tuple[list[str], str]] = {}  # per database: its agents

    def agents_in(env: dict[str, str]) -> tuple[list[str], str]:
        database = env.get("DATABASE_URL", "")
        if database not in made:
            made[database] = create_agents(env, AGENTS)
        return made[database]

    if "embedded" in only:
        title = "one daphne, in-memory layer, SQLite"
        chosen.append(Setup("embedded", title, stk.env, False, stk.take, agents_in(stk.env)))
    if "redis" in only:
        problem = redis_problem(redis_url)
        if problem:
            skipped["redis"] = f"no Redis at {shown_url(redis_url)} ({problem})"
            return chosen, skipped
        env = {**stk.env, "REDIS_URL": redis_url}
        database = "SQLite (one file, both processes)"
        if postgres_url:
            env["DATABASE_URL"] = resources.enter_context(postgres_database(postgres_url))
            database = "PostgreSQL"
            prepare_database(env)
        title = f"two daphne on Redis {shown_url(redis_url)}, {database}; customers | agents"
        take = SessionPool(env).take if postgres_url else stk.take
        chosen.append(Setup("redis", title, env, True, take, agents_in(env)))
    return chosen, skipped


# --- reporting ---------------------------------------------------------------------------------


def short(row: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in row.items() if k != "cpu" and v not in ("", None)]
    cpu = "/".join(f"{k}:{v}%" for k, v in row["cpu"].items())
    return " ".join(parts) + f" cpu={cpu}"


def pair(row: dict[str, Any], name: str) -> str:
    return f"{row[name + '_p50']:.1f} / {row[name + '_p99']:.1f}"


def spread(low_high: list[float]) -> str:
    return f"{low_high[0]:.1f}..{low_high[1]:.1f}"


def report_setup(result: dict[str, Any]) -> None:
    print(f"\n{result['name']}: {result['title']}")
    print(
        f"   {CONVERSATIONS} conversations x {result['rounds']} rounds, {AGENTS} agents; "
        "ms, p50 / p99"
    )
    header = ("inbox", "reply", "baseline", "inbox-base", "reply-base")
    print(f"   {'':<8}" + "".join(f"{h:>16}" for h in header) + f"{'n':>6}{'err':>5}  cpu %")
    for number, row in enumerate(result["runs"], 1):
        cells = "".join(f"{pair(row, k):>16}" for k in (*MEASURES, *ADDED))
        cpu = " ".join(f"{k} {v}" for k, v in row["cpu"].items())
        print(f"   run {number:<4}{cells}{row['samples']:>6}{row['errors']:>5}  {cpu}")
        if row["first_error"]:
            print(f"            first error: {row['first_error']}")
    median, span = result["median"], result["range"]
    cells = "".join(f"{pair(median, k):>16}" for k in (*MEASURES, *ADDED))
    print(f"   {'median':<8}{cells}")
    for q in ("p50", "p99"):
        ranges = "".join(f"{spread(span[f'{k}_{q}']):>16}" for k in (*MEASURES, *ADDED))
        print(f"   {'range ' + q:<8}{ranges}")
    for name in ("inbox", "reply"):
        added = median[f"{name}_added_p99"]
        ok = added <= ADDED_P99_TARGET_MS and not any(r["errors"] for r in result["runs"])
        print(
            f"   {name} adds {added:.1f} ms at p99 (median of runs; per run "
            f"{[r[f'{name}_added_p99'] for r in result['runs']]}): target <= "
            f"{ADDED_P99_TARGET_MS:.0f} ms {'PASS' if ok else 'MISS'}"
        )


def report(results: dict[str, Any]) -> None:
    print("\nHand-off latency: inbox = customer chat_message -> inbox_item on the agent's")
    print("/ws/staff; reply = agent's reply POST -> staff message on the customer's socket;")
    print("baseline = the same chat_message -> its message frame on the session's second tab.")
    for name, result in results.items():
        if "skipped" in result:
            print(f"\n{name}: skipped: {result['skipped']}")
        elif "error" in result:
            print(f"\n{name}: not measured: {result['error']}")
        else:
            report_setup({"name": name, **result})


# --- main --------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = 1 if args.quick else args.runs
    rounds = QUICK_ROUNDS if args.quick else args.rounds
    only = set(args.only.split(",")) if args.only else {"embedded", "redis"}
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    # PostgreSQL only: the embedded default is SQLite, and ``stack`` drops DATABASE_URL.
    postgres_url = os.environ.get("DATABASE_URL", "")
    if not postgres_url.startswith(("postgres://", "postgresql://")):
        postgres_url = ""
    raise_nofile(8192)
    results: dict[str, Any] = {}
    with stack() as stk, contextlib.ExitStack() as resources:
        chosen, skipped = setups(stk, only, redis_url, postgres_url, resources)
        for setup in chosen:
            print(f"{setup.name}: {setup.title}", flush=True)
            try:
                results[setup.name] = await bench_setup(stk, setup, runs, rounds)
            except Exception as exc:  # one set-up failing still reports the other
                results[setup.name] = {"error": repr(exc)[:300]}
        for name, reason in skipped.items():
            print(f"{name}: skipped: {reason}", flush=True)
            results[name] = {"skipped": reason}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"one run of {QUICK_ROUNDS} rounds")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds per conversation")
    parser.add_argument("--only", default="", help="comma list of embedded,redis")
    args = parser.parse_args()
    started = time.perf_counter()
    results = asyncio.run(run(args))
    report(results)
    print(f"\n(took {time.perf_counter() - started:.0f} s)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
