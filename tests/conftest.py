"""Shared fixtures. Services: PostgreSQL via DATABASE_URL, Redis via REDIS_URL; with
REQUIRE_SERVICES=1 a missing or unreachable service fails the run instead of skipping."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

pytest_plugins = ["tests.fakes.fixtures"]

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES", "").strip().lower() in {"1", "true", "yes"}


def reachable(url: str, default_port: int) -> bool:
    """Whether a TCP connection to the URL's host and port opens within 2 s."""
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    if not REQUIRE_SERVICES:
        return
    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(name)]
    if missing:
        pytest.exit(f"REQUIRE_SERVICES=1 but {', '.join(missing)} not set", returncode=3)
    if not os.environ["DATABASE_URL"].startswith("postgres"):
        pytest.exit("REQUIRE_SERVICES=1 needs DATABASE_URL on PostgreSQL", returncode=3)
    for name, port in (("DATABASE_URL", 5432), ("REDIS_URL", 6379)):
        if not reachable(os.environ[name], port):
            pytest.exit(f"REQUIRE_SERVICES=1 but {name} is unreachable", returncode=3)


@pytest.fixture
def redis_url() -> str:
    """The Redis URL of the run; skips (or fails under REQUIRE_SERVICES) without one."""
    url = os.environ.get("REDIS_URL", "")
    if not url:
        if REQUIRE_SERVICES:
            pytest.fail("REDIS_URL is required")
        pytest.skip("REDIS_URL not set")
    return url


@pytest.fixture(autouse=True, scope="session")
def _metrics_flushed_by_readers():
    """No flusher thread in the test process: a reader flushes this process's numbers itself,
    in its own thread and transaction (servers that tests start flush on their own)."""
    from django.conf import settings

    settings.METRICS_FLUSH_SECONDS = 0
    yield


@pytest.fixture(autouse=True)
def _celery_eager():
    """Tasks run in-process during tests (a worker is exercised by its own tests)."""
    from supportbot.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield


@pytest.fixture(autouse=True)
def _fresh_vocabulary():
    """Each test's searches correct typos against its own articles, built on first use."""
    from tools import spelling

    spelling.forget()
    yield
    spelling.forget()


@pytest.fixture(autouse=True)
def _fresh_chain():
    """Every test starts with a model chain built from its own settings (and fresh breakers)."""
    from chat.llm.chain import reset_chain

    reset_chain()
    yield
    reset_chain()


@pytest.fixture
def kb(db):
    """The bundled starter knowledge base, loaded through the real import command."""
    from django.core.management import call_command

    call_command("loadkb", verbosity=0)


@pytest.fixture
def api():
    """An async client for the real ASGI Django stack (middleware, ninja, error shape)."""
    from django.test import AsyncClient

    return AsyncClient()


@pytest.fixture(autouse=True)
def _archives_in_tmp(settings, tmp_path):
    """Archives of a test land in its own folder (the S3 backend has its own tests)."""
    storages = dict(settings.STORAGES)
    if storages["archives"]["BACKEND"].endswith("FileSystemStorage"):
        location = str(tmp_path / "archives")  # with the permissions settings give archives
        options = {**storages["archives"].get("OPTIONS", {}), "location": location}
        storages["archives"] = {**storages["archives"], "OPTIONS": options}
        settings.STORAGES = storages
    return tmp_path / "archives"


@pytest.fixture(scope="session", autouse=True)
def _close_db_pools(django_db_setup, django_db_blocker):
    """PostgreSQL pools keep connections open; close them before the test database is dropped."""
    yield
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    # Async tests ran their ORM calls on asgiref's shared executor thread; its connections
    # would keep the test database busy and its removal would fail.
    asyncio.run(sync_to_async(connections.close_all)())
    for connection in connections.all(initialized_only=True):
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()
    connections.close_all()


@pytest.fixture(autouse=True)
def _rate_limits(settings):
    """Limits on, at a thousand times their defaults so that tests not about them never meet
    them (tests about them set their own); every test starts with fresh counters."""
    from chat.guards import review, sockets
    from supportbot import ratelimit, security

    settings.RATE_LIMITS_ENABLED = True
    for spec in ratelimit.configured_limits().values():
        setattr(settings, spec.setting, spec.amount * 1000)
    settings.WS_MAX_SOCKETS_PER_SESSION *= 1000
    settings.WS_MAX_SOCKETS_PER_CLIENT *= 1000
    ratelimit.reset_backend()
    sockets.reset()
    security.clear_recent()
    review.invalidate_allowlist()
    yield
    ratelimit.reset_backend()
