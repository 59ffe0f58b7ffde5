"""Run the fake OpenAI-compatible server in its own process; prints its port on the first line."""

from __future__ import annotations

import signal
import threading

from tests.fakes.openai_server import FakeOpenAIServer, Reply


def main() -> None:
    server = FakeOpenAIServer().start()
    print(server.port, flush=True)
    # A zero-latency answer of 20 words streamed one word per chunk.
    server.set_default(Reply(" ".join(["word"] * 20)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
