"""Workflows: multi-step jobs run by a Celery worker, every execution and step a database row.

- ``engine``: submitting, running, retrying, compensating and resuming executions; the registry
  of workflow types and the ``workflow_progress`` signal.
- ``definitions``: the types that need only tools, ``complex_query`` and ``tool_chain``
  (``escalation`` needs the conversation and lives in ``chat.escalation``).
- ``wire``: an execution and its steps as JSON (API.md).

The names below are the package's public face for its importers outside ``tools``.
"""

from __future__ import annotations

from tools.workflows.engine import (
    WorkflowInvalid,
    resume_stale_workflows,
    run_execution,
    workflow_submit,
)
from tools.workflows.wire import execution_wire

__all__ = [
    "WorkflowInvalid",
    "execution_wire",
    "resume_stale_workflows",
    "run_execution",
    "workflow_submit",
]
