"""Time to the first rendered token on the chat page: a question sent on the page -> the first
words of the answer in the page's DOM, in Chromium (Playwright, Debian's chromium) against a
real supportbot server (daphne, embedded default) and the fake model of ``bench/ws_bench.py``
(its own process: 200 ms before the first token, then 50 tokens/s).

What the page adds on top of the transport is what this measures: the baseline, in the same
run and against the same server, is a raw WebSocket client (the ``websockets`` sync client, no
browser) timing ``chat_message`` sent -> first ``ai_token`` frame received. The page's figure
includes the browser's WebSocket, JSON parsing, the requestAnimationFrame throttle of
``static/chat/app.js`` (at most one render a frame) and markdown-it + DOMPurify.

Questions alternate page / raw socket, one at a time, each waiting for its whole answer; the
page's clock is ``performance.now()`` from just before the send to a MutationObserver seeing the
answer's first text. Median and p95 over N questions, three runs (``--quick``: one run, 5).

    .venv/bin/python -m bench.first_token_bench [--quick] [--questions N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from bench.rest_bench import percentile, wait_port
from bench.ws_fake_model import FIRST_DELAY, STREAM_MARKER, TOKEN_DELAY
from tests.fakes.live_server import LiveServer

ROOT = Path(__file__).resolve().parent.parent
RUNS, QUESTIONS = 3, 20
TIMEOUT_S = 30.0

# Installed once per page: resolves when the next answer's body first holds text.
FIRST_TEXT_JS = """(question) => new Promise((resolve) => {
    const log = document.getElementById("log");
    const before = log.querySelectorAll("article.from-assistant").length;
    const observer = new MutationObserver(() => {
        const answers = log.querySelectorAll("article.from-assistant");
        if (answers.length > before && answers[answers.length - 1]
                .querySelector(".body").textContent.trim()) {
            observer.disconnect();
            resolve(performance.now() - started);
        }
    });
    observer.observe(log, { childList: true, subtree: true, characterData: true });
    const input = document.getElementById("message");
    input.value = question;
    const started = performance.now();
    document.getElementById("composer").requestSubmit();
})"""
ANSWER_DONE_JS = """(count) => document.querySelectorAll(
    "article.from-assistant:not(.streaming) .answer-actions").length >= count"""


@contextmanager
def stack() -> Iterator[LiveServer]:
    """The fake model (a process of its own) and supportbot on the embedded default."""
    model = subprocess.Popen(
        [sys.executable, "-m", "bench.ws_fake_model"], cwd=ROOT, stdout=subprocess.PIPE
    )
    folder = Path(tempfile.mkdtemp(prefix="supportbot-ttfr-"))
    server: LiveServer | None = None
    try:
        assert model.stdout is not None
        port = int(model.stdout.readline())
        wait_port(port)
        server = LiveServer(
            folder,
            env={
                "DEBUG": "false",
                "SECRET_KEY": "bench-" + "x" * 60,
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "LLM_BASE_URL": f"http://127.0.0.1:{port}/v1",
                "LLM_MODEL": "fake-model",
                "LLM_API_KEY": "x",
                "RATE_LIMITS_ENABLED": "false",
                "MEMORY_SUMMARY_THRESHOLD": "100000",
            },
        ).prepare()
        server.start()
        yield server
    finally:
        if server is not None:
            server.close()
        model.terminate()
        model.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def page_question(page: Page, number: int) -> float:
    """One question on the page: ms from send to the answer's first text in the DOM."""
    question = f"Question {number} {STREAM_MARKER} {uuid.uuid4().hex[:6]}"
    elapsed = float(page.evaluate(FIRST_TEXT_JS, question))
    page.wait_for_function(ANSWER_DONE_JS, arg=number, timeout=TIMEOUT_S * 1000)
    return elapsed


def new_session(server: LiveServer) -> str:
    request = urllib.request.Request(
        f"{server.base_url}/api/session",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return str(json.load(response)["sessionId"])


def socket_question(ws: ClientConnection, session_id: str, number: int) -> float:
    """One question on a raw socket: ms from send to the first ``ai_token`` frame."""
    frame = {
        "type": "chat_message",
        "requestId": f"req_{uuid.uuid4().hex}",
        "data": {"content": f"Question {number} {STREAM_MARKER}", "sessionId": session_id},
        "timestamp": int(time.time() * 1000),
    }
    started = time.perf_counter()
    ws.send(json.dumps(frame))
    first = None
    deadline = started + TIMEOUT_S
    while time.perf_counter() < deadline:
        message = json.loads(ws.recv(timeout=TIMEOUT_S))
        if message.get("type") == "ai_token" and first is None:
            first = (time.perf_counter() - started) * 1000
        elif message.get("type") == "ai_response":
            break
        elif message.get("type") == "error":
            raise RuntimeError(f"the server refused the question: {message}")
    if first is None:
        raise RuntimeError("no ai_token frame before the answer")
    return first


def one_run(server: LiveServer, questions: int) -> tuple[list[float], list[float]]:
    page_ms: list[float] = []
    socket_ms: list[float] = []
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_context(base_url=server.base_url).new_page()
        page.goto("/")
        page.wait_for_selector("#status[data-state=online]", timeout=TIMEOUT_S * 1000)
        session_id = new_session(server)
        with connect(
            f"{server.ws_url}?sessionId={session_id}",
            origin=Origin(server.base_url),
            compression=None,
            proxy=None,
        ) as ws:
            json.loads(ws.recv(timeout=TIMEOUT_S))  # connection_established
            # One unmeasured question each: the first turn pays for imports and connections.
            page_question(page, 1)
            socket_question(ws, session_id, 0)
            for number in range(2, questions + 2):
                page_ms.append(page_question(page, number))
                socket_ms.append(socket_question(ws, session_id, number))
        browser.close()
    return page_ms, socket_ms


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):7.1f} ms   p95 {percentile(values, 95):7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run of 5 questions")
    parser.add_argument("--questions", type=int, default=0, help=f"per run ({QUESTIONS})")
    options = parser.parse_args()
    runs = 1 if options.quick else RUNS
    questions = options.questions or (5 if options.quick else QUESTIONS)
    print(
        f"first rendered token: {runs} run(s) x {questions} questions; fake model "
        f"{FIRST_DELAY * 1000:.0f} ms to its first token, then {1 / TOKEN_DELAY:.0f} tokens/s"
    )
    medians: list[tuple[float, float]] = []
    with stack() as server:
        for run in range(1, runs + 1):
            page_ms, socket_ms = one_run(server, questions)
            medians.append((statistics.median(page_ms), statistics.median(socket_ms)))
            print(f"run {run}: page (first token in the DOM)   {summary(page_ms)}")
            print(f"       raw socket (first ai_token)    {summary(socket_ms)}")
            added = statistics.median(page_ms) - statistics.median(socket_ms)
            print(f"       added by the page (medians)    {added:+7.1f} ms")
    if runs > 1:
        page_median = statistics.median(m[0] for m in medians)
        socket_median = statistics.median(m[1] for m in medians)
        print(
            f"median of runs: page {page_median:.1f} ms, raw socket {socket_median:.1f} ms, "
            f"added {page_median - socket_median:+.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
