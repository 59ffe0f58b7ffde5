"""A WebSocket frame fuzzer (hypothesis, fixed seed and case count) against a live server.

One socket of a live session gets every generated frame: arbitrary JSON values, frames of the
known types with malformed ``data`` (wrong types, huge integers, NUL, lone surrogates, deep
nesting, unknown keys, another session's id), text that is not JSON, binary frames and frames over
64 KiB. After each one a ``ping`` must still get its ``pong`` on the same socket, every ``error``
frame must have API.md's shape and never be ``INTERNAL_ERROR``, a frame that cannot be right
(not JSON, not an object, binary, too big, unknown type) must get an ``error`` before that pong,
and every well-formed ``chat_message`` must end in an ``ai_response`` or an ``error`` for its
``requestId``. At the end the server's log holds no traceback.

Frames stay under daphne's 1 MiB message limit: past it the socket is closed with 1009 by design
(``supportbot/server.py``), which the consumer's tests cover.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import FuzzTarget

# The first test of a run also waits for the live server (migrations, knowledge base, start-up)
# on two shared cores; every test bounds its own work (fixed case counts, reply timeouts).
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(600)]

MAX_EXAMPLES = 600
REPLY_TIMEOUT = 15.0
TURN_TIMEOUT = 30.0
KNOWN_TYPES = ["chat_message", "typing", "ping", "resume", "voice_input", "handoff_request"]
MAX_FRAME = 64 * 1024

# --- strategies --------------------------------------------------------------------------------

HUGE_INTS = st.sampled_from([2**31, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30)])
NASTY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",  # lone surrogates: sent as JSON escapes, they arrive as such in Python
        "x\udfffy",
        "\ufeff",
        "\u202e",
        "sess_" + "A" * 32,
        "' OR 1=1 --",
        "<script>alert(1)</script>",
        "%s%s%n",
        "NaN",
    ]
)
TEXT = st.text(max_size=80) | NASTY_TEXT
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | HUGE_INTS
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
DATA_KEYS = ["content", "sessionId", "metadata", "isTyping", "lastSeq", "audioData", "format"]
DATA_KEYS += ["duration", "reason", "contactEmail", "stopBot"]


def _deep(depth: int, kind: str) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


@dataclass(frozen=True)
class Frame:
    """One frame to send, and what it is known to be."""

    payload: str | bytes
    kind: str  # what the strategy made it
    must_fail: bool = False  # the consumer can only answer it with an error frame
    turn_request_id: str | None = None  # a well-formed chat_message: a turn's requestId


def _request_id(draw: st.DrawFn, index: int) -> Any:
    """Mostly a good requestId of the frame's own, so that its answers can be told apart."""
    how = draw(st.sampled_from(["own", "own", "own", "none", "pattern", "junk"]))
    if how == "own":
        return f"fz-{index}"
    if how == "pattern":
        return draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True))
    return draw(JSON_VALUES) if how == "junk" else None


