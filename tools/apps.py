from __future__ import annotations

from django.apps import AppConfig


class ToolsConfig(AppConfig):
    name = "tools"
    verbose_name = "Knowledge base and tools"

    def ready(self) -> None:
        from tools.builtin import register_builtin
        from tools.registry import registry

        register_builtin(registry)
