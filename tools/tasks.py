"""Celery tasks of the tools app (they take ids, never model instances), and the hook that queues
the embedding of a saved article."""

from __future__ import annotations

import structlog
from celery import shared_task
from django.conf import settings
from django.db import transaction

from tools.embeddings import index_articles
from tools.workflows.engine import RUN_WORKFLOW_TASK, resume_stale_workflows, run_execution


# Late acks and reject_on_worker_lost: a worker killed mid-run leaves the message to be
# delivered again, and the execution continues after its last completed step.
@shared_task(name=RUN_WORKFLOW_TASK, acks_late=True, reject_on_worker_lost=True)
def run_workflow_task(execution_id: str) -> str | None:
    """Run a workflow execution to its end (a finished or running one is left alone)."""
    return run_execution(execution_id)


@shared_task(name="tools.resume_stale_workflows")
def resume_stale_workflows_task() -> int:
    """Queue again the executions whose worker vanished or that were never queued."""
    return resume_stale_workflows()


@shared_task(
    name="tools.embed_articles",
    autoretry_for=(Exception,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def embed_articles_task(article_ids: list[str] | None = None) -> int:
    """Embed the chunks of changed articles (idempotent: unchanged ones are skipped)."""
    return index_articles(article_ids=article_ids)


def embed_on_commit(sender: object, instance: object, **kwargs: object) -> None:
    """``post_save`` of an article: its chunk vectors are made in the worker once the save is
    committed."""
    if not settings.EMBEDDINGS_MODEL:
        return
    article_id = str(getattr(instance, "pk", ""))

    def queue() -> None:
        try:
            embed_articles_task.delay([article_id])
        except Exception:  # the next loadkb or save embeds it; the save itself stands
            structlog.get_logger("tools").warning("embed_not_queued", article_id=article_id)

    transaction.on_commit(queue)
