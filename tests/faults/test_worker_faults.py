"""The Celery worker SIGKILLed mid-workflow and restarted, with and without a beat process; two
beat processes, one killed; the worker of ``make run`` killed.

Real processes on PostgreSQL and Redis: a live server (daphne) takes the submits, a Celery
worker runs them, and every ``tool_chain`` opens a ticket in an external ticketing system (a fake
on a real socket) that answers a create only after ``CREATE_DELAY`` seconds, so the worker can be
killed while steps are in flight. Leases are shortened through settings: a lost execution is
resumed after ``LEASE`` seconds by the worker's own lease check (every ``SWEEP`` seconds) or by
beat, and a standby beat takes over ``BEAT_LEASE`` seconds after the active one died.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.fakes.live_server import ROOT, LiveServer
from tests.fakes.ticketing_server import FakeTicketing
from tests.faults.celery_processes import (
    CeleryBeat,
    CeleryProcess,
    CeleryWorker,
    PostgresDatabase,
    base_env,
    descendants,
    flush_redis,
    migrate,
    process_alive,
    redis_db,
    services,
    wait_for,
)
from tests.faults.fault_settings import PROBE_QUEUE

LEASE = 3  # WORKFLOW_LEASE_SECONDS
SWEEP = 1  # WORKFLOW_SWEEP_SECONDS
BEAT_LEASE = 3  # BEAT_LEASE_SECONDS
CREATE_DELAY = 1.5  # the ticketing system's answer to a create
EXECUTIONS = 8
CONCURRENCY = 4  # the worker's threads: 4 executions in flight when it dies, 4 still queued
RECOVERY_LIMIT = 45.0  # seconds from the SIGKILL to every execution completed (restart included)
FINAL = ("completed", "compensated", "failed")


@dataclass
class SlowTicketing(FakeTicketing):
    """The fake ticketing system, slow to answer creates; ``arrived`` lists the ``reference``
    (our session id) of every create as it comes in, before the delay."""

    create_delay: float = CREATE_DELAY
    arrived: list[str] = field(default_factory=list)

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        if method == "POST" and path.rstrip("/").endswith("/tickets"):
            with self._lock:
                self.arrived.append(str((body or {}).get("reference")))
            time.sleep(self.create_delay)
        return super().answer(method, path, headers, body)

    def start(self) -> SlowTicketing:
        super().start()
        assert self._server is not None
        # A killed worker never reads its answer: no traceback per broken pipe.
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        return self

    def creates(self, session_id: str) -> list[str]:
        """The Idempotency-Key of every create request answered for this session."""
        with self._lock:
            return [
                r.headers.get("idempotency-key", "")
                for r in self.requests
                if r.method == "POST"
                and r.path.rstrip("/").endswith("/tickets")
                and isinstance(r.body, dict)
                and r.body.get("reference") == session_id
            ]

    def tickets_of(self, session_id: str) -> int:
        with self._lock:
            return sum(1 for t in self.tickets.values() if t["reference"] == session_id)


@dataclass
class Stack:
    root: Path
    database: PostgresDatabase
    redis_url: str
    ticketing: SlowTicketing
    server: LiveServer
    processes: list[CeleryProcess] = field(default_factory=list)

    def env(self, name: str) -> dict[str, str]:
        """A worker's or beat's environment; each process has a data directory of its own."""
        var_dir = self.root / name
        var_dir.mkdir(exist_ok=True)
        return base_env(
            var_dir,
            DATABASE_URL=self.database.url,
            REDIS_URL=self.redis_url,
            TICKETING_API_URL=self.ticketing.url,
            TICKETING_API_KEY=self.ticketing.api_key,
            WORKFLOW_LEASE_SECONDS=str(LEASE),
            WORKFLOW_SWEEP_SECONDS=str(SWEEP),
            BEAT_LEASE_SECONDS=str(BEAT_LEASE),
            RATE_LIMITS_ENABLED="false",
        )

    def worker(self, name: str = "worker") -> CeleryWorker:
        worker = CeleryWorker(self.root / "logs", env=self.env(name), name=name)
        self.processes.append(worker)
        return worker

    def beat(self, name: str = "beat") -> CeleryBeat:
        beat = CeleryBeat(self.root / "logs", env=self.env(name), name=name)
        self.processes.append(beat)
        return beat

    def executions(self, ids: list[str]) -> dict[str, tuple[str, int]]:
        """status and deliveries of each execution."""
        rows = self.database.query(
            "SELECT id, status, deliveries FROM tools_workflowexecution WHERE id = ANY(%s)",
            [ids],
        )
        return {str(r[0]): (str(r[1]), int(str(r[2]))) for r in rows}

    def tickets(self, session_id: str) -> int:
        rows = self.database.query(
            "SELECT count(*) FROM tools_ticket WHERE session_id = %s", [session_id]
        )
        return int(str(rows[0][0]))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    found = services()
    redis_url = redis_db(found.redis_url, 10)
    flush_redis(redis_url)
    root = tmp_path_factory.mktemp("worker_faults")
    database = PostgresDatabase.create(found.database_url, "h_fault2_worker")
    ticketing = SlowTicketing()
    ticketing.start()
    server: LiveServer | None = None
    stack: Stack | None = None
    try:
        migrate(base_env(root / "migrate", DATABASE_URL=database.url))
        server = LiveServer(
            root / "web",
            env={
                "DATABASE_URL": database.url,
                "REDIS_URL": redis_url,
                "CELERY_TASK_ALWAYS_EAGER": "false",
                "RATE_LIMITS_ENABLED": "false",
                "TICKETING_API_URL": ticketing.url,
                "TICKETING_API_KEY": ticketing.api_key,
                "WORKFLOW_LEASE_SECONDS": str(LEASE),
                "WORKFLOW_SWEEP_SECONDS": str(SWEEP),
                "BEAT_LEASE_SECONDS": str(BEAT_LEASE),
            },
        )
        server.var_dir.mkdir(parents=True, exist_ok=True)
        server.start()
        stack = Stack(root, database, redis_url, ticketing, server)
        yield stack
    finally:
        for process in stack.processes if stack else []:
            process.close()
        if server is not None:
            server.close()
        ticketing.stop()
        database.close()
        flush_redis(redis_url)


@pytest.fixture(autouse=True)
def _stop_processes(stack: Stack) -> Iterator[None]:
    """Each test's workers and beats end with it (SIGKILL of their process groups)."""
    yield
    while stack.processes:
        stack.processes.pop().close()


