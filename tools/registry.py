"""The tool registry: what the assistant can do, and how one call of a tool runs.

A tool is a documented name (``kb.search``), the function name the model calls it by
(``kb_search``: models accept ``[A-Za-z0-9_-]`` only), a description, a pydantic ``Args`` model
(its JSON schema is exactly what the model sees) and ``async run(args, ctx) -> ToolResult``.

``execute`` runs one call: arguments validated against ``Args`` (a validation error is a result
the model can read and correct, not a crash), the tool's circuit breaker asked, then up to
``TOOL_MAX_ATTEMPTS`` attempts, each under the tool's timeout, with exponential backoff and
jitter between attempts (about 1 s, then 2 s; capped) for transient failures only. The outcome
reports the real number of attempts; the final failure is ``TOOL_EXECUTION_FAILED``. Every
execution is counted per tool in ``supportbot.metrics``.

Tools know nothing of chat: the session is an id in ``ToolContext``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import structlog
from django.conf import settings
from pydantic import BaseModel, ValidationError

from supportbot import metrics
from supportbot.breaker import CircuitBreaker

log = structlog.get_logger("tools.registry")

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
FUNCTION_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]{0,63}$")
MAX_ARGUMENT_CHARS = 16_000  # a model's arguments beyond this are refused, not parsed


@dataclass(frozen=True)
class ToolContext:
    """Who a call is for. ``session_id`` scopes what the tool may see (e.g. only its tickets)."""

    session_id: str | None
    request_id: str | None = None
    client_ip: str = ""


@dataclass(frozen=True)
class ToolResult:
    """What a tool returns: JSON data (the model and the clients see it) and optional citations."""

    data: dict[str, Any]
    citations: tuple[dict[str, str], ...] = ()


class ToolFailure(Exception):
    """A tool could not do its job. Transient failures (``permanent=False``) are retried.

    ``message`` is safe to show to the model and the user; never put secrets or internals in it.
    ``fault``: the tool itself is unwell (counts towards opening its circuit breaker); a permanent
    refusal such as "no such ticket" is an answer, not a fault.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        code: str = "TOOL_EXECUTION_FAILED",
        fault: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.code = code
        self.fault = (not permanent) if fault is None else fault


class ToolNotFound(KeyError):
    """No tool is registered under that name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no tool named {self.name!r}"


class Tool:
    """Base class of a tool; subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str]  # documented name, e.g. "kb.search"
    function_name: ClassVar[str]  # what the model calls, e.g. "kb_search"
    description: ClassVar[str]
    Args: ClassVar[type[BaseModel]]
    timeout_seconds: ClassVar[float] = 10.0
    # Shown to the user while the tool runs (the page's typing indicator).
    progress: ClassVar[str] = "working on it…"

    async def run(self, args: Any, ctx: ToolContext) -> ToolResult:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        """The OpenAI function definition the model is offered."""
        parameters = self.Args.model_json_schema()
        parameters.pop("title", None)
        return {
            "type": "function",
            "function": {
                "name": self.function_name,
                "description": self.description,
                "parameters": parameters,
            },
        }


Status = Literal["success", "failed", "invalid"]


