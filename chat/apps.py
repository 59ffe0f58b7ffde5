from __future__ import annotations

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Conversations"

    def ready(self) -> None:
        # tools knows sessions only by id (DESIGN.md): chat lends the escalation workflow the
        # conversation, and turns its progress signal into frames for the session's sockets.
        from chat.sessions import conversation_text
        from chat.store import session_mark_escalated
        from tools.workflows import conversation, workflow_progress

        conversation.transcript = conversation_text
        conversation.notify = _notify
        conversation.mark_escalated = lambda session_id, ticket_id: session_mark_escalated(
            session_id=session_id, ticket_id=ticket_id
        )
        conversation.admit_tool = _admit_tool
        workflow_progress.connect(_progress_to_sockets, dispatch_uid="chat.workflow_progress")


def _admit_tool(session_id: str) -> None:
    from supportbot import ratelimit

    ratelimit.hit(("global_tool_executions", ratelimit.GLOBAL), session_id=session_id)


def _notify(session_id: str, text: str) -> None:
    from chat.store import post_system_message

    post_system_message(session_id=session_id, content=text)


def _progress_to_sockets(
    sender: object, *, session_id: str, body: dict[str, object], **kwargs: object
) -> None:
    from chat.events import publish_workflow_progress

    publish_workflow_progress(session_id, body)