def submit_chains(server: LiveServer, label: str) -> list[tuple[str, str]]:
    """``EXECUTIONS`` tool chains, each in a session of its own: open a ticket, read it back.
    Returns (session id, execution id) pairs."""
    submitted = []
    with httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as client:
        for n in range(EXECUTIONS):
            session_id = client.post("/api/session", json={}).json()["sessionId"]
            tools = [
                {
                    "tool": "create_ticket",
                    "arguments": {
                        "title": f"Sync stopped on device {n} ({label})",
                        "description": "Files stopped syncing after the update this morning.",
                        "priority": "high",
                        "category": "sync",
                    },
                },
                {"tool": "fetch_status", "arguments": {"ticketId": "$prev.ticketId"}},
            ]
            response = client.post(
                "/api/workflow/execute",
                json={
                    "workflowType": "tool_chain",
                    "parameters": {"context": {"sessionId": session_id}, "tools": tools},
                    "idempotencyKey": f"{label}-{n}",
                },
            )
            assert response.status_code == 200, response.text
            submitted.append((session_id, response.json()["executionId"]))
    return submitted


def kill_mid_workflow_and_restart(stack: Stack, label: str, figure: Any, *, beat: bool) -> None:
    worker = stack.worker(f"worker-{label}")
    beat_process = stack.beat(f"beat-{label}").start() if beat else None
    worker.start().wait_ready()
    if beat_process is not None:
        beat_process.wait_ready()
    submitted = submit_chains(stack.server, label)
    sessions = {session_id for session_id, _ in submitted}
    ids = [execution_id for _, execution_id in submitted]

    def in_flight() -> int:
        return sum(1 for reference in stack.ticketing.arrived if reference in sessions)

    assert wait_for(lambda: in_flight() >= CONCURRENCY, within=30), (
        f"the worker never had {CONCURRENCY} creates in flight: {worker.log_tail()}"
    )
    worker.kill()
    killed_at = time.monotonic()
    at_kill = Counter(status for status, _ in stack.executions(ids).values())
    assert at_kill["running"] >= 1, f"nothing was running when the worker died: {at_kill}"

    worker.start().wait_ready()
    restarted = time.monotonic() - killed_at

    def all_final() -> bool:
        return all(status in FINAL for status, _ in stack.executions(ids).values())

    wait_for(all_final, within=max(RECOVERY_LIMIT - (time.monotonic() - killed_at), 1), every=0.2)
    recovery = time.monotonic() - killed_at
    final = stack.executions(ids)
    completed = sum(1 for status, _ in final.values() if status == "completed")
    db_tickets = {session_id: stack.tickets(session_id) for session_id in sessions}
    # The fake's creates, one per Idempotency-Key: a resumed step re-sends its key, and a second
    # key for one execution would be a second ticket over there.
    keys = {session_id: set(stack.ticketing.creates(session_id)) for session_id in sessions}
    external = {session_id: stack.ticketing.tickets_of(session_id) for session_id in sessions}

    figure("executions completed / submitted", f"{completed} / {EXECUTIONS}")
    figure("running when the worker was killed", at_kill["running"])
    figure("tickets per execution (database)", sorted(Counter(db_tickets.values()).items()))
    figure("tickets per execution (ticketing system)", sorted(Counter(external.values()).items()))
    figure("deliveries per execution", sorted(Counter(d for _, d in final.values()).items()))
    figure("worker restart (s)", round(restarted, 1))
    figure("time to recovery from the SIGKILL (s)", round(recovery, 1))

    stuck = {i: status for i, (status, _) in final.items() if status != "completed"}
    assert not stuck, (
        f"{len(stuck)} of {EXECUTIONS} executions not completed {recovery:.0f} s after the "
        f"SIGKILL (lease {LEASE} s, sweep {SWEEP} s): {sorted(Counter(stuck.values()).items())}\n"
        f"{worker.log_tail()}"
    )
    # Run at most once more after the kill: never picked up again once completed, and never
    # twice at once (a second delivery while the first holds the lease does nothing).
    assert max(d for _, d in final.values()) <= 2, final
    assert all(count == 1 for count in db_tickets.values()), db_tickets
    assert all(len(k) == 1 for k in keys.values()), keys
    assert all(count == 1 for count in external.values()), external
    steps = stack.database.query(
        "SELECT count(*) FROM tools_workflowstep WHERE execution_id = ANY(%s) "
        "AND status <> 'completed'",
        [ids],
    )
    assert steps[0][0] == 0
    assert recovery <= RECOVERY_LIMIT
    if beat_process is not None:
        assert beat_process.running, "the beat process died with the worker"