@dataclass
class ToolOutcome:
    """One executed call, as it is stored on the assistant message and sent in ``toolCalls``."""

    call_id: str
    tool: str  # documented name, or what the model asked for when no such tool exists
    arguments: dict[str, Any] | str
    status: Status
    attempts: int
    execution_ms: int
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    citations: tuple[dict[str, str], ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def wire(self) -> dict[str, Any]:
        """The ``toolCalls[]`` entry of REST and WebSocket answers."""
        body: dict[str, Any] = {
            "id": self.call_id,
            "tool": self.tool,
            "arguments": self.arguments,
            "status": self.status,
            "attempts": self.attempts,
            "executionTime": self.execution_ms,
        }
        if self.result is not None:
            body["result"] = self.result
        if self.error is not None:
            body["error"] = self.error
        return body

    def for_model(self) -> str:
        """The ``tool`` message content the model reads next (JSON)."""
        if self.ok:
            return json.dumps(self.result, ensure_ascii=False, default=str)
        return json.dumps({"error": self.error}, ensure_ascii=False)


class ToolRegistry:
    """Tools by documented name and by function name; validates on ``register``."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._by_function: dict[str, Tool] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._schemas: list[dict[str, Any]] | None = None  # built on first use after a change

    def register(self, tool: Tool) -> Tool:
        for attribute in ("name", "function_name", "description", "Args"):
            if not getattr(tool, attribute, None):
                raise ValueError(f"{type(tool).__name__} has no {attribute}")
        if not NAME_RE.match(tool.name):
            raise ValueError(f"tool name {tool.name!r} is not dotted lower-case words")
        if not FUNCTION_NAME_RE.match(tool.function_name):
            raise ValueError(f"function name {tool.function_name!r} is not valid for a model")
        if not (isinstance(tool.Args, type) and issubclass(tool.Args, BaseModel)):
            raise ValueError(f"{tool.name}: Args must be a pydantic model")
        if tool.timeout_seconds <= 0:
            raise ValueError(f"{tool.name}: timeout_seconds must be positive")
        if tool.name in self._tools or tool.function_name in self._by_function:
            raise ValueError(f"a tool named {tool.name!r} / {tool.function_name!r} exists")
        self._tools[tool.name] = tool
        self._by_function[tool.function_name] = tool
        self._schemas = None
        self._breakers[tool.name] = CircuitBreaker(
            tool.name,
            failure_threshold=settings.TOOL_BREAKER_THRESHOLD,
            reset_seconds=settings.TOOL_BREAKER_RESET_SECONDS,
            kind="tool",
        )
        return tool

    def unregister(self, name: str) -> None:
        tool = self.get(name)
        del self._tools[tool.name]
        del self._by_function[tool.function_name]
        del self._breakers[tool.name]
        self._schemas = None

    @contextlib.contextmanager
    def register_temporarily(self, tool: Tool) -> Iterator[Tool]:
        """For tests: the tool is registered inside the block only."""
        self.register(tool)
        try:
            yield tool
        finally:
            self.unregister(tool.name)

    def get(self, name: str) -> Tool:
        """The tool by documented name or function name; ``ToolNotFound`` otherwise."""
        tool = self._tools.get(name) or self._by_function.get(name)
        if tool is None:
            raise ToolNotFound(name)
        return tool

    def all(self) -> list[Tool]:
        return sorted(self._tools.values(), key=lambda tool: tool.name)

    def schemas(self) -> list[dict[str, Any]]:
        """Every tool's function definition, for the model (offered with every turn, so the
        pydantic schemas are generated once, not per request)."""
        if self._schemas is None:
            self._schemas = [tool.schema() for tool in self.all()]
        return self._schemas

    def breaker(self, name: str) -> CircuitBreaker:
        return self._breakers[self.get(name).name]

    def breaker_states(self) -> list[dict[str, Any]]:
        return [self._breakers[tool.name].snapshot() for tool in self.all()]

    async def execute(
        self, *, call_id: str, name: str, arguments: str | dict[str, Any], ctx: ToolContext
    ) -> ToolOutcome:
        """Run one call (see the module docstring); never raises for the tool's failures."""
        started = time.perf_counter()
        checked = self._checked_call(call_id, name, arguments)
        if isinstance(checked, ToolOutcome):
            return checked
        tool, parsed, args = checked
        result, attempts, failure, elapsed = await self._guarded_attempts(tool, args, ctx, started)
        return _finished(call_id, tool, parsed, result, attempts, failure, elapsed)

    def _checked_call(
        self, call_id: str, name: str, arguments: str | dict[str, Any]
    ) -> tuple[Tool, dict[str, Any], BaseModel] | ToolOutcome:
        """The tool, its arguments and their validated model, or the ``invalid`` outcome."""
        try:
            tool = self.get(name)
        except ToolNotFound:
            return _invalid(call_id, name, arguments, f"There is no tool named {name!r}.")
        parsed = _parse_arguments(arguments)
        if isinstance(parsed, str):
            return _invalid(call_id, tool.name, arguments, parsed)
        try:
            args = tool.Args.model_validate(parsed)
        except ValidationError as exc:
            return _invalid(call_id, tool.name, parsed, _validation_text(exc))
        return tool, parsed, args

    async def _guarded_attempts(
        self, tool: Tool, args: BaseModel, ctx: ToolContext, started: float
    ) -> tuple[ToolResult | None, int, ToolFailure | None, float]:
        """The attempts behind the tool's circuit breaker, counted in the metrics whatever
        happens; also the milliseconds since ``started``."""
        breaker = self._breakers[tool.name]
        attempts = 0
        failure: ToolFailure | None = None
        result: ToolResult | None = None
        outcome = "ok"
        try:
            if not breaker.allow():
                outcome = "unavailable"  # its breaker is open: not even tried
                failure = ToolFailure(
                    f"{tool.name} is temporarily unavailable; try again later.", permanent=True
                )
            else:
                result, attempts, failure = await self._attempts(tool, args, ctx)
                if failure is not None and failure.fault:
                    breaker.record_failure()
                else:
                    breaker.record_success()
        except BaseException:
            breaker.release()
            raise
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            if failure is not None and outcome == "ok":
                # A fault of the tool, or a refusal that is an answer ("no such ticket").
                outcome = "failed" if failure.fault else "declined"
            metrics.record_tool_call(
                tool=tool.name, ok=failure is None, latency_ms=elapsed, outcome=outcome
            )
        return result, attempts, failure, elapsed

    async def _attempts(
        self, tool: Tool, args: BaseModel, ctx: ToolContext
    ) -> tuple[ToolResult | None, int, ToolFailure | None]:
        max_attempts = settings.TOOL_MAX_ATTEMPTS
        failure: ToolFailure | None = None
        for attempt in range(1, max_attempts + 1):
            try:
                async with asyncio.timeout(tool.timeout_seconds):
                    return await tool.run(args, ctx), attempt, None
            except ToolFailure as exc:
                failure = exc
            except TimeoutError:
                failure = ToolFailure(
                    f"{tool.name} did not answer within {tool.timeout_seconds:g} s.",
                    permanent=False,
                )
            except (OSError, ConnectionError) as exc:
                failure = ToolFailure(
                    f"{tool.name} could not reach a service it needs.", permanent=False
                )
                log.warning("tool.attempt_error", tool=tool.name, error=type(exc).__name__)
            except Exception:
                # A bug in the tool: the model gets a plain failure, the log gets the trace.
                log.exception("tool.crashed", tool=tool.name)
                failure = ToolFailure(
                    f"{tool.name} failed unexpectedly.", permanent=True, fault=True
                )
            if failure.permanent or attempt == max_attempts:
                return None, attempt, failure
            await asyncio.sleep(retry_delay(attempt))
        return None, max_attempts, failure


