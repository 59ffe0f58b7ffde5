"""The Redis channel layer (supportbot.channel_layer) on the run's real Redis: an idle read
outlasts redis-py's default 5 s socket timeout, and memberships survive a Redis that forgot them."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from supportbot.channel_layer import RedisChannelLayer, connection_options


def make_layer(url: str, **extra: float) -> RedisChannelLayer:
    return RedisChannelLayer(
        hosts=[connection_options(url)], prefix=f"test{time.monotonic_ns()}", **extra
    )


async def test_an_idle_receive_waits_past_the_redis_clients_default_socket_timeout(
    redis_url: str,
) -> None:
    # Before: redis-py's 5 s socket timeout cut channels_redis' 5 s blocking read, and the
    # TimeoutError reached the consumer (daphne closed idle sockets with 1011).
    layer = make_layer(redis_url)
    channel = await layer.new_channel()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(11):
            await layer.receive(channel)
    assert time.monotonic() - started >= 10.9
    # And the socket still receives afterwards.
    await layer.send(channel, {"type": "after.idle"})
    async with asyncio.timeout(5):
        assert (await layer.receive(channel))["type"] == "after.idle"
    await layer.flush()


async def test_group_memberships_are_written_again_after_redis_forgot_them(redis_url: str) -> None:
    layer = make_layer(redis_url, refresh_seconds=0.3)
    channel = await layer.new_channel()
    await layer.group_add("session.x", channel)
    # A Redis restarted without persistence has no groups: what FLUSHDB leaves.
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    await asyncio.sleep(1.0)  # a few refresh periods
    await layer.group_send("session.x", {"type": "session.message"})
    async with asyncio.timeout(5):
        assert (await layer.receive(channel))["type"] == "session.message"
    await layer.group_discard("session.x", channel)
    assert layer.memberships() == {}
    await layer.flush()


async def test_membership_changes_on_an_unreachable_redis_are_logged_not_raised(
    closed_redis_url: str,
) -> None:
    layer = RedisChannelLayer(hosts=[connection_options(closed_redis_url)], refresh_seconds=60)
    channel = await layer.new_channel()
    started = time.monotonic()
    await layer.group_add("session.y", channel)  # no exception: the socket keeps working
    await layer.group_discard("session.y", channel)
    assert time.monotonic() - started < 6
    assert layer.memberships() == {}


@pytest.fixture
def closed_redis_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"
