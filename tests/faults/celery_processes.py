"""A Celery worker and a Celery beat as real processes for the fault suite, and the PostgreSQL
database and Redis database they share with a live server.

    database = PostgresDatabase.create("h_fault2_worker")      # dropped WITH (FORCE) at close()
    worker = CeleryWorker(tmp_path / "worker", env=env).start().wait_ready()
    worker.kill()                  # SIGKILL of the main process only, as a crashed host would
    worker.start().wait_ready()    # the same command again: a restart
    worker.close()                 # SIGKILL of the whole process group (children included)

Each process runs in its own session (process group), so ``close()`` ends whatever it started,
even a child the main process left behind. Output goes to ``<log_dir>/<name>-<n>.log``, one
file per start. Services: ``services()`` skips a test without PostgreSQL and Redis, or fails it
under ``REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from tests.conftest import REQUIRE_SERVICES, reachable

ROOT = Path(__file__).resolve().parents[2]
PASSED_THROUGH = ("PATH", "HOME", "LANG", "TIKTOKEN_CACHE_DIR")
# The settings module of the fault suite's processes: the service's own plus a beat probe.
FAULT_SETTINGS = "tests.faults.fault_settings"


# --- services ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Services:
    database_url: str  # the run's PostgreSQL URL (its server is where the suite's databases go)
    redis_url: str  # the run's Redis URL


def services() -> Services:
    """PostgreSQL (DATABASE_URL) and Redis (REDIS_URL) of the run; skips the test without them,
    or fails it under REQUIRE_SERVICES=1."""
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    problem = ""
    if not database_url.startswith("postgres"):
        problem = "DATABASE_URL is not PostgreSQL"
    elif not redis_url:
        problem = "REDIS_URL is not set"
    elif not reachable(database_url, 5432):
        problem = "PostgreSQL is unreachable"
    elif not reachable(redis_url, 6379):
        problem = "Redis is unreachable"
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 but {problem}")
        pytest.skip(problem)
    return Services(database_url=database_url, redis_url=redis_url)


def redis_db(url: str, number: int) -> str:
    """The same Redis server, database ``number``."""
    return urlunparse(urlparse(url)._replace(path=f"/{number}"))


def flush_redis(url: str) -> None:
    """Empty one Redis database (never the server: other databases belong to others)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


class PostgresDatabase:
    """A database of its own on the run's PostgreSQL server, created empty and migrated by the
    caller; ``close()`` drops it even while killed processes' connections linger."""

    def __init__(self, server_url: str, name: str) -> None:
        self.name = name
        parsed = urlparse(server_url)
        self._admin_url = urlunparse(parsed._replace(path="/postgres"))
        self.url = urlunparse(parsed._replace(path=f"/{name}"))

    @classmethod
    def create(cls, server_url: str, name: str) -> PostgresDatabase:
        database = cls(server_url, name)
        database._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        database._admin(f'CREATE DATABASE "{name}"')
        return database

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self._admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)  # a name in it, not a parameter: no SQL from outside

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Rows of one statement, on a connection of its own (closed at once)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def close(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def base_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a process of the suite: nothing of this shell but PATH and the like."""
    env = {key: os.environ[key] for key in PASSED_THROUGH if key in os.environ}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": FAULT_SETTINGS,
            "VAR_DIR": str(var_dir),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            "OPENAI_API_KEY": "",
        }
    )
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    """``manage.py migrate`` with these settings (the suite's databases start empty)."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


# --- processes ---------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to read its status is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """Every living process below ``pid`` (children, their children, …)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if process_alive(child):
            found.append(child)
        todo.extend(children.get(child, []))
    return found


class CeleryProcess:
    """One Celery command (``celery -A supportbot …``) as a process group of its own."""

    ready_marker = ""  # a log line fragment that says the process is up

    def __init__(self, name: str, args: Sequence[str], *, env: dict[str, str], log_dir: Path):
        self.name = name
        self.args = list(args)
        self.env = env
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = log_dir / f"{name}-0.log"
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> CeleryProcess:
        assert not self.running, f"{self.name} is already running"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "supportbot", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        return self

    def wait_ready(self, timeout: float = 60.0) -> CeleryProcess:
        """Until the log shows ``ready_marker``; fails with the log's tail if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_marker in self.log():
                return self
            if not self.running:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready within {timeout} s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the main process only (its children, if any, are left to themselves)."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(10)

    def close(self) -> None:
        """SIGKILL the whole process group: whatever this start left behind ends too."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def logs(self) -> str:
        """The output of every start, oldest first."""
        parts = []
        for n in range(1, self.starts + 1):
            path = self.log_dir / f"{self.name}-{n}.log"
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


class CeleryWorker(CeleryProcess):
    """``celery -A supportbot worker`` on the threads pool (as ``make run`` starts it)."""

    ready_marker = " ready."

    def __init__(
        self,
        log_dir: Path,
        *,
        env: dict[str, str],
        concurrency: int = 4,
        name: str = "worker",
        extra: Sequence[str] = (),
    ) -> None:
        args = [
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--hostname={name}@%h",
            "--loglevel=INFO",
            *extra,
        ]
        super().__init__(name, args, env=env, log_dir=log_dir)


class CeleryBeat(CeleryProcess):
    """``celery -A supportbot beat``, a process of its own, its schedule file in its VAR_DIR."""

    ready_marker = "beat: Starting"

    def __init__(self, log_dir: Path, *, env: dict[str, str], name: str = "beat") -> None:
        schedule = Path(env["VAR_DIR"]) / "beat-schedule"
        super().__init__(
            name, ["beat", "--loglevel=INFO", f"--schedule={schedule}"], env=env, log_dir=log_dir
        )


def wait_for(condition: Callable[[], object], *, within: float, every: float = 0.1) -> bool:
    """Poll ``condition()`` until true or ``within`` seconds pass; its last answer."""
    deadline = time.monotonic() + within
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
