"""The JSON shape of a workflow execution and its steps, as ``/api/workflow/*`` and the
``workflow_progress`` frames show it (API.md)."""

from __future__ import annotations

from typing import Any

from supportbot.errors import ms
from tools.models import WorkflowExecution, WorkflowStep

Status = WorkflowExecution.Status
StepStatus = WorkflowStep.Status


def execution_wire(execution: WorkflowExecution) -> dict[str, Any]:
    """An execution as ``/api/workflow/*`` and ``workflow_progress`` show it (API.md)."""
    rows = list(execution.steps.order_by("index"))
    done = sum(1 for r in rows if r.status == StepStatus.COMPLETED)
    progress = 1.0 if execution.status == Status.COMPLETED else (done / len(rows) if rows else 0)
    body: dict[str, Any] = {
        "executionId": execution.id,
        "workflowType": execution.workflow_type,
        "status": execution.status,
        "progress": round(progress, 4),
        "steps": [
            {
                "id": f"{execution.id}.{row.index}",
                "name": row.name,
                "status": row.status,
                "attempts": row.attempts,
                "executionTime": row.execution_ms,
                **({"result": row.result} if row.result is not None else {}),
                **({"error": row.error} if row.error else {}),
            }
            for row in rows
        ],
        "result": execution.result,
        "metadata": {
            "idempotencyKey": execution.idempotency_key,
            "createdAt": ms(execution.created_at),
            "startedAt": ms(execution.started_at),
            "finishedAt": ms(execution.finished_at),
            "deliveries": execution.deliveries,
        },
    }
    if execution.error:
        body["error"] = execution.error
    return body