def retry_delay(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1``: base * 2**(attempt - 1), 20 % jitter, capped."""
    base = settings.TOOL_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
    return min(base * random.uniform(0.8, 1.2), settings.TOOL_RETRY_MAX_SECONDS)


def _parse_arguments(arguments: str | dict[str, Any]) -> dict[str, Any] | str:
    """The call's arguments as an object, or the reason they are not one."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        return "Arguments must be a JSON object."
    if len(arguments) > MAX_ARGUMENT_CHARS:
        return f"Arguments are longer than {MAX_ARGUMENT_CHARS} characters."
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        return "Arguments are not valid JSON."
    if not isinstance(value, dict):
        return "Arguments must be a JSON object."
    return value


def _validation_text(exc: ValidationError) -> str:
    """Pydantic's errors as one line the model can act on (no input values echoed back)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:10]:
        where = ".".join(str(part) for part in error.get("loc", ())) or "arguments"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "Invalid arguments: " + "; ".join(parts)


def _finished(
    call_id: str,
    tool: Tool,
    arguments: dict[str, Any],
    result: ToolResult | None,
    attempts: int,
    failure: ToolFailure | None,
    elapsed: float,
) -> ToolOutcome:
    """The outcome of a call that ran (or that its breaker refused), logged."""
    if failure is not None:
        log.warning(
            "tool.failed",
            tool=tool.name,
            attempts=attempts,
            code=failure.code,
            permanent=failure.permanent,
        )
        return ToolOutcome(
            call_id=call_id,
            tool=tool.name,
            arguments=arguments,
            status="failed",
            attempts=attempts,
            execution_ms=round(elapsed),
            error={"code": failure.code, "message": failure.message},
        )
    assert result is not None
    log.info("tool.executed", tool=tool.name, attempts=attempts, latency_ms=round(elapsed))
    return ToolOutcome(
        call_id=call_id,
        tool=tool.name,
        arguments=arguments,
        status="success",
        attempts=attempts,
        execution_ms=round(elapsed),
        result=result.data,
        citations=result.citations,
    )


def _invalid(call_id: str, tool: str, arguments: dict[str, Any] | str, message: str) -> ToolOutcome:
    return ToolOutcome(
        call_id=call_id,
        tool=tool[:64],
        arguments=arguments if isinstance(arguments, dict) else str(arguments)[:2000],
        status="invalid",
        attempts=0,
        execution_ms=0,
        error={"code": "INVALID_FIELD_VALUE", "message": message},
    )


registry = ToolRegistry()