@st.composite
def frames(draw: st.DrawFn, session_id: str, other_session_id: str, index: int) -> Frame:
    kind = draw(
        st.sampled_from(
            ["typed", "typed", "typed", "typed", "json", "text", "binary", "oversized", "deep"]
        )
    )
    if kind == "json":
        value = draw(JSON_VALUES)
        readable = isinstance(value, dict) and value.get("type") in KNOWN_TYPES
        return Frame(json.dumps(value), kind, must_fail=not readable)
    if kind == "text":
        text = draw(st.text(max_size=200).filter(lambda t: not t.strip().startswith("{")))
        return Frame(text, kind, must_fail=True)
    if kind == "binary":
        return Frame(draw(st.binary(max_size=2000)), kind, must_fail=True)
    if kind == "oversized":
        size = draw(st.sampled_from([MAX_FRAME + 1, 70_000, 200_000, 900_000]))
        as_json = draw(st.booleans())
        if as_json:  # a frame that would be fine but for its size
            padding = "x" * size
            payload = json.dumps({"type": "ping", "data": {"pad": padding}})
        else:
            unit = draw(st.sampled_from(["a", "\u00e9", "{"]))
            payload = unit * (size // len(unit.encode()))
        return Frame(payload, kind, must_fail=True)
    if kind == "deep":
        depth = draw(st.sampled_from([50, 500, 5_000, 20_000]))
        nest = draw(st.sampled_from(["list", "dict"]))
        if depth <= 500:
            payload = json.dumps({"type": "ping", "data": _deep(depth, nest)})
            return Frame(payload, kind)
        opening, closing = ("[", "]") if nest == "list" else ('{"a":', "}")
        payload = '{"type": "ping", "data": ' + opening * depth + "1" + closing * depth + "}"
        return Frame(payload, kind, must_fail=len(payload) > MAX_FRAME or depth > 900)

    # A frame of a known type (or a near miss), with data good, bad or absurd.
    type_ = draw(st.sampled_from([*KNOWN_TYPES, *KNOWN_TYPES, "unknown"]))
    if type_ == "unknown":
        type_ = draw(TEXT)
    session = draw(
        st.sampled_from([session_id, session_id, other_session_id, "sess_" + "0" * 32]) | TEXT
    )
    content = draw(st.sampled_from(["How do I reset my password?", "hi"]) | TEXT | JSON_VALUES)
    by_type: dict[str, dict[str, Any]] = {
        "chat_message": {"content": content, "sessionId": session},
        "typing": {"isTyping": draw(st.booleans() | JSON_VALUES)},
        "resume": {"lastSeq": draw(st.integers(min_value=-5, max_value=50) | HUGE_INTS | SCALARS)},
        "voice_input": {
            "audioData": draw(st.sampled_from(["", "AAAA", "!!not base64!!"]) | TEXT),
            "format": draw(st.sampled_from(["webm", "wav"]) | TEXT),
            "duration": draw(st.sampled_from([1, 0, -1, 30, 31, 10**20, 1.5]) | SCALARS),
            "sessionId": session,
        },
        "handoff_request": {
            "reason": draw(st.sampled_from(["", "my invoice"]) | TEXT | JSON_VALUES),
            "contactEmail": draw(st.sampled_from(["pat@example.com", "nope"]) | TEXT | SCALARS),
            "stopBot": draw(st.booleans() | JSON_VALUES),
        },
    }
    good_data = by_type.get(type_, {})
    how = draw(st.sampled_from(["good", "good", "good", "extra keys", "replaced", "absent"]))
    data: Any = None
    if how == "good":
        data = dict(good_data)
    elif how == "extra keys":
        extra = draw(st.dictionaries(st.sampled_from(DATA_KEYS) | TEXT, JSON_VALUES, max_size=4))
        data = {**good_data, **extra}
    elif how == "replaced":
        data = draw(JSON_VALUES)
    frame: dict[str, Any] = {"type": type_}
    if data is not None:
        frame["data"] = data
    request_id = _request_id(draw, index)
    if request_id is not None:
        frame["requestId"] = request_id
    extras = draw(st.dictionaries(TEXT, JSON_VALUES, max_size=2) | st.just({}))
    for key, value in extras.items():
        frame.setdefault(key, value)
    well_formed_turn = (
        type_ == "chat_message"
        and isinstance(frame.get("data"), dict)
        and frame["data"].get("sessionId") == session_id
        and isinstance(frame["data"].get("content"), str)
        and request_id == f"fz-{index}"
    )
    return Frame(
        json.dumps(frame),
        "typed",
        must_fail=type_ not in KNOWN_TYPES,
        turn_request_id=request_id if well_formed_turn else None,
    )


# --- the socket --------------------------------------------------------------------------------


@dataclass
class Probe:
    """The fuzzed socket: sends a frame, then pings, and checks what comes back."""

    ws: websockets.ClientConnection
    pending_turns: set[str] = field(default_factory=set)
    turn_payloads: dict[str, str] = field(default_factory=dict)
    seen: Counter[str] = field(default_factory=Counter)
    pings: int = 0

    def check(self, frame: dict[str, Any]) -> None:
        assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
        assert isinstance(frame.get("timestamp"), int), frame
        self.seen[frame["type"]] += 1
        if frame["type"] == "error":
            data = frame["data"]
            assert isinstance(data["code"], str) and isinstance(data["message"], str), frame
            assert isinstance(data["retryable"], bool), frame
            assert data["code"] != "INTERNAL_ERROR", frame
            self.seen[f"error {data['code']}"] += 1
        request_id = frame.get("requestId")
        if frame["type"] in ("ai_response", "error") and request_id in self.pending_turns:
            self.pending_turns.discard(request_id)

    async def receive(self) -> dict[str, Any]:
        async with asyncio.timeout(REPLY_TIMEOUT):
            raw = await self.ws.recv()
        assert isinstance(raw, str), raw
        frame = json.loads(raw)
        self.check(frame)
        return dict(frame)

    async def send_and_ping(self, fuzzed: Frame) -> list[dict[str, Any]]:
        """Send the fuzzed frame and a ping; return what arrived before that ping's pong."""
        if fuzzed.turn_request_id:
            self.pending_turns.add(fuzzed.turn_request_id)
            self.turn_payloads[fuzzed.turn_request_id] = str(fuzzed.payload)
        await self.ws.send(fuzzed.payload)
        self.pings += 1
        probe_id = f"probe-{self.pings}"
        await self.ws.send(json.dumps({"type": "ping", "requestId": probe_id}))
        before: list[dict[str, Any]] = []
        while True:
            frame = await self.receive()
            if frame["type"] == "pong" and frame.get("requestId") == probe_id:
                return before
            before.append(frame)

    async def finish_turns(self) -> None:
        try:
            async with asyncio.timeout(TURN_TIMEOUT):
                while self.pending_turns:
                    raw = await self.ws.recv()
                    assert isinstance(raw, str)
                    self.check(json.loads(raw))
        except TimeoutError:
            unanswered = {rid: self.turn_payloads[rid][:300] for rid in self.pending_turns}
            raise AssertionError(f"turns without an answer: {unanswered}") from None


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


async def _connect(target: FuzzTarget, session_id: str) -> websockets.ClientConnection:
    ws = await websockets.connect(
        f"{target.server.ws_url}?sessionId={session_id}",
        origin=websockets.Origin(target.server.base_url),
        max_size=2**22,
    )
    hello = json.loads(await ws.recv())
    assert hello["type"] == "connection_established", hello
    return ws


def test_socket_survives_every_frame(
    fuzz_target: FuzzTarget, loop: asyncio.AbstractEventLoop
) -> None:
    log_start = fuzz_target.log_offset()
    session_id = fuzz_target.server.create_session()
    other_session_id = fuzz_target.server.create_session()
    probe = Probe(loop.run_until_complete(_connect(fuzz_target, session_id)))
    kinds: Counter[str] = Counter()
    counter = iter(range(10**9))

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # a socket has state: no shrinking, no replay
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        index = next(counter)
        fuzzed = data.draw(frames(session_id, other_session_id, index), label="frame")
        kinds[fuzzed.kind + (" turn" if fuzzed.turn_request_id else "")] += 1
        before = loop.run_until_complete(probe.send_and_ping(fuzzed))
        if fuzzed.must_fail:
            assert any(frame["type"] == "error" for frame in before), (fuzzed.payload[:300], before)

    try:
        run()
        loop.run_until_complete(probe.finish_turns())
    finally:
        loop.run_until_complete(probe.ws.close())
    print(f"\nframes sent: {dict(kinds)}\nframes received: {dict(probe.seen)}")
    assert probe.seen["ai_response"] >= 1  # some turns ran through to the model and back
    log = fuzz_target.log_since(log_start)
    assert "Traceback" not in log, log[-4000:]


SESSION_IDS = (
    st.text(max_size=60)
    | NASTY_TEXT
    | st.from_regex(r"sess_[A-Za-z0-9_-]{0,40}", fullmatch=True)
    | st.sampled_from(["sess_" + "A" * 32, "sess_" + "\x00" * 32, "%00", "%ZZ", "&watch=1"])
)


def test_connecting_with_any_session_id_is_refused_cleanly(
    fuzz_target: FuzzTarget, loop: asyncio.AbstractEventLoop
) -> None:
    """A socket opened with a made-up sessionId gets ``INVALID_SESSION`` and close code 4004."""
    from urllib.parse import quote

    log_start = fuzz_target.log_offset()

    async def attempt(session_id: str) -> tuple[list[dict[str, Any]], int | None]:
        encoded = quote(session_id.encode("utf-8", "surrogatepass"), safe="")
        async with websockets.connect(
            f"{fuzz_target.server.ws_url}?sessionId={encoded}",
            origin=websockets.Origin(fuzz_target.server.base_url),
        ) as ws:
            received: list[dict[str, Any]] = []
            async with asyncio.timeout(REPLY_TIMEOUT):
                try:
                    async for raw in ws:
                        assert isinstance(raw, str)
                        received.append(json.loads(raw))
                except websockets.ConnectionClosed:
                    pass
            return received, ws.close_code

    @settings(
        max_examples=60,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(session_id=SESSION_IDS)
    def run(session_id: str) -> None:
        received, close_code = loop.run_until_complete(attempt(session_id))
        assert close_code == 4004, (session_id, close_code, received)
        assert [frame["type"] for frame in received] == ["error"], (session_id, received)
        assert received[0]["data"]["code"] == "INVALID_SESSION", received

    run()
    log = fuzz_target.log_since(log_start)
    assert "Traceback" not in log, log[-4000:]
