"""The fault suite: real processes (daphne, a Celery worker, Redis, the fake model, S3) are
killed, stopped and stalled while traffic runs, and each test states its figures.

Every test here is marked ``faults``; CI runs them once, in its PostgreSQL + Redis pass. A test
records what it measured with ``figure(name, value)``; the run ends with a table of them.

Services of the suite's own, so that a test may stop them:

- ``redis_process`` (per module): a ``RedisProcess``, a redis-server on a spare port without
  persistence; ``stop()`` (SIGKILL) and ``start()`` again on the same port, empty.
- ``fault_database`` (per module): a PostgreSQL database of its own,
  ``<DATABASE_URL name>_<module>``, copied from one migrated with the starter knowledge base
  once per run; dropped afterwards.
- ``live_env(...)``: a ``LiveServer`` environment on those, with generous rate limits;
  ``kill_server(server)`` SIGKILLs it (``server.start()`` restarts it on the same port).

Without PostgreSQL (DATABASE_URL) or a redis-server binary the tests skip, or fail under
``REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.fakes.live_server import LiveServer

_FIGURES: list[tuple[str, str, Any]] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str, Any], None]:
    """``figure("messages acknowledged / stored once", "40 / 40")``: shown at the end of the run."""

    def record(name: str, value: Any) -> None:
        _FIGURES.append((request.node.name, name, value))
        request.node.user_properties.append((name, value))

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fault figures")
    for test, name, value in _FIGURES:
        terminalreporter.write_line(f"{test}: {name}: {value}")


# --- services the suite runs itself --------------------------------------------------------------

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

# Limits far above anything a fault test sends, so that only the faults shape the traffic (the
# limits still run, and still meet a stopped Redis).
GENEROUS_LIMITS = {
    "RATE_LIMIT_SESSION_REQUESTS_PER_MINUTE": "100000",
    "RATE_LIMIT_SESSION_BURST": "100000",
    "RATE_LIMIT_SESSION_TOKENS_PER_HOUR": "100000000",
    "RATE_LIMIT_SESSION_WS_MESSAGES_PER_MINUTE": "100000",
    "RATE_LIMIT_IP_CONCURRENT_SESSIONS": "100000",
    "RATE_LIMIT_IP_SESSION_CREATIONS_PER_HOUR": "100000",
    "RATE_LIMIT_IP_API_REQUESTS_PER_MINUTE": "100000",
    "RATE_LIMIT_IP_TOKENS_PER_HOUR": "100000000",
}


def require_service(available: bool, reason: str) -> None:
    """Skip without the service, or fail when the run says services are required."""
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A redis-server of the suite's own on a spare port, without persistence, so a test can stop
    it and start it again on the same port (it comes back empty, as after a crash)."""

    def __init__(self, directory: Path, *, port: int = 0) -> None:
        self.directory = directory
        self.port = port or spare_port()
        self.log_path = directory / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> RedisProcess:
        assert not self.running, "already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        options = {
            "--port": str(self.port),
            "--bind": "127.0.0.1",
            "--save": "",
            "--appendonly": "no",
            "--dir": str(self.directory),
            "--logfile": str(self.log_path),
        }
        self.process = subprocess.Popen(
            [REDIS_SERVER, *(part for pair in options.items() for part in pair)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_tail()}")
            if self.ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {timeout} s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop it now (SIGKILL: no goodbye to its clients, as when the host goes away)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(10)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def postgres_url() -> str:
    """The run's DATABASE_URL when it is PostgreSQL; skips (or fails) otherwise."""
    url = os.environ.get("DATABASE_URL", "")
    require_service(url.startswith("postgres"), "the fault suite needs DATABASE_URL on PostgreSQL")
    return url


@contextlib.contextmanager
def pg_database(suffix: str, *, template: str | None = None) -> Iterator[str]:
    """A fresh PostgreSQL database named after the run's (``<name>_<suffix>``), empty or a copy
    of ``template``; dropped afterwards, even with connections still open."""
    import psycopg
    from psycopg import sql

    base = urlparse(postgres_url())
    name = database_name(suffix)
    admin = base._replace(path="/postgres").geturl()
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(drop)
        connection.execute(create)
    try:
        yield base._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(drop)


def database_name(suffix: str) -> str:
    return f"{urlparse(postgres_url()).path.lstrip('/')}_{suffix}"[:63]


@pytest.fixture(scope="session")
def _prepared_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated and holding the starter knowledge base, made once per run: each
    module's database is a copy (migrating takes seconds; copying, milliseconds)."""
    with pg_database("template") as url:
        LiveServer(tmp_path_factory.mktemp("template"), env={"DATABASE_URL": url}).prepare()
        yield database_name("template")


@contextlib.contextmanager
def running_server(
    tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]
) -> Iterator[LiveServer]:
    """A live server with ``env`` (from ``live_env``) on an already prepared database, SIGKILLed
    afterwards: nothing to see in its shutdown, and its database is dropped anyway."""
    live = LiveServer(tmp_path_factory.mktemp("daphne"), env=env)
    try:
        yield live.start()
    finally:
        kill_server(live)


def kill_server(server: LiveServer) -> None:
    """SIGKILL a live server's process group: no shutdown grace, nothing flushed."""
    process, server.process = server.process, None
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


@pytest.fixture(scope="module")
def fault_database(request: pytest.FixtureRequest, _prepared_template: str) -> Iterator[str]:
    """The module's own PostgreSQL database (``<DATABASE_URL name>_<module>``), migrated and
    holding the starter knowledge base: a live server on it needs no ``prepare()``."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with pg_database(module, template=_prepared_template) as url:
        yield url


@pytest.fixture(scope="module")
def redis_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """The module's own redis-server (never the machine's): tests may stop and restart it."""
    require_service(Path(REDIS_SERVER).exists(), "no redis-server binary")
    server = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


def live_env(
    *, database_url: str, redis_url: str, model_url: str | None = None, **overrides: str
) -> dict[str, str]:
    """A live server's environment on the given services, with generous limits."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "INFO",
        **GENEROUS_LIMITS,
    }
    if model_url is not None:
        env.update({"LLM_BASE_URL": model_url, "LLM_MODEL": "fake-model", "LLM_API_KEY": "k"})
    env.update(overrides)
    return env
