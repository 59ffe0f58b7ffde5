"""supportbot as a real server process (``python -m supportbot.server``, i.e. daphne) on
127.0.0.1, for tests that need sockets across processes or a browser.

    server = LiveServer(var_dir, env={"LLM_BASE_URL": fake.base_url})
    server.prepare()        # migrate + starter knowledge base, once per data directory
    server.start()          # waits until /health answers
    server.stop(); server.start()   # same port: a restart
    server.close()

Each server has its own data directory (its SQLite database lives there), so several servers
can share one database by sharing the directory. Output goes to ``<var_dir>/daphne-<port>.log``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Services the test run uses are passed on only when asked: a live server is the embedded
# default unless the test says otherwise.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "TIKTOKEN_CACHE_DIR")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    def __init__(
        self,
        var_dir: Path,
        *,
        env: dict[str, str] | None = None,
        port: int = 0,
        launcher: str = "supportbot.server",  # or "daphne": the plain command of DESIGN.md
    ) -> None:
        self.var_dir = var_dir
        self.launcher = launcher
        self.port = port or free_port()
        self.env = {key: os.environ[key] for key in PASSED_THROUGH if key in os.environ}
        self.env.update(
            {
                "VAR_DIR": str(var_dir),
                "DJANGO_SETTINGS_MODULE": "supportbot.settings",
                "CELERY_TASK_ALWAYS_EAGER": "true",
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
                "OPENAI_API_KEY": "",
            }
        )
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = var_dir / f"daphne-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def prepare(self) -> LiveServer:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--noinput")
        self.manage("loadkb")
        return self

    def start(self, timeout: float = 30.0) -> LiveServer:
        assert self.process is None, "already running"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.launcher,
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "supportbot.asgi:application",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2):
                    return self
            except urllib.error.HTTPError:
                return self  # it answers (503 when a component is down is still an answer)
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"daphne did not answer within {timeout} s: {self.log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    close = stop

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def create_session(self) -> str:
        import json

        request = urllib.request.Request(
            f"{self.base_url}/api/session",
            data=b"{}",
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.load(response)["sessionId"])
