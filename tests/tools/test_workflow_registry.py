"""The registry of workflow types: it validates on register, names a missing type, and a type
registered for a test runs like the built-in ones and is gone after its block."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from chat.sessions import session_create
from tools.workflows.engine import (
    Step,
    StepContext,
    Workflow,
    WorkflowInvalid,
    WorkflowNotFound,
    WorkflowRegistry,
    workflow_submit,
    workflow_types,
)


class EchoParameters(BaseModel):
    text: str = Field(min_length=1, max_length=20)


def _echo(ctx: StepContext) -> dict[str, Any]:
    return {"echo": ctx.parameters["text"]}


ECHO = Workflow("test_echo", EchoParameters, lambda p: [Step("echo", _echo)])


def test_the_three_types_are_registered_at_start() -> None:
    assert workflow_types.names() == ["complex_query", "escalation", "tool_chain"]


@pytest.mark.django_db(transaction=True)
def test_a_type_registered_for_a_test_runs_and_is_gone_after_its_block() -> None:
    session = session_create()
    with workflow_types.register_temporarily(ECHO):
        execution, created = workflow_submit(
            workflow_type="test_echo", session_id=session.id, parameters={"text": "hello"}
        )
    execution.refresh_from_db()
    assert created and (execution.status, execution.result) == ("completed", {"echo": "hello"})
    with pytest.raises(WorkflowInvalid) as refused:
        workflow_submit(workflow_type="test_echo", session_id=session.id, parameters={})
    assert refused.value.message == (
        "workflowType must be one of complex_query, escalation, tool_chain."
    )


# The mistakes under test (typed Any so that mypy lets them through to the registry).
NOT_A_MODEL: Any = dict
NOT_CALLABLE: Any = "steps"


@pytest.mark.parametrize(
    ("workflow", "message"),
    [
        (Workflow("Test-Echo", EchoParameters, ECHO.steps), "is not 1-32 lower-case letters"),
        (Workflow("x" * 33, EchoParameters, ECHO.steps), "is not 1-32 lower-case letters"),
        (Workflow("test_echo", NOT_A_MODEL, ECHO.steps), "parameters must be a pydantic model"),
        (Workflow("test_echo", EchoParameters, NOT_CALLABLE), "must be callables"),
        (Workflow("tool_chain", EchoParameters, ECHO.steps), "a workflow type named 'tool_chain'"),
    ],
)
def test_a_malformed_or_taken_type_is_refused_on_register(workflow: Workflow, message: str) -> None:
    registry = WorkflowRegistry()
    registry.register(Workflow("tool_chain", EchoParameters, ECHO.steps))
    with pytest.raises(ValueError, match=message):
        registry.register(workflow)
    assert registry.names() == ["tool_chain"]


def test_a_missing_type_is_a_named_error() -> None:
    with pytest.raises(WorkflowNotFound) as missing:
        WorkflowRegistry().get("nope")
    assert str(missing.value) == "no workflow type named 'nope'"
