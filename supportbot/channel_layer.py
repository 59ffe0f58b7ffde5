"""The Redis channel layer, made to outlast idle sockets and Redis outages.

channels_redis reads a process's channel with a blocking ``BZPOPMIN`` of ``brpop_timeout``
(5 s); redis-py 6 and newer give every connection a 5 s socket timeout by default, so an idle
read timed out on the client just as Redis was about to answer, the error escaped ``receive``
and daphne closed the socket with 1011. ``connection_options`` gives the layer's connections a
read timeout well above the blocking read (and a short connect timeout, keep-alives and health
checks, so a dead Redis is noticed rather than waited on).

On top of that this layer never lets a Redis failure end a consumer:

- ``receive`` waits out an outage (retrying with backoff) instead of raising into the consumer;
- ``group_add``/``group_discard`` remember the process's memberships and, when Redis cannot be
  reached, log and carry on: the socket still works, without fan-out until Redis is back;
- after an outage, and every ``refresh_seconds`` in any case, the memberships are written again,
  so a Redis that restarted empty (groups lost) delivers to the process's sockets once more.

A message sent to a group during the outage is lost for the sockets of that group; clients get
it back with ``resume`` (every stored message has a per-session seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from typing import Any

import structlog
from channels_redis.core import RedisChannelLayer as BaseRedisChannelLayer
from redis.exceptions import RedisError

log = structlog.get_logger("supportbot.channel_layer")

# Read timeout of the layer's connections: the blocking read waits up to brpop_timeout (5 s)
# for Redis to answer; a silent Redis is declared gone a few seconds after that.
READ_TIMEOUT_SECONDS = 15.0
CONNECT_TIMEOUT_SECONDS = 2.0
# How long a membership change waits for Redis before it is left to the next refresh.
MEMBERSHIP_TIMEOUT_SECONDS = 2.0
REFRESH_SECONDS = 30.0
_BACKOFF_START, _BACKOFF_MAX = 0.2, 5.0
_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


def connection_options(url: str) -> dict[str, Any]:
    """A ``hosts`` entry for channels_redis: the URL with the layer's connection settings."""
    return {
        "address": url,
        "socket_timeout": READ_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_keepalive": True,
        "health_check_interval": REFRESH_SECONDS,
    }


class RedisChannelLayer(BaseRedisChannelLayer):
    def __init__(self, *args: Any, refresh_seconds: float = REFRESH_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refresh_seconds = refresh_seconds
        self._memberships: defaultdict[str, set[str]] = defaultdict(set)
        self._refresh: asyncio.Task[None] | None = None
        self._refresh_now: asyncio.Event | None = None

    async def receive_single(self, channel: str) -> Any:
        delay, failed_since = _BACKOFF_START, 0.0
        while True:
            try:
                result = await super().receive_single(channel)
            except _FAILURES as exc:
                if not failed_since:
                    failed_since = time.monotonic()
                    log.warning("channel_layer.receive_failed", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            if failed_since:
                log.info("channel_layer.receive_recovered", after_s=time.monotonic() - failed_since)
                self._schedule_refresh(now=True)
            return result

    async def group_add(self, group: str, channel: str) -> None:
        self._memberships[group].add(channel)
        self._schedule_refresh()
        try:
            async with asyncio.timeout(MEMBERSHIP_TIMEOUT_SECONDS):
                await super().group_add(group, channel)
        except _FAILURES as exc:
            log.warning("channel_layer.group_add_failed", group=group, error=repr(exc))
            self._schedule_refresh(now=True)

    async def group_discard(self, group: str, channel: str) -> None:
        members = self._memberships.get(group)
        if members is not None:
            members.discard(channel)
            if not members:
                del self._memberships[group]
        try:
            async with asyncio.timeout(MEMBERSHIP_TIMEOUT_SECONDS):
                await super().group_discard(group, channel)
        except _FAILURES as exc:
            # The membership expires with the group (group_expiry); nothing is sent to it since
            # the channel is gone.
            log.warning("channel_layer.group_discard_failed", group=group, error=repr(exc))

    def memberships(self) -> dict[str, set[str]]:
        """The groups this process's channels belong to (a copy)."""
        return {group: set(channels) for group, channels in self._memberships.items()}

    def _schedule_refresh(self, *, now: bool = False) -> None:
        """Keep one refresher running on this event loop; ``now``: write the memberships at
        once (after an outage) instead of at the next period."""
        loop = asyncio.get_running_loop()
        task = self._refresh
        if task is None or task.done() or task.get_loop() is not loop:
            self._refresh_now = asyncio.Event()
            self._refresh = loop.create_task(self._refresher(self._refresh_now))
        if now and self._refresh_now is not None:
            self._refresh_now.set()

    async def _refresher(self, wake: asyncio.Event) -> None:
        """Every ``refresh_seconds`` (or at once when asked) write the memberships again: a Redis
        that restarted empty has forgotten them, and redis-py may have reconnected silently."""
        while self._memberships:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh_seconds):
                    await wake.wait()
            wake.clear()
            await self._rejoin()

    async def _rejoin(self) -> None:
        delay = _BACKOFF_START
        while True:
            try:
                for group, channels in list(self._memberships.items()):
                    for channel in list(channels):
                        async with asyncio.timeout(MEMBERSHIP_TIMEOUT_SECONDS):
                            await BaseRedisChannelLayer.group_add(self, group, channel)
            except _FAILURES:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            return
