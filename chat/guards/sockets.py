"""Caps on open WebSockets: per session and per client address, across daphne processes.

Every message of a session fans out to each of its sockets, so a client opening a thousand
sockets on one session multiplies the work of every answer by a thousand. A socket takes a slot
under each cap when it connects (after its session is known to be valid) and gives it back when
it closes; one over a cap is refused with a ``CONCURRENT_LIMIT_EXCEEDED`` error frame and closed
with ``CLOSE_TOO_MANY_SOCKETS``.

- ``WS_MAX_SOCKETS_PER_SESSION`` (10): the customer's own sockets (tabs, devices). Staff watching
  the conversation are not counted against the customer.
- ``WS_MAX_SOCKETS_PER_CLIENT`` (50): every socket from one client address (as the rate limits
  see it: ``X-Forwarded-For`` behind ``TRUSTED_PROXIES``, IPv6 by /64).

With Redis (``RATE_LIMIT_STORAGE_URL`` or ``REDIS_URL``) the slots are sorted sets shared by every
process: a member per socket, scored by the time its slot lapses. Each process re-stamps its own
sockets every ``SLOT_SECONDS / 3``, so the slots of a process that died lapse within
``SLOT_SECONDS`` instead of counting for ever. Without Redis they are counted in the process. A
Redis that cannot be reached admits the socket (with a warning): a cap protects the service, it
must not lock customers out while the counter store is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import defaultdict
from dataclasses import dataclass

import redis
import structlog
from django.conf import settings
from redis.asyncio import Redis
from redis.exceptions import RedisError

from supportbot.errors import ApiError

log = structlog.get_logger("chat.guards.sockets")

CLOSE_TOO_MANY_SOCKETS = 4029
SLOT_SECONDS = 60.0
_REDIS_TIMEOUT = 2.0
_PREFIX = "supportbot:ws"

# KEYS: the caps' sorted sets. ARGV: member, now, lapse time, slot seconds, then each key's cap.
# Returns 0 when a slot was taken under every cap, else the 1-based index of the full one.
_TAKE = """
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[2])
  if not redis.call('ZSCORE', key, ARGV[1]) and
     redis.call('ZCARD', key) >= tonumber(ARGV[4 + i]) then
    return i
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[3], ARGV[1])
  redis.call('EXPIRE', key, math.ceil(tonumber(ARGV[4])))
end
return 0
"""


@dataclass(frozen=True)
class Cap:
    scope: str  # "session" or "client": what the refusal names
    key: str
    limit: int


@dataclass(frozen=True)
class Slot:
    """What a connected socket holds; given back by ``release``."""

    member: str
    keys: tuple[str, ...]


def caps_for(*, session_id: str, client: str, watcher: bool) -> list[Cap]:
    per_client = Cap("client", f"{_PREFIX}:client:{client}", settings.WS_MAX_SOCKETS_PER_CLIENT)
    if watcher:
        return [per_client]
    limit = settings.WS_MAX_SOCKETS_PER_SESSION
    return [Cap("session", f"{_PREFIX}:session:{session_id}", limit), per_client]


def _refusal(cap: Cap) -> ApiError:
    what = "this conversation" if cap.scope == "session" else "your network address"
    return ApiError(
        "CONCURRENT_LIMIT_EXCEEDED",
        f"Too many open connections for {what} (at most {cap.limit}); close another tab or "
        "window and try again.",
        details={"scope": cap.scope, "limit": cap.limit},
        retry_after=int(SLOT_SECONDS),
    )


class _Memory:
    def __init__(self) -> None:
        self.open: defaultdict[str, set[str]] = defaultdict(set)

    async def take(self, caps: list[Cap], member: str) -> Cap | None:
        for cap in caps:
            if len(self.open[cap.key]) >= cap.limit:
                return cap
        for cap in caps:
            self.open[cap.key].add(member)
        return None

    async def release(self, slot: Slot) -> None:
        for key in slot.keys:
            members = self.open.get(key)
            if members is not None:
                members.discard(slot.member)
                if not members:
                    del self.open[key]


class _Redis:
    def __init__(self, url: str) -> None:
        self.url = url
        # One client per event loop (daphne has one; tests make one per test).
        self.clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = (
            weakref.WeakKeyDictionary()
        )
        self.held: dict[str, tuple[str, ...]] = {}  # this process's slots, re-stamped
        self.refreshers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]]
        self.refreshers = weakref.WeakKeyDictionary()

    def client(self) -> Redis:
        loop = asyncio.get_running_loop()
        client = self.clients.get(loop)
        if client is None:
            client = Redis.from_url(
                self.url, socket_timeout=_REDIS_TIMEOUT, socket_connect_timeout=_REDIS_TIMEOUT
            )
            self.clients[loop] = client
        return client

    async def take(self, caps: list[Cap], member: str) -> Cap | None:
        now = time.time()
        keys = [cap.key for cap in caps]
        args: list[str | float] = [member, now, now + SLOT_SECONDS, SLOT_SECONDS]
        args.extend(cap.limit for cap in caps)
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT):
                full = int(await self.client().eval(_TAKE, len(keys), *keys, *args))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("socket_caps_unavailable", error=type(exc).__name__)
            return None
        if full:
            return caps[full - 1]
        self.held[member] = tuple(keys)
        self._keep_refreshing()
        return None

    async def release(self, slot: Slot) -> None:
        self.held.pop(slot.member, None)
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT):
                async with self.client().pipeline(transaction=False) as pipe:
                    for key in slot.keys:
                        pipe.zrem(key, slot.member)
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("socket_caps_unavailable", error=type(exc).__name__)  # lapses by itself

    def _keep_refreshing(self) -> None:
        loop = asyncio.get_running_loop()
        task = self.refreshers.get(loop)
        if task is None or task.done():
            self.refreshers[loop] = loop.create_task(self._refresh())

    async def _refresh(self) -> None:
        while self.held:
            await asyncio.sleep(SLOT_SECONDS / 3)
            lapse = time.time() + SLOT_SECONDS
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(_REDIS_TIMEOUT):
                    async with self.client().pipeline(transaction=False) as pipe:
                        for member, keys in list(self.held.items()):
                            for key in keys:
                                pipe.zadd(key, {member: lapse}, xx=True)
                        await pipe.execute()


_backend: _Memory | _Redis | None = None
_backend_url: str | None = None


def _get_backend() -> _Memory | _Redis:
    global _backend, _backend_url
    url = settings.RATE_LIMIT_STORAGE_URL or settings.REDIS_URL or ""
    if _backend is None or url != _backend_url:
        _backend = _Redis(url) if url else _Memory()
        _backend_url = url
    return _backend


async def admit(*, session_id: str, client: str, watcher: bool, member: str) -> Slot:
    """Take a slot for the socket ``member`` (its channel name); ``ApiError`` when a cap is full."""
    caps = caps_for(session_id=session_id, client=client, watcher=watcher)
    full = await _get_backend().take(caps, member)
    if full is not None:
        log.info("socket_refused", scope=full.scope, limit=full.limit, session_id=session_id)
        raise _refusal(full)
    return Slot(member, tuple(cap.key for cap in caps))


async def release(slot: Slot) -> None:
    """Give the socket's slots back."""
    await _get_backend().release(slot)


def reset() -> None:
    """Forget every slot, in the process and in Redis (tests)."""
    global _backend
    backend, _backend = _backend, None
    if isinstance(backend, _Redis):
        client = redis.Redis.from_url(backend.url)
        try:
            keys = list(client.scan_iter(match=f"{_PREFIX}:*", count=500))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
