"""Fuzzing fixtures: one real server (daphne) on PostgreSQL for the fuzz tests, as in production
(DEBUG off) but with rate limits off so that refusals do not hide the handlers, and the fake
model so that turns are fast. It runs until the last test of this package is done.

The server gets a database of its own, created here next to the run's ``DATABASE_URL`` (named
after it with ``_fuzzlive``) and dropped afterwards, so it never meets pytest-django's test
database. Without PostgreSQL the fuzz tests skip; under ``REQUIRE_SERVICES=1`` they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply


@dataclass
class FuzzTarget:
    """The live server under fuzzing, and where its log stood when a test began."""

    server: LiveServer
    model: FakeOpenAIServer

    def log_offset(self) -> int:
        try:
            return self.server.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        with self.server.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")


def _postgres_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        if REQUIRE_SERVICES:
            pytest.fail("fuzzing needs DATABASE_URL on PostgreSQL")
        pytest.skip("fuzzing runs against PostgreSQL (DATABASE_URL not set to postgres://)")
    return url


def _on_server(url: str, statement: str, database: str) -> None:
    """Run ``statement`` (``{}`` stands for the database's name) on the maintenance database."""
    import psycopg
    from psycopg import sql

    admin = urlunparse(urlparse(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(sql.SQL(statement).format(sql.Identifier(database)))


@pytest.fixture(scope="package")
def fuzz_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the live server, dropped when the fuzz tests are done."""
    url = _postgres_url()
    parsed = urlparse(url)
    name = f"{parsed.path.lstrip('/') or 'supportbot'}_fuzzlive"
    _on_server(url, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name)
    _on_server(url, "CREATE DATABASE {}", name)
    try:
        yield urlunparse(parsed._replace(path=f"/{name}"))
    finally:
        _on_server(url, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name)


@pytest.fixture(scope="package")
def fuzz_target(
    tmp_path_factory: pytest.TempPathFactory, fuzz_database_url: str
) -> Iterator[FuzzTarget]:
    """supportbot in a daphne process as in production (DEBUG off), on the fuzz database."""
    with FakeOpenAIServer() as model:
        model.set_default(Reply("Thanks, here is what I found."))
        env = {
            "DATABASE_URL": fuzz_database_url,
            "DEBUG": "false",
            "SECRET_KEY": "fuzzing-secret-key-not-for-production-0123456789",
            "RATE_LIMITS_ENABLED": "false",
            "LLM_BASE_URL": model.base_url,
            "LLM_MODEL": "fake-model",
            "LLM_API_KEY": "test-key",
            "LLM_MAX_RETRIES": "0",
            # The server's own log is what the fuzzers read for tracebacks.
            "LOG_LEVEL": "WARNING",
        }
        if os.environ.get("REDIS_URL"):
            env["REDIS_URL"] = os.environ["REDIS_URL"]
        var_dir: Path = tmp_path_factory.mktemp("fuzz-live")
        server = LiveServer(var_dir, env=env).prepare()
        try:
            # Generous: two cores shared with the rest of the run, and DEBUG off loads models.
            server.start(timeout=120)
            yield FuzzTarget(server=server, model=model)
        finally:
            server.close()
