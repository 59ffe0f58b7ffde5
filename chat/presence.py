"""Which support agents are online: kept by their staff sockets, shared by every process.

An agent is online while at least one of their staff sockets (the inbox, a conversation page) is
open. Each socket marks itself every ``REFRESH_SECONDS`` with an expiry ``TTL_SECONDS`` ahead, so
a socket of a process that died stops counting within a minute, without anyone cleaning up. With
``REDIS_URL`` the marks live in one Redis sorted set (member ``<user id>|<socket>``, score = expiry)
that every daphne process reads; on the embedded default (one process) they live in memory.

A Redis failure reads as "nobody online": the customer is then offered a ticket instead of a
promise nobody may keep (the safe side), and the failure is logged.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import redis
import structlog
from django.conf import settings

log = structlog.get_logger("chat.presence")

TTL_SECONDS = 60.0
REFRESH_SECONDS = 20.0
_REDIS_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Agent:
    user_id: int
    name: str


class _MemoryPresence:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marks: dict[str, tuple[Agent, float]] = {}

    def mark(self, agent: Agent, socket: str, until: float) -> None:
        with self._lock:
            self._marks[socket] = (agent, until)

    def unmark(self, socket: str, user_id: int) -> None:
        with self._lock:
            self._marks.pop(socket, None)

    def online(self, now: float) -> list[Agent]:
        with self._lock:
            for socket in [s for s, (_, until) in self._marks.items() if until <= now]:
                del self._marks[socket]
            return list({agent.user_id: agent for agent, _ in self._marks.values()}.values())

    def clear(self) -> None:
        with self._lock:
            self._marks.clear()


class _RedisPresence:
    def __init__(self, url: str, prefix: str) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
            decode_responses=True,
        )
        self._marks = f"{prefix}:presence"
        self._names = f"{prefix}:presence:names"

    def mark(self, agent: Agent, socket: str, until: float) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.zadd(self._marks, {f"{agent.user_id}|{socket}": until})
        pipe.hset(self._names, str(agent.user_id), agent.name)
        pipe.execute()

    def unmark(self, socket: str, user_id: int) -> None:
        self._client.zrem(self._marks, f"{user_id}|{socket}")

    def online(self, now: float) -> list[Agent]:
        pipe = self._client.pipeline(transaction=False)
        pipe.zremrangebyscore(self._marks, "-inf", now)
        pipe.zrange(self._marks, 0, -1)
        pipe.hgetall(self._names)
        _, members, names = pipe.execute()
        ids = sorted({int(member.split("|", 1)[0]) for member in members})
        return [Agent(user_id, names.get(str(user_id), "")) for user_id in ids]

    def clear(self) -> None:
        self._client.delete(self._marks, self._names)


_lock = threading.Lock()
_store: tuple[str, _MemoryPresence | _RedisPresence] | None = None


def _backend() -> _MemoryPresence | _RedisPresence:
    """The store for the current settings (re-made when a test changes REDIS_URL)."""
    global _store
    url = getattr(settings, "REDIS_URL", "") or ""
    current = _store
    if current is not None and current[0] == url:
        return current[1]
    with _lock:
        if _store is None or _store[0] != url:
            backend = _RedisPresence(url, "supportbot") if url else _MemoryPresence()
            _store = (url, backend)
        return _store[1]


def mark_online(*, user_id: int, name: str, socket: str) -> None:
    """This staff socket is open (call again every ``REFRESH_SECONDS``)."""
    try:
        _backend().mark(Agent(user_id, name), socket, time.time() + TTL_SECONDS)
    except (redis.RedisError, OSError) as exc:
        log.warning("presence_unavailable", operation="mark", error=type(exc).__name__)


def mark_offline(*, user_id: int, socket: str) -> None:
    """This staff socket closed."""
    try:
        _backend().unmark(socket, user_id)
    except (redis.RedisError, OSError) as exc:
        log.warning("presence_unavailable", operation="unmark", error=type(exc).__name__)


def agents_online() -> list[Agent]:
    """Every agent with an open staff socket, in any process."""
    try:
        return _backend().online(time.time())
    except (redis.RedisError, OSError) as exc:
        log.warning("presence_unavailable", operation="read", error=type(exc).__name__)
        return []


def clear() -> None:
    """Forget every mark (tests)."""
    _backend().clear()
