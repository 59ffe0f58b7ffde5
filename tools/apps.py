from __future__ import annotations

import structlog
from django.apps import AppConfig
from django.db import transaction
from django.db.models.signals import post_save


class ToolsConfig(AppConfig):
    name = "tools"
    verbose_name = "Knowledge base and tools"

    def ready(self) -> None:
        from tools.builtin import register_builtin
        from tools.registry import registry

        register_builtin(registry)
        post_save.connect(_embed_on_commit, sender="tools.Article", dispatch_uid="tools.embed")


def _embed_on_commit(sender: object, instance: object, **kwargs: object) -> None:
    """A saved article gets its chunk vectors in the worker once the save is committed."""
    from django.conf import settings

    if not settings.EMBEDDINGS_MODEL:
        return
    from tools.tasks import embed_articles_task

    article_id = str(getattr(instance, "pk", ""))

    def queue() -> None:
        try:
            embed_articles_task.delay([article_id])
        except Exception:  # the next loadkb or save embeds it; the save itself stands
            structlog.get_logger("tools").warning("embed_not_queued", article_id=article_id)

    transaction.on_commit(queue)
