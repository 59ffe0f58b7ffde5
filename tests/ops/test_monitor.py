"""``manage.py monitor``: live figures in the terminal (rich.live), one frame with ``--once``, a
message in the frame (never a traceback) when Redis or the database is down, and a clean exit on
Ctrl-C.

The figures are read on threads of their own, so the tests use a transactional database.
"""

from __future__ import annotations

import io
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from chat.models import ChatSession, Handoff

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def monitor(*args: str) -> str:
    out = io.StringIO()
    call_command("monitor", *args, stdout=out)
    return out.getvalue()


def figure_rows(output: str) -> dict[str, tuple[str, str]]:
    """The traffic table's rows: figure → (value, note)."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if line.startswith("│") and len(cells) == 3:
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def one_turn() -> str:
    """A session and one message through the real REST API; returns the session id."""
    client = Client()
    created = client.post("/api/session", {"userId": "u-monitor"}, content_type="application/json")
    assert created.status_code == 201
    session_id = created.json()["sessionId"]
    answered = client.post(
        "/api/chat",
        {"message": "How do I reset my password?", "sessionId": session_id},
        content_type="application/json",
    )
    assert answered.status_code == 200 and answered.json()["response"]
    return session_id


def process_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The embedded default in a data directory of its own, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "REQUIRE_SERVICES"}
    }
    return {**env, "VAR_DIR": str(tmp_path / "var"), "LOG_LEVEL": "ERROR", **extra}


def test_once_prints_the_figures_after_a_turn(kb, offline_only, memory_metrics):
    session_id = one_turn()
    Handoff.objects.create(session=ChatSession.objects.get(pk=session_id))  # waiting

    out = monitor("--once", "--window", "5")

    assert "supportbot monitor" in out
    assert "!" not in out  # no source failed
    rows = figure_rows(out)
    assert rows["turns / min"] == ("0.2", "1 turns")  # one turn over five minutes
    p95 = float(rows["turn latency p95"][0].removesuffix(" ms"))
    assert p95 > 0
    assert rows["turn errors"] == ("0", "0 % of turns")
    assert float(rows["requests / min"][0]) >= 0.4  # the session and the message, at least
    assert rows["request errors"][0] == "0 %"
    assert rows["active sessions"][0] == "1"
    assert rows["hand-offs open"][0] == "1"
    assert rows["hand-offs waiting"][0] == "1"
    assert "model breakers" in out


def test_a_dead_redis_is_a_line_in_the_frame(kb, offline_only, settings):
    settings.REDIS_URL = "redis://:redis-pass-not-shown@127.0.0.1:1/0"

    out = monitor("--once")

    assert "! redis redis://***@127.0.0.1:1/0: ConnectionError: Error 111 connecting" in out
    assert "! metrics: the store could not be read" in out
    assert figure_rows(out)["turns / min"][0] == "n/a"  # unknown, not zero
    assert figure_rows(out)["active sessions"][0] == "0"  # the database still answers
    assert "redis-pass-not-shown" not in out


def test_a_dead_database_and_redis_are_lines_in_the_frame_not_a_traceback(tmp_path):
    env = process_env(
        tmp_path,
        DATABASE_URL=f"sqlite:///{tmp_path}/missing/db.sqlite3",  # a folder that does not exist
        REDIS_URL="redis://:redis-pass-not-shown@127.0.0.1:1/0",
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "monitor", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "! database: OperationalError: unable to open database file" in done.stdout
    assert "! redis redis://***@127.0.0.1:1/0: ConnectionError" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert "redis-pass-not-shown" not in done.stdout + done.stderr


@pytest.mark.parametrize("interval", ["0", "abc", "-1", "nan"])
def test_an_interval_that_is_not_a_positive_number_is_refused(interval):
    with pytest.raises(CommandError) as refused:
        monitor("--interval", interval)
    assert str(refused.value) == (
        f"Error: argument --interval: must be a number of seconds above 0, not {interval!r}"
    )


def test_a_window_outside_the_kept_minutes_is_refused():
    with pytest.raises(CommandError, match="argument --window: must be whole minutes from 1"):
        monitor("--window", "0")


def _read_until(fd: int, needle: bytes, seen: bytearray, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if seen.count(needle) >= 2:
            return True
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal's other end closed: the process is gone
                return False
            if not chunk:
                return False
            seen.extend(chunk)
    return False


def test_live_frames_refresh_in_a_terminal_and_ctrl_c_exits_cleanly(tmp_path):
    env = process_env(tmp_path)  # not migrated: the frames say so, and still refresh
    leader, follower = pty.openpty()  # a terminal: rich.live redraws in place
    process = subprocess.Popen(
        [sys.executable, "manage.py", "monitor", "--interval", "0.2"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        # A background job's shell may ignore SIGINT, and the child would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(follower)
    seen = bytearray()
    try:
        refreshed = _read_until(leader, b"supportbot monitor", seen, time.monotonic() + 90)
        assert refreshed, seen.decode(errors="replace")[-2000:]
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
        _read_until(leader, b"\x00never", seen, time.monotonic() + 1)  # drain what is left
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)

    text = seen.decode(errors="replace")
    assert code == 0, text[-2000:]
    assert "turns / min" in text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
