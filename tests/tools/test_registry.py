"""The tool registry: validation on register, argument checking, retries with the real attempt
count, timeouts, the circuit breaker and per-tool metrics. The tools here are small real tools
registered for the test (``register_temporarily``); nothing of ours is patched."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel, Field

from supportbot import metrics
from tools.registry import (
    Tool,
    ToolContext,
    ToolFailure,
    ToolNotFound,
    ToolRegistry,
    ToolResult,
    registry,
)

CTX = ToolContext(session_id="sess_test", request_id="r1")


class EchoArgs(BaseModel):
    text: str = Field(min_length=1, max_length=20)
    times: int = Field(1, ge=1, le=3)


class Flaky(Tool):
    """Fails transiently ``failures`` times, then echoes; counts its runs."""

    name = "test.flaky"
    function_name = "test_flaky"
    description = "Echo, after some transient failures."
    Args = EchoArgs
    timeout_seconds = 0.5

    def __init__(self, failures: int = 0, *, permanent: bool = False, sleep: float = 0.0):
        self.failures = failures
        self.permanent = permanent
        self.sleep = sleep
        self.runs = 0

    async def run(self, args: EchoArgs, ctx: ToolContext) -> ToolResult:
        self.runs += 1
        if self.sleep:
            await asyncio.sleep(self.sleep)
        if self.runs <= self.failures:
            raise ToolFailure("the backend hiccuped", permanent=self.permanent)
        return ToolResult(data={"echo": args.text * args.times, "session": ctx.session_id})


class Crashing(Flaky):
    name = "test.crashing"
    function_name = "test_crashing"

    async def run(self, args: EchoArgs, ctx: ToolContext) -> ToolResult:
        self.runs += 1
        raise RuntimeError("secret internal detail")


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.TOOL_RETRY_BASE_SECONDS = 0.01
    settings.TOOL_RETRY_MAX_SECONDS = 0.05
    settings.TOOL_MAX_ATTEMPTS = 3
    settings.TOOL_BREAKER_THRESHOLD = 2
    settings.TOOL_BREAKER_RESET_SECONDS = 60
    metrics.reset()


def error_text(outcome: Any) -> str:
    assert outcome.error is not None
    return str(outcome.error["message"])


async def run(tool: Tool, arguments: Any) -> Any:
    with registry.register_temporarily(tool):
        return await registry.execute(
            call_id="call_1", name=tool.function_name, arguments=arguments, ctx=CTX
        )


# --- registering ---------------------------------------------------------------------------------


def test_builtin_tools_are_registered_with_model_facing_function_names() -> None:
    names = {(tool.name, tool.function_name) for tool in registry.all()}
    assert {
        ("kb.search", "kb_search"),
        ("create_ticket", "create_ticket"),
        ("fetch_status", "fetch_status"),
    } <= names
    assert registry.get("kb.search") is registry.get("kb_search")
    schema = registry.get("kb_search").schema()
    assert schema["function"]["name"] == "kb_search"
    assert schema["function"]["parameters"]["required"] == ["query"]
    assert schema["function"]["parameters"]["properties"]["maxResults"]["maximum"] == 20


def test_register_validates_and_refuses_duplicates() -> None:
    fresh = ToolRegistry()
    fresh.register(Flaky())
    with pytest.raises(ValueError, match="exists"):
        fresh.register(Flaky())

    class BadName(Flaky):
        name = "Bad Name"

    class BadFunction(Flaky):
        name = "test.ok"
        function_name = "has.dot"

    class NotPydantic(Flaky):
        name = "test.other"
        function_name = "test_other"
        Args = dict  # type: ignore[assignment]  # the point: not a pydantic model

    for bad in (BadName(), BadFunction(), NotPydantic()):
        with pytest.raises(ValueError):
            fresh.register(bad)


def test_missing_tool_is_a_named_error_and_temporary_tools_go_away() -> None:
    with pytest.raises(ToolNotFound, match="no tool named 'nope'"):
        registry.get("nope")
    with registry.register_temporarily(Flaky()):
        assert registry.get("test_flaky").name == "test.flaky"
    with pytest.raises(ToolNotFound):
        registry.get("test.flaky")


# --- executing ------------------------------------------------------------------------------------


async def test_a_call_runs_once_and_reports_its_result_and_time() -> None:
    tool = Flaky()
    outcome = await run(tool, json.dumps({"text": "ab", "times": 2}))
    assert (outcome.status, outcome.attempts, tool.runs) == ("success", 1, 1)
    assert outcome.result == {"echo": "abab", "session": "sess_test"}
    wire = outcome.wire()
    assert wire["tool"] == "test.flaky" and wire["id"] == "call_1"
    assert isinstance(wire["executionTime"], int) and wire["executionTime"] >= 0
    assert json.loads(outcome.for_model()) == {"echo": "abab", "session": "sess_test"}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"times": 2}), "text: Field required"),
        (json.dumps({"text": "x", "times": 9}), "times: Input should be less than or equal to 3"),
        (json.dumps({"text": "x" * 30}), "text: String should have at most 20 characters"),
        ("x" * 20_000, "longer than"),
    ],
)
async def test_invalid_arguments_go_back_to_the_model_and_nothing_runs(
    arguments: str, expected: str
) -> None:
    tool = Flaky()
    outcome = await run(tool, arguments)
    assert outcome.status == "invalid" and outcome.attempts == 0 and tool.runs == 0
    assert expected in error_text(outcome)
    assert json.loads(outcome.for_model())["error"]["code"] == "INVALID_FIELD_VALUE"


async def test_an_unknown_tool_is_reported_to_the_model() -> None:
    outcome = await registry.execute(call_id="c", name="delete_everything", arguments="{}", ctx=CTX)
    assert outcome.status == "invalid"
    assert "no tool named 'delete_everything'" in error_text(outcome)


async def test_transient_failures_are_retried_with_the_real_attempt_count() -> None:
    tool = Flaky(failures=2)
    outcome = await run(tool, {"text": "hi"})
    assert (outcome.status, outcome.attempts, tool.runs) == ("success", 3, 3)


async def test_the_last_failure_is_tool_execution_failed_after_three_attempts() -> None:
    tool = Flaky(failures=5)
    outcome = await run(tool, {"text": "hi"})
    assert (outcome.status, outcome.attempts, tool.runs) == ("failed", 3, 3)
    assert outcome.error == {"code": "TOOL_EXECUTION_FAILED", "message": "the backend hiccuped"}


async def test_a_permanent_failure_is_not_retried() -> None:
    tool = Flaky(failures=5, permanent=True)
    outcome = await run(tool, {"text": "hi"})
    assert (outcome.status, outcome.attempts, tool.runs) == ("failed", 1, 1)


async def test_each_attempt_has_the_tools_timeout() -> None:
    tool = Flaky(sleep=2.0)  # timeout_seconds is 0.5
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await run(tool, {"text": "hi"})
    assert (outcome.status, outcome.attempts) == ("failed", 3)
    assert "did not answer within 0.5 s" in error_text(outcome)
    assert loop.time() - started < 3.0


async def test_a_crashing_tool_fails_plainly_without_leaking_its_exception() -> None:
    tool = Crashing()
    outcome = await run(tool, {"text": "hi"})
    assert (outcome.status, outcome.attempts, tool.runs) == ("failed", 1, 1)
    assert "secret" not in outcome.for_model()


async def test_the_breaker_opens_after_consecutive_faults_and_then_fails_fast() -> None:
    tool = Flaky(failures=100)
    with registry.register_temporarily(tool):
        for _ in range(2):  # threshold 2
            outcome = await registry.execute(
                call_id="c", name="test_flaky", arguments={"text": "x"}, ctx=CTX
            )
            assert outcome.attempts == 3
        runs = tool.runs
        outcome = await registry.execute(
            call_id="c", name="test_flaky", arguments={"text": "x"}, ctx=CTX
        )
        assert (outcome.status, outcome.attempts, tool.runs) == ("failed", 0, runs)
        assert "temporarily unavailable" in error_text(outcome)
        assert registry.breaker("test.flaky").state == "open"


async def test_refusals_do_not_open_the_breaker() -> None:
    tool = Flaky(failures=100, permanent=True)
    with registry.register_temporarily(tool):
        for _ in range(4):
            outcome = await registry.execute(
                call_id="c", name="test_flaky", arguments={"text": "x"}, ctx=CTX
            )
            assert outcome.attempts == 1
        assert registry.breaker("test.flaky").state == "closed"


@pytest.mark.django_db(transaction=True)  # the metrics are in the database without Redis
async def test_every_execution_is_counted_per_tool() -> None:
    await run(Flaky(), {"text": "hi"})
    await run(Flaky(failures=5, permanent=True), {"text": "hi"})
    tools = metrics.snapshot()["tools"]
    assert tools["test.flaky"]["count"] == 2
    assert tools["test.flaky"]["errors"] == 1
