"""Oversized request bodies: time to the 413 and the web process's memory, per launcher.

    .venv/bin/python -m bench.body_bench [--runs 3]

Each case runs against a fresh server (``python -m supportbot.server`` and plain ``daphne``):
a declared 1 GiB body and a chunked 512 MiB one, refused by the server's own limit
(``MAX_REQUEST_BODY_BYTES``, 1 MiB). The baseline, measured in the same run, is the server with
that limit raised above the body (what every launcher did before it existed: daphne receives and
queues the whole body, then the application answers 413), on a declared 256 MiB body. Reported:
the median seconds from the request line to the first byte of the answer, the MB the client got
to send before it, and the growth of the server's resident memory (peak and 3 s after).
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.fakes.live_server import LiveServer

MiB = 1 << 20
PIECE = b"x" * 65536


def rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def settled_rss(pid: int) -> int:
    """RSS once it stops moving (the content filter's model loads in the background)."""
    last = -100
    for _ in range(60):
        time.sleep(1)
        now = rss_mb(pid)
        if abs(now - last) <= 2:
            return now
        last = now
    return last


def push(port: int, total: int, *, chunked: bool) -> tuple[float | None, int, str]:
    """Send ``total`` bytes of body until the server answers; (seconds, MB sent, status)."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += (
        b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: %d\r\n\r\n" % total
    )
    piece = b"10000\r\n" + PIECE + b"\r\n" if chunked else PIECE
    started = time.monotonic()
    sock.sendall(head)
    sock.setblocking(False)
    sent, reply, answered, ended = 0, b"", None, not chunked
    while time.monotonic() < started + 300:
        writing = sent < total or not ended
        readable, writable, _ = select.select([sock], [sock] if writing else [], [], 1)
        if readable:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if data and answered is None:
                answered = time.monotonic() - started
            reply += data
            if not data or b"}" in reply:
                break
        if writable:
            try:
                if sent < total:
                    sock.setblocking(True)
                    sock.sendall(piece)
                    sock.setblocking(False)
                    sent += len(PIECE)
                else:
                    sock.sendall(b"0\r\n\r\n")
                    ended = True
            except OSError:
                sock.settimeout(2)
                try:
                    reply += sock.recv(65536)
                    answered = answered or time.monotonic() - started
                except OSError:
                    pass
                break
    sock.close()
    return answered, sent // MiB, reply.split(b"\r\n", 1)[0].decode(errors="replace")


def run_case(
    data: Path, launcher: str, total: int, *, chunked: bool, env: dict[str, str]
) -> dict[str, Any]:
    server = LiveServer(data, launcher=launcher, env=env).start()
    assert server.process is not None
    pid = server.process.pid
    try:
        base = settled_rss(pid)
        peak = [base]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], rss_mb(pid))
                except OSError:
                    return
                time.sleep(0.05)

        threading.Thread(target=sample, daemon=True).start()
        seconds, sent_mb, status = push(server.port, total, chunked=chunked)
        time.sleep(3)
        done.set()
        return {
            "status": status,
            "seconds": seconds,
            "sent_mb": sent_mb,
            "peak_mb": peak[0] - base,
            "after_mb": rss_mb(pid) - base,
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cases = [
        ("baseline: no server limit, 256 MiB declared", 256 * MiB, False, "2147483648"),
        ("1 GiB declared", 1024 * MiB, False, ""),
        ("512 MiB chunked", 512 * MiB, True, ""),
    ]
    data = LiveServer(Path(tempfile.mkdtemp(prefix="body-bench-"))).prepare().var_dir
    raw = []
    print("| launcher | case | time to 413 (s) | MB sent first | RSS peak / after (MB) |")
    print("|---|---|---|---|---|")
    for launcher in ("supportbot.server", "daphne"):
        for name, total, chunked, limit in cases:
            env = {"MAX_REQUEST_BODY_BYTES": limit} if limit else {}
            runs = [
                run_case(data, launcher, total, chunked=chunked, env=env) for _ in range(args.runs)
            ]
            assert all(" 413 " in r["status"] for r in runs), [r["status"] for r in runs]
            seconds = [r["seconds"] for r in runs if r["seconds"] is not None]
            print(
                f"| {launcher} | {name} | {statistics.median(seconds):.2f} "
                f"({min(seconds):.2f} to {max(seconds):.2f}) | "
                f"{statistics.median(r['sent_mb'] for r in runs):.0f} | "
                f"{statistics.median(r['peak_mb'] for r in runs):.0f} / "
                f"{statistics.median(r['after_mb'] for r in runs):.0f} |",
                flush=True,
            )
            raw.append({"launcher": launcher, "case": name, "runs": runs})
    print("\n" + json.dumps(raw))


if __name__ == "__main__":
    main()
