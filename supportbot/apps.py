"""The kernel as a Django app: it owns the tables of the shared metrics (``supportbot.models``)."""

from __future__ import annotations

from django.apps import AppConfig


class SupportbotConfig(AppConfig):
    name = "supportbot"
    verbose_name = "Service"
