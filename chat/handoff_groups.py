"""The staff groups of hand-offs, made after every ``migrate`` if they are missing: "Support
agents" may view the inbox and conversations, take over, reply and resolve; "Supervisors" may also
reassign and see every item, restore archives, see retention runs, and answer subject requests
(export, erase). Existing groups are left as staff edited them."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission

AGENT_PERMISSIONS = [
    "chat.view_handoff",
    "chat.take_over_handoff",
    "chat.reply_handoff",
    "chat.resolve_handoff",
    "chat.view_chatsession",
    "chat.view_message",
    "chat.view_handoffnote",
    "chat.add_handoffnote",
    "chat.view_replydraft",
    "chat.view_rating",
    "chat.view_answerfeedback",
    "chat.view_sessionarchive",
    "tools.view_ticket",
]
SUPERVISOR_PERMISSIONS = [
    *AGENT_PERMISSIONS,
    "chat.reassign_handoff",
    "chat.view_all_handoffs",
    "chat.view_supportschedule",
    "chat.add_supportschedule",
    "chat.change_supportschedule",
    "chat.view_supporthours",
    "chat.add_supporthours",
    "chat.change_supporthours",
    "chat.delete_supporthours",
    "chat.view_supportexception",
    "chat.add_supportexception",
    "chat.change_supportexception",
    "chat.delete_supportexception",
    # Archives: restore for staff, release, verify (ops.archive_views); retention runs.
    "chat.change_sessionarchive",
    "ops.view_retentionrun",
    # Subject requests (ops.subjects): export and erase everything held about a person.
    "ops.export_subject",
    "ops.erase_subject",
    "ops.view_subjectrequest",
]
GROUPS = {"Support agents": AGENT_PERMISSIONS, "Supervisors": SUPERVISOR_PERMISSIONS}


def _permissions(names: list[str]) -> list[Permission]:
    found = []
    for name in names:
        app_label, codename = name.split(".", 1)
        permission = Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).first()
        if permission is not None:
            found.append(permission)
    return found


def ensure_groups(*, using: str = "default", **kwargs: Any) -> None:
    """A ``post_migrate`` receiver: create each group that does not exist yet."""
    # Every app's permissions first: the signal may reach us before it reached some apps.
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    for name, permissions in GROUPS.items():
        group, created = Group.objects.get_or_create(name=name)
        if created:
            group.permissions.set(_permissions(permissions))