def test_worker_killed_mid_workflow_and_restarted_without_beat(stack: Stack, figure) -> None:
    """No beat anywhere: the restarted worker's own lease check resumes what the dead one held."""
    kill_mid_workflow_and_restart(stack, "nobeat", figure, beat=False)


def test_worker_killed_mid_workflow_and_restarted_with_a_beat_process(stack: Stack, figure) -> None:
    """A beat process runs throughout (resuming every second): the worker's lease check and
    beat both queue the lost executions again, and each still completes once."""
    kill_mid_workflow_and_restart(stack, "beat", figure, beat=True)


# --- beat ---------------------------------------------------------------------------------------


def probe_senders(redis_url: str, seen: list[tuple[float, int]]) -> None:
    """Append (arrival time, sending pid) of the probe messages beat sent since the last call.
    Nothing reads the probe queue, so it only grows (new messages at its head)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        total = int(client.llen(PROBE_QUEUE))
        new = total - len(seen)
        if new <= 0:
            return
        now = time.monotonic()
        for raw in reversed(client.lrange(PROBE_QUEUE, 0, new - 1)):
            origin = json.loads(raw)["headers"]["origin"]  # "gen<pid>@<host>"
            match = re.match(r"gen(\d+)@", origin)
            assert match, origin
            seen.append((now, int(match.group(1))))
    finally:
        client.close()


def beat_health(server: LiveServer) -> str:
    with httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as client:
        component = client.get("/health").json()["components"].get("beat") or {}
    return str(component.get("status", "missing"))


def test_two_beats_one_schedule_and_the_standby_takes_over(stack: Stack, figure) -> None:
    client = redis.Redis.from_url(stack.redis_url, socket_timeout=5)
    client.delete(PROBE_QUEUE)
    client.close()
    first, second = stack.beat("beat-one").start(), stack.beat("beat-two").start()
    first.wait_ready()
    second.wait_ready()
    seen: list[tuple[float, int]] = []

    def probed() -> bool:
        probe_senders(stack.redis_url, seen)
        return bool(seen)

    # Both up: once the schedule runs, watch it for a few probe periods.
    assert wait_for(probed, within=20), (
        f"no beat ran the schedule:\n{first.log_tail()}\n{second.log_tail()}"
    )
    watch_from = time.monotonic()
    while time.monotonic() - watch_from < 3.0:
        probe_senders(stack.redis_url, seen)
        time.sleep(0.1)
    window = time.monotonic() - watch_from
    senders = Counter(pid for _, pid in seen)
    figure("beats running / sending the schedule", f"2 / {len(senders)}")
    figure("probe sends in a window of one-second periods", f"{len(seen)} in {window:.1f} s")
    assert len(senders) == 1, f"both beats ran the schedule: {dict(senders)}"
    assert beat_health(stack.server) == "up"

    active_pid = next(iter(senders))
    active, standby = (first, second) if first.pid == active_pid else (second, first)
    before = len(seen)
    active.kill()
    killed_at = time.monotonic()

    def taken_over() -> bool:
        probe_senders(stack.redis_url, seen)
        return any(pid == standby.pid for _, pid in seen[before:])

    took_over = wait_for(taken_over, within=BEAT_LEASE + 10)
    takeover = next((t for t, pid in seen[before:] if pid == standby.pid), time.monotonic())
    figure("takeover after SIGKILL of the active beat (s)", round(takeover - killed_at, 1))
    assert took_over, f"the standby never took over:\n{standby.log_tail()}"
    # One probe period and one look at the lease on top of the lease itself.
    assert takeover - killed_at <= BEAT_LEASE + 2
    assert {pid for _, pid in seen[before:]} <= {standby.pid, active_pid}

    standby.kill()
    gone = wait_for(lambda: beat_health(stack.server) != "up", within=BEAT_LEASE + 12, every=0.5)
    figure("/health beat with no beat process", beat_health(stack.server))
    assert gone and beat_health(stack.server) == "degraded"


def make_run_recipe() -> list[str]:
    """The command lines of ``make run`` (its Makefile recipe)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^run:.*?\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "no run target in the Makefile"
    return recipe.group(1).splitlines()


