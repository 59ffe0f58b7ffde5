"""The tools app's start-up: the built-in tools and workflow types are registered, the Celery
tasks loaded, and a saved article queued for embedding."""

from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_save

from supportbot import metrics
from tools.registry import registry


class ToolsConfig(AppConfig):
    name = "tools"
    verbose_name = "Knowledge base and tools"

    def ready(self) -> None:
        # These import the models, which cannot be imported before the app registry is ready:
        # this module is imported while it is being populated.
        from tools import tasks
        from tools.builtin import register_builtin
        from tools.workflows.definitions import COMPLEX_QUERY, TOOL_CHAIN
        from tools.workflows.engine import register_workflow

        register_builtin(registry)
        register_workflow(COMPLEX_QUERY)
        register_workflow(TOOL_CHAIN)
        metrics.register_breakers(_tool_breakers)
        # tools.tasks is loaded in every process, not only in workers: the engine queues its
        # task by name, which runs the registered task (eagerly where Celery is told to).
        post_save.connect(tasks.embed_on_commit, sender="tools.Article", dispatch_uid="tools.embed")


def _tool_breakers() -> list[dict[str, object]]:
    """The tools' breakers, as the shared metrics report them."""
    return [{**snap, "kind": "tool"} for snap in registry.breaker_states()]
