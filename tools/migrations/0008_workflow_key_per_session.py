"""Workflow idempotency keys are unique per session, not across sessions (a key reused by another
session is that session's own execution, and tells it nothing about the first)."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tools", "0007_article_chunks"),
    ]

    operations = [
        migrations.AlterField(
            model_name="workflowexecution",
            name="idempotency_key",
            field=models.CharField(max_length=128),
        ),
        migrations.AddConstraint(
            model_name="workflowexecution",
            constraint=models.UniqueConstraint(
                fields=("session_id", "idempotency_key"), name="tools_wf_session_key_unique"
            ),
        ),
    ]