def celery_arguments(line: str) -> list[str]:
    """What follows ``celery`` in a recipe line (``… celery -A supportbot worker … & \\``)."""
    words = shlex.split(line.strip().removesuffix("\\").strip().rstrip("&").strip())
    start = next(i for i, word in enumerate(words) if word.endswith("/celery"))
    return words[start + 1 :]


def test_the_worker_of_make_run_leaves_no_process_behind_when_killed(stack: Stack, figure) -> None:
    """Beat is never a child of the worker: a SIGKILLed worker leaves no orphan that would go on
    sending the schedule next to the beat of its replacement; beat is a process of its own."""
    recipe = make_run_recipe()
    line = next((line for line in recipe if "/celery " in line and " worker" in line), None)
    assert line, "make run starts no Celery worker"
    command = [*celery_arguments(line), "--loglevel=INFO"]  # INFO: the log says when it is ready
    args = command[2:] if command[:2] == ["-A", "supportbot"] else command
    worker = CeleryProcess("make-run-worker", args, env=stack.env("mr"), log_dir=stack.root)
    worker.ready_marker = " ready."
    stack.processes.append(worker)
    worker.start().wait_ready()
    children = descendants(worker.pid)
    worker.kill()
    wait_for(lambda: not any(process_alive(pid) for pid in children), within=3)
    left = [pid for pid in children if process_alive(pid)]
    figure("processes of the worker alive 3 s after its SIGKILL", len(left))
    assert not left, f"celery {' '.join(command)}: left {left} running after a SIGKILL"
    beats = [celery_arguments(line) for line in recipe if "/celery " in line]
    assert any(args[2:3] == ["beat"] for args in beats), f"make run starts no beat: {beats}"
