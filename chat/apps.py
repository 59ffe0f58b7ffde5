"""The chat app's start-up: it registers the ``escalation`` workflow and the ``request_human``
tool, makes the staff groups after ``migrate``, and turns the workflows' progress signal into
frames for the session's sockets."""

from __future__ import annotations

from django.apps import AppConfig

from supportbot import metrics


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Conversations"

    def ready(self) -> None:
        # Both import models (the engine those of tools, chat.escalation those of chat through
        # chat.sessions and chat.store), which cannot be imported before the app registry is
        # ready: this module is imported while it is being populated.
        from django.db.models.signals import post_migrate

        from chat.escalation import ESCALATION
        from chat.handoff_groups import ensure_groups
        from chat.handoff_tool import RequestHumanTool
        from chat.llm.chain import built_breaker_states
        from tools.registry import registry
        from tools.workflows.engine import register_workflow, workflow_progress

        register_workflow(ESCALATION)
        if "request_human" not in {tool.name for tool in registry.all()}:
            registry.register(RequestHumanTool())
        # After every app's migrations (the permissions exist by then): the staff groups.
        post_migrate.connect(ensure_groups, sender=self, dispatch_uid="chat.handoff_groups")
        # tools know sessions only by id (DESIGN.md): their progress signal becomes frames here.
        workflow_progress.connect(_progress_to_sockets, dispatch_uid="chat.workflow_progress")
        # Every process's model breakers reach the shared metrics (the dashboard, the alerts).
        metrics.register_breakers(built_breaker_states)


def _progress_to_sockets(
    sender: object, *, session_id: str, body: dict[str, object], **kwargs: object
) -> None:
    # chat.events imports the chat models: not importable at the top of this module, which is
    # loaded before the app registry is ready.
    from chat.events import publish_workflow_progress

    publish_workflow_progress(session_id, body)
